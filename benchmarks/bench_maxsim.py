"""
MaxSim top k throughput on pre-encoded token vectors: txtai-muvera's certified top k (int8 screen + float32 re-scoring,
results identical to float32 MaxSim) and its plain float32 MaxSim against txtai's LateEncoder.score, PyLate's rank.rerank
and maxsim-cpu (mixedbread's Rust kernel), in one process.

Run from the checkout with the peers venv (benchmarks/setup-peers.sh):

    .venv-peers/bin/python benchmarks/bench_maxsim.py [--rounds 3] [--vectors random|pylate|scifact] [--cache FILE] [--write]

Scenarios: rerank (each query scores its own 100 candidate documents) and exhaustive (queries score every corpus document).
Token sets are bench_fde.py's: SciFact-like random documents (5,183) and 32 token queries, 128 dimensions, or real SciFact
token vectors (--vectors scifact, encoded once with the shared model and cached at --cache).
"""

import argparse
import datetime
import os
import sys
import time

import numpy as np
import torch

from common import timedrounds, tokensetoptions, tokensets
from results import write
from txtai_muvera.cli.environment import loadaverage, machinedescription
from txtai_muvera.core.certified import Screen, screening, topk
from txtai_muvera.core.maxsim import maxsim
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


def ours(queries, candidates, limit, precision, screens=None, counts=None):
    """
    Ranks candidates for each query with txtai-muvera's top k: one call per query candidate set, or one call for all
    queries when they share the candidates.

    Args:
        queries: (flat, offsets) per query, or one (flat, offsets) of all queries for shared candidates
        candidates: (flat, offsets) per query, or one (flat, offsets) shared by all queries
        limit: results per query
        precision: exact or certified
        screens: int8 screen per candidate set, or one shared screen (certified)
        counts: dict counting pairs and float32 re-scored pairs

    Returns:
        list of (index, score) lists
    """

    if isinstance(candidates, tuple):
        return topk(*queries, *candidates, limit, precision=precision, screen=screens, counts=counts)

    results = []
    for x, (query, documents) in enumerate(zip(queries, candidates)):
        results.extend(topk(*query, *documents, limit, precision=precision, screen=screens[x] if screens else None, counts=counts))
    return results


def mixedbread(score, queries, candidates, limit):
    """
    Ranks candidates for each query with maxsim-cpu's maxsim_scores_variable (sum over query tokens) and a stable sort.

    Args:
        score: maxsim_cpu.maxsim_scores_variable
        queries: float32 query matrices
        candidates: list of float32 document matrices per query
        limit: results per query

    Returns:
        list of index lists
    """

    return [np.argsort(-score(query, documents), kind="stable")[:limit].tolist() for query, documents in zip(queries, candidates)]


def matmulpeak(dtype, size=2048):
    """
    Measures this core's matrix product peak with a large torch matmul, in GFLOP/s.

    Args:
        dtype: torch dtype
        size: square matrix size

    Returns:
        float
    """

    a, b = torch.randn((size, size)).to(dtype), torch.randn((size, size)).to(dtype)
    torch.mm(a, b)
    best = float("inf")
    for _ in range(3):
        start = time.process_time()
        torch.mm(a, b)
        best = min(best, time.process_time() - start)
    return 2 * size**3 / best / 1e9


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


def einsum(queries, documents, device, chunk=64):
    """
    The padded baseline on an accelerator: queries and documents zero padded, einsum, masked max, sum.

    Args:
        queries: float32 query matrices
        documents: float32 document matrices
        device: torch device
        chunk: documents per einsum

    Returns:
        function scoring every query against every document, (queries x documents) tensor
    """

    qpadded, dpadded = padded(queries).to(device), padded(documents).to(device)
    qmask = (qpadded.abs().sum(-1) > 0).float()
    dmask = torch.tensor([[x < len(d) for x in range(dpadded.shape[1])] for d in documents], device=device)

    def score():
        blocks = []
        for start in range(0, len(dpadded), chunk):
            products = torch.einsum("qid,njd->qnij", qpadded, dpadded[start : start + chunk])
            products.masked_fill_(~dmask[start : start + chunk][None, :, None, :], -torch.inf)
            blocks.append((products.amax(-1) * qmask[:, None, :]).sum(-1))
        return torch.cat(blocks, dim=1)

    return score


