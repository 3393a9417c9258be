"""
Settings module
"""

import difflib
import inspect
import logging

import torch

from . import plugins
from .core.certified import PRECISIONS
from .core.files import IndexFileError
from .core.scan import ENCODINGDTYPES
from .delegate import PRESETS

# Index settings of the muvera: config block, besides the parameters of the fixed dimensional encoding
DEFAULTS = {
    # Registered late-interaction encoder
    "encoder": "colbert",
    # Registered fixed dimensional encoding
    "encoding": "muvera",
    # Registered token store
    "store": "tokens",
    # Number of FDE candidates re-ranked with exact MaxSim, 0 returns FDE scores (MUVERA only)
    "candidates": 100,
    # Token vector storage type: float32, float16 or int8
    "dtype": "float16",
    # Candidate vector (FDE) storage type of the exact search: float16 (half the bytes), int8 (a quarter) or float32
    "encodingdtype": "float16",
    # FDE candidate search: "exact" or a txtai ANN backend name (faiss, hnsw, ...) or a dict with a backend key and its settings
    "search": "exact",
    # MaxSim reduction over query tokens: mean (txtai) or sum (PyLate)
    "reduce": "mean",
    # Re-rank precision: exact (float32), certified (int8 screen, float32 results identical to exact) or approximate
    "precision": "exact",
    # Torch device holding a copy of the token vectors for re-ranking (for example cuda), None re-ranks from the store on CPU
    "device": None,
    # Progress bar while indexing: None shows one on a terminal, True always, False never
    "progress": None,
    # Encoder model fingerprint, recorded when an index is built: a model with another fingerprint is refused
    "fingerprint": None,
    # Identity of an index, recorded when it is built: a folder of another index is refused at load
    "index": None,
    # Checksums of memory-mapped files: "lazy" (each block when first read), "load" (all at load) or "off"
    "verify": "lazy",
}

DTYPES = ("float32", "float16", "int8")

# Keys an index records itself, never shown in the lists of valid settings
INTERNAL = ("fingerprint", "index")

# txtai's ANN backends by name (txtai 9.14 ANNFactory), besides exact FDE search and a dotted class path
BACKENDS = ("annoy", "faiss", "ggml", "hnsw", "milvus", "numpy", "pgvector", "rabitq", "sqlite", "torch", "turbovec", "zvec")

logger = logging.getLogger(__name__)


