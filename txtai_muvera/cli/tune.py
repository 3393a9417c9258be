"""
Tune module
"""

import inspect
import itertools
import json
import re
import time

from pathlib import Path

import numpy as np
import torch

from tqdm.auto import tqdm

from .. import plugins
from ..errors import configuration
from .evaluate import beir, environment, jsonl
from ..core.maxsim import maxsim
from ..core.ragged import pack
from ..settings import DTYPES, indexconfig

# Results per query that recall is measured on: the exact MaxSim top 10
CUTOFF = 10

# Default grid: FDE repetitions, SimHash bits, inner projection widths (0 = identity), Count-Sketch final widths (None = off) and
# empty partition filling, plus the encoding defaults as a baseline. Few SimHash bits and no filling often win on short documents.
REPETITIONS, HASHES, PROJECTIONS, FINALS, FILLS = (5, 10, 20), (3, 4), (8, 16), (None,), (True, False)

# Default candidate depths, re-ranked with exact MaxSim
DEPTHS = (10, 25, 50, 100, 200, 500, 1000)

# Objectives the recommendation minimises, each a sort key over grid points
OBJECTIVES = {
    "work": lambda point: (point["work"], point["bytes"], point["depth"], -point["recall"]),
    "bytes": lambda point: (point["bytes"], point["depth"], -point["recall"]),
    "depth": lambda point: (point["depth"], point["bytes"], -point["recall"]),
}

# Synthetic queries: default count and span length in words (SciFact claims and typical search queries are 5-20 words)
SYNTHETIC, MINWORDS, MAXWORDS = 200, 6, 20

# Elements of each intermediate tensor: bounds memory of FDE blocks and rank comparisons
BUDGET = 1 << 24


