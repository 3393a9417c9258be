"""
LEMUR encoding plugin module
"""

from ..hookspecs import hookimpl


@hookimpl
def register_encodings(register):
    """
    Registers the learned LEMUR candidate encoding as "lemur".

    Args:
        register: callback
    """

    register("lemur", "txtai_muvera.core.lemur:Lemur")
