"""
Evaluate module
"""

# Module split pending in a separate change
# pylint: disable=C0302

import json
import os
import platform
import sys
import tempfile
import time

from pathlib import Path

import numpy as np
import torch

from tqdm.auto import tqdm

from .. import plugins
from ..core.encoder import LateEncoder
from ..core.maxsim import maxsim
from ..core.ragged import pack, pad
from ..errors import configuration
from ..settings import indexconfig, resolve

# Retrieval depth of the metrics: nDCG@10 and MRR@10 read the top 10, recall@100 the top 100
CUTOFF, DEPTH = 10, 100

# Mode keys and the row labels of the results table
MODES = {"exact": "Exact MaxSim (whole corpus)", "rerank": "MUVERA + re-rank top {candidates}", "muvera": "MUVERA only"}


class Evaluate:
    """
    Evaluates late-interaction retrieval on a BEIR folder in three modes: exact MaxSim over the whole corpus, MUVERA
    candidates re-ranked with exact MaxSim, and MUVERA only. The corpus is encoded once; its token matrices serve the exact
    mode and build the txtai index used for the MUVERA modes. A second index built from texts measures real end-to-end
    indexing throughput. Optionally runs txtai's own late-interaction pipeline on the same model and data for comparison.
    """

    # Parameters are the documented settings of the command
    def __init__(  # pylint: disable=R0913
        self,
        model,
        folder,
        split="test",
        queries=None,
        muvera=None,
        batchsize=32,
        gpu=True,
        compare=None,
        comparequeries=20,
        progress=True,
        sample=None,
        seed=0,
    ):
        """
        Creates an evaluation.

        Args:
            model: late-interaction model, local folder or hub id
            folder: BEIR folder with corpus.jsonl, queries.jsonl and qrels/{split}.tsv
            split: qrels split
            queries: maximum number of queries, None for all
            muvera: muvera: config block of the txtai_muvera index (candidates, dtype, FDE parameters, ...)
            batchsize: encoding batch size
            gpu: True picks an accelerator when available, False forces the CPU
            compare: None or "txtai" to add txtai's own late-interaction pipeline
            comparequeries: number of queries txtai's Reranker latency is measured on (it encodes every candidate)
            progress: shows progress bars
            sample: evaluates on this many documents: every document judged for the evaluated queries, then random others
            seed: random seed of the sample
        """

        if compare not in (None, "txtai"):
            raise ValueError(f"compare must be None or 'txtai', got {compare!r}")
        if isinstance(comparequeries, bool) or not isinstance(comparequeries, int) or comparequeries < 1:
            raise ValueError(f"comparequeries must be a positive integer, got {comparequeries!r}")

        # Metrics library and index settings, checked before anything is loaded
        pytreceval()
        self.block = dict(muvera or {})
        self.settings, self.params = resolve(self.block)

        self.model, self.folder, self.split = str(model), str(folder), split
        self.batchsize, self.gpu, self.compare, self.comparequeries = batchsize, gpu, compare, comparequeries
        self.progress = progress

        # Dataset, optionally a sample of the corpus that keeps every judged document
        if sample is not None and (isinstance(sample, bool) or not isinstance(sample, int) or sample < 1):
            raise ValueError(f"sample must be a positive integer, got {sample!r}")
        self.ids, self.texts, self.queries, self.qrels = beir(folder, split, queries)
        self.sample = subsample(self.ids, self.texts, self.qrels, sample, seed) if sample else None
        if self.sample:
            self.ids, self.texts = self.sample.pop("ids"), self.sample.pop("texts")

        # Shared model cache of every txtai_muvera index this evaluation loads
        self.models = {}

    # One pass over the evaluation steps, in order
    def __call__(self, sweep=None):  # pylint: disable=R0915
        """
        Runs the evaluation.

        Args:
            sweep: optional list of re-ranked candidate counts to measure nDCG@10 and latency for (plot)

        Returns:
            results dict with every figure
        """

        candidates = self.settings["candidates"]
        results = {
            "dataset": {"path": self.folder, "split": self.split, "documents": len(self.ids), "queries": len(self.queries), "sample": self.sample},
            "model": self.model,
            "settings": {"muvera": self.block, "candidates": candidates, "dtype": self.settings["dtype"], "reduce": self.settings["reduce"]},
            "environment": environment(),
        }

        with tempfile.TemporaryDirectory(prefix="txtai-muvera-evaluate-") as directory:
            # Encode the corpus and the queries once; a model that cannot load is a ConfigurationError
            with configuration():
                encoder = plugins.lookup("encoders", self.settings["encoder"])(self.model, gpu=self.gpu, batchsize=self.batchsize)
            start = time.perf_counter()
            matrices = encoder.encode(self.texts, category="data", progress=self.progress)
            encoding = time.perf_counter() - start
            qmatrices = encoder.encode(list(self.queries.values()), category="query", progress=self.progress)
            del encoder

            # Exact MaxSim over the whole corpus
            start = time.perf_counter()
            run = self.exact(matrices, qmatrices)
            exact = time.perf_counter() - start
            modes = {"exact": {**measure(self.qrels, run), "seconds": exact, "batched": True}}
            self.log("txtai-muvera", MODES["exact"], modes["exact"])

            # txtai_muvera index built from the token matrices already encoded, then saved so each mode reloads it
            path = os.path.join(directory, "index")
            embeddings, build = self.index(((uid, matrix, None) for uid, matrix in zip(self.ids, matrices)), "Indexing token matrices")
            embeddings.save(path)
            config = embeddings.config
            embeddings.close()
            del matrices, qmatrices

            # Index dimensions and stored bytes per document
            fde = config["muvera"]
            results["settings"]["fde"] = {
                key: fde.get(key) for key in ("repetitions", "hashes", "projection", "final", "projector", "normalize", "fill", "seed")
            }
            results["settings"]["fde"]["dimensions"] = config["dimensions"]
            storage = sizes(path, len(self.ids))

            # MUVERA + re-rank, MUVERA only and the sweep's candidate counts: one measurement per setting, all settings
            # searched query by query in turn, so that machine load affects each alike; the table and the sweep share it
            values = list(dict.fromkeys(([candidates] if candidates else []) + [0] + list(sweep or [])))
            measured = self.measurements(path, config, values)
            latencies = {}
            for mode, value in (("rerank", candidates), ("muvera", 0)):
                if mode == "rerank" and not candidates:
                    continue

                rows, latencies[mode] = measured[value]
                modes[mode] = {**measure(self.qrels, rows), **percentiles(latencies[mode]), "exact@10": agreement(run, rows)}
                self.log("txtai-muvera", MODES[mode].format(candidates=value), modes[mode])

            # Real end-to-end indexing from texts; its results must match the index built from token matrices
            loads = [loadaverage()]
            embeddings, seconds = self.index(((uid, text, None) for uid, text in zip(self.ids, self.texts)), "Indexing texts (encoding)")
            loads.append(loadaverage())

            # txtai's own pipeline indexes right after, so both timings see the same load on a shared machine
            peer = Peer(self, directory) if self.compare == "txtai" else None
            if peer:
                peer.index()

            consistency = self.consistency(embeddings, path, config)
            embeddings.close()

            results["modes"] = modes
            results["latency"] = {mode: [x * 1000 for x in values] for mode, values in latencies.items()}
            results["index"] = {
                "seconds": seconds,
                "documents_per_second": len(self.ids) / seconds,
                "encoding_seconds": encoding,
                "from_tokens_seconds": build,
                "bytes_per_document": storage,
                "consistency": consistency,
                "loadavg": loads,
            }

            # Candidates sweep, from the same measurements as the table
            if sweep:
                results["sweep"] = self.sweep(measured, sweep)

            # txtai's own late-interaction pipeline, timed query by query alongside our indexes
            if peer:
                ours = {"rerank": self.load(path, config, candidates) if candidates else None, "muvera": self.load(path, config, 0)}
                results["txtai"] = peer(ours)
                for embeddings in ours.values():
                    if embeddings:
                        embeddings.close()

                results["ratios"] = ratios(results)

        results["environment"]["loadavg_end"] = environment()["loadavg"]

        return results

    def log(self, pipeline, mode, figures):
        """
        Reports a finished step's metrics under the progress bars, so a long run shows results as they come.

        Args:
            pipeline: pipeline name
            mode: mode label
            figures: metrics dict
        """

        if self.progress:
            values = ", ".join(f"{key} {figures[key]:.4f}" for key in (f"ndcg@{CUTOFF}", f"recall@{DEPTH}", f"mrr@{CUTOFF}") if key in figures)
            latency = f", p50 {figures['p50_ms']:.1f} ms" if "p50_ms" in figures else ""
            tqdm.write(f"{pipeline} | {mode}: {values}{latency}", file=sys.stderr)

    def exact(self, matrices, qmatrices, chunk=256):
        """
        Ranks the whole corpus with exact MaxSim, corpus chunk by chunk.

        Args:
            matrices: document token matrices
            qmatrices: query token matrices
            chunk: documents per chunk

        Returns:
            run {query id: {document id: score}} with the top DEPTH documents of each query
        """

        # Token vectors on the accelerator the gpu option picks (CPU otherwise)
        device = LateEncoder.select(self.gpu)
        queries, qoffsets = pack(qmatrices)
        queries = torch.from_numpy(queries).to(device)
        documents, offsets = pack(matrices)
        documents = torch.from_numpy(documents).to(device)

        # Running top DEPTH scores and document indices of every query
        scores = torch.empty((len(qmatrices), 0), device=device)
        indices = torch.empty((len(qmatrices), 0), dtype=torch.int64, device=device)
        for start in tqdm(range(0, len(matrices), chunk), desc="Exact MaxSim", unit="chunks", disable=not self.progress):
            end = min(start + chunk, len(matrices))
            tokens, doffsets = documents[offsets[start] : offsets[end]], offsets[start : end + 1] - offsets[start]
            block = maxsim(queries, qoffsets, tokens, doffsets, reduce=self.settings["reduce"])

            scores = torch.cat([scores, block], dim=1)
            indices = torch.cat([indices, torch.arange(start, end, device=device).expand(len(qmatrices), -1)], dim=1)
            top = torch.topk(scores, min(DEPTH, scores.shape[1]), dim=1)
            scores, indices = top.values, torch.gather(indices, 1, top.indices)

        return {
            uid: {self.ids[x]: score for x, score in zip(row, values)} for uid, row, values in zip(self.queries, indices.tolist(), scores.tolist())
        }

    def index(self, documents, description):
        """
        Builds a txtai_muvera index.

        Args:
            documents: (id, text or token matrix, tags) stream
            description: progress bar label

        Returns:
            (embeddings, seconds)
        """

        # pylint: disable=C0415
        from txtai import Embeddings

        # The index's own progress counts documents once encoded, so its rate is the real one
        embeddings = Embeddings(self.config())
        if self.progress:
            tqdm.write(f"{description}: {len(self.ids):,} documents", file=sys.stderr)
        start = time.perf_counter()
        embeddings.index(documents)
        return embeddings, time.perf_counter() - start

    def load(self, path, config, candidates):
        """
        Loads the saved index with another number of re-ranked candidates.

        Args:
            path: index folder
            config: index configuration
            candidates: re-ranked candidates, 0 for MUVERA only

        Returns:
            embeddings
        """

        # pylint: disable=C0415
        from txtai import Embeddings

        embeddings = Embeddings(models=self.models)
        embeddings.load(path, config={"muvera": {**config["muvera"], "candidates": candidates, "progress": False}})
        return embeddings

    def config(self):
        """
        Builds the txtai_muvera index configuration, with the index's own progress bar when progress is on.

        Returns:
            config dict
        """

        return indexconfig(self.model, self.block, self.gpu, self.batchsize, progress=bool(self.progress))

    def consistency(self, embeddings, path, config, count=20):
        """
        Checks that the index built from texts ranks like the index built from pre-encoded token matrices.

        Args:
            embeddings: index built from texts
            path: saved index built from token matrices
            config: its configuration
            count: number of queries checked

        Returns:
            dict with the number of queries checked and the fraction with identical top 10 ids
        """

        other = self.load(path, config, self.settings["candidates"])
        queries = list(self.queries.values())[:count]
        same = [
            [row["id"] for row in x] == [row["id"] for row in y]
            for x, y in zip(embeddings.batchsearch(queries, CUTOFF), other.batchsearch(queries, CUTOFF))
        ]
        other.close()

        return {"queries": len(same), "identical_top10": sum(same) / len(same) if same else None}

    def measurements(self, path, config, values):
        """
        Measures each number of re-ranked candidates on the saved index: every query is searched with every setting in
        turn (interleaved, order rotated per query), so the settings see the same machine load and warm caches.

        Args:
            path: index folder
            config: index configuration
            values: candidate counts, 0 for MUVERA only

        Returns:
            {candidates: (run, latencies in seconds)}
        """

        indexes = [self.load(path, config, value) for value in values]
        limits = [min(DEPTH, value) if value else DEPTH for value in values]
        label = f"Searching {len(values)} setting{'s' if len(values) > 1 else ''} (candidates {', '.join(map(str, values))}), interleaved"
        runs, latencies = interleaved(list(zip(indexes, limits)), self.queries, label, self.progress)
        for embeddings in indexes:
            embeddings.close()

        return {value: (run, latency) for value, run, latency in zip(values, runs, latencies)}

    def sweep(self, measured, values):
        """
        Reports nDCG@10 and query latency for each number of re-ranked candidates, from the shared measurements.

        Args:
            measured: {candidates: (run, latencies)} from measurements
            values: candidate counts

        Returns:
            list of dicts with candidates, metrics and latency percentiles
        """

        rows = []
        for value in values:
            run, latencies = measured[value]
            # Fewer results than DEPTH: recall@100 does not apply
            metrics = {name: score for name, score in measure(self.qrels, run).items() if value >= DEPTH or name != f"recall@{DEPTH}"}
            rows.append({"candidates": value, **metrics, **percentiles(latencies)})
            self.log("txtai-muvera", f"sweep, re-rank top {value}", rows[-1])

        return rows


