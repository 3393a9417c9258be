"""
Similarity module
"""

import torch

from txtai.models import Models
from txtai.pipeline import Pipeline

from . import plugins
from .core.certified import PRECISIONS, topk
from .core.inputs import matrices
from .core.ragged import pack, pad, unpad


class Similarity(Pipeline):
    """
    Scores texts against queries with a late-interaction model and exact MaxSim. Keeps the contract of
    txtai.pipeline.Similarity(path, lateencode=True): (query or list of queries, texts, limit) -> sorted [(index, score)].
    """

    # Unused txtai options
    # pylint: disable-next=W0613
    def __init__(self, path=None, gpu=True, batchsize=32, reduce="mean", encoder="colbert", precision="exact", **kwargs):
        """
        Creates a Similarity pipeline.

        Args:
            path: late-interaction model, local folder or hub id
            gpu: True picks an accelerator when available, False forces the CPU, an int picks a GPU
            batchsize: encoding batch size
            reduce: MaxSim reduction over query tokens, mean (txtai) or sum (PyLate)
            encoder: registered encoder name
            precision: exact (float32 MaxSim), certified (int8 screen on CPU, same results as exact) or approximate (int8
                screen, float32 scores of its top results only)
            kwargs: accepted for compatibility with txtai.pipeline.Similarity (lateencode, ...)
        """

        if reduce not in ("mean", "sum"):
            raise ValueError(f"reduce must be 'mean' or 'sum', got {reduce!r}")
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")

        self.encoder = plugins.lookup("encoders", encoder)(path if path else "neuml/colbert-muvera-micro", gpu=gpu, batchsize=batchsize)
        self.reduce, self.precision = reduce, precision
        self.device = Models.device(Models.deviceid(gpu))

    def __call__(self, query, texts, limit=None):
        """
        Computes the similarity between query and list of text. Returns a list of (id, score) sorted by highest score,
        where id is the index in texts.

        Args:
            query: query text or list of query texts
            texts: list of texts or pre-encoded (tokens x dim) token matrices
            limit: maximum comparisons to return, defaults to all

        Returns:
            list of (id, score) for a single query, a list of those for a list of queries
        """

        queries = [query] if isinstance(query, str) else query
        if not isinstance(queries, (list, tuple)) or not queries:
            raise TypeError("query must be a str or a non-empty list of str")

        # Padded batch from encode
        if getattr(texts, "ndim", None) == 3:
            texts = unpad(texts)
        if not isinstance(texts, (list, tuple)):
            raise TypeError(f"texts must be a list of str or token matrices, got {type(texts).__name__}")
        if not texts:
            return [] if isinstance(query, str) else [[] for _ in queries]
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
            raise ValueError(f"limit must be a positive integer or None, got {limit!r}")

        # Encode and score once
        qtokens, qoffsets = pack(self.matrices(queries, "query"))
        dtokens, doffsets = pack(self.matrices(texts, "data"))
        results = topk(
            torch.from_numpy(qtokens).to(self.device),
            qoffsets,
            torch.from_numpy(dtokens).to(self.device),
            doffsets,
            min(limit, len(texts)) if limit else len(texts),
            self.reduce,
            precision=self.precision,
        )

        return results[0] if isinstance(query, str) else results

    def encode(self, data, category):
        """
        Encodes a batch like txtai's Similarity(lateencode=True).encode: one zero-padded (batch x tokens x dim) float32
        tensor on the pipeline's device. Token counts follow PyLate, not txtai: document tokens in the model's skiplist
        (punctuation for most ColBERT models) are dropped, so a document can have fewer rows than txtai gives it. Padding
        rows are all zeros; __call__ accepts this tensor as texts.

        Args:
            data: list of texts or token matrices
            category: query or data

        Returns:
            torch tensor
        """

        return torch.from_numpy(pad(self.matrices(data, category))).to(self.device)

    def matrices(self, data, category):
        """
        Encodes texts to unpadded token matrices; token matrices pass through.

        Args:
            data: list of texts or token matrices
            category: query or data

        Returns:
            list of float32 token matrices
        """

        return matrices(self.encoder, data, category)
