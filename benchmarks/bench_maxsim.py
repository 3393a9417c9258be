"""
MaxSim throughput on pre-encoded token vectors: txtai-muvera's ragged maxsim against txtai's LateEncoder.score and PyLate's
rank.rerank, in one process.

Run from the checkout with the peers venv (benchmarks/setup-peers.sh):

    .venv-peers/bin/python benchmarks/bench_maxsim.py [--rounds 3] [--vectors random|pylate] [--write]

Scenarios: rerank (each query scores its own 100 candidate documents) and exhaustive (queries score every corpus document).
Token sets are bench_fde.py's: SciFact-like documents (5,183) and 32 token queries, 128 dimensions.
"""

import argparse
import datetime
import sys

import numpy as np
import torch

from bench_fde import load, machine, measure, options, tokensets
from results import write
from txtai_muvera.core.maxsim import maxsim, rank
from txtai_muvera.core.ragged import pack


def padded(matrices):
    """
    Pads matrices into the (batch, tokens, dim) zero padded tensor txtai's LateEncoder holds (its encode output).

    Args:
        matrices: list of float32 matrices

    Returns:
        float32 tensor
    """

    return torch.nn.utils.rnn.pad_sequence([torch.from_numpy(x) for x in matrices], batch_first=True)


def ours(queries, candidates, limit):
    """
    Ranks candidates for each query with txtai-muvera: one ragged maxsim call per query candidate set, or one call for all
    queries when they share the candidates.

    Args:
        queries: (flat, offsets) per query, or one (flat, offsets) of all queries for shared candidates
        candidates: (flat, offsets) per query, or one (flat, offsets) shared by all queries
        limit: results per query

    Returns:
        list of (index, score) lists
    """

    if isinstance(candidates, tuple):
        return rank(maxsim(*queries, *candidates), limit)

    results = []
    for query, documents in zip(queries, candidates):
        results.extend(rank(maxsim(*query, *documents), limit))
    return results


def txtai(score, queries, candidates, limit):
    """
    Ranks candidates for each query with txtai's LateEncoder.score, one query at a time as LateEncoder.__call__ does.

    Args:
        score: LateEncoder.score, called unbound
        queries: (1, tokens, dim) tensor per query
        candidates: padded (documents, tokens, dim) tensor per query, or one shared tensor
        limit: results per query

    Returns:
        list of (index, score) lists
    """

    results = []
    for x, query in enumerate(queries):
        results.extend(score(None, query, candidates if torch.is_tensor(candidates) else candidates[x], limit))
    return results


