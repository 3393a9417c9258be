"""
Scale benchmark module

Builds synthetic late-interaction collections (random unit token vectors of dimension 128, 16 to 48 tokens per document,
32 on average, stored float16) through the txtai_muvera.Muvera ANN and its TokenStore directly, and measures index time,
peak resident memory, disk bytes and query latency for exact and delegated (faiss IVF) FDE candidate search.

The txtai pipeline (Embeddings.index) is bypassed on purpose: it adds a SQLite insert per document and holds every token
vector of one index() call in memory before the ANN sees them. Here documents are appended in chunks and the index is
saved and re-loaded (memory mapped) every --flush documents, which bounds the in-memory part.

Each phase runs in its own process so that its peak RSS is its own:

    python benchmarks/bench_scale.py --sizes 10000 100000 1000000 --folder /work/scale --output benchmarks/scale.json
"""

import argparse
import json
import math
import os
import shutil
import time

import numpy as np
import torch

from common import runphase
from txtai_muvera.cli.environment import folderbytes, processmemory

# Token vector width, token counts per document and per query
DIMENSION, SHORTEST, LONGEST, QUERYTOKENS = 128, 16, 48, 32

# FDE parameters: 4 x 2^4 x 16 = 1024 dimensions. The default (20 x 2^5 x 16 = 10240) costs about 8x more to encode
# and 41 GB of fp32 FDE rows at 1M documents.
ENCODING = {"repetitions": 4, "hashes": 4, "projection": 16}

# Documents generated and encoded per chunk, and per generator seed
CHUNK, BLOCK = 50000, 1000


def annconfig(search="exact", candidates=100):
    """
    Builds a Muvera ANN config.

    Args:
        search: "exact" or a delegated search config
        candidates: FDE candidates re-ranked with exact MaxSim

    Returns:
        config dict
    """

    return {"backend": "txtai_muvera.Muvera", "muvera": {**ENCODING, "dtype": "float16", "candidates": candidates, "search": search}}


def fdeencoder():
    """
    Creates the FDE encoder used for documents and queries.

    Returns:
        FDE
    """

    from txtai_muvera import plugins

    return plugins.lookup("encodings", "muvera")(dimension=DIMENSION, **ENCODING)


