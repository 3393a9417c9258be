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

    # A "module:qualname" path: imported on first lookup, so listing plugins imports neither torch nor txtai
    register("muvera", "txtai_muvera.core.fde:FDE")
