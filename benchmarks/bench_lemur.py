"""
Learned candidate encodings on BEIR SciFact: ours (muvera: {encoding: lemur}) side by side with txtai 9.14's LemurTrainer +
Lemur and MUVERA defaults, on the same token vectors, in one process.

For each encoding: training CPU time, the exact MaxSim top 10 found among 100 candidates, nDCG@10 of the re-ranked top 100
and of the candidates alone, candidate bytes per document, and (ours) index bytes per document on disk and re-ranked query
latency through the Muvera backend.

    .venv/bin/python benchmarks/bench_lemur.py --cache /work/cache/scifact-minilm-tokens.safetensors \\
        --json benchmarks/lemur-scifact.json

txtai 9.14 (LemurTrainer) is a dependency of this package, so the package's own venv runs it (pytrec_eval from the evaluate extra).
Without --cache (or with a cache path that does not exist yet) the corpus is encoded with the model and written there.
"""

import argparse
import json
import os
import sys
import tempfile
import time

import numpy as np
import torch

from common import MODEL, SCIFACT, judgedvectors
from txtai_muvera.ann import Muvera
from txtai_muvera.array import LateArray
from txtai_muvera.cli.environment import cputime, folderbytes, loadaverage, percentiles
from txtai_muvera.cli.metrics import trecmetrics
from txtai_muvera.core.fde import FDE
from txtai_muvera.core.lemur import Lemur
from txtai_muvera.core.maxsim import maxsim

# Candidates re-ranked, exact top k checked
DEPTH, CUTOFF = 100, 10


def figures(name, qrows, drows, exact, ids, qids, qrels, seconds, extra=None):
    """
    Quality figures of one candidate encoding.

    Args:
        name: row name
        qrows: query rows
        drows: document rows
        exact: exact MaxSim scores (queries x documents)
        ids: document ids
        qids: query ids
        qrels: relevance judgements
        seconds: training CPU seconds or None
        extra: more fields

    Returns:
        dict
    """

    scores = torch.from_numpy(np.ascontiguousarray(qrows)) @ torch.from_numpy(np.ascontiguousarray(drows)).T
    candidates = torch.topk(scores, DEPTH, dim=1).indices
    top = torch.topk(exact, CUTOFF, dim=1).indices

    # Exact top 10 found among the candidates
    found = np.mean([len(set(t.tolist()) & set(c.tolist())) / CUTOFF for t, c in zip(top, candidates)])

    # Re-ranked candidates (exact scores) and candidates alone
    reranked = {qid: {ids[d]: float(exact[x, d]) for d in candidates[x].tolist()} for x, qid in enumerate(qids)}
    alone = {qid: {ids[d]: float(scores[x, d]) for d in candidates[x].tolist()} for x, qid in enumerate(qids)}
    result = {
        "encoding": name,
        "dimensions": int(drows.shape[1]),
        "found": float(found),
        "rerank ndcg@10": trecmetrics(qrels, reranked)["ndcg@10"],
        "candidates ndcg@10": trecmetrics(qrels, alone)["ndcg@10"],
        "train cpu s": seconds,
        "candidate bytes/doc": int(drows.shape[1]) * 4,
    }
    result.update(extra or {})
    print(json.dumps(result), flush=True)
    return result


