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

    # A "module:qualname" path: imported on first lookup, so listing plugins imports neither torch nor txtai
    register("tokens", "txtai_muvera.core.store:TokenStore")