def readsettings(block):
    """
    Validates a muvera: config block and fills in defaults.

    Args:
        block: dict or None

    Returns:
        (index settings dict, encoding parameters dict)
    """

    block = {} if block is None or block is True else block
    if not isinstance(block, dict):
        raise ValueError(f"muvera settings must be a dict, got {type(block).__name__}")

    settings = {**DEFAULTS, **{k: v for k, v in block.items() if k in DEFAULTS}}

    # Parameters accepted by the chosen encoding (dimension comes from the encoder)
    factory = plugins.lookup("encodings", settings["encoding"])
    accepted = [name for name in inspect.signature(factory).parameters if name not in ("self", "dimension")]

    # Unknown keys are an error: a misspelt key silently falling back to a default gives a different index
    unknown = [key for key in block if key not in DEFAULTS and key not in accepted]
    if unknown:
        key, valid = unknown[0], sorted(k for k in list(DEFAULTS) + accepted if k not in INTERNAL)
        close = difflib.get_close_matches(str(key), valid, n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise ValueError(f"unknown muvera setting '{key}'{hint}, valid settings: {valid}")

    # Values of the index settings
    checkvalues(settings)

    return settings, {key: block[key] for key in accepted if key in block}


# Former name of readsettings, for the command-line modules until they import readsettings
resolve = readsettings


def checkvalues(settings):
    """
    Checks the value of each index setting.

    Args:
        settings: index settings dict, defaults filled in
    """

    # Check index settings
    candidates = settings["candidates"]
    if isinstance(candidates, bool) or not isinstance(candidates, int) or candidates < 0:
        raise ValueError(f"muvera candidates must be an integer >= 0, got {candidates!r}")
    if settings["dtype"] not in DTYPES:
        raise ValueError(f"muvera dtype must be one of {DTYPES}, got {settings['dtype']!r}")
    if settings["encodingdtype"] not in ENCODINGDTYPES:
        raise ValueError(f"muvera encodingdtype must be one of {ENCODINGDTYPES}, got {settings['encodingdtype']!r}")
    if settings["reduce"] not in ("mean", "sum"):
        raise ValueError(f"muvera reduce must be 'mean' or 'sum', got {settings['reduce']!r}")
    for key in ("fingerprint", "index"):
        if not (settings[key] is None or isinstance(settings[key], str)):
            raise ValueError(f"muvera {key} must be a string recorded by an index, got {settings[key]!r}")
    if settings["verify"] not in ("lazy", "load", "off"):
        raise ValueError(f"muvera verify must be 'lazy', 'load' or 'off', got {settings['verify']!r}")
    if settings["precision"] not in PRECISIONS:
        raise ValueError(f"muvera precision must be one of {PRECISIONS}, got {settings['precision']!r}")
    if settings["device"] is not None:
        try:
            torch.device(settings["device"])
        except (RuntimeError, TypeError) as error:
            raise ValueError(f"muvera device must be a torch device name such as 'cuda' or 'cpu', got {settings['device']!r}") from error
    if not (settings["progress"] is None or isinstance(settings["progress"], bool)):
        raise ValueError(f"muvera progress must be true, false or null, got {settings['progress']!r}")
    checksearch(settings["search"])


def checksearch(search):
    """
    Checks muvera.search when the index is created, not when it is first built: "exact", a txtai ANN backend name, a
    dotted path to a txtai ANN class, or a dict with one of those as its backend key.

    Args:
        search: muvera.search value
    """

    choices = (
        f"'exact', a preset {list(PRESETS)}, one of txtai's ANN backends {list(BACKENDS)}, a dotted path to a txtai ANN class, "
        "or a dict with a backend key"
    )
    backend = search.get("backend") if isinstance(search, dict) else search
    if isinstance(search, dict) and backend == "exact":
        backend = None
    if not isinstance(backend, str) or not backend:
        raise ValueError(f"muvera search must be {choices}, got {search!r}")

    if backend in BACKENDS or (backend in ("exact", *PRESETS) and not isinstance(search, dict)):
        return
    if "muvera" in backend.lower():
        raise ValueError("muvera search cannot delegate to the Muvera backend itself")

    # A dotted path must name a txtai ANN class
    if "." in backend.strip("."):
        # pylint: disable=C0415
        from txtai.ann import ANN
        from txtai.util import Resolver

        try:
            Resolver()(backend, ANN)
            return
        except (ImportError, AttributeError, ValueError) as error:
            raise ValueError(f"muvera search backend '{backend}' is not a txtai ANN class ({error}), valid: {choices}") from error

    close = difflib.get_close_matches(backend, ["exact", *PRESETS, *BACKENDS], n=1)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    raise ValueError(f"unknown muvera search backend '{backend}'{hint}, valid: {choices}")


def checkconfig(config):
    """
    Checks the txtai config of a txtai_muvera.LateVectors index around the muvera: block: a misspelt block name is an
    error (the index would silently use defaults), an ANN backend other than txtai_muvera.Muvera is a warning (searches
    would return FDE scores without exact MaxSim re-ranking).

    Args:
        config: txtai embeddings config (dense slot) or scoring config (sparse slot)
    """

    if not isinstance(config, dict):
        return

    # Misspelt or miscased block name
    for key in config:
        if isinstance(key, str) and key != "muvera" and difflib.SequenceMatcher(None, key.lower(), "muvera").ratio() >= 0.7:
            raise ValueError(f"unknown setting '{key}' (did you mean 'muvera'?): txtai_muvera.LateVectors reads its settings from the muvera: block")

    backend = config.get("backend")
    if not (isinstance(backend, str) and backend.endswith("Muvera")):
        logger.warning(
            "txtai_muvera.LateVectors with backend %r: searches return FDE scores without exact MaxSim re-ranking, "
            "add backend: txtai_muvera.Muvera",
            backend,
        )


def indexconfig(path, block, gpu=True, batchsize=32, progress=False):
    """
    Builds the txtai Embeddings config of a late-interaction index with content, from a model and a muvera: block.

    >>> indexconfig("model", {"candidates": 50}, gpu=False)["muvera"]
    {'candidates': 50, 'progress': False}

    Args:
        path: late-interaction model, local folder or hub id
        block: muvera: config block
        gpu: txtai's gpu option
        batchsize: encoding batch size
        progress: the index's progress setting (null, true or false)

    Returns:
        config dict
    """

    return {
        "path": path,
        "method": "txtai_muvera.LateVectors",
        "backend": "txtai_muvera.Muvera",
        "content": True,
        "gpu": gpu,
        "encodebatch": batchsize,
        "muvera": {**block, "progress": progress},
    }


def configuredstore(settings, dimension=None, path=None):
    """
    Creates an empty token store of the configured kind and dtype, or loads a saved one.

    Args:
        settings: index settings
        dimension: token vector width of a new store
        path: folder of a saved store to load instead

    Returns:
        token store
    """

    factory = plugins.lookup("stores", settings["store"])
    return factory.load(path, verify=settings["verify"]) if path else factory(dimension, settings["dtype"])


def builtparams(metadata, settings, params, block, name):
    """
    Checks the config's FDE parameters against the ones an index was built with and fills in the rest, so the vectors
    model built after a load encodes like the index.

    Args:
        metadata: index metadata (muvera.json), its encoding completed with parameters added since
        settings: index settings
        params: encoding parameters the config asks for
        block: the config's muvera block
        name: metadata file, for messages

    Returns:
        (muvera block for the config, encoding parameters)
    """

    # Parameters added to the encoding after this index was built take the values it was built with
    if metadata["encoding"]:
        legacy = getattr(plugins.lookup("encodings", settings["encoding"]), "LEGACY", {})
        metadata["encoding"] = {**legacy, **metadata["encoding"]}

    saved = {k: v for k, v in (metadata["encoding"] or {}).items() if k != "dimension"}
    changed = sorted(k for k, v in params.items() if k in saved and saved[k] != v)
    if changed:
        built = ", ".join(f"{k}={saved[k]!r}" for k in changed)
        asked = ", ".join(f"{k}={params[k]!r}" for k in changed)
        raise IndexFileError(f"{name}: this index was built with FDE parameters {built}, the config asks for {asked}: load it without changing them")

    # Saved parameters must be ones the encoding accepts, checked here rather than when txtai builds the vectors model
    try:
        readsettings({"encoding": settings["encoding"], **saved})
    except ValueError as error:
        encoding = settings["encoding"]
        raise IndexFileError(f"{name}: records encoding parameters the {encoding!r} encoding does not accept ({error})") from error

    block = dict(block) if isinstance(block, dict) else {}
    if metadata["fingerprint"]:
        block.setdefault("fingerprint", metadata["fingerprint"])

    return {**saved, **block}, {**saved, **params}
