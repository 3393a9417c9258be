"""
MUVERA encoding plugin module
"""

from ..hookspecs import hookimpl


@hookimpl
def register_encodings(register):
    """
    Registers the MUVERA fixed dimensional encoding as "muvera".

    Args:
        register: callback
    """

    # Lazy: listing skips torch
    register("muvera", "txtai_muvera.core.fde:FDE")
