"""
Errors module
"""

from contextlib import contextmanager


class ConfigurationError(BaseException):
    """
    A configuration txtai_muvera cannot run with: a bad muvera: setting, a path that is not a model, an unreachable
    hub model or an unsupported option. The message names the problem and the valid choices.

    txtai re-raises errors from Vectors and ANN constructors as `ImportError: Unable to resolve vectors backend`. This
    class derives from BaseException so that it passes those handlers: catch it by name, `except Exception` does not.
    The original error is its `__context__`.
    """


@contextmanager
def configuration():
    """
    Raises configuration problems found while txtai creates one of our classes as ConfigurationError, so that they reach
    the user instead of txtai's ImportError.

    Raises:
        ConfigurationError: for a ValueError, TypeError or FileNotFoundError raised in the block
    """

    try:
        yield
    except (ValueError, TypeError, FileNotFoundError) as error:
        raise ConfigurationError(str(error)) from None
