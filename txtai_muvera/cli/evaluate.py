"""
Evaluate module
"""

import os
import sys
import tempfile
import time

import torch

from tqdm.auto import tqdm

from .. import plugins
from ..core.encoder import LateEncoder
from ..core.ragged import pack
from ..settings import indexconfig, readsettings
from .beir import readbeir
from .compare import TxtaiPeer, txtairatios
from .encoders import registeredencoder
from .environment import environment, folderbytes, loadaverage, percentiles
from .lemurpeer import candidaterows, txtailemur
from .metrics import CUTOFF, DEPTH, agreement, pytreceval, rankedrun, trecmetrics
from .ranking import exactranking
from .report import MODES
from .sampling import subsample
from .timing import interleavedsearch


class Evaluate:
    """
    Evaluates late-interaction retrieval on a BEIR folder: exact MaxSim over the whole corpus, MUVERA + re-rank and
    MUVERA only. The corpus is encoded once for the exact mode and the index; a second index built from texts measures
    indexing throughput. Optionally compares txtai's own pipeline on the same model and data.
    """

    # One per command option
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
        compareepochs=1,
        comparelearn=10000,
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
            compare: None, or "txtai" (txtai's own late-interaction pipeline) and/or "lemur" (txtai's LemurTrainer + Lemur on
                the same token vectors and learn queries), a name or a list
            comparequeries: number of queries txtai's Reranker latency is measured on (it encodes every candidate)
            compareepochs: LemurTrainer epochs (training CPU time is extrapolated to its recommended 100)
            comparelearn: LemurTrainer learn tokens (training CPU time is extrapolated to its default 100,000)
            progress: shows progress bars
            sample: evaluates on this many documents: every document judged for the evaluated queries, then random others
            seed: random seed of the sample
        """

        compare = [compare] if isinstance(compare, str) else list(compare or [])
        if not set(compare) <= {"txtai", "lemur"}:
            raise ValueError(f"compare takes 'txtai' and 'lemur', got {compare!r}")
        for name, value in (("compareepochs", compareepochs), ("comparelearn", comparelearn)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if isinstance(comparequeries, bool) or not isinstance(comparequeries, int) or comparequeries < 1:
            raise ValueError(f"comparequeries must be a positive integer, got {comparequeries!r}")

        # Check settings first
        pytreceval()
        self.block = dict(muvera or {})
        self.settings, self.params = readsettings(self.block)

        self.model, self.folder, self.split = str(model), str(folder), split
        self.batchsize, self.gpu, self.compare, self.comparequeries = batchsize, gpu, compare, comparequeries
        self.compareepochs, self.comparelearn = compareepochs, comparelearn

        # Learned encodings need texts
        self.learned = getattr(plugins.lookup("encodings", self.settings["encoding"]), "learned", False)
        if "lemur" in compare and not self.learned:
            raise ValueError('compare lemur needs a learned encoding: --muvera \'{"encoding": "lemur"}\'')
        self.progress = progress

        # Dataset, optionally sampled
        if sample is not None and (isinstance(sample, bool) or not isinstance(sample, int) or sample < 1):
            raise ValueError(f"sample must be a positive integer, got {sample!r}")
        self.ids, self.texts, self.queries, self.qrels = readbeir(folder, split, queries)
        self.sample = subsample(self.ids, self.texts, self.qrels, sample, seed) if sample else None
        if self.sample:
            self.ids, self.texts = self.sample.pop("ids"), self.sample.pop("texts")

        # Shared model cache
        self.models = {}

    # Steps run in order
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
            # Encode corpus and queries once
            encoder = registeredencoder(self.model, self.settings["encoder"], self.gpu, self.batchsize)
            start = time.perf_counter()
            matrices = encoder.encode(self.texts, category="data", progress=self.progress)
            encoding = time.perf_counter() - start
            qmatrices = encoder.encode(list(self.queries.values()), category="query", progress=self.progress)

            # Learn queries for LemurTrainer
            learn = self.learnqueries(encoder) if "lemur" in self.compare else None
            del encoder

            # Exact MaxSim, whole corpus
            start = time.perf_counter()
            run = self.exactrun(matrices, qmatrices)
            exact = time.perf_counter() - start
            modes = {"exact": {**trecmetrics(self.qrels, run), "seconds": exact, "batched": True}}
            self.logmetrics("txtai-muvera", MODES["exact"], modes["exact"])

            # Index encoded tokens, save
            path = os.path.join(directory, "index")
            documents = zip(self.ids, self.texts if self.learned else matrices)
            label = "Indexing texts (encoding, training)" if self.learned else "Indexing token matrices"
            embeddings, build = self.buildindex(((uid, data, None) for uid, data in documents), label)
            if self.learned:
                statistics = getattr(embeddings.model.encoding, "statistics", None) or {}
                results["learned"] = {key: value for key, value in statistics.items() if isinstance(value, (int, float, str))}
            embeddings.save(path)
            config = embeddings.config
            embeddings.close()

            # FDE settings and storage
            fde = config["muvera"]
            results["settings"]["fde"] = {
                key: fde.get(key) for key in ("repetitions", "hashes", "projection", "final", "projector", "normalize", "fill", "seed")
            }
            results["settings"]["fde"]["dimensions"] = config["dimensions"]
            storage = storedbytes(path, len(self.ids))

            # Interleave settings: same load
            values = list(dict.fromkeys(([candidates] if candidates else []) + [0] + list(sweep or [])))
            measured = self.timedruns(path, config, values)
            latencies = {}
            for mode, value in (("rerank", candidates), ("muvera", 0)):
                if mode == "rerank" and not candidates:
                    continue

                rows, latencies[mode] = measured[value]
                modes[mode] = {**trecmetrics(self.qrels, rows), **percentiles(latencies[mode]), "exact@10": agreement(run, rows)}
                self.logmetrics("txtai-muvera", MODES[mode].format(candidates=value), modes[mode])

            # txtai's LemurTrainer
            if "lemur" in self.compare:
                results["lemur"] = self.lemurrows(matrices, qmatrices, learn, run)
            del matrices, qmatrices

            # Index texts end to end
            loads = [loadaverage()]
            if self.learned:
                embeddings, seconds = self.loadindex(path, config, candidates), build
            else:
                embeddings, seconds = self.buildindex(((uid, text, None) for uid, text in zip(self.ids, self.texts)), "Indexing texts (encoding)")
            loads.append(loadaverage())

            # txtai next, under the same load
            peer = TxtaiPeer(self, directory) if "txtai" in self.compare else None
            if peer:
                peer.buildindex()

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

            # Candidates sweep
            if sweep:
                results["sweep"] = self.sweeprows(measured, sweep)

            # txtai's pipeline beside ours
            if peer:
                ours = {"rerank": self.loadindex(path, config, candidates) if candidates else None, "muvera": self.loadindex(path, config, 0)}
                results["txtai"] = peer(ours)
                for embeddings in ours.values():
                    if embeddings:
                        embeddings.close()

                results["ratios"] = txtairatios(results)

        results["environment"]["loadavg_end"] = environment()["loadavg"]

        return results

    def logmetrics(self, pipeline, mode, figures):
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

    def learnqueries(self, encoder):
        """
        Encodes the learn queries a learned encoding's index makes: spans of a random sample of the texts.

        Args:
            encoder: late-interaction encoder

        Returns:
            list of learn query token matrices, None when the encoding learns from document tokens
        """

        encoding = plugins.lookup("encodings", self.settings["encoding"])(dimension=encoder.dimension, **self.params)
        encoding.learnfrom(self.texts, lambda queries: encoder.encode(queries, category="query", progress=self.progress))
        return [encoding.querytokens] if encoding.querytokens is not None else None

    def lemurrows(self, matrices, qmatrices, learn, exact):
        """
        Trains txtai 9.14's LemurTrainer + Lemur on the same token vectors and learn queries, and measures its candidates
        re-ranked with exact MaxSim like ours.

        Args:
            matrices: document token matrices
            qmatrices: query token matrices
            learn: learn query token matrices
            exact: exact MaxSim run

        Returns:
            list with one row of figures
        """

        if self.progress:
            tqdm.write(f"txtai LemurTrainer: {self.compareepochs} epoch(s), {self.comparelearn:,} learn tokens", file=sys.stderr)
        qrows, drows, seconds, extra = txtailemur(matrices, qmatrices, learn, self.compareepochs, self.comparelearn)
        name = f"txtai LemurTrainer + Lemur, epochs={self.compareepochs}, learnsubsetsize={self.comparelearn}"
        row = candidaterows(name, qrows, drows, qmatrices, matrices, self.ids, list(self.queries), self.qrels, exact, self.settings["reduce"])
        row.update(extra, training_cpu_s=seconds, loadavg=loadaverage())
        self.logmetrics(name, MODES["rerank"].format(candidates=DEPTH), row["rerank"])
        return [row]

    def exactrun(self, matrices, qmatrices, chunk=64):
        """
        Ranks the whole corpus with exact MaxSim.

        Args:
            matrices: document token matrices
            qmatrices: query token matrices
            chunk: queries scored per block

        Returns:
            run {query id: {document id: score}} with the top DEPTH documents of each query
        """

        # Score on the selected device
        device = LateEncoder.select(self.gpu)
        queries, qoffsets = pack(qmatrices)
        documents, doffsets = pack(matrices)
        documents = torch.from_numpy(documents).to(device)

        ranking = exactranking(queries, qoffsets, documents, doffsets, DEPTH, self.settings["reduce"], self.progress, chunk)
        return rankedrun(self.ids, list(self.queries), ranking)

    def buildindex(self, documents, description):
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

        # Index shows its own progress
        embeddings = Embeddings(self.embeddingsconfig())
        if self.progress:
            tqdm.write(f"{description}: {len(self.ids):,} documents", file=sys.stderr)
        start = time.perf_counter()
        embeddings.index(documents)
        return embeddings, time.perf_counter() - start

    def loadindex(self, path, config, candidates):
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

    def embeddingsconfig(self):
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

        other = self.loadindex(path, config, self.settings["candidates"])
        queries = list(self.queries.values())[:count]
        same = [
            [row["id"] for row in x] == [row["id"] for row in y]
            for x, y in zip(embeddings.batchsearch(queries, CUTOFF), other.batchsearch(queries, CUTOFF))
        ]
        other.close()

        return {"queries": len(same), "identical_top10": sum(same) / len(same) if same else None}

    def timedruns(self, path, config, values):
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

        indexes = [self.loadindex(path, config, value) for value in values]
        limits = [min(DEPTH, value) if value else DEPTH for value in values]
        label = f"Searching {len(values)} setting{'s' if len(values) > 1 else ''} (candidates {', '.join(map(str, values))}), interleaved"
        runs, latencies = interleavedsearch(list(zip(indexes, limits)), self.queries, label, self.progress)
        for embeddings in indexes:
            embeddings.close()

        return {value: (run, latency) for value, run, latency in zip(values, runs, latencies)}

    def sweeprows(self, measured, values):
        """
        Reports nDCG@10 and query latency for each number of re-ranked candidates, from the shared measurements.

        Args:
            measured: {candidates: (run, latencies)} from timedruns
            values: candidate counts

        Returns:
            list of dicts with candidates, metrics and latency percentiles
        """

        rows = []
        for value in values:
            run, latencies = measured[value]
            # recall@100 needs DEPTH results
            metrics = {name: score for name, score in trecmetrics(self.qrels, run).items() if value >= DEPTH or name != f"recall@{DEPTH}"}
            rows.append({"candidates": value, **metrics, **percentiles(latencies)})
            self.logmetrics("txtai-muvera", f"sweep, re-rank top {value}", rows[-1])

        return rows


def storedbytes(path, count):
    """
    Stored bytes per document of a saved txtai_muvera index.

    Args:
        path: index folder
        count: number of documents

    Returns:
        dict with token store, FDE and total bytes per document
    """

    tokens = folderbytes(os.path.join(path, "embeddings", "tokens"))
    fdes = folderbytes(os.path.join(path, "embeddings")) - tokens
    return {"tokens": tokens / count, "fde": fdes / count, "total": (tokens + fdes) / count}