def accelerator(args, documents, queries):
    """
    Exhaustive MaxSim on an accelerator: ours (ragged, padded per chunk, batched products) against the padded einsum
    baseline, wall time with synchronisation.

    Args:
        args: command line arguments (device, accelerated queries, rounds)
        documents: float32 document matrices
        queries: float32 query matrices

    Returns:
        markdown table
    """

    device = torch.device(args.device)
    selected = queries[: args.accelerated]
    (qflat, qoffsets), (dflat, doffsets) = pack(selected), pack(documents)
    qtensor, dtensor = torch.from_numpy(qflat).to(device), torch.from_numpy(dflat).to(device)

    def synchronised(function):
        def run():
            result = function()
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            return result

        return run

    functions = {
        "txtai-muvera maxsim (float32)": synchronised(lambda: maxsim(qtensor, qoffsets, dtensor, doffsets, reduce="sum")),
        "txtai-muvera maxsim (float16 documents)": synchronised(lambda: maxsim(qtensor, qoffsets, dtensor.half(), doffsets, reduce="sum")),
        "padded einsum + max + sum (float32)": synchronised(einsum(selected, documents, device)),
    }
    reference = functions["padded einsum + max + sum (float32)"]().float().cpu()
    found = functions["txtai-muvera maxsim (float32)"]().cpu()
    print(f"{device}: ours and the padded einsum differ by at most {(found - reference).abs().max().item():.1e}")

    pairs = len(selected) * len(documents)
    timings = timedrounds({name: (function, pairs) for name, function in functions.items()}, args.rounds)
    lines = ["| device | scorer | pairs | best pairs/s | median pairs/s |", "|---|---|---:|---:|---:|"]
    for name, (wall, _) in timings.items():
        lines.append(f"| {device} | {name} | {pairs:,} | {pairs / min(wall):,.0f} | {pairs / float(np.median(wall)):,.0f} |")
    return "\n".join(lines)


