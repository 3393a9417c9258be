"""
ColBERT encoder plugin module
"""

from ..hookspecs import hookimpl


@hookimpl
def register_encoders(register):
    """
    Registers the PyLate-exact late-interaction encoder as "colbert".

    Args:
        register: callback
    """

    # Lazy: listing skips torch
    register("colbert", "txtai_muvera.core.encoder:LateEncoder")