class Peer:
    """
    txtai's own late-interaction pipeline on the same model and data: LatePooling + Muvera index
    (Embeddings(path=MODEL, content=True)), txtai's Reranker with Similarity(MODEL, lateencode=True) and its LateEncoder
    MaxSim over the whole corpus.
    """

    def __init__(self, evaluate, directory):
        """
        Creates a txtai peer run.

        Args:
            evaluate: Evaluate instance, supplies the data and settings
            directory: scratch folder
        """

        self.evaluate, self.directory = evaluate, directory

        # txtai index and its indexing figures
        self.embeddings, self.figures = None, None

    def index(self):
        """
        Builds txtai's index from texts, timed end to end: LatePooling + Muvera, txtai's default ANN backend.
        """

        # pylint: disable=C0415
        from txtai import Embeddings

        evaluate = self.evaluate
        ids, texts = evaluate.ids, evaluate.texts

        self.embeddings = Embeddings(path=evaluate.model, content=True, gpu=evaluate.gpu, encodebatch=evaluate.batchsize)
        loads, start = [loadaverage()], time.perf_counter()
        documents = tqdm(zip(ids, texts), total=len(ids), desc="txtai indexing texts", unit="docs", disable=not evaluate.progress)
        self.embeddings.index((uid, text, None) for uid, text in documents)
        seconds = time.perf_counter() - start
        loads.append(loadaverage())

        # Stored FDE bytes per document
        path = os.path.join(self.directory, "txtai")
        self.embeddings.save(path)
        fdebytes = os.path.getsize(os.path.join(path, "embeddings")) / len(ids)

        self.figures = {
            "seconds": seconds,
            "documents_per_second": len(ids) / seconds,
            "bytes_per_document": {"fde": fdebytes, "total": fdebytes},
            "loadavg": loads,
        }

    def __call__(self, ours):
        """
        Runs txtai's pipeline.

        Args:
            ours: {"rerank": txtai_muvera index that re-ranks candidates or None, "muvera": MUVERA only index}, timed query by
                  query alongside txtai

        Returns:
            results dict
        """

        # pylint: disable=C0415
        from txtai.pipeline import Reranker, Similarity

        if not self.embeddings:
            self.index()

        evaluate, embeddings = self.evaluate, self.embeddings
        queries, qrels = evaluate.queries, evaluate.qrels
        candidates, progress = evaluate.settings["candidates"], evaluate.progress

        # MUVERA only, one query at a time, searched as deep as the re-ranker needs; ours answers each query right after
        depth = max(DEPTH, candidates)
        run, latency, ourlatency = search(embeddings, queries, depth, "txtai searching (MUVERA only)", progress, ours["muvera"], DEPTH)
        muvera = {uid: dict(list(rows.items())[:DEPTH]) for uid, rows in run.items()}
        modes = {"muvera": {**measure(qrels, muvera), **percentiles(latency), "ours_same_queries": percentiles(ourlatency)}}
        evaluate.log("txtai", MODES["muvera"], modes["muvera"])

        # Exact MaxSim and MUVERA + re-rank scored with txtai's LateEncoder on pre-encoded token matrices
        similarity = Similarity(evaluate.model, lateencode=True, gpu=evaluate.gpu)
        vectors = self.encode(similarity.lateencoder)
        qvectors = similarity.lateencoder.encode(list(queries.values()), "query").cpu()

        start = time.perf_counter()
        exact = self.exact(similarity.lateencoder, qvectors, vectors)
        modes["exact"] = {**measure(qrels, exact), "seconds": time.perf_counter() - start, "batched": True}
        evaluate.log("txtai", MODES["exact"], modes["exact"])

        rerank = None
        if candidates:
            rerank = self.rerank(similarity.lateencoder, qvectors, vectors, {uid: list(rows)[:candidates] for uid, rows in run.items()})
            modes["rerank"] = measure(qrels, rerank)
            evaluate.log("txtai", MODES["rerank"].format(candidates=candidates), modes["rerank"])

            # Real Reranker latency on a subset of queries: it encodes every candidate text per query
            latency = self.latency(Reranker(embeddings, similarity), rerank, ours["rerank"])
            modes["rerank"].update(latency)

        config = embeddings.config
        embeddings.close()

        return {
            "version": txtaiversion(),
            "backend": config.get("backend"),
            "components": (config.get("build") or {}).get("settings", {}).get("components"),
            "dimensions": config.get("dimensions"),
            "modes": modes,
            "index": self.figures,
        }

    def encode(self, encoder, chunk=256):
        """
        Encodes the corpus with txtai's LateEncoder, chunk by chunk.

        Args:
            encoder: txtai LateEncoder pipeline
            chunk: documents per chunk

        Returns:
            list of unpadded float32 token matrices (torch)
        """

        texts, vectors = self.evaluate.texts, []
        for start in tqdm(range(0, len(texts), chunk), desc="txtai encoding data", unit="chunks", disable=not self.evaluate.progress):
            batch = encoder.encode(texts[start : start + chunk], "data").cpu()

            # Padding rows are all zeros, true token rows are unit normalized (txtai's rule)
            vectors.extend(matrix[matrix.abs().sum(dim=-1) > 0] for matrix in batch)

        return vectors

    def exact(self, encoder, qvectors, vectors, chunk=256, qchunk=32):
        """
        Ranks the whole corpus with txtai's LateEncoder MaxSim.

        Args:
            encoder: txtai LateEncoder pipeline
            qvectors: padded query token matrices
            vectors: unpadded document token matrices
            chunk: documents per chunk
            qchunk: queries per chunk, keeps txtai's 4D score tensor small

        Returns:
            run {query id: {document id: score}}
        """

        ids, queries = self.evaluate.ids, list(self.evaluate.queries)
        results = [[] for _ in queries]
        for start in tqdm(range(0, len(vectors), chunk), desc="txtai exact MaxSim", unit="chunks", disable=not self.evaluate.progress):
            batch = torch.from_numpy(pad(vectors[start : start + chunk]))
            for qstart in range(0, len(queries), qchunk):
                for x, rows in enumerate(encoder.score(qvectors[qstart : qstart + qchunk], batch, DEPTH)):
                    results[qstart + x].extend((start + index, score) for index, score in rows)

        return {uid: dict((ids[x], score) for x, score in sorted(rows, key=lambda row: -row[1])[:DEPTH]) for uid, rows in zip(queries, results)}

    def rerank(self, encoder, qvectors, vectors, candidates):
        """
        Re-ranks MUVERA candidates with txtai's LateEncoder MaxSim on pre-encoded token matrices: the scores txtai's
        Reranker computes, without encoding candidate texts again.

        Args:
            encoder: txtai LateEncoder pipeline
            qvectors: padded query token matrices
            vectors: unpadded document token matrices
            candidates: {query id: [document id, ...]}

        Returns:
            run {query id: {document id: score}}
        """

        positions = {uid: x for x, uid in enumerate(self.evaluate.ids)}
        run = {}
        for x, (uid, rows) in enumerate(tqdm(candidates.items(), desc="txtai re-ranking", unit="queries", disable=not self.evaluate.progress)):
            if not rows:
                run[uid] = {}
                continue

            scores = encoder.score(qvectors[x : x + 1], torch.from_numpy(pad([vectors[positions[row]] for row in rows])), DEPTH)[0]
            run[uid] = {rows[index]: score for index, score in scores}

        return run

    def latency(self, reranker, rerank, ours):
        """
        Measures txtai's Reranker query latency on the first comparequeries queries and checks its rankings against the
        pre-encoded re-rank. The txtai_muvera index answers the same queries interleaved, one after the other, so that
        both see the same load on a shared machine.

        Args:
            reranker: txtai Reranker
            rerank: pre-encoded re-rank run
            ours: txtai_muvera index that re-ranks candidates, or None

        Returns:
            dict with latency percentiles, the subset size, ranking agreement and our latency on the same queries
        """

        candidates = self.evaluate.settings["candidates"]
        limit = min(DEPTH, candidates)
        factor = max(1, round(candidates / limit))

        queries = list(self.evaluate.queries.items())[: self.evaluate.comparequeries]
        seconds, ourseconds, same = [], [], []

        # Warm up, untimed
        reranker(queries[0][1], limit=limit, factor=factor)
        if ours:
            ours.search(queries[0][1], limit)

        for uid, query in tqdm(queries, desc="txtai Reranker latency", unit="queries", disable=not self.evaluate.progress):
            start = time.perf_counter()
            rows = reranker(query, limit=limit, factor=factor)
            seconds.append(time.perf_counter() - start)
            same.append([row["id"] for row in rows[:CUTOFF]] == list(rerank[uid])[:CUTOFF])

            if ours:
                start = time.perf_counter()
                ours.search(query, limit)
                ourseconds.append(time.perf_counter() - start)

        results = {**percentiles(seconds), "latency_queries": len(queries), "identical_top10": sum(same) / len(same)}
        if ours:
            results["ours_same_queries"] = percentiles(ourseconds)

        return results


