"""
FDE encoding throughput: txtai-muvera's FDE against txtai's Muvera and fastembed's MUVERA postprocessor, in one process.

Run from the checkout with the peers venv (benchmarks/setup-peers.sh):

    .venv-peers/bin/python benchmarks/bench_fde.py [--rounds 3] [--vectors random|pylate|scifact] [--cache FILE] [--write]

Token sets follow SciFact: one matrix per corpus document (5,183), as many tokens as PyLate keeps for it with the shared
MiniLM ColBERT tokenizer (title + text, 180 token cap, punctuation skipped), 128 dimensions, unit length. --vectors random
(default) draws seeded random unit vectors; --vectors pylate encodes the corpus with PyLate and the shared model (slow, cached).
"""

import argparse
import datetime
import json
import os
import platform
import sys
import time

from importlib import metadata

import numpy as np
import torch

from results import write
from txtai_muvera.core.fde import FDE
from txtai_muvera.core.ragged import pack

# Shared data and model folder, beside the checkout by default
SHARED = os.environ.get("SHARED", os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared"))

# Results file
RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "RESULTS.md")

# Skipped document tokens (PyLate skiplist of the shared model)
PUNCTUATION = set("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~")


def lengths(count, seed=0):
    """
    Token counts of SciFact documents as PyLate keeps them: [CLS] [D] text [SEP] capped at 180, minus skipped punctuation.
    Falls back to seeded counts in 60..180 when the shared corpus or tokenizer is missing.

    Args:
        count: number of documents
        seed: random seed for the fallback

    Returns:
        (int numpy array, description)
    """

    corpus, path = os.path.join(SHARED, "data/beir/scifact/corpus.jsonl"), os.path.join(SHARED, "models/minilm-colbert/tokenizer.json")
    try:
        from tokenizers import Tokenizer

        tokenizer = Tokenizer.from_file(path)
        tokenizer.no_truncation()
        tokenizer.no_padding()
        with open(corpus, encoding="utf-8") as documents:
            texts = [f"{x['title']} {x['text']}" for x in map(json.loads, documents)][:count]

        counts = []
        for encoding in tokenizer.encode_batch(texts, add_special_tokens=False):
            tokens = encoding.tokens[:177]
            counts.append(len(tokens) + 3 - sum(token in PUNCTUATION for token in tokens))

        return np.array(counts), "SciFact document token counts (shared MiniLM ColBERT tokenizer, PyLate's 180 cap and skiplist)"
    except (ImportError, OSError):
        return np.random.default_rng(seed).integers(60, 181, size=count) + 3, "seeded token counts in 63..183"


def randomtokens(counts, dimension=128, seed=0):
    """
    Seeded random unit token matrices.

    Args:
        counts: tokens per matrix
        dimension: token width
        seed: random seed

    Returns:
        list of float32 matrices
    """

    generator = np.random.default_rng(seed)
    flat = generator.standard_normal((int(np.sum(counts)), dimension), dtype=np.float32)
    flat /= np.linalg.norm(flat, axis=1, keepdims=True)
    return np.split(flat, np.cumsum(counts)[:-1])


def pylatetokens(count, cache):
    """
    Encodes SciFact documents and test queries with PyLate and the shared MiniLM ColBERT, cached as safetensors.

    Args:
        count: number of documents
        cache: cache file

    Returns:
        (documents, queries) lists of float32 matrices
    """

    from safetensors.numpy import load_file, save_file

    if not os.path.exists(cache):
        from pylate import models

        with open(os.path.join(SHARED, "data/beir/scifact/corpus.jsonl"), encoding="utf-8") as documents:
            texts = [f"{x['title']} {x['text']}" for x in map(json.loads, documents)][:count]
        with open(os.path.join(SHARED, "data/beir/scifact/queries.jsonl"), encoding="utf-8") as queries:
            questions = [x["text"] for x in map(json.loads, queries)][:300]

        model = models.ColBERT(os.path.join(SHARED, "models/minilm-colbert"), device="cpu")
        documents = model.encode(texts, is_query=False, batch_size=32, show_progress_bar=True)
        queries = model.encode(questions, is_query=True, batch_size=32)

        os.makedirs(os.path.dirname(cache), exist_ok=True)
        tensors = {f"document.{i}": np.asarray(x, dtype=np.float32) for i, x in enumerate(documents)}
        tensors.update({f"query.{i}": np.asarray(x, dtype=np.float32) for i, x in enumerate(queries)})
        save_file(tensors, cache)

    tensors = load_file(cache)
    documents = [tensors[f"document.{i}"] for i in range(sum(key.startswith("document.") for key in tensors))][:count]
    queries = [tensors[f"query.{i}"] for i in range(sum(key.startswith("query.") for key in tensors))]
    return documents, queries


