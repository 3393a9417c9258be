"""
Compare module
"""

import os
import time

import torch

from tqdm.auto import tqdm

from ..core.ragged import pad
from .environment import loadaverage, percentiles, txtaiversion
from .metrics import CUTOFF, DEPTH, trecmetrics
from .report import MODES
from .timing import interleavedsearch


class TxtaiPeer:
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

        # txtai index and its figures
        self.embeddings, self.figures = None, None

    def buildindex(self):
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
            self.buildindex()

        evaluate, embeddings = self.evaluate, self.embeddings
        queries, qrels = evaluate.queries, evaluate.qrels
        candidates, progress = evaluate.settings["candidates"], evaluate.progress

        # MUVERA only, beside ours
        depth = max(DEPTH, candidates)
        indexes = [(embeddings, depth), (ours["muvera"], DEPTH)]
        (run, _), (latency, ourlatency) = interleavedsearch(indexes, queries, "txtai searching (MUVERA only)", progress)
        muvera = {uid: dict(list(rows.items())[:DEPTH]) for uid, rows in run.items()}
        modes = {"muvera": {**trecmetrics(qrels, muvera), **percentiles(latency), "ours_same_queries": percentiles(ourlatency)}}
        evaluate.logmetrics("txtai", MODES["muvera"], modes["muvera"])

        # Score with txtai's LateEncoder
        similarity = Similarity(evaluate.model, lateencode=True, gpu=evaluate.gpu)
        vectors = self.encodecorpus(similarity.lateencoder)
        qvectors = similarity.lateencoder.encode(list(queries.values()), "query").cpu()

        start = time.perf_counter()
        exact = self.exactrun(similarity.lateencoder, qvectors, vectors)
        modes["exact"] = {**trecmetrics(qrels, exact), "seconds": time.perf_counter() - start, "batched": True}
        evaluate.logmetrics("txtai", MODES["exact"], modes["exact"])

        rerank = None
        if candidates:
            rerank = self.rerankrun(similarity.lateencoder, qvectors, vectors, {uid: list(rows)[:candidates] for uid, rows in run.items()})
            modes["rerank"] = trecmetrics(qrels, rerank)
            evaluate.logmetrics("txtai", MODES["rerank"].format(candidates=candidates), modes["rerank"])

            # Reranker latency, query subset
            latency = self.rerankerlatency(Reranker(embeddings, similarity), rerank, ours["rerank"])
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

    def encodecorpus(self, encoder, chunk=256):
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

            # Drop all-zero padding rows
            vectors.extend(matrix[matrix.abs().sum(dim=-1) > 0] for matrix in batch)

        return vectors

    def exactrun(self, encoder, qvectors, vectors, chunk=256, qchunk=32):
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

    def rerankrun(self, encoder, qvectors, vectors, candidates):
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

    def rerankerlatency(self, reranker, rerank, ours):
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


def txtairatios(results):
    """
    Compares txtai_muvera with txtai on latency and indexing throughput.

    Args:
        results: evaluation results with a txtai entry

    Returns:
        dict of ratios
    """

    peer = results["txtai"]["modes"]
    values = {"documents_per_second": results["index"]["documents_per_second"] / results["txtai"]["index"]["documents_per_second"]}

    # Speedups on the same queries
    if "rerank" in peer and "ours_same_queries" in peer["rerank"]:
        values["rerank_speedup_p50"] = peer["rerank"]["p50_ms"] / peer["rerank"]["ours_same_queries"]["p50_ms"]
        values["rerank_speedup_p95"] = peer["rerank"]["p95_ms"] / peer["rerank"]["ours_same_queries"]["p95_ms"]
    if "muvera" in peer and "ours_same_queries" in peer["muvera"]:
        values["muvera_speedup_p50"] = peer["muvera"]["p50_ms"] / peer["muvera"]["ours_same_queries"]["p50_ms"]

    return values
