"""
Plugins module
"""

import importlib
import logging
import os
import threading

import pluggy

from . import hookspecs

# Plugins of this package, registered through the same hooks a third-party package uses
DEFAULT_PLUGINS = (
    "txtai_muvera.default_plugins.colbert",
    "txtai_muvera.default_plugins.muvera",
    "txtai_muvera.default_plugins.lemur",
    "txtai_muvera.default_plugins.tokens",
)

# Entry point group that third-party packages declare in their pyproject.toml
ENTRYPOINTS = "txtai_muvera"

# Environment variable that controls entry point loading: unset loads all, "" loads none, "a,b" loads only those names
LOADENV = "TXTAI_MUVERA_LOAD_PLUGINS"

# Kinds of registrations and the hook that fills each
KINDS = {
    "encoders": "register_encoders",
    "encodings": "register_encodings",
    "stores": "register_stores",
}

logger = logging.getLogger(__name__)

pm = pluggy.PluginManager("txtai_muvera")
pm.add_hookspecs(hookspecs)

# Plugins load once, lazily, on first lookup
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

        # Entry point plugins, filtered by the environment variable
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

    # Collect registrations: the first one of a name is kept, a second one is logged
    entries = {}

    def add(name, factory):
        if name in entries and entries[name] is not factory and entries[name] != factory:
            logger.warning("%s '%s' registered twice, keeping the first registration", kind[:-1], name)
            return
        entries[name] = factory

    # Registered in order: entry points, defaults, then run time plugins. Reversed, a run time plugin comes first (it
    # can override a default) and a default comes before any entry point (no package silently replaces one)
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

    # Lazily registered factories are named without importing them (and torch or txtai with them)
    return {kind: {key: name(factory) for key, factory in registry(kind).items()} for kind in KINDS}