def scifacttokens(count, cache):
    """
    Encodes every SciFact document (title + text) and query with txtai_muvera's encoder and the shared MiniLM ColBERT,
    cached as flat safetensors (documents, doffsets, queries, qoffsets), the format bench_fde_quality.py writes.

    Args:
        count: number of documents
        cache: cache file

    Returns:
        (documents, queries) lists of float32 matrices
    """

    from safetensors.numpy import load_file, save_file

    if not os.path.exists(cache):
        from txtai_muvera.core.encoder import LateEncoder

        with open(os.path.join(SHARED, "data/beir/scifact/corpus.jsonl"), encoding="utf-8") as documents:
            texts = [f"{x.get('title') or ''} {x.get('text') or ''}" for x in map(json.loads, documents)]
        with open(os.path.join(SHARED, "data/beir/scifact/queries.jsonl"), encoding="utf-8") as queries:
            questions = [x["text"] for x in map(json.loads, queries)]

        encoder = LateEncoder(os.path.join(SHARED, "models/minilm-colbert"), gpu=False)
        flat, doffsets = pack(encoder.encode(texts, "data", progress=True))
        qflat, qoffsets = pack(encoder.encode(questions, "query", progress=True))
        os.makedirs(os.path.dirname(os.path.abspath(cache)), exist_ok=True)
        save_file({"documents": flat, "doffsets": doffsets, "queries": qflat, "qoffsets": qoffsets}, cache)

    arrays = load_file(cache)
    documents = np.split(arrays["documents"], arrays["doffsets"][1:-1])[:count]
    queries = np.split(arrays["queries"], arrays["qoffsets"][1:-1])
    return documents, queries


def options(parser, documents):
    """
    Adds the token set and timing options that tokensets() and measure() read.

    Args:
        parser: argparse.ArgumentParser
        documents: help text of --docs
    """

    parser.add_argument("--docs", type=int, default=5183, help=documents)
    parser.add_argument("--queries", type=int, default=300, help="queries (random vectors)")
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds, best and median reported")
    parser.add_argument("--vectors", choices=["random", "pylate", "scifact"], default="random", help="token vectors")
    parser.add_argument("--cache", default=None, help="vectors cache (pylate: per matrix keys, scifact: flat documents/doffsets/queries/qoffsets)")
    parser.add_argument("--threads", type=int, nargs="*", default=[], help="torch thread counts to run, torch's default when empty")


def tokensets(args):
    """
    Builds the document and query token sets.

    Args:
        args: command line arguments

    Returns:
        (documents, queries, description)
    """

    if args.vectors == "pylate":
        cache = args.cache or "/tmp/txtai-muvera-bench/scifact-pylate.safetensors"
        documents, queries = pylatetokens(args.docs, cache)
        return documents, queries, f"PyLate token vectors of SciFact (shared MiniLM ColBERT, untrained 128-d projection), cached at {cache}"
    if args.vectors == "scifact":
        cache = args.cache or "/tmp/txtai-muvera-bench/scifact-tokens.safetensors"
        documents, queries = scifacttokens(args.docs, cache)
        return (
            documents,
            queries,
            f"real SciFact token vectors (txtai_muvera's PyLate-exact encoder, shared minilm-colbert), {len(queries)} queries, cached at {cache}",
        )

    counts, description = lengths(args.docs)
    documents = randomtokens(counts, seed=0)
    queries = randomtokens(np.full(args.queries, 32), seed=1)
    return documents, queries, f"seeded random unit vectors, 128 dimensions, {description}; queries 32 tokens"


