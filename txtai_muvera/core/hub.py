"""
Hub module
"""

import os
import re
import threading
import time
import urllib.error
import urllib.request

from huggingface_hub import constants, snapshot_download
from huggingface_hub.errors import GatedRepoError, LocalEntryNotFoundError, RepositoryNotFoundError, RevisionNotFoundError

# Hub probe timeout in seconds
TIMEOUT = 3.0

# Seconds a probe result is reused
TTL = 300.0

# Probe results by endpoint
PROBES = {}
LOCK = threading.Lock()


class HubError(ValueError):
    """
    Raised when a model hub id cannot be loaded: the hub is unreachable and the model is not cached, or the hub does
    not know the id. The message is one line naming the model and what to do.
    """


def endpoint():
    """
    Model hub address, HF_ENDPOINT when set.

    Returns:
        url
    """

    return constants.ENDPOINT.rstrip("/")


def offline():
    """
    Checks huggingface_hub's offline switch, also when HF_HUB_OFFLINE was set after huggingface_hub was imported.

    Returns:
        True when offline mode is on
    """

    return bool(constants.HF_HUB_OFFLINE) or os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def reachable(timeout=None):
    """
    Decides whether the model hub answers: huggingface_hub's offline switch first, then one HTTP request with a short
    timeout and no retries. The result is cached for TTL seconds.

    Args:
        timeout: probe timeout in seconds, defaults to TXTAI_MUVERA_HUB_TIMEOUT or TIMEOUT

    Returns:
        (reachable, reason): reason says why not, None when reachable
    """

    if offline():
        return False, "HF_HUB_OFFLINE is set"

    url = endpoint()
    with LOCK:
        cached = PROBES.get(url)
        if cached and time.monotonic() - cached[2] < TTL:
            return cached[:2]

        timeout = timeout if timeout is not None else float(os.environ.get("TXTAI_MUVERA_HUB_TIMEOUT", TIMEOUT))
        result = probe(url, timeout)
        PROBES[url] = (*result, time.monotonic())
        return result


def probe(url, timeout):
    """
    Sends one HEAD request to the hub's root. The hub answers it; a server error, or a "not found" at the root (a proxy
    or a server that is no model hub) means it is not reachable.

    Args:
        url: hub address
        timeout: seconds

    Returns:
        (reachable, reason)
    """

    try:
        with urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=timeout):
            return True, None
    except urllib.error.HTTPError as error:
        return (True, None) if error.code < 500 and error.code != 404 else (False, f"{url} answered HTTP {error.code}, not a model hub")
    except (urllib.error.URLError, OSError, ValueError) as error:
        reason = getattr(error, "reason", error)
        return False, f"{url}: {reason}" if not isinstance(reason, TimeoutError) else f"{url} did not answer within {timeout:g}s"


def folder(model, revision=None):
    """
    Finds the local folder of a hub model when the hub cannot be reached: its cached snapshot.

    Args:
        model: hub model id
        revision: optional revision

    Returns:
        cached snapshot folder when the hub is unreachable, None when the hub is reachable (download as usual)

    Raises:
        HubError: the hub is unreachable and the model is not cached
    """

    ok, reason = reachable()
    if ok:
        return None

    try:
        return snapshot_download(model, revision=revision, local_files_only=True)
    except (LocalEntryNotFoundError, OSError, ValueError) as error:
        raise HubError(unreachable(model, reason)) from error


def unreachable(model, reason):
    """
    One-line message for a hub model that cannot be downloaded because the hub cannot be reached.

    Args:
        model: hub model id
        reason: why the hub is unreachable

    Returns:
        message
    """

    return (
        f"model hub unreachable ({reason}) and '{model}' is not in the local cache: "
        "set path to a local model folder, or download the model where the hub is reachable"
    )


def notfound(model, error):
    """
    Turns the hub's answer about a missing repository or revision into a one-line message.

    Args:
        model: hub model id
        error: huggingface_hub error

    Returns:
        HubError, or the error itself when it is not about a missing model
    """

    if isinstance(error, GatedRepoError):
        return HubError(f"'{model}' is gated on the model hub ({endpoint()}/{model}): accept its terms and log in, or use a local folder")
    if isinstance(error, RepositoryNotFoundError):
        return HubError(f"'{model}' not found on the model hub ({endpoint()}/{model}): check the id, log in for a private model, or use a folder")
    if isinstance(error, RevisionNotFoundError):
        return HubError(f"revision not found on the model hub for '{model}': check the revision")

    return error


def expand(path):
    """
    Expands environment variables in a model path, so that one YAML file serves a hub id and a local folder:
    `${NAME}` or `${NAME:-default}` (the default when NAME is unset or empty).

    >>> expand("${TXTAI_MUVERA_UNSET_EXAMPLE:-neuml/colbert-muvera-micro}")
    'neuml/colbert-muvera-micro'

    Args:
        path: model path

    Returns:
        expanded path

    Raises:
        ValueError: a variable without a default is not set
    """

    def value(match):
        name, default = match.group(1), match.group(3)
        if os.environ.get(name):
            return os.environ[name]
        if default is None:
            raise ValueError(f"model path {path!r} uses the environment variable {name}, which is not set")
        return default

    return re.sub(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(:-([^}]*))?\}", value, path) if isinstance(path, str) else path
