"""
Settings module
"""

import difflib
import inspect

from . import plugins
from .scan import ENCODINGDTYPES

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
    # Candidate vector (FDE) storage type of the exact search: float16 (half the bytes) or float32
    "encodingdtype": "float16",
    # FDE candidate search: "exact" or a txtai ANN backend name (faiss, hnsw, ...) or a dict with a backend key and its settings
    "search": "exact",
    # MaxSim reduction over query tokens: mean (txtai) or sum (PyLate)
    "reduce": "mean",
    # Progress bar while indexing: None shows one on a terminal, True always, False never
    "progress": None,
    # Encoder model fingerprint, recorded when an index is built: a model with another fingerprint is refused
    "fingerprint": None,
}

DTYPES = ("float32", "float16", "int8")


def resolve(block):
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
        key = unknown[0]
        close = difflib.get_close_matches(key, list(DEFAULTS) + accepted, n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise ValueError(f"unknown muvera setting '{key}'{hint}, valid settings: {sorted(list(DEFAULTS) + accepted)}")

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
    if not (settings["fingerprint"] is None or isinstance(settings["fingerprint"], str)):
        raise ValueError(f"muvera fingerprint must be a string recorded by an index, got {settings['fingerprint']!r}")
    if not (settings["progress"] is None or isinstance(settings["progress"], bool)):
        raise ValueError(f"muvera progress must be true, false or null, got {settings['progress']!r}")
    search = settings["search"]
    if not (isinstance(search, str) or (isinstance(search, dict) and "backend" in search)):
        raise ValueError(f"muvera search must be 'exact', a txtai ANN backend name or a dict with a backend key, got {search!r}")

    return settings, {key: block[key] for key in accepted if key in block}


def indexconfig(path, block, gpu=True, batchsize=32):
    """
    Builds the txtai Embeddings config of a late-interaction index with content, from a model and a muvera: block.

    >>> indexconfig("model", {"candidates": 50}, gpu=False)["muvera"]
    {'candidates': 50, 'progress': False}

    Args:
        path: late-interaction model, local folder or hub id
        block: muvera: config block
        gpu: txtai's gpu option
        batchsize: encoding batch size

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
        "muvera": {**block, "progress": False},
    }