def beir(folder, split="test", limit=None):
    """
    Loads a BEIR folder: corpus.jsonl, queries.jsonl and qrels/{split}.tsv. Documents are title + " " + text. Queries
    absent from the qrels are skipped.

    Args:
        folder: BEIR folder
        split: qrels split
        limit: maximum number of queries, None for all

    Returns:
        (document ids, document texts, {query id: query text}, qrels {query id: {document id: relevance}})
    """

    folder = Path(folder)
    paths = {name: folder / name for name in ("corpus.jsonl", "queries.jsonl", f"qrels/{split}.tsv")}
    for name, path in paths.items():
        if not path.is_file():
            raise FileNotFoundError(f"{path} not found: a BEIR folder holds corpus.jsonl, queries.jsonl and qrels/{split}.tsv ({name})")

    # Corpus
    ids, texts = [], []
    for row in jsonl(paths["corpus.jsonl"]):
        ids.append(str(row["_id"]))
        texts.append(f"{row.get('title') or ''} {row.get('text') or ''}")

    # Qrels, header line skipped
    qrels = {}
    with open(paths[f"qrels/{split}.tsv"], encoding="utf-8") as f:
        for line in f:
            fields = line.rstrip("\n").split("\t")
            if len(fields) < 3 or not fields[2].strip().lstrip("-").isdigit():
                continue
            qrels.setdefault(fields[0], {})[fields[1]] = int(fields[2])

    # Queries judged in this split, in file order
    queries = {}
    for row in jsonl(paths["queries.jsonl"]):
        uid = str(row["_id"])
        if uid in qrels:
            queries[uid] = row["text"]
    if limit is not None:
        queries = dict(list(queries.items())[:limit])

    if not ids or not queries:
        raise ValueError(f"{folder} has {len(ids)} documents and {len(queries)} queries with {split} qrels, both must be > 0")

    return ids, texts, queries, {uid: qrels[uid] for uid in queries}


