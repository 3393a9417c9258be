"""
txtai-muvera: late-interaction (ColBERT) retrieval with MUVERA fixed dimensional encodings for txtai.

The txtai classes are resolved by dotted path from txtai configuration (method: txtai_muvera.LateVectors,
backend: txtai_muvera.Muvera, ...). They load on first use, so importing this package has no side effects.
"""

import importlib

__version__ = "0.1.0"

# Public names and the modules that define them
EXPORTS = {
    "LateVectors": "vectors",
    "Muvera": "ann",
    "Similarity": "similarity",
    "Reranker": "reranker",
    "LateEncoder": "encoder",
    "FDE": "fde",
    "TokenStore": "store",
    "maxsim": "maxsim",
    "IndexFileError": "files",
    "reindex": "folder",
}

__all__ = list(EXPORTS)


def __getattr__(name):
    # Lazy imports: txtai's Resolver reads txtai_muvera.LateVectors with getattr
    if name in EXPORTS:
        return getattr(importlib.import_module(f".{EXPORTS[name]}", __name__), name)

    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
