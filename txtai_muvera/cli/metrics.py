"""
Metrics module
"""

# Metric cutoff and recall depth
CUTOFF, DEPTH = 10, 100


def trecmetrics(qrels, run):
    """
    Computes nDCG@10, recall@100 and MRR@10 with pytrec_eval, averaged over every query in qrels: a query without
    results counts as 0.

    Args:
        qrels: {query id: {document id: relevance}}
        run: {query id: {document id: score}}

    Returns:
        dict with ndcg@10, recall@100 and mrr@10
    """

    pytrec_eval = pytreceval()

    # pytrec_eval skips empty runs
    run = {uid: {doc: float(score) for doc, score in (run.get(uid) or {}).items()} for uid in qrels}
    run = {uid: rows for uid, rows in run.items() if rows}

    # MRR@10: top 10, pytrec_eval ties
    top = {uid: dict(sorted(rows.items(), key=lambda row: (-row[1], row[0]))[:CUTOFF]) for uid, rows in run.items()}

    scores = pytrec_eval.RelevanceEvaluator(qrels, {f"ndcg_cut.{CUTOFF}", f"recall.{DEPTH}"}).evaluate(run)
    ranks = pytrec_eval.RelevanceEvaluator(qrels, {"recip_rank"}).evaluate(top)

    def mean(values):
        return sum(values) / len(qrels)

    return {
        f"ndcg@{CUTOFF}": mean(x[f"ndcg_cut_{CUTOFF}"] for x in scores.values()),
        f"recall@{DEPTH}": mean(x[f"recall_{DEPTH}"] for x in scores.values()),
        f"mrr@{CUTOFF}": mean(x["recip_rank"] for x in ranks.values()),
    }


def agreement(reference, run, k=CUTOFF):
    """
    Recall of a reference ranking's top k in a run's top k, averaged over the reference's queries: with the exact MaxSim
    run as reference, the recall@10 that txtai-muvera tune reports for a muvera: block.

    >>> agreement({"q": {"a": 3, "b": 2}}, {"q": {"b": 5, "c": 4}}, k=2)
    0.5

    Args:
        reference: {query id: {document id: score}}
        run: {query id: {document id: score}}
        k: cutoff

    Returns:
        mean recall
    """

    def top(scores):
        return {uid for uid, _ in sorted(scores.items(), key=lambda x: -x[1])[:k]}

    values = []
    for qid, scores in reference.items():
        expected = top(scores)
        values.append(len(expected & top(run.get(qid, {}))) / max(1, len(expected)))

    return sum(values) / max(1, len(values))


def rankedrun(ids, qids, ranking):
    """
    Names the documents of a ranking: positions become document ids, one entry per query.

    >>> rankedrun(["a", "b"], ["q"], [[(1, 0.5), (0, 0.25)]])
    {'q': {'b': 0.5, 'a': 0.25}}

    Args:
        ids: document ids
        qids: query ids
        ranking: list of (document position, score) lists, one per query

    Returns:
        run {query id: {document id: score}}
    """

    return {qid: {ids[x]: float(score) for x, score in rows} for qid, rows in zip(qids, ranking)}


def pytreceval():
    """
    Imports pytrec_eval, an optional dependency.

    Returns:
        pytrec_eval module
    """

    try:
        # pylint: disable=C0415
        import pytrec_eval
    except ImportError as e:
        raise ImportError('evaluation needs pytrec_eval: pip install "txtai-muvera[evaluate]" (pytrec-eval-terrier)') from e

    return pytrec_eval
