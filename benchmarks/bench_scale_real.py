"""
Real-vector scale benchmark module

Measures candidate search on real late-interaction token vectors: BEIR SciFact encoded with minilm-colbert, and, for
sizes above SciFact's 5,183 documents, a collection grown from it. Each added document mixes the token vectors of 2 or 3
random SciFact documents token by token (its length is its first source's, its tokens are drawn without replacement from
the sources' tokens), so token statistics stay real while the collection has no exact duplicates. Queries are real
SciFact test queries. Ground truth is the exact MaxSim top 10 over the whole collection.

For each candidate encoding (muvera; lemur when registered) and candidate search (exact over float16 or float32 rows,
txtai's default faiss, the presets of txtai_muvera.delegate, sweeps of their search settings), the index is built through
the txtai_muvera.Muvera ANN (delegated searches through txtai's ANN backends) over one float16 token store, and each
query runs alone (100 candidates re-ranked with exact MaxSim, top 10): recall of the exact top 10, p50 and CPU ms per
query, candidate step CPU ms, build CPU seconds and candidate bytes per document.

    python benchmarks/bench_scale_real.py --cache scifact-tokens.safetensors --documents 0 --queries 300 \\
        --output benchmarks/scale-real-scifact.json
    python benchmarks/bench_scale_real.py --cache scifact-tokens.safetensors --documents 100000 --queries 100 \\
        --searches exact faiss-hnsw faiss-ivfpq --output benchmarks/scale-real-100k.json

--cache reads the encoded vectors from a safetensors file (keys documents, doffsets, queries, qoffsets), encoding and
writing it first when it does not exist.
"""

import argparse
import json
import os
import platform
import shutil
import sys
import time


import numpy as np
import torch

from common import MODEL, SCIFACT, judgedvectors
from txtai_muvera.cli.environment import folderbytes
from txtai_muvera.core.scan import Int8Rows

# Candidates re-ranked with exact MaxSim, results kept
CANDIDATES, TOP = 100, 10

# Documents per ground-truth and encoding chunk
CHUNK = 4096

# Search settings swept after a delegated index is built (query-time settings only, no rebuild)
SWEEPS = {
    "faiss": [{"nprobe": x} for x in (8, 16, 32, 64)],
    "faiss-ivf": [{"probefraction": x} for x in (0.5, 0.75, 0.9)],
    "faiss-hnsw": [{"efsearch": x} for x in (128, 256, 512, 1024)],
    "faiss-ivfpq": [{"probefraction": x, "kfactor": y} for x, y in ((0.25, 4), (0.5, 16), (1.0, 4), (1.0, 16), (1.0, 32), (1.0, 64))],
    "hnswlib": [{"efsearch": x} for x in (100, 256, 512)],
}


def vectors(args):
    """
    Reads (or encodes and writes) the SciFact token vectors of every document and test query.

    Args:
        args: command line arguments

    Returns:
        dict with documents, doffsets, queries, qoffsets and query ids
    """

    _, documents, doffsets, qids, queries, qoffsets, _ = judgedvectors(args.model, args.data, args.cache)
    return {"documents": documents, "doffsets": doffsets, "queries": queries, "qoffsets": qoffsets, "query_ids": qids}


def collection(data, size, folder, seed=0):
    """
    Builds the float16 token store of the collection: SciFact, then documents mixed token by token from it.

    Args:
        data: vectors dict
        size: total documents, 0 for SciFact alone
        folder: output folder
        seed: random seed

    Returns:
        memory-mapped TokenStore
    """

    from txtai_muvera.core.store import TokenStore

    path = os.path.join(folder, f"tokens-{size}-{seed}")
    if os.path.isdir(path):
        return TokenStore.load(path)

    flat, offsets = data["documents"], data["doffsets"]
    store = TokenStore(flat.shape[1], "float16")
    store.append(flat, offsets)

    generator = np.random.default_rng(seed)
    count, lengths = len(offsets) - 1, np.diff(offsets)
    for start in range(count, size, CHUNK):
        rows, sizes = [], []
        for _ in range(min(CHUNK, size - start)):
            sources = generator.integers(0, count, generator.integers(2, 4))
            pool = np.concatenate([np.arange(offsets[s], offsets[s + 1]) for s in sources])
            length = min(int(lengths[sources[0]]), len(pool))
            rows.append(flat[np.sort(generator.choice(pool, length, replace=False))])
            sizes.append(length)
        store.append(np.concatenate(rows), np.concatenate(([0], np.cumsum(sizes))).astype(np.int64))
        print(f"collection: {start + len(sizes):,} documents", flush=True)

    store.save(path)
    return TokenStore.load(path)


