"""
Defaults module
"""

from .hookspecs import hookimpl


@hookimpl
def register_encoders(register):
    # Imported on use: the encoder pulls in transformers
    from .encoder import LateEncoder

    register("colbert", LateEncoder)


@hookimpl
def register_encodings(register):
    from .fde import FDE
    from .lemur import Lemur

    register("muvera", FDE)
    register("lemur", Lemur)


@hookimpl
def register_stores(register):
    from .store import TokenStore

    register("tokens", TokenStore)


@hookimpl
def register_pipelines(register):
    from .reranker import Reranker
    from .similarity import Similarity

    register("similarity", Similarity)
    register("reranker", Reranker)
