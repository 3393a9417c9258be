"""
Defaults module
"""

from .hookspecs import hookimpl

# Registered as "module:qualname" paths: imported on first lookup, so listing plugins imports neither torch nor txtai


@hookimpl
def register_encoders(register):
    register("colbert", "txtai_muvera.encoder:LateEncoder")


@hookimpl
def register_encodings(register):
    register("muvera", "txtai_muvera.fde:FDE")


@hookimpl
def register_stores(register):
    register("tokens", "txtai_muvera.store:TokenStore")


@hookimpl
def register_pipelines(register):
    register("similarity", "txtai_muvera.similarity:Similarity")
    register("reranker", "txtai_muvera.reranker:Reranker")