class Tune:
    """
    Tunes MUVERA for a model and a corpus. Encodes the corpus and queries once, ranks the corpus with exact MaxSim, then
    measures, for every FDE configuration of a grid and every candidate depth, recall@10 of the FDE candidates with respect
    to the exact MaxSim top 10: the fraction of the exact top 10 found among the top `depth` FDE candidates. Re-ranking those
    candidates with exact MaxSim puts exactly those documents in the top 10, so this is also the recall@10 of MUVERA + re-rank
    against exact MaxSim over the whole corpus.

    Without queries, spans of documents left out of the searched corpus serve as queries (see spans).
    """

    # Parameters are the documented settings of the command
    def __init__(  # pylint: disable=R0913
        self,
        model,
        corpus,
        split=None,
        queryfile=None,
        queries=None,
        sample=None,
        seed=0,
        grid=None,
        depths=DEPTHS,
        target=0.95,
        objective="work",
        dtype=None,
        batchsize=32,
        gpu=True,
        progress=True,
        encoder="colbert",
        encoding="muvera",
    ):
        """
        Creates a tuning run.

        Args:
            model: late-interaction model, local folder or hub id
            corpus: BEIR folder (corpus.jsonl) or a jsonl/text file of documents
            split: BEIR qrels split whose judged queries are used, None for other queries
            queryfile: jsonl/text file of queries, None for other queries
            queries: number of queries: the first N real queries, or N synthetic queries (default 200, at most a tenth of the corpus)
            sample: tune on this many randomly sampled documents, None for all
            seed: random seed of the sample and the synthetic queries
            grid: list of encoding parameter dicts (FDE: repetitions, hashes, projection, final; an "encoding" key names
                  another registered encoding, e.g. {"encoding": "lemur"}), defaults to configurations()
            depths: candidate depths
            target: recall@10 the recommendation must reach
            objective: "work" (estimated operations per query), "bytes" (FDE bytes per document) or "depth" (candidates)
            dtype: token store dtype written to the recommended block and used to verify it, None for the index default
            batchsize: encoding batch size
            gpu: True picks an accelerator when available, False forces the CPU
            progress: shows progress bars
            encoder: registered late-interaction encoder
            encoding: registered encoding of grid entries without an "encoding" key
        """

        # Validate settings before anything is loaded
        if split and queryfile:
            raise ValueError("use either split (BEIR queries) or queryfile, not both")
        if not 0 < target <= 1:
            raise ValueError(f"target must be in (0, 1], got {target!r}")
        if objective not in OBJECTIVES:
            raise ValueError(f"objective must be one of {sorted(OBJECTIVES)}, got {objective!r}")
        if dtype is not None and dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {DTYPES}, got {dtype!r}")
        for name, value in (("queries", queries), ("sample", sample)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        depths = sorted({int(depth) for depth in depths})
        if not depths or depths[0] < 1:
            raise ValueError(f"depths must be positive integers, got {depths!r}")

        self.model, self.corpus, self.split, self.queryfile = str(model), str(corpus), split, queryfile
        self.grid = grid if grid is not None else configurations()
        self.depths, self.target, self.objective, self.dtype = depths, target, objective, dtype
        self.batchsize, self.gpu, self.progress = batchsize, gpu, progress
        self.encoder, self.encoding = encoder, encoding

        # Documents and queries
        rng = np.random.default_rng(seed)
        self.ids, self.texts, self.queries, self.kind = dataset(self.corpus, split, queryfile, queries, sample, rng)
        if len(self.ids) < 2:
            raise ValueError(f"tuning needs at least 2 documents to search, got {len(self.ids)}")

    def __call__(self, verify=False):
        """
        Encodes the corpus and queries, then runs the tuning.

        Args:
            verify: also builds a txtai index with the recommended block and measures its recall

        Returns:
            results dict
        """

        matrices, qmatrices = self.encode()
        return self.run(matrices, qmatrices, verify)

    def encode(self):
        """
        Encodes the corpus and the queries once.

        Returns:
            (document token matrices, query token matrices)
        """

        # A model that cannot load is a ConfigurationError: the command line prints it as one line
        with configuration():
            encoder = plugins.lookup("encoders", self.encoder)(self.model, gpu=self.gpu, batchsize=self.batchsize)
        matrices = encoder.encode(self.texts, category="data", progress=self.progress)
        qmatrices = encoder.encode(self.queries, category="query", progress=self.progress)

        return matrices, qmatrices

    def run(self, matrices, qmatrices, verify=False):
        """
        Runs the tuning on token matrices encoded from self.texts and self.queries.

        Args:
            matrices: document token matrices
            qmatrices: query token matrices
            verify: also builds a txtai index with the recommended block and measures its recall

        Returns:
            results dict
        """

        documents, doffsets = pack(matrices)
        queries, qoffsets = pack(qmatrices)
        documents, queries = torch.from_numpy(documents), torch.from_numpy(queries)

        # Exact MaxSim top 10 of every query over the whole corpus
        start = time.perf_counter()
        top = exact(queries, qoffsets, documents, doffsets, min(CUTOFF, len(matrices)), self.progress)
        seconds = time.perf_counter() - start

        # Depths past the corpus size all mean "every document"
        depths = sorted({min(depth, len(matrices)) for depth in self.depths})

        # Cost model: FDE scan of the corpus plus exact MaxSim of the candidates, in multiply-adds per query
        dimension = documents.shape[1]
        dtokens, qtokens = float(doffsets[-1] / len(matrices)), float(qoffsets[-1] / len(qmatrices))

        # Recall of every FDE configuration at every depth
        rows = []
        for params in tqdm(self.grid, desc="Encodings", unit="configs", disable=not self.progress):
            name = params.get("encoding", self.encoding)
            encoding = plugins.lookup("encodings", name)(dimension=dimension, **{k: v for k, v in params.items() if k != "encoding"})

            # A learned encoding trains on the corpus first, as an index does
            training = 0.0
            if getattr(encoding, "learned", False) and encoding.train:
                start = time.perf_counter()
                encoding.fit(documents, doffsets, progress=self.progress)
                training = time.perf_counter() - start

            start = time.perf_counter()
            positions = ranks(encoding, queries, qoffsets, documents, doffsets, top)
            elapsed = time.perf_counter() - start

            rows.append(
                {
                    "params": {**params, "encoding": name} if name != "muvera" else dict(params),
                    "dimensions": encoding.dimensions,
                    "bytes": encoding.dimensions * 4,
                    "seconds": elapsed,
                    "training": training,
                    "recall": {depth: recall(positions, depth) for depth in depths},
                }
            )

        # Grid points, frontier and recommendation
        points = [
            {
                "params": row["params"],
                "dimensions": row["dimensions"],
                "bytes": row["bytes"],
                "depth": depth,
                "recall": value,
                "work": len(matrices) * row["dimensions"] + depth * dtokens * qtokens * dimension,
            }
            for row in rows
            for depth, value in row["recall"].items()
        ]
        best = recommend(points, self.target, self.objective)

        results = {
            "model": self.model,
            "corpus": {"path": self.corpus, "documents": len(matrices), "tokens_per_document": dtokens},
            "queries": {"kind": self.kind, "count": len(qmatrices), "tokens_per_query": qtokens},
            "exact_seconds": seconds,
            "target": self.target,
            "objective": self.objective,
            "depths": depths,
            "grid": rows,
            "frontier": frontier(points),
            "recommended": None,
            "environment": environment(),
        }

        if best:
            block = recommendation(best, self.dtype)
            results["recommended"] = {**best, "block": block, "yaml": yaml(block)}

            # Real txtai index with the recommended block
            if verify:
                results["verify"] = self.verify(block, matrices, top)

        return results

    def verify(self, block, matrices, top):
        """
        Builds a txtai index with a muvera: block and measures the recall@10 of its search results against the exact
        MaxSim top 10. The index is built from the token matrices already encoded; queries are searched as text.

        Args:
            block: muvera: config block
            matrices: document token matrices
            top: exact top 10 document positions of every query

        Returns:
            dict with the block, recall@10, queries and search seconds
        """

        # pylint: disable=C0415
        from txtai import Embeddings

        config = indexconfig(self.model, block, self.gpu, self.batchsize)

        embeddings = Embeddings(config)
        documents = tqdm(zip(self.ids, matrices), total=len(self.ids), desc="Verifying: indexing", unit="docs", disable=not self.progress)
        embeddings.index((uid, matrix, None) for uid, matrix in documents)

        # Search every query through the index, CUTOFF results each
        start, results = time.perf_counter(), []
        for x in tqdm(range(0, len(self.queries), 32), desc="Verifying: searching", unit="batches", disable=not self.progress):
            results.extend(embeddings.batchsearch(self.queries[x : x + 32], top.shape[1]))
        seconds = time.perf_counter() - start
        embeddings.close()

        # Fraction of the exact top 10 that search returns
        found = [len({row["id"] for row in rows} & {self.ids[x] for x in exact}) for rows, exact in zip(results, top.tolist())]
        return {"block": block, "recall": sum(found) / top.numel(), "queries": len(results), "seconds": seconds}


def configurations(repetitions=REPETITIONS, hashes=HASHES, projections=PROJECTIONS, finals=FINALS, fills=FILLS, baseline=True, learned=()):
    """
    Builds a grid of FDE configurations: every combination, except final projections that would not shrink the encoding.

    >>> grid = configurations()
    >>> len(grid), grid[0], grid[-1]["repetitions"], grid[-1]["hashes"]
    (25, {'repetitions': 5, 'hashes': 3, 'projection': 8, 'final': None, 'fill': True}, 20, 5)

    Args:
        repetitions: repetition counts
        hashes: SimHash bit counts
        projections: inner projection widths, 0 or None for identity
        finals: Count-Sketch final widths, None for none
        fills: fill settings of empty document partitions
        baseline: also adds the encoding's defaults (an index without FDE settings), when missing
        learned: learned encoding settings to add, each a dict with an "encoding" key, e.g. {"encoding": "lemur"}

    Returns:
        list of encoding parameter dicts
    """

    grid = []
    for repetition, bits, projection, final, fill in itertools.product(repetitions, hashes, projections, finals, fills):
        # Final widths at or above the encoding width only add collisions
        width = repetition * (1 << bits) * projection if projection else None
        if final and width and final >= width:
            continue

        params = {"repetitions": repetition, "hashes": bits, "projection": projection or 0, "final": final, "fill": bool(fill)}
        if params not in grid:
            grid.append(params)

    # Defaults of the registered encoding
    if baseline:
        defaults = inspect.signature(plugins.lookup("encodings", "muvera")).parameters
        params = {key: defaults[key].default for key in ("repetitions", "hashes", "projection", "final", "fill")}
        params["projection"] = params["projection"] or 0
        if params not in grid:
            grid.append(params)

    # Learned encodings, trained on the corpus
    grid.extend(dict(params) for params in learned if params not in grid)

    return grid


def exact(queries, qoffsets, documents, doffsets, limit, progress=False, chunk=512):
    """
    Ranks the whole corpus with exact MaxSim, corpus chunk by chunk.

    Args:
        queries: flat query token tensor
        qoffsets: query offsets
        documents: flat document token tensor
        doffsets: document offsets
        limit: results per query
        progress: shows a progress bar
        chunk: documents per chunk

    Returns:
        int64 tensor (queries x limit) of document positions, best first, ties by lowest position
    """

    count = len(doffsets) - 1
    scores = torch.empty((len(qoffsets) - 1, count), dtype=torch.float32)
    for start in tqdm(range(0, count, chunk), desc="Exact MaxSim", unit="chunks", disable=not progress):
        end = min(start + chunk, count)
        tokens, offsets = documents[doffsets[start] : doffsets[end]], doffsets[start : end + 1] - doffsets[start]
        scores[:, start:end] = maxsim(queries, qoffsets, tokens, offsets)

    return torch.sort(scores, dim=1, descending=True, stable=True).indices[:, :limit].contiguous()


def ranks(encoding, queries, qoffsets, documents, doffsets, top):
    """
    Ranks every document by FDE inner product and finds the rank of each exact top document: the number of documents
    ordered before it (higher FDE score, or the same score and a lower position).

    Args:
        encoding: fixed dimensional encoding
        queries: flat query token tensor
        qoffsets: query offsets
        documents: flat document token tensor
        doffsets: document offsets
        top: exact top document positions (queries x k)

    Returns:
        int64 tensor (queries x k) of FDE ranks, 0 is first
    """

    count = len(doffsets) - 1
    qfdes = torch.from_numpy(encoding(queries, qoffsets, "query"))

    # FDE scores of every document, documents encoded chunk by chunk to bound memory
    scores = torch.empty((qfdes.shape[0], count), dtype=torch.float32)
    step = max(1, BUDGET // encoding.dimensions)
    for start in range(0, count, step):
        end = min(start + step, count)
        fdes = encoding(documents[doffsets[start] : doffsets[end]], doffsets[start : end + 1] - doffsets[start], "data")
        scores[:, start:end] = qfdes @ torch.from_numpy(fdes).T

    # Count the documents ranked before each exact top document, a block of queries at a time
    targets, positions = scores.gather(1, top), torch.arange(count)
    results = torch.empty_like(top)
    step = max(1, BUDGET // (top.shape[1] * count))
    for start in range(0, top.shape[0], step):
        block, target, index = scores[start : start + step, None, :], targets[start : start + step, :, None], top[start : start + step, :, None]
        results[start : start + step] = ((block > target) | ((block == target) & (positions < index))).sum(dim=-1)

    return results


def recall(positions, depth):
    """
    Computes recall@k of the top `depth` candidates: the fraction of exact top documents ranked within depth.

    >>> recall(torch.tensor([[0, 3], [12, 1]]), 4)
    0.75

    Args:
        positions: FDE ranks of the exact top documents (queries x k)
        depth: candidate depth

    Returns:
        recall in [0, 1]
    """

    return (positions < depth).double().mean().item()


def frontier(points):
    """
    Finds the Pareto frontier of grid points: those that no other point dominates on FDE bytes per document (lower is
    better), candidate depth (lower is better) and recall (higher is better).

    >>> points = [{"bytes": 4, "depth": 10, "recall": 0.5}, {"bytes": 8, "depth": 10, "recall": 0.4}, {"bytes": 8, "depth": 5, "recall": 0.9}]
    >>> [point["recall"] for point in frontier(points)]
    [0.9, 0.5]

    Args:
        points: list of dicts with bytes, depth and recall

    Returns:
        non-dominated points, sorted by depth then bytes
    """

    def dominates(a, b):
        better = a["bytes"] <= b["bytes"] and a["depth"] <= b["depth"] and a["recall"] >= b["recall"]
        return better and (a["bytes"] < b["bytes"] or a["depth"] < b["depth"] or a["recall"] > b["recall"])

    results = [point for point in points if not any(dominates(other, point) for other in points)]
    return sorted(results, key=lambda point: (point["depth"], point["bytes"], -point["recall"]))


def recommend(points, target, objective="work"):
    """
    Picks the cheapest grid point that reaches a target recall. Ties go to fewer bytes, fewer candidates, then higher
    recall, so the pick is always on the Pareto frontier.

    Args:
        points: list of dicts with bytes, depth, recall and work
        target: recall to reach
        objective: key of OBJECTIVES

    Returns:
        point dict or None when no point reaches the target
    """

    reached = [point for point in points if point["recall"] >= target]
    return min(reached, key=OBJECTIVES[objective]) if reached else None


def recommendation(point, dtype=None):
    """
    Builds the muvera: config block of a grid point.

    >>> recommendation({"params": {"repetitions": 10, "hashes": 4, "projection": 16, "final": None, "fill": False}, "depth": 50})
    {'candidates': 50, 'repetitions': 10, 'hashes': 4, 'projection': 16, 'fill': False}

    Args:
        point: grid point
        dtype: optional token store dtype

    Returns:
        muvera: config block
    """

    params = point["params"]
    if "encoding" in params:
        # Another registered encoding: its own parameters, as tuned
        block = {"candidates": point["depth"], **params}
        return {**block, "dtype": dtype} if dtype else block

    block = {"candidates": point["depth"], "repetitions": params["repetitions"], "hashes": params["hashes"], "projection": params["projection"]}
    if params.get("final"):
        block["final"] = params["final"]
    # Always explicit: the pasted block keeps meaning the same if the default changes
    if "fill" in params:
        block["fill"] = bool(params["fill"])
    if dtype:
        block["dtype"] = dtype

    return block


def yaml(block):
    """
    Formats a muvera: config block as YAML, ready to paste into a txtai configuration.

    >>> print(yaml({"candidates": 50, "hashes": 4}))
    muvera:
      candidates: 50
      hashes: 4

    Args:
        block: muvera: config block

    Returns:
        YAML string
    """

    return "\n".join(["muvera:"] + [f"  {key}: {json.dumps(value)}" for key, value in block.items()])


def describe(params, dimensions=None):
    """
    Describes an FDE configuration.

    >>> describe({"repetitions": 10, "hashes": 4, "projection": 16, "final": 2048, "fill": True})
    '10 x 2^4 x 16 -> 2048, fill'

    Args:
        params: FDE parameters
        dimensions: optional output dimensions

    Returns:
        string
    """

    if "encoding" in params:
        settings = ", ".join(f"{k} {v}" for k, v in params.items() if k != "encoding")
        return f"{params['encoding']}" + (f" ({settings})" if settings else "") + (f" = {dimensions:,}" if dimensions else "")

    text = f"{params['repetitions']} x 2^{params['hashes']} x {params['projection'] or 'id'}"
    text += f" -> {params['final']}" if params.get("final") else ""
    text += f" = {dimensions:,}" if dimensions else ""
    return text + (", fill" if params.get("fill") else "")


def dataset(corpus, split, queryfile, queries, sample, rng):
    """
    Loads the documents and the queries to tune on.

    Args:
        corpus: BEIR folder or jsonl/text file of documents
        split: BEIR qrels split of the queries, or None
        queryfile: jsonl/text file of queries, or None
        queries: number of queries, None for the default
        sample: number of documents to sample, None for all
        rng: numpy random generator

    Returns:
        (document ids, document texts, query texts, query kind)
    """

    path = Path(corpus)

    # Documents, with the judged queries of a BEIR split
    texts, kind = None, None
    if split:
        if not path.is_dir():
            raise ValueError(f"split needs a BEIR folder, {corpus} is not a folder")
        ids, documents, judged, _ = beir(path, split, queries)
        texts, kind = list(judged.values()), f"beir:{split}"
    else:
        ids, documents = readcorpus(path)

    # Queries from a file
    if queryfile:
        texts, kind = readtexts(Path(queryfile))[:queries], f"file:{queryfile}"
        if not texts:
            raise ValueError(f"{queryfile} has no queries")

    # Random sample of the documents, in corpus order
    if sample and sample < len(ids):
        chosen = np.sort(rng.choice(len(ids), sample, replace=False))
        rest = np.setdiff1d(np.arange(len(ids)), chosen)
    else:
        chosen, rest = np.arange(len(ids)), np.zeros(0, dtype=np.int64)

    # Without queries, spans of documents outside the searched corpus: documents left out by the sample, else held out
    if texts is None:
        count = queries if queries else min(SYNTHETIC, max(1, len(chosen) // 10))
        texts, sources = spans([documents[x] for x in (rest if len(rest) >= count else chosen)], count, rng)
        if len(rest) < count:
            chosen = np.delete(chosen, sources)
        kind = "synthetic"

    return [ids[x] for x in chosen], [documents[x] for x in chosen], texts, kind


def spans(documents, count, rng):
    """
    Draws synthetic queries: a random span of MINWORDS-MAXWORDS words from one sentence of each of `count` random documents.
    The caller searches a corpus without those documents: a span searched against its own document finds it trivially,
    while a real query has no verbatim copy in the corpus and its nearest documents are only related ones.

    >>> queries, sources = spans(["One two three four five six seven. Eight nine ten eleven twelve thirteen."], 1, np.random.default_rng(0))
    >>> sources, len(queries[0].split()) >= 6
    ([0], True)

    Args:
        documents: candidate source texts
        count: number of queries
        rng: numpy random generator

    Returns:
        (query texts, positions of their source documents)
    """

    # Documents with enough words to cut a span from
    usable = [x for x, text in enumerate(documents) if len(text.split()) >= MINWORDS]
    if len(usable) < count:
        raise ValueError(f"{count} synthetic queries need {count} documents with at least {MINWORDS} words, found {len(usable)}")

    sources = sorted(rng.choice(usable, count, replace=False).tolist())
    queries = []
    for x in sources:
        # Sentences long enough for a span, else the whole text
        sentences = [sentence.split() for sentence in re.split(r"(?<=[.!?])\s+", documents[x])]
        sentences = [words for words in sentences if len(words) >= MINWORDS] or [documents[x].split()]
        words = sentences[rng.integers(len(sentences))]

        # Random window inside that sentence
        length = min(len(words), int(rng.integers(MINWORDS, MAXWORDS + 1)))
        start = int(rng.integers(len(words) - length + 1))
        queries.append(" ".join(words[start : start + length]))

    return queries, sources


def readcorpus(path):
    """
    Reads documents: a BEIR folder (corpus.jsonl, title + " " + text), a jsonl file (JSON strings, or objects with text,
    optional title and _id/id) or a text file (one document per line).

    Args:
        path: folder or file

    Returns:
        (document ids, document texts)
    """

    if path.is_dir():
        path = path / "corpus.jsonl"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: pass a BEIR folder with corpus.jsonl, a jsonl file or a text file")

    ids, texts = [], []
    rows = jsonl(path) if path.suffix in (".jsonl", ".json") else textlines(path)
    for x, row in enumerate(rows):
        if isinstance(row, dict):
            ids.append(str(row.get("_id", row.get("id", x))))
            texts.append(f"{row.get('title') or ''} {row.get('text') or ''}" if "title" in row else str(row.get("text") or ""))
        else:
            ids.append(str(x))
            texts.append(str(row))

    if len(set(ids)) != len(ids):
        raise ValueError(f"{path} has duplicate document ids")

    return ids, texts


def readtexts(path):
    """
    Reads query texts: a jsonl file (JSON strings, or objects with text or query) or a text file (one per line).

    Args:
        path: file

    Returns:
        list of texts
    """

    if path.suffix in (".jsonl", ".json"):
        return [row if isinstance(row, str) else str(row.get("text", row.get("query", ""))) for row in jsonl(path)]

    return list(textlines(path))


def table(results):
    """
    Formats tuning results as text: the grid, the Pareto frontier, the recommended block and its verification.

    Args:
        results: tuning results

    Returns:
        string
    """

    corpus, queries, depths = results["corpus"], results["queries"], results["depths"]
    lines = [
        f"Corpus: {corpus['path']}, {corpus['documents']:,} documents ({corpus['tokens_per_document']:.0f} tokens each). "
        f"Queries: {queries['count']:,} ({queries['kind']}). Model: {results['model']}.",
        f"Recall@{CUTOFF}: fraction of the exact MaxSim top {CUTOFF} among the top-N FDE candidates (= recall@{CUTOFF} after re-ranking them).",
        "",
        "| encoding (FDE: reps x partitions x proj -> final = dims, fill) | bytes/doc | training s | seconds | "
        + " | ".join(f"N={depth}" for depth in depths)
        + " |",
        "|---|---|---|---|" + "---|" * len(depths),
    ]

    # Grid
    for row in results["grid"]:
        recalls = " | ".join(f"{row['recall'][depth]:.3f}" for depth in depths)
        training = f"{row['training']:.1f}" if row.get("training") else "-"
        lines.append(f"| {describe(row['params'], row['dimensions'])} | {row['bytes']:,} | {training} | {row['seconds']:.1f} | {recalls} |")

    # Pareto frontier
    lines.extend(
        [
            "",
            f"Pareto frontier (candidate bytes per document and candidates N against recall@{CUTOFF}):",
            "",
            "| candidates N | encoding | bytes/doc | recall@10 | est. Mops/query |",
            "|---|---|---|---|---|",
        ]
    )
    for point in results["frontier"]:
        lines.append(
            f"| {point['depth']} | {describe(point['params'], point['dimensions'])} | {point['bytes']:,} | {point['recall']:.3f} "
            f"| {point['work'] / 1e6:.0f} |"
        )

    # Recommendation
    lines.append("")
    best = results["recommended"]
    if best:
        lines.append(
            f"Recommended (cheapest by {results['objective']} reaching recall@{CUTOFF} >= {results['target']}): "
            f"recall@{CUTOFF} {best['recall']:.4f} with {best['depth']} candidates, {best['bytes']:,} FDE bytes per document."
        )
        lines.extend(["", best["yaml"]])
    else:
        top = max(results["frontier"], key=lambda point: point["recall"])
        lines.append(
            f"No configuration reaches recall@{CUTOFF} >= {results['target']}: the best is {top['recall']:.4f} "
            f"({describe(top['params'])}, {top['depth']} candidates). Add deeper --depths or larger configurations."
        )

    # Verification through a real txtai index
    if "verify" in results:
        verify = results["verify"]
        lines.extend(
            [
                "",
                f"Verified with a txtai index (txtai_muvera.LateVectors + txtai_muvera.Muvera, this block): recall@{CUTOFF} "
                f"{verify['recall']:.4f} against exact MaxSim over {verify['queries']:,} queries (tuned: {best['recall']:.4f}).",
            ]
        )

    return "\n".join(lines)


def textlines(path):
    """
    Reads the non-empty lines of a text file.

    Args:
        path: file path

    Returns:
        generator of lines without their line break
    """

    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                yield line.rstrip("\n")