def randomdocuments(chunk, blocks=None):
    """
    Generates one chunk of synthetic documents, the same for every run. Each block of BLOCK documents has its own seed,
    so a prefix of a chunk is generated without the rest.

    Args:
        chunk: chunk number
        blocks: number of blocks to generate, all when None

    Returns:
        (flat float32 unit token vectors, int64 offsets)
    """

    flats, lengths = [], []
    for block in range(CHUNK // BLOCK if blocks is None else blocks):
        generator = torch.Generator().manual_seed(chunk * 100003 + block)
        sizes = torch.randint(SHORTEST, LONGEST + 1, (BLOCK,), generator=generator)
        flats.append(torch.nn.functional.normalize(torch.randn(int(sizes.sum()), DIMENSION, generator=generator), dim=1).numpy())
        lengths.append(sizes.numpy())

    offsets = np.concatenate(([0], np.cumsum(np.concatenate(lengths)))).astype(np.int64)
    return np.concatenate(flats), offsets


def randomqueries(count):
    """
    Generates query token matrices: noisy copies of token vectors of indexed documents 0, 29, 58, ... so that each
    query has one source document that matches it best.

    Args:
        count: number of queries

    Returns:
        (list of float32 (QUERYTOKENS x DIMENSION) matrices, list of source document ids)
    """

    flat, offsets = randomdocuments(0, blocks=1)
    generator = np.random.default_rng(1234)
    results, sources = [], []
    for x in range(count):
        source = (x * 29) % BLOCK
        document = flat[offsets[source] : offsets[source + 1]]
        noise = (0.3 / np.sqrt(DIMENSION)) * generator.standard_normal((QUERYTOKENS, DIMENSION)).astype(np.float32)
        rows = document[generator.integers(0, len(document), QUERYTOKENS)] + noise
        results.append((rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32))
        sources.append(source)

    return results, sources


def buildphase(size, folder, flush):
    """
    Builds an exact FDE search index of size documents.

    Args:
        size: number of documents
        folder: output index folder
        flush: save and re-load every flush documents

    Returns:
        metrics
    """

    from txtai_muvera.ann import Muvera
    from txtai_muvera.array import LateArray

    fde = fdeencoder()
    ann, timings = None, {"generate_s": 0.0, "encode_s": 0.0, "append_s": 0.0, "save_s": 0.0}
    start, unsaved = time.time(), 0
    for chunk in range(math.ceil(size / CHUNK)):
        # Synthetic token vectors
        tick = time.time()
        count = min(CHUNK, size - chunk * CHUNK)
        flat, offsets = randomdocuments(chunk, blocks=math.ceil(count / BLOCK))
        flat, offsets = flat[: offsets[count]], offsets[: count + 1]
        timings["generate_s"] += time.time() - tick

        # FDE rows
        tick = time.time()
        rows = fde(flat, offsets, "data")
        timings["encode_s"] += time.time() - tick

        # Index or append
        tick = time.time()
        batch = LateArray(rows, tokens=flat, offsets=offsets, fingerprint="synthetic-dim128", encoding=fde.config())
        if ann is None:
            ann = Muvera(annconfig())
            ann.index(batch)
        else:
            ann.append(batch)
        timings["append_s"] += time.time() - tick
        unsaved += count

        # Save and re-load memory mapped, which drops the in-memory tail
        if unsaved >= flush or (chunk + 1) * CHUNK >= size:
            tick = time.time()
            ann.save(folder)
            ann.close()
            ann = Muvera(annconfig())
            ann.load(folder)
            timings["save_s"] += time.time() - tick
            unsaved = 0

    timings = {k: round(v, 1) for k, v in timings.items()}
    return {"phase": "build", "size": size, "index_s": round(time.time() - start, 1), **timings, "disk_bytes": folderbytes(folder), **processmemory()}


def delegatephase(size, source, folder):
    """
    Builds a delegated faiss IVF FDE search index from the FDE rows and token store of an exact index.

    Args:
        size: number of documents
        source: exact index folder
        folder: output index folder

    Returns:
        metrics
    """

    from txtai_muvera.ann import Muvera
    from txtai_muvera.array import LateArray

    exact = Muvera(annconfig())
    exact.load(source)

    # IVF with sqrt(N) cells, trained on about 40 rows per cell, probing 1/16 of the cells
    search = ivfsearch(size)
    ann = Muvera(annconfig(search))

    tick = time.time()
    ann.index(LateArray(exact.fdes, store=exact.store, fingerprint=exact.fingerprint, encoding=exact.encoding))
    elapsed = time.time() - tick

    tick = time.time()
    ann.save(folder)
    saved = time.time() - tick

    metrics = {"phase": "delegate", "size": size, "index_s": round(elapsed, 1), "save_s": round(saved, 1), "disk_bytes": folderbytes(folder)}
    return {**metrics, "search": search, **processmemory()}


def ivfsearch(size):
    """
    Builds the faiss IVF delegate settings for a collection size.

    Args:
        size: number of documents

    Returns:
        muvera search config
    """

    cells = max(16, round(math.sqrt(size)))
    settings = {"components": f"IVF{cells},Flat", "sample": min(1.0, 40 * cells / size), "nprobe": max(4, cells // 16), "mmap": True}
    return {"backend": "faiss", "faiss": settings}


def searchphase(size, folder, search, count, reference=None):
    """
    Loads an index memory mapped and times single-query searches (top 10 of 100 MaxSim re-ranked candidates).

    Args:
        size: number of documents
        folder: index folder
        search: "exact" or the delegated search config
        count: number of timed queries
        reference: optional JSON file with exact results to compute recall against, written when search is exact

    Returns:
        metrics
    """

    from txtai_muvera.ann import Muvera
    from txtai_muvera.array import LateArray
    from txtai_muvera.core.ragged import pack

    fde = fdeencoder()
    ann = Muvera(annconfig(search))

    tick = time.time()
    ann.load(folder)
    loaded = {"load_s": round(time.time() - tick, 2), **{f"loaded_{k}": v for k, v in processmemory().items() if k != "peak_rss_mib"}}

    # Encoded queries, two warm-up searches
    encoded, (matrices, sources) = [], randomqueries(count + 2)
    for matrix in matrices:
        tokens, offsets = pack([matrix])
        encoded.append(LateArray(fde(tokens, offsets, "query"), tokens=tokens, offsets=offsets, fingerprint=ann.fingerprint, encoding=ann.encoding))

    results, latencies, candidates, hits = [], [], [], []
    for x, batch in enumerate(encoded):
        tick = time.time()
        result = ann.search(batch, 10)[0]
        if x >= 2:
            latencies.append((time.time() - tick) * 1000)
            results.append([uid for uid, _ in result])
            hits.append(bool(result) and result[0][0] == sources[x])

            # FDE candidate search alone (the rest of a search is the MaxSim re-rank of 100 candidates)
            tick = time.time()
            ann.candidates(np.asarray(batch, dtype=np.float32), 100)
            candidates.append((time.time() - tick) * 1000)

    metrics = {"phase": "query", "size": size, "search": "exact" if search == "exact" else "ivf", **loaded}
    metrics.update({"p50_ms": round(float(np.percentile(latencies, 50)), 1), "p95_ms": round(float(np.percentile(latencies, 95)), 1)})
    metrics["candidates_p50_ms"] = round(float(np.percentile(candidates, 50)), 1)

    # Share of queries whose source document ranks first
    metrics["source_at_1"] = round(float(np.mean(hits)), 3)

    # Recall of the delegated search's final top 10 against the exact search's
    if reference and search == "exact":
        with open(reference, "w", encoding="utf-8") as output:
            json.dump(results, output)
    elif reference and os.path.exists(reference):
        with open(reference, encoding="utf-8") as source:
            exact = json.load(source)
        metrics["recall_at_10"] = round(float(np.mean([len(set(a) & set(b)) / max(1, len(b)) for a, b in zip(results, exact)])), 3)

    return {**metrics, **processmemory()}


def phaseinprocess(arguments):
    """
    Runs one phase in this process and prints its metrics as JSON.

    Args:
        arguments: command line arguments
    """

    size, folder = arguments.size, arguments.folder
    exact, delegated = os.path.join(folder, str(size), "exact"), os.path.join(folder, str(size), "ivf")
    reference = os.path.join(folder, str(size), "exact.json")

    if arguments.phase == "build":
        result = buildphase(size, exact, arguments.flush)
    elif arguments.phase == "delegate":
        result = delegatephase(size, exact, delegated)
    elif arguments.phase == "query-exact":
        result = searchphase(size, exact, "exact", arguments.queries, reference)
    else:
        result = searchphase(size, delegated, ivfsearch(size), arguments.queries, reference)

    print(json.dumps(result), flush=True)


def main(arguments):
    """
    Runs every phase for every size, each in a child process, and writes the metrics.

    Args:
        arguments: command line arguments
    """

    results = []
    if arguments.output and os.path.exists(arguments.output):
        with open(arguments.output, encoding="utf-8") as source:
            results = [r for r in json.load(source) if r["size"] not in arguments.sizes]

    for size in arguments.sizes:
        shutil.rmtree(os.path.join(arguments.folder, str(size)), ignore_errors=True)
        for name in ("build", "query-exact", "delegate", "query-ivf"):
            options = ["--phase", name, "--size", str(size), "--folder", arguments.folder]
            result = runphase(__file__, options + ["--flush", str(arguments.flush), "--queries", str(arguments.queries)])
            print(json.dumps(result), flush=True)
            results.append(result)

            if arguments.output:
                with open(arguments.output, "w", encoding="utf-8") as target:
                    json.dump(results, target, indent=2)

        # Indexes are large: keep only what --keep asks for
        if not arguments.keep:
            shutil.rmtree(os.path.join(arguments.folder, str(size)), ignore_errors=True)


def markdowntables(path):
    """
    Prints the metrics of a JSON output file as markdown tables, with the growth exponent of each cost between sizes
    (cost ~ N^k: k = 1 is linear).

    Args:
        path: JSON file written by main
    """

    with open(path, encoding="utf-8") as source:
        results = json.load(source)

    def select(phase, search=None):
        return sorted((r for r in results if r["phase"] == phase and (search is None or r["search"] == search)), key=lambda r: r["size"])

    def growth(rows, key):
        steps = [
            f"{math.log(b[key] / a[key]) / math.log(b['size'] / a['size']):.2f} ({a['size']:,} to {b['size']:,})"
            for a, b in zip(rows, rows[1:])
            if a[key] > 0 and b[key] > 0
        ]
        return ", ".join(steps)

    print("| documents | index s | generate s | FDE encode s | append s | save + reload s | peak RSS GiB | disk GB |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in select("build"):
        values = [r["index_s"], r["generate_s"], r["encode_s"], r["append_s"], r["save_s"]]
        values += [f"{r['peak_rss_mib'] / 1024:.2f}", f"{r['disk_bytes'] / 1e9:.2f}"]
        print(f"| {r['size']:,} | " + " | ".join(str(v) for v in values) + " |")

    print()
    print("| documents | delegated index s | save s | peak RSS GiB | disk GB |")
    print("|---:|---:|---:|---:|---:|")
    for r in select("delegate"):
        print(f"| {r['size']:,} | {r['index_s']} | {r['save_s']} | {r['peak_rss_mib'] / 1024:.2f} | {r['disk_bytes'] / 1e9:.2f} |")

    print()
    print("| documents | FDE search | load s | RSS after load GiB | peak RSS GiB | p50 ms | p95 ms | candidates p50 ms | source at 1 | recall@10 |")
    print("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for search in ("exact", "ivf"):
        for r in select("query", search):
            values = [r["load_s"], f"{r['loaded_rss_mib'] / 1024:.2f}", f"{r['peak_rss_mib'] / 1024:.2f}", r["p50_ms"], r["p95_ms"]]
            values += [r.get("candidates_p50_ms", ""), r["source_at_1"], r.get("recall_at_10", "reference")]
            print(f"| {r['size']:,} | {search} | " + " | ".join(str(v) for v in values) + " |")

    # Growth exponents between consecutive sizes
    print()
    print(f"- index time: {growth(select('build'), 'index_s')}")
    print(f"- FDE encode time: {growth(select('build'), 'encode_s')}")
    print(f"- disk bytes: {growth(select('build'), 'disk_bytes')}")
    print(f"- build peak RSS: {growth(select('build'), 'peak_rss_mib')}")
    print(f"- delegated index time: {growth(select('delegate'), 'index_s')}")
    for search in ("exact", "ivf"):
        print(f"- {search} query p50: {growth(select('query', search), 'p50_ms')}")
        print(f"- {search} FDE candidates p50: {growth([r for r in select('query', search) if 'candidates_p50_ms' in r], 'candidates_p50_ms')}")
        print(f"- {search} query peak RSS: {growth(select('query', search), 'peak_rss_mib')}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="txtai-muvera scale benchmark")
    parser.add_argument("--sizes", type=int, nargs="+", default=[10000, 100000, 1000000])
    parser.add_argument("--folder", default="/tmp/txtai-muvera-scale")
    parser.add_argument("--output", default=None, help="JSON file for the metrics")
    parser.add_argument("--flush", type=int, default=200000, help="save and re-load every FLUSH documents while building")
    parser.add_argument("--queries", type=int, default=30)
    parser.add_argument("--keep", action="store_true", help="keep the index folders")
    parser.add_argument("--markdown", action="store_true", help="print the --output metrics as markdown tables and exit")
    parser.add_argument("--phase", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--size", type=int, default=None, help=argparse.SUPPRESS)

    args = parser.parse_args()
    if args.markdown:
        markdowntables(args.output)
    elif args.phase:
        phaseinprocess(args)
    else:
        main(args)
