"""
txtai-muvera: late-interaction (ColBERT) retrieval with MUVERA fixed dimensional encodings for txtai.

The txtai classes are resolved by dotted path from txtai configuration (method: txtai_muvera.LateVectors,
backend: txtai_muvera.Muvera, ...). They load on first use, so importing this package has no side effects.
"""

import importlib

__version__ = "0.1.0"

# Public names and their modules
EXPORTS = {
    "LateVectors": "vectors",
    "Muvera": "ann",
    "Similarity": "similarity",
    "Reranker": "reranker",
    "LateEncoder": "core.encoder",
    "FDE": "core.fde",
    "TokenStore": "core.store",
    "maxsim": "core.maxsim",
    "IndexFileError": "core.files",
    "reindex": "indexfolder",
}

# Lazy names pylint cannot see
__all__ = [*EXPORTS]  # pylint: disable=E0603


def __getattr__(name):
    # Resolved lazily by txtai
    if name in EXPORTS:
        return getattr(importlib.import_module(f".{EXPORTS[name]}", __name__), name)

    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
