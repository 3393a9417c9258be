"""
Reranker benchmark: the seed's second snippet (Reranker(embeddings, similarity)) with txtai-muvera's classes vs txtai's own,
on the same model and corpus, in one run. Reports per-query latency for 100 re-ranked candidates and the ratio.

    python benchmarks/bench_reranker.py --model ../shared/models/minilm-colbert --data ../shared/data/beir/scifact [--write]
"""

import argparse
import statistics
import time

from pathlib import Path

import numpy as np

from txtai import Embeddings
from txtai.pipeline import Reranker as TxtaiReranker, Similarity as TxtaiSimilarity

from common import MODEL, SCIFACT
from results import write
from txtai_muvera import Reranker, Similarity
from txtai_muvera.cli.beir import readbeir

RESULTS = Path(__file__).parent / "RESULTS.md"
HEADING = "## Reranker latency"


def timed(reranker, queries, limit, factor):
    """
    Runs one query at a time, returns per-query milliseconds and results.
    """

    times, results = [], []
    for query in queries:
        start = time.perf_counter()
        results.append(reranker(query, limit=limit, factor=factor))
        times.append((time.perf_counter() - start) * 1000)

    return times, results


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default=str(MODEL))
    parser.add_argument("--data", default=str(SCIFACT))
    parser.add_argument("--documents", type=int, default=None, help="corpus size, defaults to all")
    parser.add_argument("--queries", type=int, default=20)
    parser.add_argument("--write", action="store_true", help=f"write the results under '{HEADING}' in {RESULTS}")
    args = parser.parse_args()

    # Documents and the first judged test queries
    ids, texts, queries, _ = readbeir(args.data, "test", args.queries)
    documents, queries = [(uid, text, None) for uid, text in zip(ids, texts)][: args.documents], list(queries.values())
    limit, factor = 10, 10

    # Ours: Embeddings with stored token vectors + Reranker reusing them
    start = time.perf_counter()
    ours = Embeddings(path=args.model, method="txtai_muvera.LateVectors", backend="txtai_muvera.Muvera", content=True)
    ours.index(documents)
    oursindex = time.perf_counter() - start
    oursreranker = Reranker(ours, Similarity(args.model))

    # txtai's: built-in late pooling + Muvera index, Similarity(lateencode=True), Reranker
    start = time.perf_counter()
    theirs = Embeddings(path=args.model, content=True)
    theirs.index(documents)
    theirsindex = time.perf_counter() - start
    theirsreranker = TxtaiReranker(theirs, TxtaiSimilarity(args.model, lateencode=True))

    # Warm up both, then time alternately so machine load affects both sides alike
    oursreranker(queries[0], limit=limit, factor=factor)
    theirsreranker(queries[0], limit=limit, factor=factor)
    ourstimes, theirstimes, agree = [], [], []
    for query in queries:
        t, r = timed(oursreranker, [query], limit, factor)
        ourstimes.extend(t)
        u, s = timed(theirsreranker, [query], limit, factor)
        theirstimes.extend(u)
        agree.append(len({x["id"] for x in r[0]} & {x["id"] for x in s[0]}) / limit)

    ours50, theirs50 = statistics.median(ourstimes), statistics.median(theirstimes)
    rows = [
        ("txtai-muvera Reranker", ours50, np.percentile(ourstimes, 95), oursindex),
        ("txtai 9.14 Reranker", theirs50, np.percentile(theirstimes, 95), theirsindex),
    ]

    lines = [
        f"{len(documents)} documents, {len(queries)} queries one at a time, limit {limit} x factor {factor} = {limit * factor} re-ranked candidates, model {Path(args.model).name}.",
        "",
        "| pipeline | p50 ms/query | p95 ms/query | index build s |",
        "|---|---:|---:|---:|",
    ]
    lines += [f"| {name} | {p50:.1f} | {p95:.1f} | {build:.1f} |" for name, p50, p95, build in rows]
    lines += [
        "",
        f"**Speed-up per query (p50): {theirs50 / ours50:.1f}x.** Top-10 overlap between the two pipelines: {statistics.mean(agree):.2f} "
        "(txtai's pipeline encodes without PyLate's query expansion, so its rankings differ).",
        "",
        f"Regenerate: `python benchmarks/bench_reranker.py --model {args.model} --data {args.data} --write`",
    ]
    print("\n".join(lines))

    if args.write:
        write(HEADING[3:], "\n".join(lines))


if __name__ == "__main__":
    main()
