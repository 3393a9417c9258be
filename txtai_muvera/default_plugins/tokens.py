"""
Token store plugin module
"""

from ..hookspecs import hookimpl


@hookimpl
def register_stores(register):
    """
    Registers the memory-mapped token store as "tokens".

    Args:
        register: callback
    """

    # Lazy: listing skips torch
    register("tokens", "txtai_muvera.core.store:TokenStore")