def peers():
    """
    Loads the peer encoders that are importable.

    Returns:
        dict of name: (data encoder, query encoder, note)
    """

    encoders = {}

    try:
        from txtai.models.pooling.muvera import Muvera as TxtaiMuvera

        txtai = TxtaiMuvera()
        encoders["txtai Muvera"] = (lambda x: txtai(x, "data"), lambda x: txtai(x, "query"), "defaults: 20 x 2^5 x 16, no fill")
    except ImportError as error:
        print(f"txtai unavailable: {error}", file=sys.stderr)

    try:
        try:
            from fastembed.postprocess import Muvera as FastembedMuvera
        except ImportError:
            from fastembed.postprocess.muvera import Muvera as FastembedMuvera

        fastembed = FastembedMuvera(dim=128)
        encoders["fastembed Muvera"] = (
            lambda x: np.stack([fastembed.process_document(m) for m in x]),
            lambda x: np.stack([fastembed.process_query(m) for m in x]),
            "defaults: 20 x 2^5 x 16, fill, one matrix at a time",
        )
    except ImportError as error:
        print(f"fastembed unavailable: {error}", file=sys.stderr)

    return encoders


def measure(functions, rounds):
    """
    Times functions interleaved round by round, so background load hits them alike. Records wall time and the process CPU
    time (all threads): on a shared machine the CPU time of a single threaded run barely moves with other load.

    Args:
        functions: dict of name: (callable, items processed)
        rounds: timed rounds after one warm up

    Returns:
        dict of name: (list of wall seconds, list of CPU seconds)
    """

    for function, _ in functions.values():
        function()

    timings = {name: ([], []) for name in functions}
    for _ in range(rounds):
        for name, (function, _) in functions.items():
            wall, cpu = time.perf_counter(), cputime()
            function()
            timings[name][0].append(time.perf_counter() - wall)
            timings[name][1].append(cputime() - cpu)

    return timings


def cputime():
    """
    Process CPU time, user + system, all threads.

    Returns:
        seconds
    """

    return time.process_time()


def load():
    """
    Reads the 1 minute load average, the number of runnable threads competing for the cores.

    Returns:
        float, nan where unavailable
    """

    try:
        return os.getloadavg()[0]
    except OSError:
        return float("nan")


