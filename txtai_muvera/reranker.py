"""
Reranker module
"""

import torch

from txtai.pipeline import Pipeline

from .ann import Muvera
from .core.certified import topk
from .core.ragged import pack


class Reranker(Pipeline):
    """
    Runs embeddings queries and re-ranks them with exact MaxSim. Keeps the contract of txtai.pipeline.Reranker.

    When the embeddings index uses the txtai_muvera.Muvera backend with the same model as the similarity pipeline, the
    index's stored token matrices are re-scored: no document is encoded again. Otherwise the result texts are encoded.
    """

    def __init__(self, embeddings=None, similarity=None, application=None):
        """
        Creates a Reranker pipeline.

        Args:
            embeddings: embeddings instance, defaults to the application's embeddings
            similarity: txtai_muvera.Similarity instance, or the name of an application pipeline
            application: txtai application, set by txtai when the YAML config has an application key
        """

        self.application = application
        self.embeddings, self.similarity = embeddings, similarity

    def bindapplication(self):
        """
        Resolves the embeddings and similarity pipeline from the application, which creates its index after its pipelines.
        """

        if self.application:
            if self.embeddings is None:
                self.embeddings = self.application.embeddings
            if isinstance(self.similarity, str):
                self.similarity = self.application.pipelines[self.similarity]

        if self.embeddings is None or self.similarity is None or isinstance(self.similarity, str):
            raise ValueError("Reranker needs an embeddings instance and a txtai_muvera.Similarity pipeline")

    # pylint: disable=W0222
    def __call__(self, query, limit=3, factor=10, **kwargs):
        """
        Runs an embeddings search and re-ranks the results with exact MaxSim.

        Args:
            query: query text or list of query texts
            limit: maximum results
            factor: factor to multiply limit by for the initial embeddings search
            kwargs: additional arguments to pass to embeddings search

        Returns:
            list of query results rescored with MaxSim, a list of those for a list of queries
        """

        self.bindapplication()

        queries = [query] if isinstance(query, str) else query
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise ValueError(f"limit must be a positive integer, got {limit!r}")

        # Candidates and query tokens
        results = self.embeddings.batchsearch(queries, limit * factor, **kwargs)
        qmatrices = self.similarity.matrices(queries, "query")

        ranked = []
        for result, qmatrix in zip(results, qmatrices):
            if result:
                # Candidate tokens
                documents, offsets, scales, screen = self.tokens(result)
                precision = getattr(self.similarity, "precision", "exact")
                top = topk(qmatrix, [0, len(qmatrix)], documents, offsets, limit, self.similarity.reduce, scales, precision, screen)[0]

                # Keep fields, MaxSim score
                result = [{**result[x], "score": score} if isinstance(result[x], dict) else (result[x][0], score) for x, score in top]

            ranked.append(result)

        return ranked[0] if isinstance(query, str) else ranked

    def tokens(self, result):
        """
        Gets the token matrices of a result list.

        Args:
            result: search results of one query

        Returns:
            (flat tokens, offsets, scales, int8 screen or None)
        """

        ann = self.ann()
        if ann is not None:
            indexids = self.indexids([row["id"] if isinstance(row, dict) else row[0] for row in result])
            if indexids is not None:
                # Device copy, else stored tokens
                if ann.resident:
                    return (*ann.resident.gather(ann.store, indexids), None)
                screen = ann.screens.gather(ann.store, indexids) if getattr(self.similarity, "precision", "exact") != "exact" else None
                return (*ann.store.gather(indexids), screen)

        # Encode candidate texts
        if not all(isinstance(row, dict) and isinstance(row.get("text"), str) for row in result):
            raise ValueError("re-ranking needs result texts: enable content on the embeddings, or index with txtai_muvera.Muvera and the same model")
        texts = [row["text"] for row in result]
        tokens, offsets = pack(self.similarity.matrices(texts, "data"))
        return torch.from_numpy(tokens), offsets, None, None

    def ann(self):
        """
        Finds the index's Muvera backend when it was built with the same model as the similarity pipeline.

        Returns:
            Muvera instance with a token store, or None
        """

        for ann in (self.embeddings.ann, getattr(self.embeddings.scoring, "ann", None)):
            if isinstance(ann, Muvera) and ann.store is not None and ann.fingerprint == getattr(self.similarity.encoder, "fingerprint", None):
                return ann

        return None

    def indexids(self, ids):
        """
        Maps document ids to index ids.

        Args:
            ids: document ids

        Returns:
            list of index ids, or None when an id is not found
        """

        if self.embeddings.database:
            mapping = {uid: indexid for indexid, uid in self.embeddings.database.ids(ids)}
        elif self.embeddings.ids:
            mapping = {uid: indexid for indexid, uid in enumerate(self.embeddings.ids) if uid in set(ids)}
        else:
            mapping = {uid: uid for uid in ids}

        indexids = [mapping.get(uid) for uid in ids]
        return None if None in indexids else indexids