def groundtruth(store, data, folder, key):
    """
    Exact MaxSim top 10 of every query over the whole collection, cached in the folder.

    Args:
        store: token store
        data: vectors dict
        folder: output folder
        key: cache file name part

    Returns:
        (queries x TOP) int64 array of document ids, CPU seconds spent
    """

    from txtai_muvera.core.maxsim import maxsim

    path = os.path.join(folder, f"truth-{key}.npy")
    if os.path.exists(path):
        return np.load(path), None

    start, queries = time.process_time(), len(data["qoffsets"]) - 1
    scores, ids = torch.full((queries, 0), -torch.inf), torch.zeros((queries, 0), dtype=torch.int64)
    for first in range(0, len(store), CHUNK):
        batch = np.arange(first, min(first + CHUNK, len(store)))
        flat, offsets, _ = store.gather(batch)
        chunk = maxsim(data["queries"], data["qoffsets"], flat, offsets)
        scores = torch.cat((scores, chunk), dim=1)
        ids = torch.cat((ids, torch.from_numpy(batch).expand(queries, -1)), dim=1)
        top = torch.topk(scores, min(TOP, scores.shape[1]))
        scores, ids = top.values, torch.gather(ids, 1, top.indices)

    truth = ids.numpy()
    np.save(path, truth)
    return truth, time.process_time() - start


def encode(encoding, store, folder, key):
    """
    Encodes every document of the store into float32 candidate rows, cached in the folder.

    Args:
        encoding: candidate encoding
        store: token store
        folder: output folder
        key: cache file name part

    Returns:
        (memory-mapped float32 rows, CPU seconds spent or None when cached)
    """

    path = os.path.join(folder, f"rows-{key}.npy")
    if os.path.exists(path):
        return np.load(path, mmap_mode="r"), None

    start, rows = time.process_time(), None
    for first in range(0, len(store), CHUNK):
        flat, offsets, _ = store.gather(np.arange(first, min(first + CHUNK, len(store))))
        batch = encoding(np.asarray(flat, dtype=np.float32), offsets, "data")
        if rows is None:
            rows = np.lib.format.open_memmap(path + ".tmp", mode="w+", dtype=np.float32, shape=(len(store), batch.shape[1]))
        rows[first : first + len(batch)] = batch

    rows.flush()
    del rows
    os.replace(path + ".tmp", path)
    return np.load(path, mmap_mode="r"), time.process_time() - start


def measure(ann, qrows, data, truth):
    """
    Runs every query alone through the ANN: re-ranked top 10 recall against the exact top 10, latency and the candidate step.

    Args:
        ann: txtai_muvera.Muvera
        qrows: float32 query rows
        data: vectors dict
        truth: exact top 10 ids

    Returns:
        dict of figures
    """

    from txtai_muvera.array import LateArray

    qoffsets = data["qoffsets"]
    walls, cpus, steps, recalls = [], [], [], []
    for x in range(len(qrows)):
        tokens = data["queries"][qoffsets[x] : qoffsets[x + 1]]
        query = LateArray(qrows[x : x + 1], tokens=tokens, offsets=np.array([0, len(tokens)]))

        wall, cpu = time.perf_counter(), time.process_time()
        results = ann.search(query, TOP)[0]
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)

        # Candidate step alone, CPU time
        cpu = time.process_time()
        ann.candidates(qrows[x : x + 1], CANDIDATES)
        steps.append(time.process_time() - cpu)

        recalls.append(len({uid for uid, _ in results} & set(truth[x].tolist())) / TOP)

    return {
        "recall@10": round(float(np.mean(recalls)), 4),
        "p50_ms": round(float(np.percentile(walls, 50)) * 1000, 2),
        "p95_ms": round(float(np.percentile(walls, 95)) * 1000, 2),
        "cpu_ms": round(float(np.mean(cpus)) * 1000, 2),
        "candidates_cpu_ms": round(float(np.mean(steps)) * 1000, 2),
    }


