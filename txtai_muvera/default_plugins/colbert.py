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

    # pylint: disable=C0415
    # Imported on use: the encoder pulls in torch and transformers
    from ..core.encoder import LateEncoder

    register("colbert", LateEncoder)