def subsample(ids, texts, qrels, size, seed=0):
    """
    Samples documents for a quicker evaluation: every document judged for the evaluated queries, then random others up
    to size, in corpus order.

    Args:
        ids: document ids
        texts: document texts
        qrels: {query id: {document id: relevance}} of the evaluated queries
        size: number of documents
        seed: random seed

    Returns:
        dict with ids, texts, size (asked), judged (documents kept because judged) and seed
    """

    judged = {uid for documents in qrels.values() for uid in documents}
    keep = np.array([uid in judged for uid in ids])
    others = np.flatnonzero(~keep)
    extra = max(0, min(size - int(keep.sum()), len(others)))
    keep[np.random.default_rng(seed).choice(others, extra, replace=False)] = True

    chosen = np.flatnonzero(keep)
    judged = int(sum(uid in judged for uid in ids))
    return {"ids": [ids[x] for x in chosen], "texts": [texts[x] for x in chosen], "size": size, "judged": judged, "seed": seed}


def jsonl(path):
    """
    Reads a JSON lines file.

    Args:
        path: file path

    Returns:
        generator of dicts
    """

    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                yield json.loads(line)


def agreement(reference, run, k=CUTOFF):
    """
    Recall of a reference ranking's top k in a run's top k, averaged over the reference's queries: with the exact MaxSim
    run as reference, the recall@10 that txtai-muvera tune reports for a muvera: block.

    >>> agreement({"q": {"a": 3, "b": 2}}, {"q": {"b": 5, "c": 4}}, k=2)
    0.5

    Args:
        reference: {query id: {document id: score}}
        run: {query id: {document id: score}}
        k: cutoff

    Returns:
        mean recall
    """

    def top(scores):
        return {uid for uid, _ in sorted(scores.items(), key=lambda x: -x[1])[:k]}

    values = []
    for qid, scores in reference.items():
        expected = top(scores)
        values.append(len(expected & top(run.get(qid, {}))) / max(1, len(expected)))

    return sum(values) / max(1, len(values))


