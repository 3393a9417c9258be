"""
ANN module
"""

import json
import os

import numpy as np
import torch

from txtai.ann import ANN, ANNFactory

from . import plugins
from .array import LateArray
from .folder import recover, replace
from .maxsim import maxsim
from .settings import resolve

# Metadata file format of a saved Muvera index folder
FORMAT, VERSION = "txtai-muvera-index", 1


class Muvera(ANN):
    """
    txtai ANN backend for late interaction. Holds the FDE rows and every document's token matrix; a search finds
    the top candidates by FDE inner product (exact, or delegated to any txtai ANN backend) and re-ranks them with exact
    MaxSim. Returned scores are MaxSim scores (FDE inner products when candidates is 0).
    """

    def __init__(self, config):
        super().__init__(config)

        # Index settings from the muvera: block
        self.settings, _ = resolve(config.get("muvera"))

        # FDE rows (exact search) or a delegated txtai ANN, token store, model fingerprint and encoding parameters
        self.fdes, self.delegate, self.store = None, None, None
        self.fingerprint, self.encoding = None, None

    def index(self, embeddings):
        self.fingerprint, self.encoding = getattr(embeddings, "fingerprint", None), getattr(embeddings, "encoding", None)
        self.store = self.tokenstore(embeddings)

        # Record the encoding parameters with the index, so it rebuilds the same encoder if defaults change
        if self.encoding:
            self.config["muvera"] = {**(self.config.get("muvera") or {}), **{k: v for k, v in self.encoding.items() if k != "dimension"}}

        # FDE candidate index
        fdes = np.ascontiguousarray(embeddings, dtype=np.float32)
        if self.settings["search"] == "exact":
            self.fdes = fdes
        else:
            self.delegate = self.createdelegate(fdes.shape[1])
            self.delegate.index(fdes)

        self.config["offset"] = fdes.shape[0]
        self.metadata({"torch": torch.__version__, "numpy": np.__version__})

    def append(self, embeddings):
        self.check(embeddings)

        # Token matrices first, then FDE rows: ids line up with store rows
        store = self.tokenstore(embeddings)
        for start in range(0, len(store), 1024):
            tokens, offsets, scales = store.gather(range(start, min(start + 1024, len(store))))
            self.store.append(dequantize(tokens, scales), offsets)

        fdes = np.ascontiguousarray(embeddings, dtype=np.float32)
        if self.delegate:
            self.delegate.append(fdes)
        else:
            self.fdes = np.concatenate((self.fdes, fdes))

        self.config["offset"] += fdes.shape[0]
        self.metadata()

    def delete(self, ids):
        ids = self.store.delete(ids)
        if self.delegate and ids:
            self.delegate.delete(ids)

    def search(self, queries, limit):
        self.check(queries)

        # FDE candidates, deeper than limit when they are re-ranked
        tokens = getattr(queries, "tokens", None)
        rerank = self.settings["candidates"] and tokens is not None
        depth = max(self.settings["candidates"], limit) if rerank else limit
        candidates = self.candidates(np.asarray(queries, dtype=np.float32), depth)
        if not rerank:
            return candidates

        # Exact MaxSim over each query's candidates
        results = []
        for x, rows in enumerate(candidates):
            ids = [uid for uid, _ in rows]
            if not ids:
                results.append([])
                continue

            documents, offsets, scales = self.store.gather(ids)
            query = tokens[queries.offsets[x] : queries.offsets[x + 1]]
            scores = maxsim(query, np.array([0, len(query)]), documents, offsets, reduce=self.settings["reduce"], scales=scales)[0]

            top = torch.topk(scores, min(limit, len(ids)))
            results.append([(ids[i], score) for i, score in zip(top.indices.tolist(), top.values.tolist())])

        return results

    def candidates(self, queries, depth):
        """
        Finds the top FDE candidates of each query.

        Args:
            queries: FDE query rows
            depth: number of candidates

        Returns:
            list of [(id, FDE score)] per query
        """

        if self.delegate:
            # Backends pad short result lists with negative ids
            return [[(uid, score) for uid, score in rows if uid >= 0] for rows in self.delegate.search(queries, depth)]

        # Exact inner products; deleted rows can never be candidates
        scores = torch.from_numpy(queries @ self.fdes.T)
        scores[:, torch.tensor(self.store.deleted[: scores.shape[1]])] = -torch.inf

        top = torch.topk(scores, min(depth, scores.shape[1]))
        return [
            [(uid, score) for uid, score in zip(ids, values) if score != -np.inf] for ids, values in zip(top.indices.tolist(), top.values.tolist())
        ]

    def count(self):
        return self.store.count() if self.store else 0

    def load(self, path):
        # Metadata first: a foreign or corrupt folder fails with a clear error before any array is read
        metadata = readmetadata(recover(path))
        self.fingerprint, self.encoding = metadata["fingerprint"], metadata["encoding"]

        self.store = plugins.lookup("stores", self.settings["store"]).load(os.path.join(path, "tokens"))

        if metadata["delegate"]:
            self.delegate = ANNFactory.create(metadata["delegate"])
            self.delegate.load(os.path.join(path, "fde"))
        else:
            self.fdes = np.load(os.path.join(path, "fde.npy"), mmap_mode="r", allow_pickle=False)
            if self.fdes.dtype != np.float32 or self.fdes.ndim != 2 or self.fdes.shape[0] != len(self.store):
                raise ValueError(f"{path}/fde.npy does not match the token store: {self.fdes.shape} {self.fdes.dtype}, {len(self.store)} documents")

    def save(self, path):
        # Write a complete folder aside, then swap it in: a crash mid-save leaves the previous index loadable
        def write(folder):
            self.store.save(os.path.join(folder, "tokens"))
            if self.delegate:
                self.delegate.save(os.path.join(folder, "fde"))
            else:
                np.save(os.path.join(folder, "fde.npy"), np.asarray(self.fdes), allow_pickle=False)

            metadata = {
                "format": FORMAT,
                "version": VERSION,
                "fingerprint": self.fingerprint,
                "encoding": self.encoding,
                "documents": len(self.store),
                "delegate": self.delegate.config if self.delegate else None,
            }
            with open(os.path.join(folder, "muvera.json"), "w", encoding="utf-8") as f:
                json.dump(metadata, f, indent=2)

        replace(path, write)

    def close(self):
        self.fdes, self.delegate, self.store = None, None, None
        super().close()

    def check(self, embeddings):
        """
        Checks that vectors come from the model and encoding this index was built with.

        Args:
            embeddings: FDE rows, usually a LateArray
        """

        fingerprint, encoding = getattr(embeddings, "fingerprint", None), getattr(embeddings, "encoding", None)
        if fingerprint and self.fingerprint and fingerprint != self.fingerprint:
            raise ValueError("this index was built with a different late-interaction model (model fingerprints differ), search it with the same model")
        if encoding and self.encoding and encoding != self.encoding:
            changed = sorted(k for k in set(encoding) | set(self.encoding) if encoding.get(k) != self.encoding.get(k))
            raise ValueError(f"FDE parameters differ from the ones this index was built with: {changed}")

        width = self.fdes.shape[1] if self.fdes is not None else self.delegate.config.get("dimensions") if self.delegate else None
        if width and np.ndim(embeddings) == 2 and np.shape(embeddings)[1] != width:
            raise ValueError(f"FDE vectors have {np.shape(embeddings)[1]} dimensions, this index has {width}")

    def tokenstore(self, embeddings):
        """
        Gets the token store that travels with FDE rows, building one from plain token matrices when needed.

        Args:
            embeddings: LateArray

        Returns:
            token store
        """

        if isinstance(embeddings, LateArray) and embeddings.store is not None:
            return embeddings.store

        if isinstance(embeddings, LateArray) and embeddings.tokens is not None:
            store = plugins.lookup("stores", self.settings["store"])(embeddings.tokens.shape[1], self.settings["dtype"])
            store.append(embeddings.tokens, embeddings.offsets)
            return store

        raise ValueError("txtai_muvera.Muvera needs token vectors with its FDE rows: set method: txtai_muvera.LateVectors")

    def createdelegate(self, dimensions):
        """
        Creates the txtai ANN that searches FDE rows, when muvera.search names a backend.

        Args:
            dimensions: FDE width

        Returns:
            txtai ANN
        """

        search = self.settings["search"]
        config = dict(search) if isinstance(search, dict) else {"backend": search}
        if "muvera" in str(config["backend"]).lower():
            raise ValueError("muvera search cannot delegate to the Muvera backend itself")

        config["dimensions"] = dimensions
        return ANNFactory.create(config)


def dequantize(tokens, scales):
    """
    Turns stored token rows back into float32.

    Args:
        tokens: stored rows
        scales: per-row scales for int8 rows, else None

    Returns:
        float32 rows
    """

    tokens = np.asarray(tokens, dtype=np.float32)
    return tokens * scales[:, None] if scales is not None else tokens


def readmetadata(path):
    """
    Reads and validates the metadata of a saved Muvera index folder.

    Args:
        path: index folder

    Returns:
        metadata dict
    """

    name = os.path.join(path, "muvera.json")
    try:
        with open(name, encoding="utf-8") as f:
            metadata = json.load(f)
    except FileNotFoundError as e:
        raise ValueError(f"{path} is not a txtai-muvera index: {name} is missing") from e
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{name} is corrupt: {e}") from e

    if not isinstance(metadata, dict) or metadata.get("format") != FORMAT:
        raise ValueError(f"{name} is not a txtai-muvera index file")
    if metadata.get("version") != VERSION:
        raise ValueError(f"{name} has format version {metadata.get('version')}, this txtai-muvera reads version {VERSION}")

    return metadata
