"""
Delegate module
"""

import logging
import math
import os

from .core.files import IndexFileError

logger = logging.getLogger(__name__)

# Search presets, see README
PRESETS = {
    # IDMap adds add_with_ids; over IVF it misnumbers removals
    # HNSW over float16
    "faiss-hnsw": {"backend": "faiss", "faiss": {"components": "IDMap,HNSW32,SQfp16", "efsearch": 512}},
    # IVF over float16
    "faiss-ivf": {"backend": "faiss", "faiss": {"components": "IVF,SQfp16", "probefraction": 0.75, "maxtrain": 20000}},
    # IVF PQ, float16 re-scoring; candidate rows cluster poorly, so every list is scanned
    "faiss-ivfpq": {
        "backend": "faiss",
        "faiss": {"components": "IDMap,IVF,PQ{pq}x4fs,Refine(SQfp16)", "probefraction": 1.0, "kfactor": 32, "maxtrain": 20000},
    },
    # hnswlib, supports removals
    "hnswlib": {"backend": "hnsw", "hnsw": {"m": 32, "efconstruction": 200, "efsearch": 128}},
}

# Dimensions per PQ code, and the fewest codes: learned rows rank by small differences of large products
PQWIDTH, PQCODES = 8, 1024


def delegateconfig(search, dimensions=None, rows=None):
    """
    Builds the txtai ANN config of a delegated candidate search from muvera.search.

    Args:
        search: txtai ANN backend name, preset name or dict with a backend key
        dimensions: candidate vector width, fills in the product quantization size of a preset
        rows: number of rows indexed, turns a faiss maxtrain setting into txtai's sample fraction

    Returns:
        config dict with a backend key
    """

    if isinstance(search, str) and search in PRESETS:
        config = {key: dict(value) if isinstance(value, dict) else value for key, value in PRESETS[search].items()}
        components = config.get("faiss", {}).get("components", "")
        if dimensions and "{pq}" in components:
            config["faiss"]["components"] = components.format(pq=pqsize(dimensions))
    else:
        config = dict(search) if isinstance(search, dict) else {"backend": search}
        if "muvera" in str(config["backend"]).lower():
            raise ValueError("muvera search cannot delegate to the Muvera backend itself")

    # Cap k-means training rows
    settings = config.get("faiss")
    if isinstance(settings, dict) and settings.get("maxtrain") and rows and rows > settings["maxtrain"]:
        config["faiss"] = {**settings, "sample": settings["maxtrain"] / rows}

    return config


def createdelegate(search, dimensions, rows=None):
    """
    Creates the txtai ANN that searches FDE rows, when muvera.search names a backend.

    Args:
        search: muvera.search setting
        dimensions: FDE width
        rows: number of rows to index

    Returns:
        txtai ANN
    """

    # Lazy: settings skip txtai
    # pylint: disable-next=C0415
    from txtai.ann import ANNFactory

    config = delegateconfig(search, dimensions, rows)
    config["dimensions"] = dimensions
    return ANNFactory.create(config)


def checksaved(path, saved, search):
    """
    Checks the delegated ANN config of a saved folder. Only the backend the config names is accepted: a saved file never
    chooses which code runs.

    Args:
        path: Muvera index folder
        saved: delegate config from muvera.json
        search: muvera.search setting
    """

    name = os.path.join(path, "muvera.json")
    backend = delegateconfig(search)["backend"] if search != "exact" else None
    if not isinstance(saved, dict) or saved.get("backend") != backend:
        found = saved.get("backend") if isinstance(saved, dict) else saved
        raise IndexFileError(f"{name}: delegated FDE search {found!r} is not the configured {backend!r}")
    dimensions = saved.get("dimensions")
    if isinstance(dimensions, bool) or not isinstance(dimensions, int) or dimensions < 1:
        raise IndexFileError(f"{name}: invalid delegate dimensions {dimensions!r}")


def loadsaved(path, saved):
    """
    Loads the delegated ANN of a checked folder (see checksaved).

    Args:
        path: Muvera index folder
        saved: delegate config from muvera.json

    Returns:
        txtai ANN
    """

    # pylint: disable-next=C0415
    from txtai.ann import ANNFactory

    delegate = ANNFactory.create(dict(saved))
    try:
        delegate.load(os.path.join(path, "fde"))
    except (RuntimeError, OSError, ValueError, KeyError, TypeError) as error:
        raise IndexFileError(f"{os.path.join(path, 'fde')}: unreadable delegated FDE index ({error})") from error

    # faiss does not save these
    tune(delegate)

    return delegate


def pqsize(dimensions):
    """
    Number of product quantization codes of a vector: one per PQWIDTH dimensions but at least PQCODES (down to 2
    dimensions per code), an even count (4-bit fast scan).

    Args:
        dimensions: vector width

    Returns:
        number of codes, a divisor of dimensions
    """

    for size in range(max(dimensions // PQWIDTH, min(dimensions // 2, PQCODES), 1), 0, -1):
        if dimensions % size == 0 and (size % 2 == 0 or size == 1):
            return size

    return 1


def tune(delegate):
    """
    Applies the faiss search settings txtai does not set: efsearch, kfactor, nprobe below an IDMap and probefraction
    (share of inverted lists scanned, overrides nprobe). Other backends are left alone.

    Args:
        delegate: txtai ANN
    """

    settings = delegate.config.get("faiss") if delegate.config.get("backend") == "faiss" else None
    if not isinstance(settings, dict) or getattr(delegate, "backend", None) is None:
        return

    # pylint: disable=C0415
    import faiss

    index = faiss.downcast_index(delegate.backend)
    while True:
        if isinstance(index, (faiss.IndexIDMap, faiss.IndexIDMap2)):
            index = faiss.downcast_index(index.index)
            continue
        if isinstance(index, faiss.IndexRefine):
            if settings.get("kfactor"):
                index.k_factor = float(settings["kfactor"])
            index = faiss.downcast_index(index.base_index)
            continue
        break

    if isinstance(index, faiss.IndexHNSW) and settings.get("efsearch"):
        index.hnsw.efSearch = int(settings["efsearch"])
    if isinstance(index, faiss.IndexIVF) and (settings.get("nprobe") or settings.get("probefraction")):
        # Fraction scales with nlist
        nprobe = math.ceil(settings["probefraction"] * index.nlist) if settings.get("probefraction") else int(settings["nprobe"])
        index.nprobe = max(1, min(nprobe, index.nlist))

        # txtai resets nprobe per search
        settings["nprobe"] = index.nprobe


def removable(delegate, ids):
    """
    Removes ids from a delegated index. Some faiss indexes (HNSW, re-scoring) cannot remove rows: they keep them and
    the search skips them.

    Args:
        delegate: txtai ANN
        ids: row ids

    Returns:
        True when the rows were removed
    """

    try:
        delegate.delete(ids)
        return True
    except RuntimeError as error:
        if "not implemented" not in str(error):
            raise
        logger.debug("delegated index keeps %d deleted rows, search skips them (%s)", len(ids), str(error).splitlines()[0])
        return False