def measure(qrels, run):
    """
    Computes nDCG@10, recall@100 and MRR@10 with pytrec_eval, averaged over every query in qrels: a query without
    results counts as 0.

    Args:
        qrels: {query id: {document id: relevance}}
        run: {query id: {document id: score}}

    Returns:
        dict with ndcg@10, recall@100 and mrr@10
    """

    pytrec_eval = pytreceval()

    # pytrec_eval skips queries with no results, they are counted as 0 below
    run = {uid: {doc: float(score) for doc, score in (run.get(uid) or {}).items()} for uid in qrels}
    run = {uid: rows for uid, rows in run.items() if rows}

    # MRR@10 is the reciprocal rank over the top 10 only (pytrec_eval sorts by score, then by document id)
    top = {uid: dict(sorted(rows.items(), key=lambda row: (-row[1], row[0]))[:CUTOFF]) for uid, rows in run.items()}

    scores = pytrec_eval.RelevanceEvaluator(qrels, {f"ndcg_cut.{CUTOFF}", f"recall.{DEPTH}"}).evaluate(run)
    ranks = pytrec_eval.RelevanceEvaluator(qrels, {"recip_rank"}).evaluate(top)

    def mean(values):
        return sum(values) / len(qrels)

    return {
        f"ndcg@{CUTOFF}": mean(x[f"ndcg_cut_{CUTOFF}"] for x in scores.values()),
        f"recall@{DEPTH}": mean(x[f"recall_{DEPTH}"] for x in scores.values()),
        f"mrr@{CUTOFF}": mean(x["recip_rank"] for x in ranks.values()),
    }