def searchconfig(search):
    """
    Parses a --searches entry: exact, exact-float32, exact-int8, a txtai backend or preset name, or a JSON dict.

    Args:
        search: command line value

    Returns:
        (label, muvera settings)
    """

    if search in ("exact-float32", "exact-int8"):
        return search, {"search": "exact", "encodingdtype": search.split("-")[1]}
    if search.startswith("{"):
        return search, {"search": json.loads(search)}

    return search, {"search": search}


def candidatebytes(ann, folder):
    """
    Bytes of the saved candidate part of an index: float16/float32/int8 rows (with their scales) or the delegated index files.

    Args:
        ann: txtai_muvera.Muvera
        folder: scratch folder

    Returns:
        bytes
    """

    if isinstance(ann.fdes, Int8Rows):
        return int(ann.fdes.values.nbytes + ann.fdes.scales.nbytes)
    if not ann.delegate:
        return int(np.asarray(ann.fdes).nbytes)

    path = os.path.join(folder, "delegate")
    shutil.rmtree(path, ignore_errors=True)
    os.makedirs(path)
    ann.delegate.save(os.path.join(path, "fde"))
    size = folderbytes(path)
    shutil.rmtree(path)
    return size


def encodings(names, store, data, args):
    """
    Builds each candidate encoding, training it on the collection when it learns.

    Args:
        names: registered encoding names
        store: token store
        data: vectors dict
        args: command line arguments (model and data, for learn queries)

    Returns:
        list of (name, encoding, training CPU seconds)
    """

    from txtai_muvera import plugins
    from txtai_muvera.cli.beir import readbeir
    from txtai_muvera.core.encoder import LateEncoder

    built = []
    for name in names:
        factory = plugins.lookup("encodings", name)
        encoding = factory(dimension=data["documents"].shape[1])

        # A learned encoding trains on the collection's stored token vectors, with learn queries from spans of SciFact's
        # texts (the mixed documents have none), as an index would
        seconds = None
        if hasattr(encoding, "fit"):
            start = time.process_time()
            if hasattr(encoding, "learnfrom"):
                encoding.learnfrom(readbeir(args.data, "test")[1], lambda queries: LateEncoder(args.model, gpu=False).encode(queries, "query"))
            flat, offsets, _ = store.gather(range(len(store)))
            encoding.fit(flat, offsets, progress=True)
            seconds = time.process_time() - start

        built.append((name, encoding, seconds))

    return built


