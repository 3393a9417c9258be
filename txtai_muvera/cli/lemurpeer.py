"""
LEMUR peer module
"""

import numpy as np
import torch

from ..core.certified import topk
from ..core.ragged import pack
from .environment import cputime
from .metrics import CUTOFF, DEPTH, agreement, rankedrun, trecmetrics

# txtai's recommended settings
EPOCHS, LEARN = 100, 100000


def txtailemur(documents, queries, learn, epochs, learnsubsetsize=None):
    """
    Trains txtai 9.14's LemurTrainer on token matrices, collection-centered as its LemurTrainer centers them, and encodes
    both sides with its Lemur.

    Args:
        documents: list of document token matrices
        queries: list of query token matrices
        learn: list of learn query token matrices, None for txtai's fallback (the documents)
        epochs: training epochs (0 for its random features)
        learnsubsetsize: learn tokens, None for txtai's default (100,000)

    Returns:
        (query rows, document rows, training CPU seconds, dict with the CPU seconds extrapolated to its recommended settings)
    """

    # pylint: disable=C0415
    from txtai.pipeline.train.lemur import LemurTrainer

    flat = pack(documents)[0]
    mean = flat.mean(axis=0)

    def center(matrices):
        rows = [x - mean for x in matrices]
        return [x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12) for x in rows]

    # Time both training phases
    trainer, phases = LemurTrainer(), {}

    def timed(name, method):
        def run(*args, **kwargs):
            start = cputime()
            result = method(*args, **kwargs)
            phases[name] = cputime() - start
            return result

        return run

    trainer.createtrainingdata = timed("targets", trainer.createtrainingdata)
    trainer.train = timed("epochs", trainer.train)

    settings = {"learnsubsetsize": learnsubsetsize} if learnsubsetsize else {}
    start, documents = cputime(), center(documents)
    lemur = trainer.fit(documents, epochs=epochs, centermean=mean, learn=center(learn) if learn else None, **settings)
    seconds = cputime() - start

    # Assume linear in tokens and epochs
    extra = {"epochs": epochs, "learnsubsetsize": learnsubsetsize or LEARN}
    if epochs:
        scale = LEARN / (learnsubsetsize or LEARN)
        rest = seconds - phases["targets"] - phases["epochs"]
        extra["training_cpu_s_recommended"] = rest + scale * (phases["targets"] + EPOCHS * phases["epochs"] / epochs)

    return lemur(center(queries), "query"), lemur(documents, "data"), seconds, extra


def candidaterows(name, qrows, drows, queries, documents, ids, qids, qrels, exact, reduce="mean"):
    """
    Figures of a candidate encoding given as rows: the top DEPTH candidates by inner product, re-ranked with exact MaxSim.

    Args:
        name: row name
        qrows: query rows
        drows: document rows
        queries: query token matrices
        documents: document token matrices
        ids: document ids
        qids: query ids
        qrels: judgements
        exact: exact MaxSim run over the whole corpus
        reduce: MaxSim reduction over query tokens

    Returns:
        dict with nDCG@10 re-ranked and of the candidates alone, and the share of the exact top 10 found
    """

    scores = torch.as_tensor(np.asarray(qrows, dtype=np.float32)) @ torch.as_tensor(np.asarray(drows, dtype=np.float32)).T
    candidates = torch.topk(scores, min(DEPTH, scores.shape[1]), dim=1)
    alone = rankedrun(ids, qids, [list(zip(x.tolist(), y.tolist())) for x, y in zip(candidates.indices, candidates.values)])

    # Re-rank candidates with MaxSim
    reranked = []
    for x, rows in enumerate(candidates.indices.tolist()):
        flat, offsets = pack([documents[y] for y in rows])
        best = topk(queries[x], np.array([0, len(queries[x])]), flat, offsets, CUTOFF, reduce=reduce, precision="exact")[0]
        reranked.append([(rows[y], score) for y, score in best])
    reranked = rankedrun(ids, qids, reranked)

    return {
        "pipeline": name,
        "dimensions": int(np.asarray(drows).shape[1]),
        "rerank": trecmetrics(qrels, reranked),
        "candidates": trecmetrics(qrels, alone),
        "exact@10": agreement(exact, reranked),
    }