def pytreceval():
    """
    Imports pytrec_eval, an optional dependency.

    Returns:
        pytrec_eval module
    """

    try:
        # pylint: disable=C0415
        import pytrec_eval
    except ImportError as e:
        raise ImportError('evaluation needs pytrec_eval: pip install "txtai-muvera[evaluate]" (pytrec-eval-terrier)') from e

    return pytrec_eval


def pyplot():
    """
    Imports matplotlib's pyplot with the Agg backend (no display needed), an optional dependency.

    Returns:
        matplotlib.pyplot module
    """

    try:
        # pylint: disable=C0415
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as e:
        raise ImportError('plots need matplotlib: pip install "txtai-muvera[evaluate]"') from e

    return plt


def search(embeddings, queries, limit, description, progress, other=None, otherlimit=None):
    """
    Runs queries one at a time through Embeddings.search and times each end to end. An optional other index answers each
    query too, timed: interleaving keeps a comparison fair when other processes load the machine.

    Args:
        embeddings: embeddings index
        queries: {query id: query text}
        limit: results per query
        description: progress bar label
        progress: shows a progress bar
        other: optional embeddings index timed on the same queries
        otherlimit: results per query of the other index, defaults to limit

    Returns:
        (run {query id: {document id: score}}, latencies in seconds), then the other index's latencies when it is set
    """

    indexes = [(embeddings, limit)] + ([(other, otherlimit or limit)] if other else [])
    runs, latencies = interleaved(indexes, queries, description, progress)
    return (runs[0], *latencies)


