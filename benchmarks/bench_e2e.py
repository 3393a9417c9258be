"""
End-to-end benchmark: txtai-muvera against txtai's built-in late-interaction pipeline, same model and corpus, same run.

    python benchmarks/bench_e2e.py [--model ../shared/models/minilm-colbert] [--data ../shared/data/beir/scifact] [--write]

Compares like with like:
  - indexing from texts: Embeddings(method=txtai_muvera.LateVectors, backend=txtai_muvera.Muvera) vs Embeddings(path=MODEL,
    content=True), which auto-detects LatePooling with its own MUVERA FDE; documents per second and peak RSS
  - MUVERA + re-rank of 100 candidates: ours (exact MaxSim on stored token vectors) vs txtai's
    Reranker(embeddings, Similarity(MODEL, lateencode=True)) with limit 10, factor 10 (encodes the 100 candidate texts per query)
  - MUVERA only: ours with candidates 0 vs txtai's Embeddings.search
  each with single queries (Embeddings.search / Reranker(query)) and batches of 32 (batchsearch / Reranker(list)).

Every measurement runs in its own subprocess, so each peak RSS (ru_maxrss) is one side's alone. The two sides' search
processes run side by side and take turns query by query, so changing machine load hits both alike.
"""

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time

from pathlib import Path

import numpy as np

from common import MODEL, SCIFACT, workerprocess
from results import write
from txtai_muvera.cli.environment import folderbytes, processmemory

RESULTS = Path(__file__).parent / "RESULTS.md"
HEADING = "## End-to-end"

# Results per query, re-ranked candidates (txtai Reranker: limit 10, factor 10) and batch size
LIMIT, CANDIDATES = 10, 100

# Defaults of the options the regenerate command repeats when changed
DEFAULTS = {"rerank_queries": 16, "rerank_batches": 1, "batch": 32}

SIDES = ("ours", "txtai")


