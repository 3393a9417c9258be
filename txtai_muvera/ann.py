"""
ANN module
"""

import json
import logging
import os
import threading

from contextlib import contextmanager

import numpy as np
import torch

from txtai.ann import ANN, ANNFactory

from . import plugins
from .array import LateArray
from .delegate import delegateconfig, removable, tune
from .files import checksize, npyheader, sha256
from .folder import recover, replace
from .lemur import ArtifactError, LemurModel
from .maxsim import maxsim
from .scan import ENCODINGDTYPES, Scan, encodingrows
from .settings import DEFAULTS, resolve

# Metadata file format of a saved Muvera index folder
FORMAT, VERSION = "txtai-muvera-index", 2

# Largest muvera.json read: real metadata is a few kilobytes, anything bigger is not ours
METADATA = 1 << 20

# Folder of a learned encoding's artifact inside an index folder
LEARNED = "lemur"

logger = logging.getLogger(__name__)


class IndexFileError(ValueError):
    """
    Raised when a saved Muvera index folder is missing, foreign, corrupt or truncated. The message names the file and the problem.
    """


class ReadWriteLock:
    """
    Many readers or one writer. A waiting writer blocks new readers, so a steady stream of searches cannot starve an upsert.
    The writing thread may also read (a write that calls a read method does not deadlock).
    """

    def __init__(self):
        self.condition = threading.Condition(threading.Lock())
        self.readers, self.writer, self.waiting = 0, None, 0

    @contextmanager
    def read(self):
        """
        Holds the lock shared while the block runs.
        """

        me = threading.get_ident()
        with self.condition:
            # The writer already holds the lock exclusively
            reentrant = self.writer == me
            if not reentrant:
                while self.writer is not None or self.waiting:
                    self.condition.wait()
                self.readers += 1

        if reentrant:
            yield
            return

        try:
            yield
        finally:
            with self.condition:
                self.readers -= 1
                if not self.readers:
                    self.condition.notify_all()

    @contextmanager
    def write(self):
        """
        Holds the lock exclusively while the block runs.
        """

        me = threading.get_ident()
        with self.condition:
            # Re-entrant for the writing thread
            reentrant = self.writer == me
            if not reentrant:
                self.waiting += 1
                while self.writer is not None or self.readers:
                    self.condition.wait()
                self.waiting -= 1
                self.writer = me

        if reentrant:
            yield
            return

        try:
            yield
        finally:
            with self.condition:
                self.writer = None
                self.condition.notify_all()


