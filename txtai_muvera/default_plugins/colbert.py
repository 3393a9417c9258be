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

    # A "module:qualname" path: imported on first lookup, so listing plugins imports neither torch nor txtai
    register("colbert", "txtai_muvera.core.encoder:LateEncoder")