def main():
    """
    Runs the benchmark, or one worker process when called with --worker.
    """

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=str(MODEL), help="ColBERT model folder")
    parser.add_argument("--data", default=str(SCIFACT), help="BEIR folder, test queries")
    parser.add_argument("--documents", type=int, help="index the first N documents only (default: all)")
    parser.add_argument("--queries", type=int, help="MUVERA-only queries, single and batched (default: all test queries)")
    parser.add_argument("--rerank-queries", type=int, default=DEFAULTS["rerank_queries"], help="re-rank single queries (default: 16)")
    parser.add_argument("--rerank-batches", type=int, default=DEFAULTS["rerank_batches"], help="re-rank batches (default: 1)")
    parser.add_argument("--batch", type=int, default=DEFAULTS["batch"], help="queries per batch (default: 32)")
    parser.add_argument("--threads", type=int, help="torch threads in every worker (default: torch's default)")
    parser.add_argument("--json", help="write every figure to this JSON file")
    parser.add_argument("--render", metavar="JSON", help="format a previous run's JSON file instead of running")
    parser.add_argument("--write", action="store_true", help=f"write the results under '{HEADING}' in {RESULTS}")
    parser.add_argument("--worker", nargs=2, metavar=("SIDE", "PHASE"), help=argparse.SUPPRESS)
    parser.add_argument("--path", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.worker:
        worker(args)
        return

    # Run, or format a previous run
    if args.render:
        with open(args.render, encoding="utf-8") as f:
            results = json.load(f)
    else:
        results = benchmark(args)
        results["command"] = regeneratecommand(args)

    text = markdownreport(results, results["command"])
    print(text)

    if args.json and not args.render:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(results, f, indent=2)
    if args.write:
        write(HEADING[3:], text.split("\n", 1)[1])
        print(f"\nWritten under '{HEADING}' in {RESULTS}")


def benchmark(args):
    """
    Runs every measurement, each side in its own subprocesses.

    Args:
        args: parsed arguments

    Returns:
        results dict
    """

    # pylint: disable=C0415
    from txtai_muvera.cli.beir import readbeir
    from txtai_muvera.cli.environment import environment

    ids, _, queries, qrels = readbeir(args.data, "test")
    documents = len(ids) if args.documents is None else min(args.documents, len(ids))
    queries = list(queries.items())

    results = {
        "model": args.model,
        "data": args.data,
        "documents": documents,
        "environment": {**environment(), "platform": platform.platform(), **({"threads": args.threads} if args.threads else {})},
        "index": {},
        "search": {},
    }

    directory = tempfile.mkdtemp(prefix="bench-e2e-")
    try:
        # Indexing from texts, each side in a fresh process, both started together so that load from other work on the
        # machine hits both alike (the side that finishes first leaves the other the machine, which favours the slower one)
        processes = {side: spawnworker(args, side, "index", os.path.join(directory, side)) for side in SIDES}
        for side, process in processes.items():
            results["index"][side] = json.loads(process.stdout.readline())
            process.wait()
            if process.returncode:
                raise RuntimeError(f"{side} index worker failed with exit code {process.returncode}")
            print(f"{side} index: {results['index'][side]['documents_per_second']:.1f} docs/s", file=sys.stderr)

        # Search modes: both sides' processes loaded side by side, taking turns. txtai's Reranker encodes every candidate
        # text, so re-ranking runs on fewer queries.
        count, size = len(queries) if args.queries is None else min(args.queries, len(queries)), args.batch
        subsets = {
            "muvera": (queries[:count], queries[: count - count % size]),
            "rerank": (queries[: args.rerank_queries], queries[: min(args.rerank_batches * size, len(queries) - len(queries) % size)]),
        }
        for mode, (single, batched) in subsets.items():
            results["search"][mode] = comparesearch(args, mode, [os.path.join(directory, side) for side in SIDES], single, batched, qrels)
            print(f"{mode} search done", file=sys.stderr)
    finally:
        shutil.rmtree(directory, ignore_errors=True)

    results["ratios"] = ratios(results)
    return results


def spawnworker(args, side, phase, path):
    """
    Starts a worker process, JSON lines on its stdin and stdout, its stderr shared (progress bars).

    Args:
        args: parsed arguments
        side: ours or txtai
        phase: worker phase
        path: index folder

    Returns:
        subprocess.Popen
    """

    arguments = ["--worker", side, phase, "--path", path, "--model", args.model, "--data", args.data]
    arguments += ["--documents", str(args.documents)] if args.documents is not None else []
    arguments += ["--threads", str(args.threads)] if args.threads else []
    return workerprocess(__file__, arguments)


def comparesearch(args, mode, paths, queries, batched, qrels):
    """
    Times one search mode on both sides: single queries, then batches, the two processes taking turns.

    Args:
        args: parsed arguments
        mode: muvera or rerank
        paths: index folder of each side
        queries: [(query id, text)] searched one at a time
        batched: [(query id, text)] searched in batches of args.batch
        qrels: BEIR qrels

    Returns:
        {side: figures}
    """

    # pylint: disable=C0415
    from txtai_muvera.cli.environment import percentiles
    from txtai_muvera.cli.metrics import trecmetrics

    processes = {side: spawnworker(args, side, mode, path) for side, path in zip(SIDES, paths)}
    loaded = {side: json.loads(process.stdout.readline()) for side, process in processes.items()}

    def ask(side, request):
        processes[side].stdin.write(json.dumps(request) + "\n")
        return json.loads(processes[side].stdout.readline())

    # Warm up, untimed
    for side in SIDES:
        ask(side, {"texts": [queries[0][1]], "batch": False})

    # Single queries then full batches; the side that goes first alternates
    timings = {side: {"single": [], "batch": [], "cpu": []} for side in SIDES}
    rankings = {side: {} for side in SIDES}
    size = args.batch
    batches = [batched[x : x + size] for x in range(0, len(batched) - size + 1, size)]
    for kind, units in (("single", [[query] for query in queries]), ("batch", batches)):
        for x, unit in enumerate(units):
            for side in SIDES if x % 2 == 0 else SIDES[::-1]:
                answer = ask(side, {"texts": [text for _, text in unit], "batch": kind == "batch"})
                timings[side][kind].append(answer["seconds"])
                if kind == "single":
                    timings[side]["cpu"].append(answer["cpu"])
                if kind == "single":
                    rankings[side][unit[0][0]] = answer["ids"][0]

    # Peak memory of each process, then results
    results = {}
    for side, process in processes.items():
        final = ask(side, {"exit": True})
        process.wait()

        run = {uid: {doc: LIMIT - rank for rank, doc in enumerate(rows)} for uid, rows in rankings[side].items()}
        results[side] = {
            "single": {**percentiles(timings[side]["single"]), "cpu_mean_ms": float(np.mean(timings[side]["cpu"]) * 1000)},
            "batch": {
                "batches": len(timings[side]["batch"]),
                "size": size,
                "per_batch_ms": float(np.mean(timings[side]["batch"]) * 1000) if batches else None,
                "per_query_ms": float(np.mean(timings[side]["batch"]) * 1000 / size) if batches else None,
            },
            "queries": len(queries),
            "ndcg@10": trecmetrics({uid: qrels[uid] for uid, _ in queries}, run)["ndcg@10"],
            "peak_rss_mb": final["peak_rss_mb"],
            "loaded_rss_mb": loaded[side]["rss_mb"],
            "config": loaded[side]["config"],
            "loadavg": final["loadavg"],
        }

    # Overlap of the two sides' top 10s
    overlap = [len(set(rankings["ours"][uid]) & set(rankings["txtai"][uid])) / LIMIT for uid, _ in queries]
    results["top10_overlap"] = float(np.mean(overlap))
    return results


def worker(args):
    """
    Worker process: builds an index (phase index) or serves one search mode (phase muvera or rerank) over JSON lines.

    Args:
        args: parsed arguments
    """

    # Protocol on the real stdout, anything else printed goes to stderr
    channel = sys.stdout
    sys.stdout = sys.stderr

    def reply(message):
        channel.write(json.dumps(message) + "\n")
        channel.flush()

    # pylint: disable=C0415
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)

    side, phase = args.worker
    if phase == "index":
        reply(buildindex(args, side))
        return

    search, config = searcher(args, side, phase)
    reply({"rss_mb": processmemory()["rss_mib"], "config": config})

    for line in sys.stdin:
        request = json.loads(line)
        if request.get("exit"):
            reply({"peak_rss_mb": processmemory()["peak_rss_mib"], "loadavg": os.getloadavg()})
            return

        # Single query (one text) or a batch
        texts = request["texts"]
        start, cpu = time.perf_counter(), time.process_time()
        rows = search(texts) if request["batch"] else [search(texts[0])]
        seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
        reply({"seconds": seconds, "cpu": cpu, "ids": [[row["id"] for row in result] for result in rows]})


