"""
Hookspecs module
"""

from pluggy import HookimplMarker, HookspecMarker

# Markers for the plugin manager
hookspec = HookspecMarker("txtai_muvera")
hookimpl = HookimplMarker("txtai_muvera")

# Signatures only (W0613)

# register(name, factory or "module:qualname")


@hookspec
def register_encoders(register):  # pylint: disable=W0613
    """
    Registers late-interaction encoders.

    Call register(name, factory) where factory(path, gpu=True, batchsize=32) returns an object with
    encode(texts, category) -> list of (tokens x dim) float32 arrays, and attributes dimension and fingerprint.

    Args:
        register: callback
    """


@hookspec
def register_encodings(register):  # pylint: disable=W0613
    """
    Registers fixed dimensional encodings.

    Call register(name, factory) where factory(dimension, **params) returns an object with
    __call__(flat, offsets, category) -> (n x dimensions) float32 array, attribute dimensions and config() -> params.

    Args:
        register: callback
    """


@hookspec
def register_stores(register):  # pylint: disable=W0613
    """
    Registers token stores.

    Call register(name, cls) where cls(dimension, dtype) has attributes dimension and deleted, len(), append(flat, offsets,
    scales=None), delete, gather, count, save(path) and a static load(path, verify).

    Args:
        register: callback
    """
