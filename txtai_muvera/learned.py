"""
Learned module: trains, encodes with and loads the learned candidate encoding of a Muvera index
"""

import logging
import os

import numpy as np
import torch

from . import plugins
from .core.files import IndexFileError
from .core.integrity import verify
from .core.lemurartifact import ArtifactError
from .core.lemurmodel import LemurModel
from .core.quantize import dequantize
from .core.scan import fderows
from .core.store import blocks

# Folder of a learned encoding's artifact inside an index folder
LEARNED = "lemur"

# Logging configuration
logger = logging.getLogger(__name__)


def trainandencode(encoder, store, settings, gpu=True):
    """
    Trains a learned encoding on the stored token vectors, unless it was given a trained artifact, and encodes them.
    A collection too small to train on falls back to MUVERA, with a warning.

    Args:
        encoder: learned encoding shared with the vectors model
        store: token store of the new index
        settings: index settings
        gpu: txtai's gpu setting

    Returns:
        float32 rows
    """

    if encoder.train:
        tokens, offsets, scales = store.gather(range(len(store)))
        tokens = dequantize(tokens, scales)
        documents = int((np.diff(offsets) > 0).sum())
        if encoder.trainable(documents):
            device = "cuda" if gpu is not False and torch.cuda.is_available() else None
            encoder.fit(tokens, offsets, device=device, progress=settings["progress"])
        else:
            logger.warning(
                "%d documents are too few to train the %s encoding (minimum %d): falling back to MUVERA",
                documents,
                settings["encoding"],
                encoder.params["minimum"],
            )
            encoder.usefallback(plugins.lookup("encodings", "muvera")(dimension=store.dimension))

    return encodestore(encoder, store)


def encodestore(encoder, store):
    """
    Encodes every document of a token store.

    Args:
        encoder: encoding
        store: token store

    Returns:
        float32 rows
    """

    rows = np.empty((len(store), encoder.dimensions), dtype=np.float32)
    for start, tokens, offsets, scales in blocks(store):
        rows[start : start + len(offsets) - 1] = encoder(dequantize(tokens, scales), offsets, "data")

    return fderows(rows)


def loadartifact(path, files, encoding):
    """
    Loads the artifact of a learned encoding saved in an index folder, after its checksums.

    Args:
        path: Muvera index folder
        files: file descriptions from muvera.json
        encoding: configured encoding name

    Returns:
        trained model or None
    """

    names = sorted(name for name in files if name.startswith(f"{LEARNED}/"))
    if getattr(plugins.lookup("encodings", encoding), "learned", False) and not names:
        raise IndexFileError(f"{path}: the trained {encoding} encoding is missing from muvera.json")
    if not names:
        return None

    # safetensors are parsed in native code: every file is checksummed first
    for name in names:
        verify(os.path.join(path, name), files[name], path, IndexFileError, "muvera.json")
    try:
        return LemurModel.load(os.path.join(path, LEARNED))
    except ArtifactError as error:
        raise IndexFileError(str(error)) from error