def indexed(encoding, drows, qrows, dtokens, doffsets, qtokens, qoffsets, runs):
    """
    Builds a Muvera backend from the rows and token vectors, saves it and times re-ranked queries one at a time.

    Args:
        encoding: encoding config
        drows: document rows
        qrows: query rows
        dtokens, doffsets: document tokens
        qtokens, qoffsets: query tokens
        runs: number of queries timed

    Returns:
        dict with index bytes/doc and latency p50/p90 (ms)
    """

    ann = Muvera({"muvera": {"dtype": "float16", "candidates": DEPTH, "progress": False}})
    ann.index(LateArray(drows, tokens=dtokens, offsets=doffsets, encoding=encoding))
    with tempfile.TemporaryDirectory() as folder:
        ann.save(folder)
        total = folderbytes(folder)

    latencies = []
    for x in range(min(runs, len(qoffsets) - 1)):
        tokens = qtokens[qoffsets[x] : qoffsets[x + 1]]
        query = LateArray(qrows[x : x + 1], tokens=tokens, offsets=np.array([0, len(tokens)]), encoding=encoding)
        start = time.perf_counter()
        ann.search(query, CUTOFF)
        latencies.append(time.perf_counter() - start)

    result = {"index bytes/doc": total / (len(doffsets) - 1)}
    if latencies:
        p = percentiles(latencies)
        result.update({"latency p50 ms": p["p50_ms"], "latency p95 ms": p["p95_ms"]})

    return result


