"""
Tune module
"""

import time

import numpy as np
import torch

from tqdm.auto import tqdm

from .. import plugins
from ..core.ragged import pack
from ..core.scan import ENCODINGDTYPES, rowbytes
from ..settings import DEFAULTS, DTYPES, indexconfig
from .encoders import registeredencoder
from .environment import environment
from .grid import OBJECTIVES, configurations, frontier, recommend, recommendation, yamlblock
from .ranking import exactranking
from .sampling import tuningset

# Exact top k that recall uses
CUTOFF = 10

# Default candidate depths
DEPTHS = (10, 25, 50, 100, 200, 500, 1000)

# Elements per temporary tensor
BUDGET = 1 << 24


class Tune:
    """
    Tunes MUVERA for a model and a corpus: for every grid configuration and candidate depth, measures the share of the
    exact MaxSim top 10 found among the FDE candidates. Re-ranking puts exactly those in the top 10, so this is also the
    recall@10 of MUVERA + re-rank against exact MaxSim.

    Without queries, spans of documents left out of the searched corpus serve as queries (see spans).
    """

    # One per command option
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
        encoder=DEFAULTS["encoder"],
        encoding=DEFAULTS["encoding"],
        encodingdtype=None,
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
            encodingdtype: candidate vector storage type written to the recommended block, None for the index default; the
                           bytes per document count it
        """

        # Validate before loading
        if split and queryfile:
            raise ValueError("use either split (BEIR queries) or queryfile, not both")
        if not 0 < target <= 1:
            raise ValueError(f"target must be in (0, 1], got {target!r}")
        if objective not in OBJECTIVES:
            raise ValueError(f"objective must be one of {sorted(OBJECTIVES)}, got {objective!r}")
        if dtype is not None and dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {DTYPES}, got {dtype!r}")
        if encodingdtype is not None and encodingdtype not in ENCODINGDTYPES:
            raise ValueError(f"encodingdtype must be one of {ENCODINGDTYPES}, got {encodingdtype!r}")
        for name, value in (("queries", queries), ("sample", sample)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        depths = sorted({int(depth) for depth in depths})
        if not depths or depths[0] < 1:
            raise ValueError(f"depths must be positive integers, got {depths!r}")

        self.model, self.corpus, self.split, self.queryfile = str(model), str(corpus), split, queryfile
        self.grid = grid if grid is not None else configurations(encoding=encoding)
        self.depths, self.target, self.objective, self.dtype = depths, target, objective, dtype
        self.batchsize, self.gpu, self.progress = batchsize, gpu, progress
        self.queryencoder = None
        self.encoder, self.encoding, self.encodingdtype = encoder, encoding, encodingdtype

        # Documents and queries
        rng = np.random.default_rng(seed)
        self.ids, self.texts, self.queries, self.kind = tuningset(self.corpus, split, queryfile, queries, sample, rng)
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

        encoder = registeredencoder(self.model, self.encoder, self.gpu, self.batchsize)
        matrices = encoder.encode(self.texts, category="data", progress=self.progress)
        qmatrices = encoder.encode(self.queries, category="query", progress=self.progress)

        # Learn queries, same model
        self.queryencoder = lambda texts: encoder.encode(texts, category="query", progress=self.progress)

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

        # Exact MaxSim top 10 per query
        start = time.perf_counter()
        ranking = exactranking(queries, qoffsets, documents, doffsets, CUTOFF, progress=self.progress)
        top = torch.tensor([[x for x, _ in rows] for rows in ranking], dtype=torch.int64)
        seconds = time.perf_counter() - start

        # Clamp depths to corpus size
        depths = sorted({min(depth, len(matrices)) for depth in self.depths})

        # Cost: FDE scan + MaxSim
        dimension = documents.shape[1]
        dtokens, qtokens = float(doffsets[-1] / len(matrices)), float(qoffsets[-1] / len(qmatrices))

        # FDE rows stored as
        rowdtype = self.encodingdtype or DEFAULTS["encodingdtype"]

        # Recall per encoding and depth
        rows = []
        for params in tqdm(self.grid, desc="Encodings", unit="configs", disable=not self.progress):
            name = params.get("encoding", self.encoding)
            encoding = plugins.lookup("encodings", name)(dimension=dimension, **{k: v for k, v in params.items() if k != "encoding"})

            # Train learned encodings first
            training = 0.0
            if getattr(encoding, "learned", False) and encoding.train:
                start = time.perf_counter()
                if hasattr(encoding, "learnfrom") and self.queryencoder:
                    encoding.learnfrom(self.texts, self.queryencoder)
                encoding.fit(documents, doffsets, progress=self.progress)
                training = time.perf_counter() - start

            start = time.perf_counter()
            positions = fderanks(encoding, queries, qoffsets, documents, doffsets, top)
            elapsed = time.perf_counter() - start

            rows.append(
                {
                    "params": {**params, "encoding": name} if name != DEFAULTS["encoding"] else dict(params),
                    "dimensions": encoding.dimensions,
                    "bytes": rowbytes(encoding.dimensions, rowdtype),
                    "seconds": elapsed,
                    "training": training,
                    "recall": {depth: candidaterecall(positions, depth) for depth in depths},
                }
            )
            if training:
                rows[-1]["learncategory"] = (getattr(encoding, "statistics", None) or {}).get("learncategory")

        # Frontier and recommendation
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
            # Block names a custom encoder
            encoder = self.encoder if self.encoder != DEFAULTS["encoder"] else None
            block = recommendation(best, self.dtype, encoder=encoder, encodingdtype=self.encodingdtype)
            results["recommended"] = {**best, "block": block, "yaml": yamlblock(block)}

            # Verify with a real txtai index
            if verify:
                results["verify"] = self.verify(block, matrices, top)

        return results

    def verify(self, block, matrices, top):
        """
        Builds a txtai index with a muvera: block and measures the recall@10 of its search results against the exact
        MaxSim top 10. The index is built from the token matrices already encoded (from texts for a learned encoding);
        queries are searched as text.

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

        # Learned encodings need texts
        learned = getattr(plugins.lookup("encodings", block.get("encoding", DEFAULTS["encoding"])), "learned", False)
        embeddings = Embeddings(config)
        data = self.texts if learned else matrices
        documents = tqdm(zip(self.ids, data), total=len(self.ids), desc="Verifying: indexing", unit="docs", disable=not self.progress)
        embeddings.index((uid, x, None) for uid, x in documents)

        # Search all queries
        start, results = time.perf_counter(), []
        for x in tqdm(range(0, len(self.queries), 32), desc="Verifying: searching", unit="batches", disable=not self.progress):
            results.extend(embeddings.batchsearch(self.queries[x : x + 32], top.shape[1]))
        seconds = time.perf_counter() - start
        embeddings.close()

        # Share of exact top 10 found
        found = [len({row["id"] for row in rows} & {self.ids[x] for x in exact}) for rows, exact in zip(results, top.tolist())]
        return {"block": block, "recall": sum(found) / top.numel(), "queries": len(results), "seconds": seconds}