def buildindex(args, side):
    """
    Builds and saves one side's index from texts.

    Args:
        args: parsed arguments
        side: ours or txtai

    Returns:
        dict with timings, sizes and peak RSS
    """

    # pylint: disable=C0415
    from txtai import Embeddings

    from txtai_muvera.cli.beir import readbeir

    ids, texts, _, _ = readbeir(args.data, "test")
    documents = list(zip(ids, texts))[: args.documents]
    baseline = processmemory()["rss_mib"]

    # txtai-muvera with its defaults, or txtai's built-in late-interaction pipeline with its defaults
    if side == "ours":
        embeddings = Embeddings(
            path=args.model, method="txtai_muvera.LateVectors", backend="txtai_muvera.Muvera", content=True, muvera={"progress": False}
        )
    else:
        embeddings = Embeddings(path=args.model, content=True)

    start, cpu = time.perf_counter(), time.process_time()
    embeddings.index([(uid, text, None) for uid, text in documents])
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu

    embeddings.save(args.path)
    config = embeddings.config
    embeddings.close()

    stored = folderbytes(args.path)
    return {
        "documents": len(documents),
        "seconds": seconds,
        "documents_per_second": len(documents) / seconds,
        "cpu_seconds": cpu,
        "documents_per_cpu_second": len(documents) / cpu,
        "peak_rss_mb": processmemory()["peak_rss_mib"],
        "baseline_rss_mb": baseline,
        "stored_mb": stored / 2**20,
        "config": configsummary(config),
        "loadavg": os.getloadavg(),
    }