def machine():
    """
    Describes the machine and library versions.

    Returns:
        str
    """

    model = platform.processor()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            model = next(line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name"))
    except (OSError, StopIteration):
        pass

    versions = [f"torch {torch.__version__}", f"numpy {np.__version__}"]
    for name in ("txtai", "fastembed", "pylate"):
        try:
            versions.append(f"{name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            pass

    return f"{model}, {os.cpu_count()} CPU cores, Python {platform.python_version()}, " + ", ".join(versions)


def main():
    """
    Runs the benchmark.
    """

    parser = argparse.ArgumentParser(description="FDE encoding throughput")
    options(parser, "documents encoded")
    parser.add_argument("--slow", type=int, default=300, help="documents and queries for the per-matrix fastembed encoder")
    parser.add_argument("--write", action="store_true", help="update the FDE section of benchmarks/RESULTS.md")
    args = parser.parse_args()

    documents, queries, description = tokensets(args)
    loads = [load()]
    tokens = sum(len(x) for x in documents)
    print(f"{len(documents)} documents, {tokens} tokens ({tokens / len(documents):.1f} per document), {len(queries)} queries: {description}")

    # Ours: from a list of matrices like the peers, and from the package's flat + offsets layout
    # Defaults (orthogonal projections, unit document centroids, fill) and the reference algorithm (AMS sketch, averages, fill)
    fde, reference = FDE(128), FDE(128, projector="ams", normalize=False)
    flat, offsets = pack(documents)
    qflat, qoffsets = pack(queries)

    rows, encoders = [], peers()
    for threads in args.threads or [torch.get_num_threads()]:
        torch.set_num_threads(threads)
        for category, matrices, packed in (("data", documents, (flat, offsets)), ("query", queries, (qflat, qoffsets))):
            functions = {
                "txtai-muvera FDE": (lambda m=matrices, c=category: fde.batch(m, c), len(matrices)),
                "txtai-muvera FDE, flat input": (lambda p=packed, c=category: fde(*p, c), len(matrices)),
            }
            notes = {name: "defaults: 20 x 2^5 x 16, orthogonal, normalize" + (", fill" if category == "data" else "") for name in functions}
            functions["txtai-muvera FDE, reference"] = (lambda m=matrices, c=category: reference.batch(m, c), len(matrices))
            notes["txtai-muvera FDE, reference"] = "20 x 2^5 x 16, AMS" + (", fill" if category == "data" else "")

            for name, (data, query, note) in encoders.items():
                # Per-matrix encoders run on a subset
                subset = matrices[: args.slow] if name.startswith("fastembed") else matrices
                functions[name] = (lambda s=subset, e=(data if category == "data" else query): e(s), len(subset))
                notes[name] = note

            timings = measure(functions, args.rounds)
            base = [len(matrices) / min(x) for x in timings["txtai-muvera FDE"]]
            for name, (wall, cpu) in timings.items():
                count = functions[name][1]
                best, median, work = count / min(wall), count / float(np.median(wall)), count / min(cpu)
                rows.append((threads, category, name, notes[name], count, best, median, work, base[0] / best, base[1] / work))

    # Table
    lines = [
        "| threads | input | encoder | settings | matrices | best /s | median /s | per CPU second | ours / this (wall) | ours / this (CPU) |",
        "|---:|---|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for threads, category, name, note, count, best, median, work, ratio, cpu in rows:
        label = "documents" if category == "data" else "queries"
        lines.append(f"| {threads} | {label} | {name} | {note} | {count} | {best:,.0f} | {median:,.0f} | {work:,.0f} | {ratio:.2f}x | {cpu:.2f}x |")
    table = "\n".join(lines)
    print(table)

    loads.append(load())
    if args.write:
        body = f"""
Documents and queries encoded per second (higher is better), every encoder in one process, timed interleaved over
{args.rounds} rounds after a warm up, at each torch thread count. "best /s" and "median /s" are wall clock throughput,
"per CPU second" divides by the process CPU time (all threads). The ratio columns divide our throughput (list input,
defaults) by each row's at the same thread count: above 1.00x we are faster.

{table}

- Token sets: {len(documents)} documents, {tokens} tokens ({tokens / len(documents):.1f} per document), {len(queries)} queries; {description}.
- Ours with list input includes packing the matrices into flat + offsets; flat input starts from the package's layout.
- Our defaults project with grouped orthogonal weights (as sparse as the AMS sketch), scale document partition
  centroids to unit length and fill empty document partitions (the reference rule, fill_empty_partitions), which
  measures better on SciFact (see "FDE quality on SciFact"). The reference row is the Google algorithm: AMS sketch,
  averages and fill. txtai's Muvera never fills. fastembed encodes one matrix at a time in Python and runs on the first {args.slow}
  matrices only.
- Machine: {machine()}. Load average {loads[0]:.1f} at the start, {loads[1]:.1f} at the end: other work shares the
  cores, so compare rows of one run. With more runnable threads than cores, multi-threaded torch stalls at every OpenMP
  barrier and our encoder, which runs many short parallel operations per chunk, suffers most: single threaded rows
  (and CPU second columns) are the reliable comparison on a busy machine.
- Differences from the Google reference: txtai's Muvera has no fill_empty_partitions and no final projection, and draws
  each repetition's SimHash and AMS matrices from two generators seeded alike (as the reference's mt19937 calls do);
  fastembed numbers partitions by plain binary SimHash bits (a relabelling), projects with a dense +-1/sqrt(16) matrix
  instead of the sparse AMS sketch, breaks fill ties by lowest partition id then first token (the reference: first
  token at the minimum distance) and rejects empty matrices. Ours draws SimHash, AMS and Count-Sketch from independent
  SeedSequence streams, so no library reproduces the C++ random numbers bit for bit.
- Rerun: `bash benchmarks/setup-peers.sh` once, then
  `.venv-peers/bin/python benchmarks/bench_fde.py --threads {" ".join(str(x) for x in args.threads) or torch.get_num_threads()} --write`
  (`--vectors pylate` to encode the real corpus with PyLate first). Run on {datetime.date.today().isoformat()}.
"""
        write("FDE encoding throughput", body)


if __name__ == "__main__":
    main()
