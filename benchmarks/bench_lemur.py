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
from txtai_muvera.cli.beir import readbeir
from txtai_muvera.cli.environment import cputime, folderbytes, loadaverage, percentiles
from txtai_muvera.cli.lemurpeer import txtailemur
from txtai_muvera.cli.metrics import trecmetrics
from txtai_muvera.core.encoder import LateEncoder
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
        "candidate bytes/doc": int(drows.shape[1]) * 2,
    }
    result.update(extra or {})
    print(json.dumps(result), flush=True)
    return result


def indexed(encoding, drows, dtokens, doffsets, settings, model=None):
    """
    Builds a Muvera backend from the rows and token vectors and measures its saved size.

    Args:
        encoding: encoding config
        drows: document rows
        dtokens, doffsets: document tokens
        settings: muvera settings of the index (dtype, encodingdtype, precision, ...)
        model: trained LEMUR model saved with the index, None for MUVERA

    Returns:
        (Muvera backend, {index bytes/doc, artifact bytes/doc})
    """

    ann = Muvera({"muvera": {"candidates": DEPTH, "progress": False, **settings}})
    ann.index(LateArray(drows, tokens=dtokens, offsets=doffsets, encoding=encoding))
    with tempfile.TemporaryDirectory() as folder:
        ann.save(folder)
        total = folderbytes(folder)
        artifact = 0
        if model is not None:
            model.save(os.path.join(folder, "lemur"))
            artifact = folderbytes(os.path.join(folder, "lemur"))

    documents = len(doffsets) - 1
    return ann, {"index bytes/doc": total / documents, "artifact bytes/doc": artifact / documents, "total bytes/doc": (total + artifact) / documents}


def named(index):
    """
    Row name suffix of non-default index settings.

    Args:
        index: muvera index settings

    Returns:
        ", dtype=int8, precision=certified" or ""
    """

    return "".join(f", {k}={v}" for k, v in index.items())


def timed(backends, qtokens, qoffsets, qids, ids, qrels, runs, exact):
    """
    Times re-ranked queries one at a time, the backends in turn for each query (order rotated), so machine load hits
    each alike; scores the returned top 10 with the judgements and against the exact MaxSim top 10.

    Args:
        backends: list of (rows of queries, Muvera backend, encoding config)
        qtokens, qoffsets: query tokens
        qids: query ids
        ids: document ids
        qrels: judgements
        runs: number of queries timed
        exact: exact MaxSim scores (queries x documents)

    Returns:
        list of dicts with latency p50/p95 (ms), nDCG@10 and exact top 10 agreement of the index's own results
    """

    top = torch.topk(exact, CUTOFF, dim=1).indices.tolist()
    latencies, results, agreement = [[] for _ in backends], [{} for _ in backends], [[] for _ in backends]
    count = min(runs, len(qoffsets) - 1)
    for x in range(count):
        tokens = qtokens[qoffsets[x] : qoffsets[x + 1]]
        for y in [(x + z) % len(backends) for z in range(len(backends))]:
            qrows, ann, encoding = backends[y]
            query = LateArray(qrows[x : x + 1], tokens=tokens, offsets=np.array([0, len(tokens)]), encoding=encoding)
            start = time.perf_counter()
            found = ann.search(query, CUTOFF)[0]
            latencies[y].append(time.perf_counter() - start)
            results[y][qids[x]] = {ids[uid]: score for uid, score in found}
            agreement[y].append(len(set(top[x]) & {uid for uid, _ in found}) / CUTOFF)

    judged = {qid: qrels[qid] for qid in qids[:count]}
    return [
        {
            **{k: v for k, v in zip(("latency p50 ms", "latency p95 ms"), (percentiles(l)["p50_ms"], percentiles(l)["p95_ms"]))},
            "index ndcg@10": trecmetrics(judged, r)["ndcg@10"],
            "index agreement@10": float(np.mean(a)),
        }
        for l, r, a in zip(latencies, results, agreement)
    ]


def learnqueries(lemur, model, folder):
    """
    Encodes the learn queries an index would (spans of a random sample of the document texts) into lemur.querytokens.

    Args:
        lemur: Lemur encoding
        model: late-interaction model
        folder: BEIR folder

    Returns:
        CPU seconds
    """

    start = cputime()
    lemur.learnfrom(readbeir(folder)[1], lambda queries: LateEncoder(model, gpu=False).encode(queries, "query"))

    return cputime() - start