def run(args):
    """
    Runs the benchmark.

    Args:
        args: command line arguments

    Returns:
        results dict
    """

    import faiss

    from txtai_muvera.ann import Muvera
    from txtai_muvera.array import LateArray
    from txtai_muvera.delegate import tune

    # Collection, ground truth, encoding and index builds on --buildthreads, queries on --threads
    def threads(count):
        torch.set_num_threads(count)
        faiss.omp_set_num_threads(count)

    threads(args.buildthreads)
    os.makedirs(args.folder, exist_ok=True)

    data = vectors(args)
    if args.queries:
        keep = min(args.queries, len(data["qoffsets"]) - 1)
        data["queries"] = data["queries"][: data["qoffsets"][keep]]
        data["qoffsets"], data["query_ids"] = data["qoffsets"][: keep + 1], data["query_ids"][:keep]

    store = collection(data, args.documents, args.folder, args.seed)
    documents, key = len(store), f"{len(store)}-{args.seed}-{len(data['qoffsets']) - 1}"
    print(f"{documents:,} documents, {store.nbytes / documents:,.0f} token bytes per document", flush=True)
    truth, truthseconds = groundtruth(store, data, args.folder, key)

    results = {
        "documents": documents,
        "queries": len(data["qoffsets"]) - 1,
        "tokens": int(store.offsets[-1]),
        "token_bytes_per_document": round(store.nbytes / documents),
        "groundtruth_cpu_s": None if truthseconds is None else round(truthseconds, 1),
        "threads": args.threads,
        "loadavg": [round(x, 2) for x in os.getloadavg()],
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, faiss {faiss.__version__}",
        "rows": [],
    }

    for name, encoding, training in encodings(args.encodings, store, data, args):
        fdes, seconds = encode(encoding, store, args.folder, f"{name}-{documents}-{args.seed}")
        qrows = np.asarray(encoding(data["queries"], data["qoffsets"], "query"), dtype=np.float32)
        print(f"{name}: {fdes.shape[1]} dimensions, encoded in {seconds} CPU s", flush=True)

        for search in args.searches:
            label, settings = searchconfig(search)
            ann = Muvera({"backend": "txtai_muvera.Muvera", "muvera": {"encoding": name, "candidates": CANDIDATES, "progress": False, **settings}})

            threads(args.buildthreads)
            start = time.process_time()
            ann.index(LateArray(fdes, store=store, encoding=encoding.config()))
            build = time.process_time() - start
            size = candidatebytes(ann, args.folder)
            threads(args.threads)

            # Query-time settings of a delegated index, each measured on the same build
            values = SWEEPS.get(search, [None])
            for value in values if ann.delegate and args.sweep else [None]:
                if value is not None:
                    backend = ann.delegate.config["backend"]
                    ann.delegate.config.setdefault(backend, {}).update(value)
                    tune(ann.delegate)

                row = {
                    "encoding": name,
                    "dimensions": int(fdes.shape[1]),
                    "search": label,
                    "setting": ", ".join(f"{k}={v}" for k, v in value.items()) if value is not None else "",
                    "delegate": ann.delegate.config if ann.delegate else None,
                    "build_cpu_s": round(build, 1),
                    "training_cpu_s": None if training is None else round(training, 1),
                    "encode_cpu_s": None if seconds is None else round(seconds, 1),
                    "candidate_bytes_per_document": round(size / documents),
                    "index_bytes_per_document": round((size + store.nbytes) / documents),
                    **measure(ann, qrows, data, truth),
                }
                results["rows"].append(row)
                print(json.dumps({k: v for k, v in row.items() if k != "delegate"}), flush=True)

            ann.close()

    results["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
    return results


def main():
    """
    Parses arguments, runs, writes the JSON.
    """

    parser = argparse.ArgumentParser(description="Candidate search on real token vectors at scale")
    parser.add_argument("--model", default=str(MODEL), help="late-interaction model (encoding without --cache file)")
    parser.add_argument("--data", default=str(SCIFACT), help="BEIR SciFact folder")
    parser.add_argument("--cache", help="safetensors file of encoded vectors, written when missing")
    parser.add_argument("--documents", type=int, default=0, help="collection size, 0 for SciFact alone")
    parser.add_argument("--queries", type=int, default=300, help="test queries")
    parser.add_argument("--encodings", nargs="+", default=["muvera"], help="registered candidate encodings")
    parser.add_argument(
        "--searches",
        nargs="+",
        default=["exact", "exact-float32", "exact-int8", "faiss", "faiss-ivf", "faiss-hnsw", "faiss-ivfpq"],
        help="candidate searches",
    )
    parser.add_argument("--sweep", action="store_true", help="sweep each delegated search's query-time setting")
    parser.add_argument("--threads", type=int, default=1, help="torch and faiss threads of the queries")
    parser.add_argument("--buildthreads", type=int, default=2, help="threads of everything but the queries (CPU seconds sum all threads)")
    parser.add_argument("--seed", type=int, default=0, help="collection seed")
    parser.add_argument("--folder", default="/tmp/bench-scale-real", help="scratch folder (token store, rows, ground truth)")
    parser.add_argument("--output", help="JSON results file")
    args = parser.parse_args()

    results = run(args)
    results["command"] = " ".join(["python", "benchmarks/bench_scale_real.py", *sys.argv[1:]])
    if args.output:
        with open(args.output, "w", encoding="utf-8") as f:
            json.dump(results, f, indent=2)

    return 0


if __name__ == "__main__":
    sys.exit(main())
