"""
Errors module
"""

from contextlib import contextmanager


class ConfigurationError(BaseException):
    """
    A configuration txtai_muvera cannot run with: a bad muvera: setting, a path that is not a model, a hub model that
    cannot be reached, an option the plugin does not support. The message names the problem and the valid choices.

    txtai creates Vectors methods and ANN backends inside `except Exception` and re-raises every error as
    `ImportError: Unable to resolve vectors backend`, which reads as "the plugin is not installed". Like pytest's
    outcome exceptions, this class derives from BaseException so that it passes through those handlers and the user sees
    its message as the last line of the traceback. Catch it by name (`except ConfigurationError`), or with
    `except BaseException`; `except Exception` does not catch it. The original error is its `__context__`.
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