class Muvera(ANN):
    """
    txtai ANN backend for late interaction. Holds the FDE rows and every document's token matrix; a search finds
    the top candidates by FDE inner product (exact, or delegated to any txtai ANN backend) and re-ranks them with exact
    MaxSim. Returned scores are MaxSim scores (FDE inner products when candidates is 0).

    Thread safety: search, count and save may run from many threads while one thread runs index, append, delete or
    load; a readers-writer lock keeps each search on a consistent view of the FDE rows and token store.
    """

    def __init__(self, config):
        super().__init__(config)

        # Index settings and encoding parameters from the muvera: block
        self.settings, self.params = resolve(config.get("muvera"))

        # FDE rows (exact search) or a delegated txtai ANN, token store, model fingerprint and encoding parameters
        self.fdes, self.delegate, self.store = None, None, None
        self.fingerprint, self.encoding = None, None

        # Trained model of a learned encoding, saved with the index
        self.learned = None

        # Searches share the index, writes take it exclusively
        self.lock = ReadWriteLock()

        # Exact scan over float32 or float16 candidate vectors
        self.scan = Scan()

    def index(self, embeddings):
        store = self.tokenstore(embeddings)
        fdes = self.rows(embeddings)
        if fdes.shape[0] != len(store):
            raise ValueError(f"{fdes.shape[0]} FDE rows but {len(store)} token matrices")

        # A learned encoding trains on the stored tokens, then encodes them
        encoder = getattr(embeddings, "encoder", None)
        if encoder is not None:
            fdes = self.learn(encoder, store)

        with self.lock.write():
            self.fingerprint, self.encoding = getattr(embeddings, "fingerprint", None), getattr(embeddings, "encoding", None)
            self.store, self.fdes, self.delegate = store, None, None
            if encoder is not None:
                self.encoding, self.learned = encoder.config(), encoder.model

            # Record the encoding parameters and model fingerprint with the index: the same encoder is rebuilt on load
            # even if defaults change, and a different model is refused before it writes anything (see LateVectors)
            block = self.config.get("muvera")
            block = dict(block) if isinstance(block, dict) else {}
            if encoder is not None and encoder.fallback:
                # Fell back to MUVERA: the index records the FDE it was built with, not the learned encoding's settings
                block = {k: v for k, v in block.items() if k in DEFAULTS and k != "encoding"}
                block["encoding"], self.settings["encoding"], self.params = "muvera", "muvera", {}
            if self.encoding:
                block.update({k: v for k, v in self.encoding.items() if k != "dimension"})
            if self.fingerprint:
                block["fingerprint"] = self.fingerprint
            self.config["muvera"] = block

            # FDE candidate index
            if self.settings["search"] == "exact":
                self.fdes = encodingrows(fdes, self.settings["encodingdtype"])
            else:
                self.delegate = self.createdelegate(fdes.shape[1], fdes.shape[0])
                self.delegate.index(fdes)
                tune(self.delegate)

            self.config["offset"] = fdes.shape[0]
            self.config["dimensions"] = fdes.shape[1]
            self.metadata({"torch": torch.__version__, "numpy": np.__version__})

    def append(self, embeddings):
        # Everything is checked before the index changes
        self.check(embeddings)
        store = self.tokenstore(embeddings)
        fdes = self.rows(embeddings)
        if fdes.shape[0] != len(store):
            raise ValueError(f"{fdes.shape[0]} FDE rows but {len(store)} token matrices")
        if self.store is not None and store.dimension != self.store.dimension:
            raise ValueError(f"token vectors have {store.dimension} dimensions, this index has {self.store.dimension}")

        # A learned encoding encodes new documents with its stored sample, no retraining
        encoder = getattr(embeddings, "encoder", None)
        if encoder is not None:
            fdes = self.encoderows(encoder, store)

        with self.lock.write():
            # Token matrices first, then FDE rows: ids line up with store rows
            for start in range(0, len(store), 1024):
                tokens, offsets, scales = store.gather(range(start, min(start + 1024, len(store))))
                self.store.append(dequantize(tokens, scales), offsets)

            if self.delegate:
                self.delegate.append(fdes)
            else:
                self.fdes = np.concatenate((self.fdes, encodingrows(fdes, self.settings["encodingdtype"])), dtype=self.settings["encodingdtype"])

            self.config["offset"] += fdes.shape[0]
            self.metadata()

    def delete(self, ids):
        with self.lock.write():
            if self.store is None:
                return

            ids = self.store.delete(ids)
            if self.delegate and ids:
                removable(self.delegate, ids)

    def search(self, queries, limit):
        if isinstance(limit, bool) or not isinstance(limit, (int, np.integer)) or limit < 1:
            raise ValueError(f"search limit must be a positive integer, got {limit!r}")

        self.check(queries)

        with self.lock.read():
            # Nothing indexed
            if self.store is None:
                return [[] for _ in range(len(queries))]

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
            # Backends pad short result lists with negative ids. Deleted rows a backend could not remove are skipped:
            # ask for as many more rows as it still holds
            kept = max(self.delegate.count() - self.store.count(), 0)
            deleted = self.store.deleted
            results = self.delegate.search(queries, depth + kept)
            return [[(uid, score) for uid, score in rows if 0 <= uid < len(deleted) and not deleted[uid]][:depth] for rows in results]

        # Exact inner products; deleted rows can never be candidates
        scores = self.scan(queries, self.fdes)
        scores[:, torch.tensor(self.store.deleted[: scores.shape[1]])] = -torch.inf

        top = torch.topk(scores, min(depth, scores.shape[1]))
        return [
            [(uid, score) for uid, score in zip(ids, values) if score != -np.inf] for ids, values in zip(top.indices.tolist(), top.values.tolist())
        ]

    def count(self):
        with self.lock.read():
            return self.store.count() if self.store else 0

    def load(self, path):
        with self.lock.write():
            # Metadata first: a foreign or corrupt folder fails with a clear error before any array is read
            path = recover(path)
            metadata = readmetadata(path)
            files = metadata["files"]

            # The config must ask for the FDE parameters and model the index was built with
            original = self.config.get("muvera")
            self.configure(metadata)

            # Token store: the store validates its own folder
            store = plugins.lookup("stores", self.settings["store"]).load(os.path.join(path, "tokens"))
            if len(store) != metadata["documents"]:
                raise IndexFileError(f"{path}: token store holds {len(store)} documents, muvera.json records {metadata['documents']}")

            fdes, delegate = None, None
            if metadata["delegate"]:
                # Delegated backends parse their files in native code: every file they read is checksummed first
                self.checkdelegate(path, metadata["delegate"])
                names = listing(path, "fde")
                if not names or names != sorted(name for name in files if name == "fde" or name.startswith("fde/")):
                    raise IndexFileError(f"{path}: delegated FDE index files {names} do not match muvera.json")
                for name in names:
                    verify(path, name, files[name], checksum=True)
                delegate = self.loaddelegate(path, metadata["delegate"])
            else:
                fdes = readarray(path, "fde.npy", files.get("fde.npy"), (metadata["documents"], metadata["dimensions"]), metadata["encodingdtype"])

            # Learned encoding artifact: checksummed (safetensors are parsed in native code), then handed to the vectors
            # model through the config, which txtai shares between the backend and the vectors model it creates next
            learned = None
            names = sorted(name for name in files if name.startswith(f"{LEARNED}/"))
            if getattr(plugins.lookup("encodings", self.settings["encoding"]), "learned", False) and not names:
                raise IndexFileError(f"{path}: the trained {self.settings['encoding']} encoding is missing from muvera.json")
            if names:
                for name in names:
                    verify(path, name, files[name], checksum=True)
                try:
                    learned = LemurModel.load(os.path.join(path, LEARNED))
                except ArtifactError as error:
                    raise IndexFileError(str(error)) from error
                # The sparse slot creates its vectors model first, from a copy of the config that shares the muvera block
                self.config["muvera"]["path"] = os.path.join(path, LEARNED)
                if isinstance(original, dict):
                    original["path"] = self.config["muvera"]["path"]

            self.store, self.fdes, self.delegate, self.learned = store, fdes, delegate, learned
            self.fingerprint, self.encoding = metadata["fingerprint"], metadata["encoding"]

            # txtai restores the offset from its config.json; an ANN loaded on its own starts from the stored rows
            self.config.setdefault("offset", len(store))

    def save(self, path):
        # Write a complete folder aside, then swap it in: a crash mid-save leaves the previous index loadable
        def write(folder):
            files = {}
            self.store.save(os.path.join(folder, "tokens"))
            if self.delegate:
                self.delegate.save(os.path.join(folder, "fde"))
                for name in listing(folder, "fde"):
                    files[name] = describe(folder, name, checksum=True)
            else:
                # Rows loaded from an older float32 index are written in the configured type
                fdes = encodingrows(np.asarray(self.fdes), self.settings["encodingdtype"])
                np.save(os.path.join(folder, "fde.npy"), fdes, allow_pickle=False)
                files["fde.npy"] = describe(folder, "fde.npy")

            # Learned encoding artifact, in txtai's LEMUR format
            if self.learned:
                self.learned.save(os.path.join(folder, LEARNED))
                for name in listing(folder, LEARNED):
                    files[name.replace(os.sep, "/")] = describe(folder, name, checksum=True)

            metadata = {
                "format": FORMAT,
                "version": VERSION,
                "fingerprint": self.fingerprint,
                "encoding": self.encoding,
                "documents": len(self.store),
                "dimensions": self.dimensions(),
                "delegate": self.delegate.config if self.delegate else None,
                "encodingdtype": None if self.delegate else str(fdes.dtype),
                "files": files,
            }
            with open(os.path.join(folder, "muvera.json"), "w", encoding="utf-8") as f:
                json.dump(metadata, f, indent=2)

        # Exclusive: a memory-mapped store re-maps its saved files while saving
        with self.lock.write():
            replace(path, write)

    def close(self):
        with self.lock.write():
            self.fdes, self.delegate, self.store, self.learned = None, None, None, None
            super().close()

    def learn(self, encoder, store):
        """
        Trains a learned encoding on the stored token vectors, unless it was given a trained artifact, and encodes them.
        A collection too small to train on falls back to MUVERA, with a warning.

        Args:
            encoder: learned encoding shared with the vectors model
            store: token store of the new index

        Returns:
            float32 rows
        """

        if encoder.train:
            tokens, offsets, scales = store.gather(range(len(store)))
            tokens = dequantize(tokens, scales) if scales is not None else tokens
            documents = int((np.diff(offsets) > 0).sum())
            if encoder.trainable(documents):
                gpu = self.config.get("gpu", True)
                device = "cuda" if gpu is not False and torch.cuda.is_available() else None
                encoder.fit(tokens, offsets, device=device, progress=self.settings["progress"])
            else:
                logger.warning(
                    "%d documents are too few to train the %s encoding (minimum %d): falling back to MUVERA",
                    documents,
                    self.settings["encoding"],
                    encoder.params["minimum"],
                )
                encoder.usefallback(plugins.lookup("encodings", "muvera")(dimension=store.dimension))

        return self.encoderows(encoder, store)

    def encoderows(self, encoder, store):
        """
        Encodes every document of a token store.

        Args:
            encoder: encoding
            store: token store

        Returns:
            float32 rows
        """

        rows = np.empty((len(store), encoder.dimensions), dtype=np.float32)
        for start in range(0, len(store), 1024):
            tokens, offsets, scales = store.gather(range(start, min(start + 1024, len(store))))
            rows[start : start + len(offsets) - 1] = encoder(dequantize(tokens, scales), offsets, "data")

        return self.rows(rows)

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

        if np.ndim(embeddings) != 2:
            raise ValueError(f"FDE vectors must be a 2D array, got shape {np.shape(embeddings)}")
        width = self.dimensions()
        if width and np.shape(embeddings)[1] != width:
            raise ValueError(f"FDE vectors have {np.shape(embeddings)[1]} dimensions, this index has {width}")

    def dimensions(self):
        """
        Width of the indexed FDE rows.

        Returns:
            FDE dimensions or None when nothing is indexed
        """

        if self.fdes is not None:
            return int(self.fdes.shape[1])

        return self.delegate.config.get("dimensions") if self.delegate else None

    def rows(self, embeddings):
        """
        Reads FDE rows as a contiguous float32 array, refusing NaN and inf.

        Args:
            embeddings: FDE rows

        Returns:
            float32 array
        """

        fdes = np.ascontiguousarray(embeddings, dtype=np.float32)
        if fdes.ndim != 2:
            raise ValueError(f"FDE vectors must be a 2D array, got shape {fdes.shape}")

        # Chunked so a large memory-mapped array is not copied to test it
        for start in range(0, fdes.shape[0], 65536):
            if not np.isfinite(fdes[start : start + 65536]).all():
                raise ValueError("FDE vectors contain NaN or infinite values")

        return fdes

    def configure(self, metadata):
        """
        Checks the config's FDE parameters against the ones the index was built with and fills in the rest, so the
        vectors model built after this load encodes like the index.

        Args:
            metadata: index metadata
        """

        # Parameters added to the encoding after this index was built take the values it was built with
        if metadata["encoding"]:
            legacy = getattr(plugins.lookup("encodings", self.settings["encoding"]), "LEGACY", {})
            metadata["encoding"] = {**legacy, **metadata["encoding"]}

        saved = {k: v for k, v in (metadata["encoding"] or {}).items() if k != "dimension"}
        changed = sorted(k for k, v in self.params.items() if k in saved and saved[k] != v)
        if changed:
            built = ", ".join(f"{k}={saved[k]!r}" for k in changed)
            asked = ", ".join(f"{k}={self.params[k]!r}" for k in changed)
            raise ValueError(f"this index was built with FDE parameters {built}, the config asks for {asked}: load it without changing them")

        block = self.config.get("muvera")
        block = dict(block) if isinstance(block, dict) else {}
        if metadata["fingerprint"]:
            block.setdefault("fingerprint", metadata["fingerprint"])
        self.config["muvera"] = {**saved, **block}
        self.params = {**saved, **self.params}

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

    def createdelegate(self, dimensions, rows=None):
        """
        Creates the txtai ANN that searches FDE rows, when muvera.search names a backend.

        Args:
            dimensions: FDE width
            rows: number of rows to index

        Returns:
            txtai ANN
        """

        config = self.delegateconfig(dimensions, rows)
        config["dimensions"] = dimensions
        return ANNFactory.create(config)

    def delegateconfig(self, dimensions=None, rows=None):
        """
        Builds the delegated ANN config from muvera.search: a txtai ANN backend, a preset name or a dict.

        Args:
            dimensions: candidate vector width
            rows: number of rows to index

        Returns:
            config dict with a backend key
        """

        return delegateconfig(self.settings["search"], dimensions, rows)

    def checkdelegate(self, path, saved):
        """
        Checks the delegated ANN config of a saved folder. Only the backend this config names is accepted: a saved file
        never chooses which code runs.

        Args:
            path: index folder
            saved: delegate config from muvera.json
        """

        name = os.path.join(path, "muvera.json")
        backend = self.delegateconfig()["backend"] if self.settings["search"] != "exact" else None
        if not isinstance(saved, dict) or saved.get("backend") != backend:
            found = saved.get("backend") if isinstance(saved, dict) else saved
            raise IndexFileError(f"{name}: delegated FDE search {found!r} is not the configured {backend!r}")
        dimensions = saved.get("dimensions")
        if isinstance(dimensions, bool) or not isinstance(dimensions, int) or dimensions < 1:
            raise IndexFileError(f"{name}: invalid delegate dimensions {dimensions!r}")

    def loaddelegate(self, path, saved):
        """
        Loads the delegated ANN of a checked folder.

        Args:
            path: index folder
            saved: delegate config from muvera.json

        Returns:
            txtai ANN
        """

        delegate = ANNFactory.create(dict(saved))
        try:
            delegate.load(os.path.join(path, "fde"))
        except (RuntimeError, OSError, ValueError, KeyError, TypeError) as error:
            raise IndexFileError(f"{os.path.join(path, 'fde')}: unreadable delegated FDE index ({error})") from error

        # Search settings faiss does not save
        tune(delegate)
        return delegate


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

    Raises:
        IndexFileError: missing, foreign or corrupt metadata
    """

    name = os.path.join(path, "muvera.json")
    try:
        if os.path.getsize(name) > METADATA:
            raise IndexFileError(f"{name} is {os.path.getsize(name)} bytes, too large to be txtai-muvera metadata")
        with open(name, "rb") as f:
            metadata = json.loads(f.read().decode("utf-8"))
    except FileNotFoundError as e:
        raise IndexFileError(f"{path} is not a txtai-muvera index: {name} is missing") from e
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as e:
        if isinstance(e, IndexFileError):
            raise
        raise IndexFileError(f"{name} is corrupt: {e}") from e

    if not isinstance(metadata, dict) or metadata.get("format") != FORMAT:
        raise IndexFileError(f"{name} is not a txtai-muvera index file")
    if metadata.get("version") != VERSION:
        raise IndexFileError(f"{name} has format version {metadata.get('version')!r}, this txtai-muvera reads version {VERSION}")

    # Field types: everything later code relies on
    problems = []
    if not (metadata.get("fingerprint") is None or isinstance(metadata["fingerprint"], str)):
        problems.append("fingerprint")
    encoding = metadata.get("encoding")
    if not (encoding is None or (isinstance(encoding, dict) and all(isinstance(v, (int, float, bool, str, type(None))) for v in encoding.values()))):
        problems.append("encoding")
    for key, minimum in (("documents", 0), ("dimensions", 1)):
        value = metadata.get(key)
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            problems.append(key)
    if not (metadata.get("delegate") is None or isinstance(metadata["delegate"], dict)):
        problems.append("delegate")
    # Indexes saved before float16 candidate vectors hold float32 rows
    metadata["encodingdtype"] = metadata.get("encodingdtype") or "float32"
    if metadata["encodingdtype"] not in ENCODINGDTYPES:
        problems.append("encodingdtype")
    files = metadata.get("files")
    if not isinstance(files, dict) or not all(isinstance(v, dict) and safename(k) for k, v in files.items()):
        problems.append("files")
    if problems:
        raise IndexFileError(f"{name} is corrupt: invalid {', '.join(problems)}")

    return metadata


def safename(name):
    """
    Checks that a file name recorded in metadata stays inside the index folder.

    Args:
        name: relative file name

    Returns:
        True when name is a plain relative path without parent references
    """

    parts = name.replace("\\", "/").split("/") if isinstance(name, str) else []
    return bool(parts) and not os.path.isabs(name) and all(part not in ("", ".", "..") for part in parts)


def listing(folder, name):
    """
    Lists the files a delegated ANN wrote: the file itself, or every file under its folder.

    Args:
        folder: index folder
        name: file or folder name inside it

    Returns:
        sorted relative file names
    """

    target = os.path.join(folder, name)
    if os.path.isfile(target):
        return [name]

    names = []
    for root, _, files in os.walk(target):
        names.extend(os.path.relpath(os.path.join(root, f), folder) for f in files)

    return sorted(names)


def describe(folder, name, checksum=False):
    """
    Describes a saved file for muvera.json.

    Args:
        folder: index folder
        name: relative file name
        checksum: adds a sha256 of the contents

    Returns:
        dict with bytes and optionally sha256
    """

    filename = os.path.join(folder, name)
    description = {"bytes": os.path.getsize(filename)}
    if checksum:
        description["sha256"] = sha256(filename)

    return description


def verify(path, name, expected, checksum=False):
    """
    Checks a saved file's size, and optionally its checksum, against muvera.json.

    Args:
        path: index folder
        name: relative file name
        expected: recorded description
        checksum: verifies the sha256 too

    Raises:
        IndexFileError: missing, truncated or corrupt file
    """

    filename = os.path.join(path, name)
    checksize(filename, expected, IndexFileError, "muvera.json")

    if checksum and expected.get("sha256") != sha256(filename):
        raise IndexFileError(f"{filename}: checksum mismatch, file is corrupt")


def readarray(path, name, expected, shape, dtype="float32"):
    """
    Memory maps a saved float32 or float16 .npy array after checking its size, header, dtype and shape. Never unpickles.

    Args:
        path: index folder
        name: file name
        expected: recorded description
        shape: expected shape
        dtype: dtype recorded in muvera.json

    Returns:
        read-only memory-mapped array

    Raises:
        IndexFileError: missing, truncated, foreign or corrupt file
    """

    verify(path, name, expected)
    filename = os.path.join(path, name)

    # Header only, never the data
    start = npyheader(filename, expected["bytes"], dtype, shape, IndexFileError)

    # Zero rows cannot be memory mapped
    if not shape[0]:
        return np.zeros(shape, dtype=dtype)

    return np.memmap(filename, dtype=dtype, mode="r", offset=start, shape=tuple(shape))

