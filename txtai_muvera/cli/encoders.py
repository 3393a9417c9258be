"""
Encoders module
"""

from .. import plugins
from ..errors import configuration
from ..settings import DEFAULTS


def registeredencoder(model, name=DEFAULTS["encoder"], gpu=True, batchsize=32):
    """
    Creates a registered late-interaction encoder for a model. A model that cannot load is a ConfigurationError, which the
    command line prints as one line.

    Args:
        model: late-interaction model, local folder or hub id
        name: registered encoder name
        gpu: True picks an accelerator when available, False forces the CPU
        batchsize: encoding batch size

    Returns:
        encoder
    """

    with configuration():
        return plugins.lookup("encoders", name)(model, gpu=gpu, batchsize=batchsize)
