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

    # pylint: disable=C0415
    from ..core.fde import FDE

    register("muvera", FDE)