def main():
    """
    Runs the benchmark.
    """

    parser = argparse.ArgumentParser(description="MaxSim top k throughput")
    tokensetoptions(parser, "corpus documents")
    parser.add_argument("--rerank", type=int, default=100, help="rerank scenario: queries")
    parser.add_argument("--candidates", type=int, default=100, help="rerank scenario: candidates per query")
    parser.add_argument("--exhaustive", type=int, default=10, help="exhaustive scenario: queries scored against every document")
    parser.add_argument("--limit", type=int, default=10, help="results kept per query")
    parser.add_argument("--write", action="store_true", help="update the MaxSim section of benchmarks/RESULTS.md")
    parser.add_argument("--device", default=None, help="accelerator run: torch device (cuda, mps), exhaustive MaxSim against a padded einsum")
    parser.add_argument("--accelerated", type=int, default=300, help="accelerator run: queries scored against every document")
    args = parser.parse_args()

    # maxsim-cpu's thread pools read these once, at import
    threads = args.threads or [torch.get_num_threads()]
    for name in ("RAYON_NUM_THREADS", "OMP_NUM_THREADS"):
        os.environ.setdefault(name, str(max(threads)))

    documents, queries, description = tokensets(args)
    loads = [loadaverage()]
    print(f"{len(documents)} documents, {len(queries)} queries: {description}")

    # Accelerator run only: exhaustive MaxSim on the device
    if args.device:
        table = accelerator(args, documents, queries)
        print(table)
        if args.write:
            write(
                "MaxSim on an accelerator",
                f"""
Exhaustive MaxSim, {min(args.accelerated, len(queries))} queries x {len(documents)} documents, query x document pairs per second
(wall clock, synchronised), ours against a plain padded einsum + masked max + sum, {args.rounds} interleaved rounds.
Token sets: {description}. Machine: {machinedescription()}, {torch.cuda.get_device_name() if torch.cuda.is_available() else args.device}.

{table}

Rerun: `.venv-peers/bin/python benchmarks/bench_maxsim.py --device {args.device} --vectors {args.vectors} --write`. Run on
{datetime.date.today().isoformat()}.
""",
            )
        return
    print(f"int8 screen measured faster than float32 here: {screening()}")

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
    try:
        from maxsim_cpu import maxsim_scores_variable
    except ImportError as error:
        maxsim_scores_variable = None
        print(f"maxsim-cpu unavailable: {error}", file=sys.stderr)

    # int8 screen of the corpus, as an index keeps it beside its token vectors
    corpus = pack(documents)
    screen = Screen(*corpus)

    generator = np.random.default_rng(2)
    rows, notes = [], []

    # Rerank: each query has its own candidates, inputs prepared in each library's own format outside the timings
    selected = [queries[x % len(queries)] for x in range(args.rerank)]
    ids = [generator.choice(len(documents), size=args.candidates, replace=False) for _ in selected]
    scenarios = [
        (
            f"rerank: {args.rerank} queries x {args.candidates} own candidates",
            selected,
            [pack([x]) for x in selected],
            [pack([documents[i] for i in x]) for x in ids],
            [screen.subset(x) for x in ids],
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
            corpus,
            screen,
            padded(documents),
            [documents] * len(selected),
            [everything] * len(selected),
        )
    )

    # Matrix product peaks of this core, same process
    peaks = {}
    for threads in args.threads or [torch.get_num_threads()]:
        torch.set_num_threads(threads)
        peaks[threads] = (matmulpeak(torch.float32), matmulpeak(torch.bfloat16))
        print(f"{threads} thread(s): float32 peak {peaks[threads][0]:.1f} GFLOP/s, bfloat16 peak {peaks[threads][1]:.1f} GFLOP/s")

    certified, exact = "txtai-muvera certified top k", "txtai-muvera float32 maxsim"
    for threads in args.threads or [torch.get_num_threads()]:
        torch.set_num_threads(threads)
        for label, selected, qpacked, dpacked, screens, dpadded, dlists, dids in scenarios:
            pairs = len(selected) * (len(dids[0]))
            qpadded = [torch.from_numpy(x).unsqueeze(0) for x in selected]

            # Float32 work of one pass: 2 x query tokens x document tokens x dim per pair
            flops = sum(2 * len(q) * sum(len(documents[i]) for i in d) * q.shape[1] for q, d in zip(selected, dids))

            counts = {}
            functions = {
                certified: lambda q=qpacked, d=dpacked, s=screens: ours(q, d, args.limit, "certified", s, counts),
                exact: lambda q=qpacked, d=dpacked: ours(q, d, args.limit, "exact"),
            }
            if maxsim_scores_variable:
                functions["maxsim-cpu"] = lambda q=selected, d=dlists: mixedbread(maxsim_scores_variable, q, d, args.limit)
            if LateEncoder:
                functions["txtai LateEncoder.score"] = lambda q=qpadded, d=dpadded: txtai(LateEncoder.score, q, d, args.limit)
            if pylate:
                functions["PyLate rank.rerank"] = lambda q=selected, d=dlists, i=dids: pylate.rerank(
                    documents_ids=i, queries_embeddings=q, documents_embeddings=d
                )

            # Reference: float32 MaxSim top k. Certified must match it exactly, peers on ids (PyLate and maxsim-cpu sum)
            reference = functions[exact]()
            expected = [[i[index] for index, _ in row] for row, i in zip(reference, dids)]
            found = {certified: [[i[index] for index, _ in row] for row, i in zip(functions[certified](), dids)]}
            if maxsim_scores_variable:
                found["maxsim-cpu"] = [[i[index] for index in row] for row, i in zip(functions["maxsim-cpu"](), dids)]
            if LateEncoder:
                found["txtai LateEncoder.score"] = [[i[index] for index, _ in row] for row, i in zip(functions["txtai LateEncoder.score"](), dids)]
            if pylate:
                found["PyLate rank.rerank"] = [[x["id"] for x in row[: args.limit]] for row in functions["PyLate rank.rerank"]()]
            for name, results in found.items():
                agree = np.mean([a == b for a, b in zip(results, expected)])
                print(f"{label}: {name} top {args.limit} identical to float32 MaxSim for {agree:.0%} of queries")
            difference = max(abs(a[1] - b[1]) for x, y in zip(functions[certified](), reference) for a, b in zip(x, y))
            print(f"{label}: certified scores differ from float32 MaxSim by at most {difference:.1e}")

            counts.clear()
            timings = timedrounds({name: (function, pairs) for name, function in functions.items()}, args.rounds)
            fraction = counts["rescored"] / counts["pairs"]
            notes.append(
                f"{label}, {threads} thread(s): certified re-scores {fraction:.1%} of candidates in float32, "
                f"top {args.limit} identical to float32 MaxSim for {np.mean([a == b for a, b in zip(found[certified], expected)]):.0%} of queries, "
                f"scores within {difference:.1e}"
            )
            base = [pairs / min(x) for x in timings[certified]]
            for name, (wall, cpu) in timings.items():
                best, median, work = pairs / min(wall), pairs / float(np.median(wall)), pairs / min(cpu)
                share = flops / min(cpu) / 1e9 / peaks[threads][0]
                rows.append((threads, label, name, pairs, best, median, work, share, base[0] / best, base[1] / work))

    # Table
    lines = [
        "| threads | scenario | scorer | pairs | best pairs/s | median pairs/s | pairs per CPU second | float32 GFLOP/s share of peak | certified / this (wall) | certified / this (CPU) |",
        "|---:|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for threads, label, name, pairs, best, median, work, share, ratio, cpu in rows:
        lines.append(
            f"| {threads} | {label} | {name} | {pairs:,} | {best:,.0f} | {median:,.0f} | {work:,.0f} | {share:.0%} | {ratio:.2f}x | {cpu:.2f}x |"
        )
    table = "\n".join(lines)
    print(table)
    print("\n".join(notes))

    loads.append(loadaverage())
    print(f"load average {loads[0]:.1f} at the start, {loads[1]:.1f} at the end")
    if args.write:
        peaktext = "; ".join(f"{t} thread(s): float32 {f:.1f}, bfloat16 {b:.1f} GFLOP/s" for t, (f, b) in peaks.items())
        notetext = "\n".join(f"- {x}." for x in notes)
        body = f"""
Top {args.limit} documents per query by MaxSim, scored per second (query x document pairs, higher is better) on pre-encoded
token vectors, every scorer in one process, timed interleaved over {args.rounds} rounds after a warm up, at each torch
thread count. "best" and "median" are wall clock throughput, "per CPU second" divides by the process CPU time (all
threads). The share of peak divides the float32 work of one full MaxSim pass (2 x query tokens x document tokens x 128 per
pair) per CPU second by this core's float32 matmul peak, measured in the same process with a 2048 x 2048 torch matmul
({peaktext}); the certified path does less float32 work than that, so its share can pass 100%. The ratio columns divide
the certified top k's throughput by each row's at the same thread count: above 1.00x it is faster.

{table}

{notetext}
- Certified top k (`txtai_muvera.core.certified.topk`, `muvera: {{precision: certified}}`): int8 products with exact int32
  accumulation screen every pair, a rigorous per document bound on the difference to float32 MaxSim (from the residual
  and token norms of the int8 rounding, see the module docstring) keeps the documents whose upper bound reaches the
  k-th best float32 score, and only those are scored again in float32: ids, order and scores are float32 MaxSim's. The
  int8 screen of the corpus is built once outside the timings, as an index keeps it beside its token vectors; each
  query's candidates take their rows of it (`Screen.subset`) outside the timings like every library's inputs.
- Token sets: {len(documents)} documents; {description}.
- Inputs are prepared in each library's own format outside the timings: ours the ragged flat matrix + int64 offsets,
  txtai the zero padded (documents, tokens, 128) tensor LateEncoder.encode returns (LateEncoder.score is called unbound,
  one query at a time as LateEncoder.__call__ does), PyLate and maxsim-cpu a list of per-document arrays per query
  (rank.rerank pads them itself, inside its timing; maxsim-cpu returns scores, sorted by a NumPy argsort inside its
  timing). Ours averages over query tokens (txtai's convention, reduce="sum" for PyLate's costs the same).
- Rerank: each query scores its own {args.candidates} random candidates (one call per query). Exhaustive: one call
  scores all {args.exhaustive} queries against the corpus.
- Machine: {machinedescription()}. Load average {loads[0]:.1f} at the start, {loads[1]:.1f} at the end: other work shares the
  cores, so compare rows of one run. With more runnable threads than cores, multi-threaded torch stalls at every OpenMP
  barrier; single threaded rows (and CPU second columns) are the reliable comparison on a busy machine.
- Rerun: `bash benchmarks/setup-peers.sh` once, then
  `.venv-peers/bin/python benchmarks/bench_maxsim.py --threads {" ".join(str(x) for x in args.threads) or torch.get_num_threads()} --vectors {args.vectors} --write`.
  Run on {datetime.date.today().isoformat()}.
"""
        write("MaxSim throughput", body)


if __name__ == "__main__":
    main()