def txtai(dtokens, doffsets, qtokens, qoffsets, epochs, learn=None, learnsubsetsize=None):
    """
    Trains txtai 9.14's LEMUR (cli.lemurpeer.txtailemur) on the flat token vectors.

    Args:
        dtokens, doffsets: document tokens
        qtokens, qoffsets: query tokens
        epochs: training epochs
        learn: flat learn query tokens (ours), None for txtai's default (the documents)
        learnsubsetsize: learn tokens, None for txtai's default

    Returns:
        (query rows, document rows, CPU seconds, statistics)
    """

    documents, queries = np.split(dtokens, doffsets[1:-1]), np.split(qtokens, qoffsets[1:-1])
    qrows, drows, seconds, extra = txtailemur(documents, queries, [learn] if learn is not None else None, epochs, learnsubsetsize)
    if "training_cpu_s_recommended" in extra:
        extra["train cpu s at 100 epochs (extrapolated)"] = extra.pop("training_cpu_s_recommended")

    return qrows, drows, seconds, extra


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
    parser.add_argument("--indexes", default="[{}]", help="JSON list of muvera index settings (dtype, precision), each built per encoding")
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

    results, dimension, backends, pending, learn = [], dtokens.shape[1], [], [], None
    indexes = json.loads(args.indexes)

    # MUVERA defaults
    if not args.no_muvera:
        fde = FDE(dimension)
        drows, qrows = fde(dtokens, doffsets, "data"), fde(qtokens, qoffsets, "query")
        for index in indexes:
            ann, sizes = indexed(fde.config(), drows, dtokens, doffsets, index)
            backends.append((qrows, ann, fde.config()))
            pending.append((f"ours, MUVERA defaults{named(index)}", qrows, drows, None, {"index": index, **sizes}))

    # Ours, learned, as an index trains it: learn queries from document text spans, then the stored document tokens
    for settings in json.loads(args.lemur):
        lemur = Lemur(dimension, **settings)
        learnseconds = learnqueries(lemur, args.model, args.folder)
        learn = lemur.querytokens
        start, wall = cputime(), time.perf_counter()
        statistics = lemur.fit(dtokens, doffsets, progress=False)
        seconds, wall = cputime() - start, time.perf_counter() - wall
        encodestart = cputime()
        drows, qrows = lemur(dtokens, doffsets, "data"), lemur(qtokens, qoffsets, "query")
        encode = cputime() - encodestart
        extra = {
            "settings": settings,
            "train wall s": wall,
            "learn queries cpu s": learnseconds,
            "encode cpu s": encode,
            "load": loadaverage(),
            **statistics,
        }
        for index in indexes:
            ann, sizes = indexed(lemur.config(), drows, dtokens, doffsets, index, lemur.model)
            backends.append((qrows, ann, lemur.config()))
            name = f"ours, lemur {json.dumps(settings)}{named(index)}"
            pending.append((name, qrows, drows, seconds + learnseconds, {**extra, "index": index, **sizes}))

    # Re-ranked query latency and the indexes' own nDCG, interleaved
    for (name, qrows, drows, seconds, extra), measured in zip(pending, timed(backends, qtokens, qoffsets, qids, ids, qrels, args.latency, exact)):
        results.append(figures(name, qrows, drows, exact, ids, qids, qrels, seconds, {**extra, **measured}))

    # txtai 9.14 LemurTrainer + Lemur, recommended settings except epochs (CPU time extrapolated to 100), our learn queries
    if args.txtai_epochs:
        qrows, drows, seconds, extra = txtai(dtokens, doffsets, qtokens, qoffsets, args.txtai_epochs, learn, args.txtai_learn)
        extra["load"] = loadaverage()
        name = f"txtai 9.14 LemurTrainer + Lemur, epochs={args.txtai_epochs}" + (f", learnsubsetsize={args.txtai_learn}" if args.txtai_learn else "")
        row = figures(name, qrows, drows, exact, ids, qids, qrels, seconds, extra)
        results.append(row)

    if args.txtai_elm:
        qrows, drows, seconds, extra = txtai(dtokens, doffsets, qtokens, qoffsets, 0, learn)
        results.append(figures("txtai 9.14 LEMUR, random features (epochs=0)", qrows, drows, exact, ids, qids, qrels, seconds, extra))

    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump({"results": results, "load": loadaverage(), "threads": args.threads, "argv": sys.argv[1:]}, f, indent=2)


if __name__ == "__main__":
    main()