def interleaved(indexes, queries, description, progress):
    """
    Searches every query on every index in turn, one query at a time, timing each search end to end. The order of the
    indexes rotates from query to query, so that no index is always the first (colder caches) or the last.

    Args:
        indexes: list of (embeddings, limit)
        queries: {query id: query text}
        description: progress bar label
        progress: shows a progress bar

    Returns:
        (runs, latencies): per index, {query id: {document id: score}} and latencies in seconds
    """

    # Warm up, untimed: the first search loads lazily initialised state
    for index, depth in indexes:
        index.search(next(iter(queries.values())), depth)

    runs, latencies = [{} for _ in indexes], [[] for _ in indexes]
    for y, (uid, query) in enumerate(tqdm(queries.items(), desc=description, unit="queries", disable=not progress)):
        for x in (np.arange(len(indexes)) + y) % len(indexes):
            index, depth = indexes[x]
            start = time.perf_counter()
            rows = index.search(query, depth)
            latencies[x].append(time.perf_counter() - start)
            runs[x][uid] = {row["id"] if isinstance(row, dict) else row[0]: row["score"] if isinstance(row, dict) else row[1] for row in rows}

    return runs, latencies


def percentiles(latencies):
    """
    Summarises query latencies.

    Args:
        latencies: seconds per query

    Returns:
        dict with p50, p95 and mean in milliseconds
    """

    values = np.asarray(latencies, dtype=np.float64) * 1000
    return {"p50_ms": float(np.percentile(values, 50)), "p95_ms": float(np.percentile(values, 95)), "mean_ms": float(values.mean())}


def sizes(path, count):
    """
    Stored bytes per document of a saved txtai_muvera index.

    Args:
        path: index folder
        count: number of documents

    Returns:
        dict with token store, FDE and total bytes per document
    """

    def total(folder):
        return sum(f.stat().st_size for f in Path(folder).rglob("*") if f.is_file())

    tokens = total(os.path.join(path, "embeddings", "tokens"))
    fdes = total(os.path.join(path, "embeddings")) - tokens
    return {"tokens": tokens / count, "fde": fdes / count, "total": (tokens + fdes) / count}


def ratios(results):
    """
    Compares txtai_muvera with txtai on latency and indexing throughput.

    Args:
        results: evaluation results with a txtai entry

    Returns:
        dict of ratios
    """

    peer = results["txtai"]["modes"]
    values = {"documents_per_second": results["index"]["documents_per_second"] / results["txtai"]["index"]["documents_per_second"]}

    # Re-rank latency on the same query subset: how many times faster txtai_muvera answers
    if "rerank" in peer and "ours_same_queries" in peer["rerank"]:
        values["rerank_speedup_p50"] = peer["rerank"]["p50_ms"] / peer["rerank"]["ours_same_queries"]["p50_ms"]
        values["rerank_speedup_p95"] = peer["rerank"]["p95_ms"] / peer["rerank"]["ours_same_queries"]["p95_ms"]
    if "muvera" in peer and "ours_same_queries" in peer["muvera"]:
        values["muvera_speedup_p50"] = peer["muvera"]["p50_ms"] / peer["muvera"]["ours_same_queries"]["p50_ms"]

    return values