def fderanks(encoding, queries, qoffsets, documents, doffsets, top):
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

    # Score in chunks, bounds memory
    scores = torch.empty((qfdes.shape[0], count), dtype=torch.float32)
    step = max(1, BUDGET // encoding.dimensions)
    for start in range(0, count, step):
        end = min(start + step, count)
        fdes = encoding(documents[doffsets[start] : doffsets[end]], doffsets[start : end + 1] - doffsets[start], "data")
        scores[:, start:end] = qfdes @ torch.from_numpy(fdes).T

    # Rank exact top documents
    targets, positions = scores.gather(1, top), torch.arange(count)
    results = torch.empty_like(top)
    step = max(1, BUDGET // (top.shape[1] * count))
    for start in range(0, top.shape[0], step):
        block, target, index = scores[start : start + step, None, :], targets[start : start + step, :, None], top[start : start + step, :, None]
        results[start : start + step] = ((block > target) | ((block == target) & (positions < index))).sum(dim=-1)

    return results


def candidaterecall(positions, depth):
    """
    Computes recall@k of the top `depth` candidates: the fraction of exact top documents ranked within depth.

    >>> candidaterecall(torch.tensor([[0, 3], [12, 1]]), 4)
    0.75

    Args:
        positions: FDE ranks of the exact top documents (queries x k)
        depth: candidate depth

    Returns:
        recall in [0, 1]
    """

    return (positions < depth).double().mean().item()