def txtai(dtokens, doffsets, qtokens, qoffsets, epochs, **kwargs):
    """
    Trains txtai 9.14's LEMUR like its LemurTrainer does (collection-centered tokens) and encodes both sides.

    Args:
        dtokens, doffsets: document tokens
        qtokens, qoffsets: query tokens
        epochs: training epochs
        kwargs: more fit arguments

    Returns:
        (query rows, document rows, CPU seconds, statistics)
    """

    # pylint: disable=C0415
    from txtai.pipeline.train.lemur import LemurTrainer

    def center(flat, mean):
        rows = flat - mean
        return rows / np.maximum(np.linalg.norm(rows, axis=1, keepdims=True), 1e-12)

    mean = dtokens.mean(axis=0)
    documents = [x for x in np.split(center(dtokens, mean), doffsets[1:-1])]
    queries = [x for x in np.split(center(qtokens, mean), qoffsets[1:-1])]

    # CPU time of its two phases: targets (single-token MaxSim of the learn tokens) and the training epochs
    trainer, phases = LemurTrainer(), {}

    def timed(name, method):
        def run(*args, **kwargs):
            start = cputime()
            result = method(*args, **kwargs)
            phases[name] = cputime() - start
            return result

        return run

    trainer.createtrainingdata = timed("targets cpu s", trainer.createtrainingdata)
    trainer.train = timed("epochs cpu s", trainer.train)

    start = cputime()
    wall = time.perf_counter()
    lemur = trainer.fit(documents, epochs=epochs, centermean=mean, **kwargs)
    seconds, wall = cputime() - start, time.perf_counter() - wall

    # Recommended settings (100 epochs, 100,000 learn tokens): both phases scale linearly with the learn tokens, epochs
    # with their number; the encoding of documents and the rest as measured
    extra = {"train wall s": wall, "epochs": epochs, **phases, **kwargs}
    if epochs:
        scale = 100000 / kwargs.get("learnsubsetsize", 100000)
        rest = seconds - phases["targets cpu s"] - phases["epochs cpu s"]
        extra["train cpu s at 100 epochs (extrapolated)"] = rest + scale * (phases["targets cpu s"] + 100 * phases["epochs cpu s"] / epochs)

    return lemur(queries, "query"), lemur(documents, "data"), seconds, extra


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=str(MODEL))
    parser.add_argument("--folder", default=str(SCIFACT))
    parser.add_argument("--cache", default=None, help="token vectors cache (safetensors), written when missing")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--lemur", default="[{}]", help="JSON list of our lemur settings to measure")
    parser.add_argument("--txtai-epochs", type=int, default=1, help="txtai LemurTrainer epochs (0 skips); CPU time extrapolated to 100")
    parser.add_argument(
        "--txtai-learn", type=int, default=None, help="txtai learnsubsetsize (default: its 100,000); CPU time extrapolated to 100,000"
    )
    parser.add_argument("--txtai-elm", action="store_true", help="add txtai's random-feature (epochs=0) row")
    parser.add_argument("--latency", type=int, default=100, help="queries timed through the Muvera backend")
    parser.add_argument("--json", default=None, help="results file")
    parser.add_argument("--exact", default=None, help="exact MaxSim scores file (.npy), written when missing")
    parser.add_argument("--no-muvera", action="store_true", help="skip the MUVERA defaults row")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    ids, dtokens, doffsets, qids, qtokens, qoffsets, qrels = judgedvectors(args.model, args.folder, args.cache)
    dtokens, qtokens = dtokens.astype(np.float32), qtokens.astype(np.float32)
    print(f"{len(ids)} documents, {dtokens.shape[0]} tokens, {len(qids)} queries, load {loadaverage()}", flush=True)

    # Exact MaxSim of every judged query against every document, optionally kept in a file between runs
    if args.exact and os.path.exists(args.exact):
        exact = torch.from_numpy(np.load(args.exact))
    else:
        exact = torch.empty((len(qids), len(ids)), dtype=torch.float32)
        for start in range(0, len(ids), 512):
            end = min(start + 512, len(ids))
            exact[:, start:end] = maxsim(qtokens, qoffsets, dtokens[doffsets[start] : doffsets[end]], doffsets[start : end + 1] - doffsets[start])
        if args.exact:
            np.save(args.exact, exact.numpy())
    print(f"exact MaxSim done, load {loadaverage()}", flush=True)

    results, dimension = [], dtokens.shape[1]

    # MUVERA defaults
    if not args.no_muvera:
        fde = FDE(dimension)
        drows, qrows = fde(dtokens, doffsets, "data"), fde(qtokens, qoffsets, "query")
        extra = indexed(fde.config(), drows, qrows, dtokens, doffsets, qtokens, qoffsets, args.latency)
        results.append(figures("ours, MUVERA defaults", qrows, drows, exact, ids, qids, qrels, None, extra))

    # Ours, learned, as an index trains it: on the document tokens
    for settings in json.loads(args.lemur):
        lemur = Lemur(dimension, **settings)
        start, wall = cputime(), time.perf_counter()
        statistics = lemur.fit(dtokens, doffsets, progress=False)
        seconds, wall = cputime() - start, time.perf_counter() - wall
        encodestart = cputime()
        drows, qrows = lemur(dtokens, doffsets, "data"), lemur(qtokens, qoffsets, "query")
        encode = cputime() - encodestart
        extra = {"settings": settings, "train wall s": wall, "encode cpu s": encode, "load": loadaverage(), **statistics}
        extra.update(indexed(lemur.config(), drows, qrows, dtokens, doffsets, qtokens, qoffsets, args.latency))
        results.append(figures(f"ours, lemur {json.dumps(settings)}", qrows, drows, exact, ids, qids, qrels, seconds, extra))

    # txtai 9.14 LemurTrainer + Lemur, recommended settings except epochs (CPU time extrapolated to 100)
    if args.txtai_epochs:
        settings = {"learnsubsetsize": args.txtai_learn} if args.txtai_learn else {}
        qrows, drows, seconds, extra = txtai(dtokens, doffsets, qtokens, qoffsets, args.txtai_epochs, **settings)
        extra["load"] = loadaverage()
        name = f"txtai 9.14 LemurTrainer + Lemur, epochs={args.txtai_epochs}" + (f", learnsubsetsize={args.txtai_learn}" if args.txtai_learn else "")
        row = figures(name, qrows, drows, exact, ids, qids, qrels, seconds, extra)
        results.append(row)

    if args.txtai_elm:
        qrows, drows, seconds, extra = txtai(dtokens, doffsets, qtokens, qoffsets, 0)
        results.append(figures("txtai 9.14 LEMUR, random features (epochs=0)", qrows, drows, exact, ids, qids, qrels, seconds, extra))

    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump({"results": results, "load": loadaverage(), "threads": args.threads, "argv": sys.argv[1:]}, f, indent=2)


if __name__ == "__main__":
    main()