def main():
    """
    Runs the benchmark.
    """

    parser = argparse.ArgumentParser(description="MaxSim throughput")
    options(parser, "corpus documents")
    parser.add_argument("--rerank", type=int, default=100, help="rerank scenario: queries")
    parser.add_argument("--candidates", type=int, default=100, help="rerank scenario: candidates per query")
    parser.add_argument("--exhaustive", type=int, default=10, help="exhaustive scenario: queries scored against every document")
    parser.add_argument("--limit", type=int, default=10, help="results kept per query")
    parser.add_argument("--write", action="store_true", help="update the MaxSim section of benchmarks/RESULTS.md")
    args = parser.parse_args()

    documents, queries, description = tokensets(args)
    loads = [load()]
    print(f"{len(documents)} documents, {len(queries)} queries: {description}")

    # Peers
    try:
        from txtai.pipeline.text.lateencoder import LateEncoder
    except ImportError as error:
        LateEncoder = None
        print(f"txtai unavailable: {error}", file=sys.stderr)
    try:
        from pylate import rank as pylate
    except ImportError as error:
        pylate = None
        print(f"PyLate unavailable: {error}", file=sys.stderr)

    generator = np.random.default_rng(2)
    rows = []

    # Rerank: each query has its own candidates, inputs prepared in each library's own format outside the timings
    selected = [queries[x % len(queries)] for x in range(args.rerank)]
    ids = [generator.choice(len(documents), size=args.candidates, replace=False) for _ in selected]
    scenarios = [
        (
            f"rerank: {args.rerank} queries x {args.candidates} own candidates",
            selected,
            [pack([x]) for x in selected],
            [pack([documents[i] for i in x]) for x in ids],
            [padded([documents[i] for i in x]) for x in ids],
            [[documents[i] for i in x] for x in ids],
            [x.tolist() for x in ids],
        )
    ]

    # Exhaustive: every query against the whole corpus
    selected = queries[: args.exhaustive]
    everything = list(range(len(documents)))
    scenarios.append(
        (
            f"exhaustive: {args.exhaustive} queries x {len(documents)} documents",
            selected,
            pack(selected),
            pack(documents),
            padded(documents),
            [documents] * len(selected),
            [everything] * len(selected),
        )
    )

    for threads in args.threads or [torch.get_num_threads()]:
        torch.set_num_threads(threads)
        for label, selected, qpacked, dpacked, dpadded, dlists, dids in scenarios:
            pairs = len(selected) * (len(dids[0]))
            qpadded = [torch.from_numpy(x).unsqueeze(0) for x in selected]

            functions = {"txtai-muvera maxsim": lambda q=qpacked, d=dpacked: ours(q, d, args.limit)}
            if LateEncoder:
                functions["txtai LateEncoder.score"] = lambda q=qpadded, d=dpadded: txtai(LateEncoder.score, q, d, args.limit)
            if pylate:
                functions["PyLate rank.rerank"] = lambda q=selected, d=dlists, i=dids: pylate.rerank(
                    documents_ids=i, queries_embeddings=q, documents_embeddings=d
                )

            # Same top results from every scorer, as document ids (mean for txtai and sum for PyLate rank alike)
            expected = [[i[index] for index, _ in row] for row, i in zip(functions["txtai-muvera maxsim"](), dids)]
            found = {}
            if LateEncoder:
                found["txtai LateEncoder.score"] = [[i[index] for index, _ in row] for row, i in zip(functions["txtai LateEncoder.score"](), dids)]
            if pylate:
                found["PyLate rank.rerank"] = [[x["id"] for x in row[: args.limit]] for row in functions["PyLate rank.rerank"]()]
            for name, results in found.items():
                agree = np.mean([a == b for a, b in zip(results, expected)])
                print(f"{label}: {name} top {args.limit} identical to ours for {agree:.0%} of queries")

            timings = measure({name: (function, pairs) for name, function in functions.items()}, args.rounds)
            base = [pairs / min(x) for x in timings["txtai-muvera maxsim"]]
            for name, (wall, cpu) in timings.items():
                best, median, work = pairs / min(wall), pairs / float(np.median(wall)), pairs / min(cpu)
                rows.append((threads, label, name, pairs, best, median, work, base[0] / best, base[1] / work))

    # Table
    lines = [
        "| threads | scenario | scorer | pairs | best pairs/s | median pairs/s | pairs per CPU second | ours / this (wall) | ours / this (CPU) |",
        "|---:|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for threads, label, name, pairs, best, median, work, ratio, cpu in rows:
        lines.append(f"| {threads} | {label} | {name} | {pairs:,} | {best:,.0f} | {median:,.0f} | {work:,.0f} | {ratio:.2f}x | {cpu:.2f}x |")
    table = "\n".join(lines)
    print(table)

    loads.append(load())
    if args.write:
        body = f"""
Documents scored per second (query x document pairs, higher is better) on pre-encoded token vectors, every scorer in one
process, timed interleaved over {args.rounds} rounds after a warm up, at each torch thread count. "best" and "median" are
wall clock throughput, "per CPU second" divides by the process CPU time (all threads). The ratio columns divide our
throughput by each row's at the same thread count: above 1.00x we are faster. Every scorer returns each query's top
{args.limit}; the script checks they are the same documents in the same order.

{table}

- Token sets: {len(documents)} documents and 32 token queries; {description}.
- Inputs are prepared in each library's own format outside the timings: ours the ragged flat matrix + int64 offsets,
  txtai the zero padded (documents, tokens, 128) tensor LateEncoder.encode returns (LateEncoder.score is called unbound,
  one query at a time as LateEncoder.__call__ does), PyLate a list of per-document arrays per query (rank.rerank pads
  them itself, inside its timing). Ours averages over query tokens (txtai's convention, reduce="sum" for PyLate's costs
  the same).
- Rerank: each query scores its own {args.candidates} random candidates (one maxsim call per query). Exhaustive: one maxsim
  call scores all {args.exhaustive} queries against the corpus.
- All three spend most of their time in the same float32 matrix product (MKL): ours adds a NumPy reduceat and
  nothing else, txtai a mask pass over the padded tensor plus masked max and mean, PyLate padding plus max and sum (it
  has no document mask, so zero padding takes part in the max). With 100 candidates per query the product is most of
  the work for everyone, which caps the rerank ratios; exhaustive scoring batches queries and skips padding and masks.
- Machine: {machine()}. Load average {loads[0]:.1f} at the start, {loads[1]:.1f} at the end: other work shares the
  cores, so compare rows of one run. With more runnable threads than cores, multi-threaded torch stalls at every OpenMP
  barrier; single threaded rows (and CPU second columns) are the reliable comparison on a busy machine.
- Rerun: `bash benchmarks/setup-peers.sh` once, then
  `.venv-peers/bin/python benchmarks/bench_maxsim.py --threads {" ".join(str(x) for x in args.threads) or torch.get_num_threads()} --write`.
  Run on {datetime.date.today().isoformat()}.
"""
        write("MaxSim throughput", body)


if __name__ == "__main__":
    main()
