"""
Timing module
"""

import time

import numpy as np

from tqdm.auto import tqdm


def interleavedsearch(indexes, queries, description, progress):
    """
    Searches every query on every index in turn, one query at a time, timing each search end to end. The order of the
    indexes rotates from query to query, so that no index is always the first (colder caches) or the last, and changing
    machine load hits every index alike.

    Args:
        indexes: list of (embeddings, limit)
        queries: {query id: query text}
        description: progress bar label
        progress: shows a progress bar

    Returns:
        (runs, latencies): per index, {query id: {document id: score}} and latencies in seconds
    """

    # Warm up lazy state, untimed
    for index, depth in indexes:
        index.search(next(iter(queries.values())), depth)

    runs, latencies = [{} for _ in indexes], [[] for _ in indexes]
    for y, (uid, query) in enumerate(tqdm(queries.items(), desc=description, unit="queries", disable=not progress)):
        for x in (np.arange(len(indexes)) + y) % len(indexes):
            index, depth = indexes[x]
            start = time.perf_counter()
            rows = index.search(query, depth)
            latencies[x].append(time.perf_counter() - start)
            runs[x][uid] = {row["id"] if isinstance(row, dict) else row[0]: row["score"] if isinstance(row, dict) else row[1] for row in rows}

    return runs, latencies
