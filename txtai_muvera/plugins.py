"""
Plugins module
"""

import importlib
import logging
import os
import threading

import pluggy

from . import hookspecs

# Built-in plugins
DEFAULT_PLUGINS = (
    "txtai_muvera.default_plugins.colbert",
    "txtai_muvera.default_plugins.muvera",
    "txtai_muvera.default_plugins.lemur",
    "txtai_muvera.default_plugins.tokens",
)

# Third-party entry points
ENTRYPOINTS = "txtai_muvera"

# Entry points to load: unset all, "" none, "a,b" those
LOADENV = "TXTAI_MUVERA_LOAD_PLUGINS"

# Kinds and their hooks
KINDS = {
    "encoders": "register_encoders",
    "encodings": "register_encodings",
    "stores": "register_stores",
}

logger = logging.getLogger(__name__)

pm = pluggy.PluginManager("txtai_muvera")
pm.add_hookspecs(hookspecs)

# Loaded once, lazily
LOCK = threading.RLock()
LOADED = False


def loadplugins():
    """
    Registers the default plugins and loads entry point plugins, once.
    """

    # pylint: disable=W0603
    global LOADED

    with LOCK:
        if LOADED:
            return

        # Entry points, per LOADENV
        names = os.environ.get(LOADENV)
        if names is None:
            pm.load_setuptools_entrypoints(ENTRYPOINTS)
        elif names.strip():
            for name in (x.strip() for x in names.split(",") if x.strip()):
                pm.load_setuptools_entrypoints(ENTRYPOINTS, name=name)

        # Default plugins
        for name in DEFAULT_PLUGINS:
            if not pm.get_plugin(name):
                pm.register(importlib.import_module(name), name)

        LOADED = True


def register(plugin, name=None):
    """
    Registers a plugin object or module at runtime, for example from a test or an application.

    Args:
        plugin: module or object with hookimpl functions
        name: optional plugin name

    Returns:
        plugin name
    """

    loadplugins()
    return pm.register(plugin, name)


def unregister(plugin=None, name=None):
    """
    Unregisters a plugin registered with register.

    Args:
        plugin: plugin object
        name: plugin name
    """

    pm.unregister(plugin, name)


def registry(kind):
    """
    Collects every registration of a kind.

    Args:
        kind: one of encoders, encodings, stores

    Returns:
        {name: factory or "module:qualname" path of a factory not imported yet}
    """

    if kind not in KINDS:
        raise ValueError(f"unknown plugin kind '{kind}', expected one of {sorted(KINDS)}")

    loadplugins()

    # First registration wins
    entries = {}

    def add(name, factory):
        if name in entries and entries[name] is not factory and entries[name] != factory:
            logger.warning("%s '%s' registered twice, keeping the first registration", kind[:-1], name)
            return
        entries[name] = factory

    # Reversed: runtime, defaults, entry points
    # (no package replaces a default)
    for impl in reversed(getattr(pm.hook, KINDS[kind]).get_hookimpls()):
        impl.function(register=add)

    return entries


def lookup(kind, name):
    """
    Finds one registration by name.

    Args:
        kind: registration kind
        name: registered name

    Returns:
        factory
    """

    entries = registry(kind)
    if name not in entries:
        raise ValueError(f"no {kind[:-1]} named '{name}' is registered, registered {kind}: {sorted(entries)}")

    return importfactory(entries[name])


def importfactory(factory):
    """
    Imports a factory registered lazily as a "module:qualname" path; other factories pass through.

    Args:
        factory: factory or path

    Returns:
        factory
    """

    if not isinstance(factory, str):
        return factory

    module, _, qualname = factory.partition(":")
    target = importlib.import_module(module)
    for part in qualname.split("."):
        target = getattr(target, part)

    return target


def name(factory):
    """
    Names a factory for display, without importing a lazily registered one.

    Args:
        factory: factory or "module:qualname" path

    Returns:
        "module.qualname"
    """

    if isinstance(factory, str):
        return factory.replace(":", ".")

    return f"{getattr(factory, '__module__', '?')}.{getattr(factory, '__qualname__', repr(factory))}"


def registered():
    """
    Lists what is registered, for display. Imports no lazily registered factory.

    Returns:
        {kind: {name: "module.qualname"}}
    """

    # Name without importing
    return {kind: {key: name(factory) for key, factory in registry(kind).items()} for kind in KINDS}