def table(results):
    """
    Formats results as markdown: a row per mode and pipeline, then index figures and ratios.

    Args:
        results: evaluation results

    Returns:
        markdown string
    """

    dataset, settings = results["dataset"], results["settings"]
    candidates, fde = settings["candidates"], settings.get("fde", {})
    lines = [
        f"Dataset: {dataset['path']} ({dataset['split']}), {dataset['documents']:,} documents, {dataset['queries']:,} queries"
        f"{sampled(dataset.get('sample'))}. Model: {results['model']}.",
        f"FDE: {fde.get('repetitions')} repetitions x 2^{fde.get('hashes')} partitions x {fde.get('projection') or 'identity'} "
        f"{fde.get('projector')} projection"
        f"{' -> ' + str(fde['final']) if fde.get('final') else ''} = {fde.get('dimensions', 0):,} dimensions, normalize {fde.get('normalize')}, "
        f"fill {fde.get('fill')}; "
        f"token store {settings['dtype']}.",
        "",
        f"| Pipeline | Mode | nDCG@{CUTOFF} | Recall@{DEPTH} | MRR@{CUTOFF} | Exact top {CUTOFF} recall | p50 ms | p95 ms |",
        "|---|---|---|---|---|---|---|---|",
    ]

    # One row per mode and pipeline
    pipelines = [("txtai-muvera", results["modes"])]
    if "txtai" in results:
        pipelines.append((f"txtai {results['txtai']['version']}", results["txtai"]["modes"]))

    notes = []
    for name, modes in pipelines:
        for mode, label in MODES.items():
            if mode not in modes:
                continue

            row = modes[mode]
            agree = f"{row['exact@10']:.4f}" if "exact@10" in row else ""
            latency = ("batched", "batched") if row.get("batched") else (f"{row['p50_ms']:.1f}", f"{row['p95_ms']:.1f}")
            if "latency_queries" in row:
                latency = tuple(f"{x}*" for x in latency)
                notes.append(
                    f"\\* txtai Reranker latency measured on the first {row['latency_queries']} queries (it encodes every candidate text per query)."
                )

            lines.append(
                f"| {name} | {label.format(candidates=candidates)} | {row[f'ndcg@{CUTOFF}']:.4f} | {row[f'recall@{DEPTH}']:.4f} | "
                f"{row[f'mrr@{CUTOFF}']:.4f} | {agree} | {latency[0]} | {latency[1]} |"
            )

    lines.extend(["", *notes[:1]] if notes else [])

    # Index figures
    lines.extend(
        ["", "| Pipeline | Index seconds | Documents/s | Bytes/document (tokens + FDE) | Load average (start, end) |", "|---|---|---|---|---|"]
    )
    for name, index in [("txtai-muvera", results["index"])] + ([(pipelines[1][0], results["txtai"]["index"])] if "txtai" in results else []):
        stored = index["bytes_per_document"]
        breakdown = f"{stored['tokens']:,.0f} + {stored['fde']:,.0f}" if "tokens" in stored else "FDE only"
        breakdown = f"{stored['total']:,.0f} ({breakdown})"
        load = ", ".join(f"{x:.1f}" for x in index["loadavg"] if x is not None) or "n/a"
        lines.append(f"| {name} | {index['seconds']:.1f} | {index['documents_per_second']:.1f} | {breakdown} | {load} |")

    # Ratios
    if "ratios" in results:
        ratio = results["ratios"]
        lines.append("")
        if "rerank_speedup_p50" in ratio:
            subset = results["txtai"]["modes"]["rerank"]
            lines.append(
                f"MUVERA + re-rank latency, same {subset['latency_queries']} queries interleaved: "
                f"txtai-muvera p50 {subset['ours_same_queries']['p50_ms']:.1f} ms vs "
                f"txtai Reranker p50 {subset['p50_ms']:.1f} ms: {ratio['rerank_speedup_p50']:.1f}x faster (p95 {ratio['rerank_speedup_p95']:.1f}x)."
            )
        if "muvera_speedup_p50" in ratio:
            lines.append(f"MUVERA only latency, same queries interleaved: txtai p50 / txtai-muvera p50 = {ratio['muvera_speedup_p50']:.2f}x.")
        lines.append(f"Indexing throughput: txtai-muvera / txtai documents per second = {ratio['documents_per_second']:.2f}x.")

    return "\n".join(lines)


def sampled(sample):
    """
    Describes a corpus sample for the table.

    Args:
        sample: sample dict of the results, or None

    Returns:
        text
    """

    return f" (sample of {sample['size']:,}: every one of the {sample['judged']:,} judged documents kept, seed {sample['seed']})" if sample else ""


def plot(results, path):
    """
    Plots nDCG@10 and query latency against the number of re-ranked candidates.

    Args:
        results: evaluation results with a sweep
        path: output image file
    """

    plt = pyplot()

    rows = results["sweep"]
    candidates = [row["candidates"] for row in rows]

    figure, left = plt.subplots(figsize=(7, 4.5))
    left.plot(candidates, [row[f"ndcg@{CUTOFF}"] for row in rows], "o-", color="tab:blue", label=f"nDCG@{CUTOFF}")
    left.axhline(results["modes"]["exact"][f"ndcg@{CUTOFF}"], color="tab:blue", linestyle=":", label=f"exact MaxSim nDCG@{CUTOFF}")
    left.set_xscale("log")
    left.set_xticks(candidates)
    left.set_xticklabels([str(x) for x in candidates])
    left.set_xlabel("re-ranked MUVERA candidates")
    left.set_ylabel(f"nDCG@{CUTOFF}", color="tab:blue")

    # Latency on a twin axis
    right = left.twinx()
    right.plot(candidates, [row["p50_ms"] for row in rows], "s--", color="tab:red", label="p50 latency")
    right.plot(candidates, [row["p95_ms"] for row in rows], "^:", color="tab:red", alpha=0.5, label="p95 latency")
    right.set_ylabel("query latency (ms)", color="tab:red")
    right.set_ylim(bottom=0)

    handles = left.get_legend_handles_labels()[0] + right.get_legend_handles_labels()[0]
    left.legend(handles, [h.get_label() for h in handles], loc="lower right", fontsize=8)

    dataset = results["dataset"]
    left.set_title(f"{Path(dataset['path']).name} ({dataset['split']}, {dataset['queries']} queries): MUVERA + exact MaxSim re-rank")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def environment():
    """
    Describes the machine and library versions a run used.

    Returns:
        dict
    """

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "txtai": txtaiversion(),
        "threads": torch.get_num_threads(),
        "cpus": os.cpu_count(),
        "machine": platform.machine(),
        "cuda": torch.cuda.is_available(),
        # Other processes competing for the CPU skew timings
        "loadavg": loadaverage(),
    }


def loadaverage():
    """
    Reads the 1 minute system load average, which shows when other processes compete for the CPU during a timing.

    Returns:
        load average or None where the platform has none
    """

    return os.getloadavg()[0] if hasattr(os, "getloadavg") else None


def txtaiversion():
    """
    Gets the installed txtai version.

    Returns:
        version string
    """

    # pylint: disable=C0415
    from importlib.metadata import version

    return version("txtai")