def searcher(args, side, mode):
    """
    Loads one side's index for one search mode.

    Args:
        args: parsed arguments
        side: ours or txtai
        mode: muvera (FDE search only) or rerank (100 candidates re-ranked with MaxSim)

    Returns:
        (function of a text or a list of texts returning results, index config summary)
    """

    # pylint: disable=C0415
    from txtai import Embeddings

    embeddings = Embeddings()
    if side == "ours":
        # Same saved index, re-ranked candidates set at load
        config = json.loads((Path(args.path) / "config.json").read_text(encoding="utf-8"))
        candidates = CANDIDATES if mode == "rerank" else 0
        embeddings.load(args.path, config={"muvera": {**config["muvera"], "candidates": candidates, "progress": False}})

        def search(texts):
            return embeddings.batchsearch(texts, LIMIT) if isinstance(texts, list) else embeddings.search(texts, LIMIT)

        return search, configsummary(embeddings.config)

    embeddings.load(args.path)
    if mode == "muvera":

        def search(texts):
            return embeddings.batchsearch(texts, LIMIT) if isinstance(texts, list) else embeddings.search(texts, LIMIT)

        return search, configsummary(embeddings.config)

    # txtai's Reranker: searches limit * factor candidates, scores their texts with Similarity(lateencode=True)
    from txtai.pipeline import Reranker, Similarity

    reranker = Reranker(embeddings, Similarity(args.model, lateencode=True))

    def rerank(texts):
        return reranker(texts, limit=LIMIT, factor=CANDIDATES // LIMIT)

    return rerank, configsummary(embeddings.config)


def configsummary(config):
    """
    Summarises an index config: vectors method, ANN backend and its components, dimensions and muvera block.

    Args:
        config: embeddings config

    Returns:
        dict
    """

    components = ((config.get("build") or {}).get("settings") or {}).get("components")
    keys = ("method", "backend", "dimensions", "muvera", "path")
    return {**{key: config.get(key) for key in keys if config.get(key) is not None}, "components": components}


def ratios(results):
    """
    Ours vs txtai: speedups (txtai time / ours), throughput ratio (ours / txtai) and memory ratios (ours / txtai).

    Args:
        results: benchmark results

    Returns:
        dict
    """

    index, values = results["index"], {}
    values["index_documents_per_second"] = index["ours"]["documents_per_second"] / index["txtai"]["documents_per_second"]
    values["index_documents_per_cpu_second"] = index["ours"]["documents_per_cpu_second"] / index["txtai"]["documents_per_cpu_second"]
    values["index_peak_rss"] = index["ours"]["peak_rss_mb"] / index["txtai"]["peak_rss_mb"]
    values["stored_bytes"] = index["ours"]["stored_mb"] / index["txtai"]["stored_mb"]

    for mode, sides in results["search"].items():
        ours, txtai = sides["ours"], sides["txtai"]
        values[f"{mode}_single_p50_speedup"] = txtai["single"]["p50_ms"] / ours["single"]["p50_ms"]
        values[f"{mode}_single_mean_speedup"] = txtai["single"]["mean_ms"] / ours["single"]["mean_ms"]
        values[f"{mode}_single_cpu_speedup"] = txtai["single"]["cpu_mean_ms"] / ours["single"]["cpu_mean_ms"]
        if ours["batch"]["per_query_ms"]:
            values[f"{mode}_batch_speedup"] = txtai["batch"]["per_query_ms"] / ours["batch"]["per_query_ms"]
        values[f"{mode}_peak_rss"] = ours["peak_rss_mb"] / txtai["peak_rss_mb"]

    return values


def regeneratecommand(args):
    """
    Command line that regenerates these results.

    Args:
        args: parsed arguments

    Returns:
        string
    """

    text = "python benchmarks/bench_e2e.py"
    for name in ("documents", "queries", "threads"):
        if getattr(args, name) is not None:
            text += f" --{name} {getattr(args, name)}"
    for name in ("rerank_queries", "rerank_batches", "batch"):
        if getattr(args, name) != DEFAULTS[name]:
            text += f" --{name.replace('_', '-')} {getattr(args, name)}"

    return text + " --write"


def markdownreport(results, regenerate):
    """
    Formats results as the markdown section of RESULTS.md.

    Args:
        results: benchmark results
        regenerate: command line

    Returns:
        markdown string
    """

    environment, index, search, ratio = results["environment"], results["index"], results["search"], results["ratios"]
    size = search["muvera"]["ours"]["batch"]["size"]
    ours, txtai = index["ours"], index["txtai"]
    lines = [
        HEADING,
        "",
        f"Regenerate: `{regenerate}` (model and data default to ../shared; each measurement in its own subprocess, "
        "peak RSS = ru_maxrss of that process).",
        "",
        f"{Path(results['data']).name}, {results['documents']:,} documents, {Path(results['model']).name}; txtai {environment['txtai']}, "
        f"torch {environment['torch']} with {environment['threads']} thread(s) per process, {environment['cpus']} CPUs, no GPU. "
        f"The machine was shared with other work (1-minute load average at the end of indexing: ours {ours['loadavg'][0]:.1f}, "
        f"txtai {txtai['loadavg'][0]:.1f}), so compare the two sides of one run; CPU-second figures are less sensitive to load.",
        "",
        "Both sides index the same texts at the same time, each in its own process, so outside load hits both alike; "
        "the side that finishes first leaves the machine to the other, which favours the slower side. "
        "With `--threads 1` each process runs torch on one thread, so the two indexing processes fit the 2 cores; on this shared "
        "machine two torch threads per process oversubscribed the cores and slowed small operations by up to 100x "
        "(faiss, txtai's backend, keeps its own OpenMP threads).",
        "",
        f"txtai side: `Embeddings(path=MODEL, content=True)`: {txtai['config'].get('method') or 'auto'} vectors, "
        f"{txtai['config'].get('backend')} backend ({txtai['config'].get('components')}), {txtai['config'].get('dimensions'):,} FDE dimensions. "
        f"Ours: `txtai_muvera.LateVectors` + `txtai_muvera.Muvera`, defaults (exact FDE search, float16 token store), "
        f"{ours['config'].get('dimensions'):,} FDE dimensions.",
        "",
        "| Indexing from texts | ours | txtai | ours / txtai |",
        "|---|---|---|---|",
        f"| documents / s | {ours['documents_per_second']:.1f} | {txtai['documents_per_second']:.1f} | {ratio['index_documents_per_second']:.2f}x |",
        f"| documents / CPU second | {ours['documents_per_cpu_second']:.1f} | {txtai['documents_per_cpu_second']:.1f} | "
        f"{ratio['index_documents_per_cpu_second']:.2f}x |",
        f"| peak RSS MB | {ours['peak_rss_mb']:,.0f} | {txtai['peak_rss_mb']:,.0f} | {ratio['index_peak_rss']:.2f}x |",
        f"| stored index MB | {ours['stored_mb']:,.1f} | {txtai['stored_mb']:,.1f} | {ratio['stored_bytes']:.2f}x |",
        "",
        f"| Search, top 10 | re-rank {CANDIDATES}: ours | txtai Reranker | speedup | MUVERA only: ours | txtai | speedup |",
        "|---|---|---|---|---|---|---|",
    ]

    # One row per figure, both modes side by side; speedup = txtai time / ours
    def row(label, figure, digits=1, speedup=True):
        cells = []
        for mode in ("rerank", "muvera"):
            a, b = figure(search[mode]["ours"]), figure(search[mode]["txtai"])
            ratio = f"{b / a:.1f}x" if speedup and a and b else ""
            cells.extend([f"{a:,.{digits}f}" if a is not None else "n/a", f"{b:,.{digits}f}" if b is not None else "n/a", ratio])
        return f"| {label} | " + " | ".join(cells) + " |"

    queries = {mode: f"{search[mode]['ours']['queries']} single, {search[mode]['ours']['batch']['batches']} x {size} batched" for mode in search}
    lines.extend(
        [
            f"| queries timed | {queries['rerank']} | | | {queries['muvera']} | | |",
            row("single query p50 ms", lambda x: x["single"]["p50_ms"]),
            row("single query p95 ms", lambda x: x["single"]["p95_ms"]),
            row("single query mean ms", lambda x: x["single"]["mean_ms"]),
            row("single query CPU ms (mean)", lambda x: x["single"]["cpu_mean_ms"]),
            row(f"batch of {size}, ms per query", lambda x: x["batch"]["per_query_ms"]),
            row("peak RSS MB (process)", lambda x: x["peak_rss_mb"], 0, False),
            row("nDCG@10 (timed queries)", lambda x: x["ndcg@10"], 4, False),
            f"| top-10 overlap, ours vs txtai | {search['rerank']['top10_overlap']:.2f} | | | {search['muvera']['top10_overlap']:.2f} | | |",
            "",
            f"Peak RSS ours / txtai: indexing {ratio['index_peak_rss']:.2f}x, re-rank search {ratio['rerank_peak_rss']:.2f}x, "
            f"MUVERA-only search {ratio['muvera_peak_rss']:.2f}x.",
        ]
    )

    lines.extend(
        [
            "",
            f"Single queries: `Embeddings.search(query, 10)` / `Reranker(query, limit=10, factor=10)`; batches: `batchsearch({size} queries, 10)` / "
            f"`Reranker({size} queries, ...)`, full batches only. The two sides' search processes take turns query by query. "
            "nDCG@10 is over the timed queries only. Search peak RSS includes the loaded index and the model. "
            f"The two MUVERA candidate searches differ by default: txtai normalises its FDE rows and searches them with faiss "
            f"({txtai['config'].get('components')}, approximate), ours scans its FDE rows exactly (grouped orthogonal projections, unit "
            "document centroids, fill), hence the low top-10 overlap.",
        ]
    )

    return "\n".join(lines)


if __name__ == "__main__":
    main()
