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

    # pylint: disable=C0415
    from ..core.store import TokenStore

    register("tokens", TokenStore)
