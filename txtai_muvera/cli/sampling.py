"""
Sampling module
"""

import re

from pathlib import Path

import numpy as np

from .beir import readbeir, readcorpus, readqueries

# Synthetic query defaults
SYNTHETIC, MINWORDS, MAXWORDS = 200, 6, 20


def subsample(ids, texts, qrels, size, seed=0):
    """
    Samples documents for a quicker evaluation: every document judged for the evaluated queries, then random others up
    to size, in corpus order.

    Args:
        ids: document ids
        texts: document texts
        qrels: {query id: {document id: relevance}} of the evaluated queries
        size: number of documents
        seed: random seed

    Returns:
        dict with ids, texts, size (asked), judged (documents kept because judged) and seed
    """

    judged = {uid for documents in qrels.values() for uid in documents}
    keep = np.array([uid in judged for uid in ids])
    others = np.flatnonzero(~keep)
    extra = max(0, min(size - int(keep.sum()), len(others)))
    keep[np.random.default_rng(seed).choice(others, extra, replace=False)] = True

    chosen = np.flatnonzero(keep)
    judged = int(sum(uid in judged for uid in ids))
    return {"ids": [ids[x] for x in chosen], "texts": [texts[x] for x in chosen], "size": size, "judged": judged, "seed": seed}


def tuningset(corpus, split, queryfile, queries, sample, rng):
    """
    Loads the documents and the queries to tune on.

    Args:
        corpus: BEIR folder or jsonl/text file of documents
        split: BEIR qrels split of the queries, or None
        queryfile: jsonl/text file of queries, or None
        queries: number of queries, None for the default
        sample: number of documents to sample, None for all
        rng: numpy random generator

    Returns:
        (document ids, document texts, query texts, query kind)
    """

    path = Path(corpus)

    # Documents and judged queries
    texts, kind = None, None
    if split:
        if not path.is_dir():
            raise ValueError(f"split needs a BEIR folder, {corpus} is not a folder")
        ids, documents, judged, _ = readbeir(path, split, queries)
        texts, kind = list(judged.values()), f"beir:{split}"
    else:
        ids, documents = readcorpus(path)

    # Queries from a file
    if queryfile:
        texts, kind = readqueries(Path(queryfile))[:queries], f"file:{queryfile}"
        if not texts:
            raise ValueError(f"{queryfile} has no queries")

    # Sample, in corpus order
    if sample and sample < len(ids):
        chosen = np.sort(rng.choice(len(ids), sample, replace=False))
        rest = np.setdiff1d(np.arange(len(ids)), chosen)
    else:
        chosen, rest = np.arange(len(ids)), np.zeros(0, dtype=np.int64)

    # Spans of unsearched documents
    if texts is None:
        count = queries if queries else min(SYNTHETIC, max(1, len(chosen) // 10))
        texts, sources = spans([documents[x] for x in (rest if len(rest) >= count else chosen)], count, rng)
        if len(rest) < count:
            chosen = np.delete(chosen, sources)
        kind = "synthetic"

    return [ids[x] for x in chosen], [documents[x] for x in chosen], texts, kind


def spans(documents, count, rng):
    """
    Draws synthetic queries: a random span of MINWORDS-MAXWORDS words from one sentence of each of `count` random documents.
    The caller searches a corpus without those documents: a span searched against its own document finds it trivially,
    while a real query has no verbatim copy in the corpus and its nearest documents are only related ones.

    >>> queries, sources = spans(["One two three four five six seven. Eight nine ten eleven twelve thirteen."], 1, np.random.default_rng(0))
    >>> sources, len(queries[0].split()) >= 6
    ([0], True)

    Args:
        documents: candidate source texts
        count: number of queries
        rng: numpy random generator

    Returns:
        (query texts, positions of their source documents)
    """

    # Long enough documents
    usable = [x for x, text in enumerate(documents) if len(text.split()) >= MINWORDS]
    if len(usable) < count:
        raise ValueError(f"{count} synthetic queries need {count} documents with at least {MINWORDS} words, found {len(usable)}")

    sources = sorted(rng.choice(usable, count, replace=False).tolist())
    queries = []
    for x in sources:
        # Long sentences, else all
        sentences = [sentence.split() for sentence in re.split(r"(?<=[.!?])\s+", documents[x])]
        sentences = [words for words in sentences if len(words) >= MINWORDS] or [documents[x].split()]
        words = sentences[rng.integers(len(sentences))]

        # Random window in the sentence
        length = min(len(words), int(rng.integers(MINWORDS, MAXWORDS + 1)))
        start = int(rng.integers(len(words) - length + 1))
        queries.append(" ".join(words[start : start + length]))

    return queries, sources
