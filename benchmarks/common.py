"""
Common module: benchmark plumbing shared by the scripts (shared data paths, token vector sets and caches, interleaved
timing rounds, worker processes). Machine description, load average, memory, percentiles, BEIR readers and metrics come
from txtai_muvera.cli, the same code the evaluate and tune commands run.
"""

import json
import os
import subprocess
import sys
import time

from pathlib import Path

import numpy as np

from txtai_muvera.cli.beir import jsonl, readbeir
from txtai_muvera.core.ragged import pack

# Shared data and model folder: $SHARED, else beside the checkout
SHARED = Path(os.environ.get("SHARED", Path(__file__).resolve().parents[2] / "shared"))

# Reference model and corpus in it
MODEL, SCIFACT = SHARED / "models" / "minilm-colbert", SHARED / "data" / "beir" / "scifact"

# Skipped document tokens (PyLate skiplist of the shared model)
PUNCTUATION = set("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~")


def tokenvectors(cache, model=MODEL, folder=SCIFACT, encoder="txtai-muvera"):
    """
    Token vectors of every document and query of a BEIR folder, read from a cache or encoded and written to it: flat
    safetensors (documents, doffsets, queries, qoffsets) and a JSON file beside it with the document and query ids.

    Args:
        cache: safetensors file, None to encode without writing
        model: late-interaction model
        folder: BEIR folder
        encoder: "txtai-muvera" (the package's PyLate-exact encoder) or "pylate" (PyLate itself)

    Returns:
        dict with documents, doffsets, queries, qoffsets (numpy), document_ids and query_ids
    """

    # pylint: disable=C0415
    from safetensors.numpy import load_file, save_file

    names = Path(cache).with_suffix(".json") if cache else None
    if cache and os.path.exists(cache):
        if not names.exists():
            raise FileNotFoundError(f"{names} not found: {cache} was written without its ids, delete it to encode again")
        with open(names, encoding="utf-8") as f:
            return {**load_file(cache), **json.load(f)}

    # Every document (title + text) and every query, in file order
    documents, queries = list(jsonl(Path(folder) / "corpus.jsonl")), list(jsonl(Path(folder) / "queries.jsonl"))
    texts, questions = [f"{x.get('title') or ''} {x.get('text') or ''}" for x in documents], [x["text"] for x in queries]
    ids = {"document_ids": [str(x["_id"]) for x in documents], "query_ids": [str(x["_id"]) for x in queries]}

    if encoder == "pylate":
        from pylate import models

        colbert = models.ColBERT(str(model), device="cpu")
        flat, doffsets = pack(colbert.encode(texts, is_query=False, batch_size=32, show_progress_bar=True))
        qflat, qoffsets = pack(colbert.encode(questions, is_query=True, batch_size=32))
    else:
        from txtai_muvera.core.encoder import LateEncoder

        late = LateEncoder(str(model), gpu=False, batchsize=32)
        flat, doffsets = pack(late.encode(texts, "data", progress=True))
        qflat, qoffsets = pack(late.encode(questions, "query", progress=True))
        ids["fingerprint"] = late.fingerprint

    arrays = {"documents": flat, "doffsets": doffsets, "queries": qflat, "qoffsets": qoffsets}
    if cache:
        os.makedirs(os.path.dirname(os.path.abspath(cache)), exist_ok=True)
        save_file(arrays, cache)
        with open(names, "w", encoding="utf-8") as f:
            json.dump({**ids, "encoder": encoder}, f)

    return {**arrays, **ids}


def judgedvectors(model, folder, cache, split="test"):
    """
    Token vectors of every document and of the queries judged in a BEIR split, in qrels order (see tokenvectors).

    Args:
        model: late-interaction model
        folder: BEIR folder
        cache: safetensors cache file or None
        split: qrels split

    Returns:
        (document ids, flat documents, doffsets, query ids, flat queries, qoffsets, qrels)
    """

    ids, _, queries, qrels = readbeir(folder, split)
    vectors = tokenvectors(cache, model, folder)
    if vectors.get("document_ids", ids) != ids:
        raise ValueError(f"{cache} does not hold the corpus of {folder}")

    # Judged queries only, in qrels order
    position = {uid: x for x, uid in enumerate(vectors["query_ids"])}
    missing = [uid for uid in queries if uid not in position]
    if missing:
        raise ValueError(f"{cache} has no vectors for {len(missing)} judged queries, e.g. {missing[0]}")

    qflat, qoffsets = vectors["queries"], vectors["qoffsets"]
    qtokens, qoffsets = pack([qflat[qoffsets[position[uid]] : qoffsets[position[uid] + 1]] for uid in queries])
    return ids, vectors["documents"], vectors["doffsets"], list(queries), qtokens, qoffsets, qrels


