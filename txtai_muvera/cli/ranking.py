"""
Ranking module
"""

from tqdm.auto import tqdm

from ..core.certified import topk


def exactranking(queries, qoffsets, documents, doffsets, limit, reduce="mean", progress=False, chunk=64):
    """
    Ranks the whole corpus with exact MaxSim for every query, a block of queries at a time so that the score matrix of a
    block bounds memory. Scores run on the documents' device.

    Args:
        queries: flat query token array or tensor
        qoffsets: query offsets
        documents: flat document token array or tensor
        doffsets: document offsets
        limit: results per query
        reduce: "mean" over query tokens or "sum"
        progress: shows a progress bar
        chunk: queries per block

    Returns:
        list of (document position, score) lists, best first, ties by lowest position
    """

    count, ranking = len(qoffsets) - 1, []
    limit = min(limit, len(doffsets) - 1)
    for start in tqdm(range(0, count, chunk), desc="Exact MaxSim", unit="blocks", disable=not progress):
        end = min(start + chunk, count)
        tokens, offsets = queries[qoffsets[start] : qoffsets[end]], qoffsets[start : end + 1] - qoffsets[start]
        ranking.extend(topk(tokens, offsets, documents, doffsets, limit, reduce=reduce, precision="exact"))

    return ranking