def tokenlengths(count, seed=0):
    """
    Token counts of SciFact documents as PyLate keeps them: [CLS] [D] text [SEP] capped at 180, minus skipped punctuation.
    Falls back to seeded counts in 60..180 when the shared corpus or tokenizer is missing.

    Args:
        count: number of documents
        seed: random seed for the fallback

    Returns:
        (int numpy array, description)
    """

    try:
        # pylint: disable=C0415
        from tokenizers import Tokenizer

        tokenizer = Tokenizer.from_file(str(MODEL / "tokenizer.json"))
        tokenizer.no_truncation()
        tokenizer.no_padding()
        texts = [f"{x['title']} {x['text']}" for x in jsonl(SCIFACT / "corpus.jsonl")][:count]

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


def tokensetoptions(parser, documents):
    """
    Adds the token set and timing options that tokensets() and timedrounds() read.

    Args:
        parser: argparse.ArgumentParser
        documents: help text of --docs
    """

    parser.add_argument("--docs", type=int, default=5183, help=documents)
    parser.add_argument("--queries", type=int, default=300, help="queries (random vectors)")
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds, best and median reported")
    parser.add_argument("--vectors", choices=["random", "pylate", "scifact"], default="random", help="token vectors")
    parser.add_argument("--cache", default=None, help="vectors cache: flat documents/doffsets/queries/qoffsets safetensors and its .json ids")
    parser.add_argument("--threads", type=int, nargs="*", default=[], help="torch thread counts to run, torch's default when empty")


def tokensets(args):
    """
    Builds the document and query token sets: seeded random vectors with SciFact's token counts, or SciFact encoded by
    PyLate or by the package's encoder (every query), cached.

    Args:
        args: command line arguments

    Returns:
        (documents, queries, description)
    """

    if args.vectors in ("pylate", "scifact"):
        encoder = "pylate" if args.vectors == "pylate" else "txtai-muvera"
        cache = args.cache or f"/tmp/txtai-muvera-bench/scifact-{encoder}.safetensors"
        vectors = tokenvectors(cache, encoder=encoder)
        documents = np.split(vectors["documents"], vectors["doffsets"][1:-1])[: args.docs]
        queries = np.split(vectors["queries"], vectors["qoffsets"][1:-1])
        source = "PyLate, untrained 128-d projection" if encoder == "pylate" else "txtai_muvera's PyLate-exact encoder"
        return documents, queries, f"real SciFact token vectors ({source}, shared minilm-colbert), {len(queries)} queries, cached at {cache}"

    counts, description = tokenlengths(args.docs)
    documents = randomtokens(counts, seed=0)
    queries = randomtokens(np.full(args.queries, 32), seed=1)
    return documents, queries, f"seeded random unit vectors, 128 dimensions, {description}; queries 32 tokens"


def timedrounds(functions, rounds):
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
            wall, cpu = time.perf_counter(), time.process_time()
            function()
            timings[name][0].append(time.perf_counter() - wall)
            timings[name][1].append(time.process_time() - cpu)

    return timings


def workerprocess(script, arguments, stderr=None):
    """
    Starts a benchmark phase in its own process (its peak RSS is its own), JSON lines on its stdin and stdout.

    Args:
        script: benchmark script path
        arguments: its command line arguments
        stderr: where its stderr goes, None to share this process's (progress bars)

    Returns:
        subprocess.Popen
    """

    command = [sys.executable, str(script), *arguments]
    return subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr, text=True, bufsize=1)


def runphase(script, arguments):
    """
    Runs a benchmark phase in its own process to the end and reads the JSON object on the last line of its output.

    Args:
        script: benchmark script path
        arguments: its command line arguments

    Returns:
        dict
    """

    process = workerprocess(script, arguments, subprocess.PIPE)
    stdout, stderr = process.communicate()
    if process.returncode:
        raise RuntimeError(f"{Path(script).name} {' '.join(arguments)} failed:\n{stderr[-5000:]}")

    return json.loads(stdout.strip().splitlines()[-1])
