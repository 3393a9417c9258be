"""
ANN module
"""

import logging
import os
import uuid

import numpy as np
import torch

from txtai.ann import ANN

from .array import LateArray
from .core.certified import Screens, topk
from .core.files import IndexFileError, filesunder, writejson
from .core.folder import recover, replace
from .core.integrity import checksha256, checksize, describefile, verify
from .core.resident import Resident
from .core.scan import Scan, encodingrows, fderows, joinrows
from .core.store import blocks
from .delegate import checksaved, createdelegate, loadsaved, removable, tune
from .errors import configuration
from .indexfolder import FORMAT, LEGACY, VERSION, checkconsistent, guard, readfdes, readindexmetadata, writefdes
from .learned import LEARNED, encodestore, loadartifact, trainandencode
from .lock import ReadWriteLock
from .settings import DEFAULTS, builtparams, configuredstore, readsettings

# Logging configuration
logger = logging.getLogger(__name__)

# Exports, with the load error
__all__ = ["IndexFileError", "Muvera", "ReadWriteLock"]


# txtai ANN plus extras
class Muvera(ANN):  # pylint: disable=R0904
    """
    txtai ANN backend for late interaction. Finds FDE candidates (exact, or delegated to a txtai ANN backend) and
    re-ranks them with exact MaxSim. Scores are MaxSim scores (FDE inner products when candidates is 0).

    Thread safety: search, count and save may run from many threads while one thread writes; a readers-writer lock
    keeps each search on a consistent view.
    """

    def __init__(self, config):
        super().__init__(config)

        # Make reindex safe to fail
        guard()

        # Raise past txtai's ImportError
        with configuration():
            self.settings, self.params = readsettings(config.get("muvera"))

        # Index state
        self.fdes, self.delegate, self.store = None, None, None
        self.fingerprint, self.encoding = None, None

        # Pending FDE checksums
        self.verifiers = None

        # Learned encoding model
        self.learned = None

        # Exact FDE scan
        self.scan = Scan()

        # Shared reads, exclusive writes
        self.lock = ReadWriteLock()

        # Re-rank screens, device copy
        self.screens = Screens()
        self.resident = Resident(self.settings["device"]) if self.settings["device"] else None

    def index(self, embeddings):
        store = self.incomingstore(embeddings)
        fdes = fderows(embeddings)
        if fdes.shape[0] != len(store):
            raise ValueError(f"{fdes.shape[0]} FDE rows but {len(store)} token matrices")

        # Train learned encoding
        encoder = getattr(embeddings, "encoder", None)
        if encoder is not None:
            fdes = trainandencode(encoder, store, self.settings, self.config.get("gpu", True))

        with self.lock.write():
            self.fingerprint, self.encoding = getattr(embeddings, "fingerprint", None), getattr(embeddings, "encoding", None)
            self.store, self.fdes, self.delegate, self.verifiers = store, None, None, None
            if encoder is not None:
                self.encoding, self.learned = encoder.config(), encoder.model

            # Load rebuilds this encoder, refuses other models
            block = self.config.get("muvera")
            block = dict(block) if isinstance(block, dict) else {}
            if encoder is not None and encoder.fallback:
                # Fallback: record MUVERA
                block = {k: v for k, v in block.items() if k in DEFAULTS and k != "encoding"}
                block["encoding"], self.settings["encoding"], self.params = "muvera", "muvera", {}
            if self.encoding:
                block.update({k: v for k, v in self.encoding.items() if k != "dimension"})
            if self.fingerprint:
                block["fingerprint"] = self.fingerprint

            # Index id, refuses foreign files
            block["index"] = uuid.uuid4().hex
            self.config["muvera"] = block

            # FDE candidate index
            if self.settings["search"] == "exact":
                self.fdes = encodingrows(fdes, self.settings["encodingdtype"])
            else:
                self.delegate = createdelegate(self.settings["search"], fdes.shape[1], fdes.shape[0])
                self.delegate.index(fdes)
                tune(self.delegate)

            self.config["offset"] = fdes.shape[0]
            self.config["dimensions"] = fdes.shape[1]
            self.metadata({"torch": torch.__version__, "numpy": np.__version__})

    def append(self, embeddings):
        # Validate first
        self.checkvectors(embeddings)
        store = self.incomingstore(embeddings)
        fdes = fderows(embeddings)
        if fdes.shape[0] != len(store):
            raise ValueError(f"{fdes.shape[0]} FDE rows but {len(store)} token matrices")
        if self.store is not None and store.dimension != self.store.dimension:
            raise ValueError(f"token vectors have {store.dimension} dimensions, this index has {self.store.dimension}")

        # Learned encoding, no retraining
        encoder = getattr(embeddings, "encoder", None)
        if encoder is not None:
            fdes = encodestore(encoder, store)

        with self.lock.write():
            # Tokens first, ids follow rows
            # int8 rows keep scales
            for _, tokens, offsets, scales in blocks(store):
                self.store.append(tokens, offsets, scales)

            if self.delegate:
                self.delegate.append(fdes)
            else:
                self.verifyfdes()
                self.fdes = joinrows(self.fdes, fdes)

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
            # txtai sends negative limits as 0
            hint = " (with content enabled txtai passes a negative limit as 0)" if limit == 0 and not isinstance(limit, bool) else ""
            raise ValueError(f"search limit must be a positive integer, got {limit!r}{hint}")

        self.checkvectors(queries)

        with self.lock.read():
            # Nothing indexed
            if self.store is None:
                return [[] for _ in range(len(queries))]

            # FDE candidates
            tokens = getattr(queries, "tokens", None)
            rerank = self.settings["candidates"] and tokens is not None
            depth = max(self.settings["candidates"], limit) if rerank else limit
            candidates = self.candidates(np.asarray(queries, dtype=np.float32), depth)
            if not rerank:
                return candidates

            # Re-rank candidates with MaxSim
            results = []
            for x, rows in enumerate(candidates):
                ids = [uid for uid, _ in rows]
                if not ids:
                    results.append([])
                    continue

                documents, offsets, scales = self.resident.gather(self.store, ids) if self.resident else self.store.gather(ids)
                query = tokens[queries.offsets[x] : queries.offsets[x + 1]]
                precision = self.settings["precision"]
                screen = self.screens.gather(self.store, ids) if precision != "exact" and not self.resident else None
                top = topk(query, [0, len(query)], documents, offsets, limit, self.settings["reduce"], scales, precision, screen)[0]
                results.append([(ids[i], score) for i, score in top])

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
            # Over-fetch, skip deleted and padding
            kept = max(self.delegate.count() - self.store.count(), 0)
            deleted = self.store.deleted
            results = self.delegate.search(queries, depth + kept)
            return [[(uid, score) for uid, score in rows if 0 <= uid < len(deleted) and not deleted[uid]][:depth] for rows in results]

        # Exact scan, skip deleted
        if self.settings["verify"] == "lazy":
            self.verifyfdes()
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
            # Errors as IndexFileError
            try:
                self.loadfolder(recover(path))
            except IndexFileError:
                raise
            except Exception as error:  # pylint: disable=W0718
                raise IndexFileError(f"{path}: cannot be loaded ({type(error).__name__}: {error})") from error

    def loadfolder(self, path):
        """
        Loads a saved Muvera folder: muvera.json first, so a bad folder fails before any array is read, then the token
        store and FDE rows, then checks the folder against txtai's files.

        Args:
            path: index folder
        """

        metadata = readindexmetadata(path)
        files, legacy = metadata["files"], metadata["version"] == LEGACY
        if legacy:
            message = "%s: saved by an earlier txtai-muvera release (format version %d) without data checksums: loaded with size, header and "
            message += "recorded sha256 checks only (like verify: off for its data); saving it again writes the current format"
            logger.warning(message, path, LEGACY)

        # Config must match the index
        original = self.config.get("muvera")
        self.config["muvera"], self.params = builtparams(metadata, self.settings, self.params, original, os.path.join(path, "muvera.json"))

        # Token store, sealed by store.json
        if not legacy:
            verify(os.path.join(path, "tokens", "store.json"), files.get("tokens/store.json"), path, IndexFileError, "muvera.json")
        store = configuredstore(self.settings, path=os.path.join(path, "tokens"))
        if len(store) != metadata["documents"]:
            raise IndexFileError(f"{path}: token store holds {len(store)} documents, muvera.json records {metadata['documents']}")

        fdes, delegate, verifiers = None, None, None
        if metadata["delegate"]:
            # Checksum before native parsing
            checksaved(path, metadata["delegate"], self.settings["search"])
            names = filesunder(path, "fde")
            if not names or names != sorted(name for name in files if name == "fde" or name.startswith("fde/")):
                raise IndexFileError(f"{path}: delegated FDE index files {names} do not match muvera.json")
            for name in names:
                filename = os.path.join(path, name)
                if legacy:
                    size = checksize(filename, files[name], path, IndexFileError, "muvera.json", legacy=True)
                    checksha256(filename, files[name].get("sha256"), size, path)
                else:
                    verify(filename, files[name], path, IndexFileError, "muvera.json")
            delegate = loadsaved(path, metadata["delegate"])
        else:
            shape = (metadata["documents"], metadata["dimensions"])
            fdes, verifiers = readfdes(path, files, shape, self.settings["verify"], legacy)

        # Learned encoding artifact
        learned = self.loadlearned(path, files, original)

        # Check against txtai's files
        offset = checkconsistent(path, metadata, store, self.config)

        # Legacy index gets an id
        if legacy:
            self.config["muvera"] = {**self.config["muvera"], "index": uuid.uuid4().hex}

        self.store, self.fdes, self.delegate, self.verifiers, self.learned = store, fdes, delegate, verifiers, learned
        self.fingerprint, self.encoding = metadata["fingerprint"], metadata["encoding"]

        # Pad to txtai's offset
        if offset > len(store):
            self.pad(offset)
        self.config["offset"] = offset

    def pad(self, offset):
        """
        Pads the index with deleted, empty rows up to txtai's offset. Safe because txtai refers to none of these rows
        (checked in consistent): new rows get the ids txtai will give them.

        Args:
            offset: txtai's offset
        """

        count = offset - len(self.store)
        message = "config.json offset %d is ahead of the %d index rows (interrupted save): padding with %d deleted rows"
        logger.warning(message, offset, len(self.store), count)

        self.store.append(np.zeros((0, self.store.dimension), dtype=np.float32), np.zeros(count + 1, dtype=np.int64))
        self.store.delete(list(range(offset - count, offset)))
        zeros = np.zeros((count, self.dimensions()), dtype=np.float32)
        if self.delegate:
            self.delegate.append(zeros)
            self.delegate.delete(list(range(offset - count, offset)))
        else:
            self.verifyfdes()
            self.fdes = joinrows(self.fdes, zeros)

    def verify(self):
        """
        Checksums every stored block not verified yet: the token store's memory-mapped files and the FDE rows.

        Raises:
            IndexFileError: a block does not match its recorded checksum
        """

        with self.lock.read():
            if self.store is not None and hasattr(self.store, "verify"):
                self.store.verify()
            self.verifyfdes()

    def verifyfdes(self):
        """
        Checksums the memory-mapped FDE rows once, before they are first searched or copied.
        """

        verifiers = self.verifiers
        if verifiers:
            for verifier in verifiers:
                verifier.all()
            self.verifiers = None

    def save(self, path):
        # Crash safe: write aside, swap
        def write(folder):
            files = {}
            self.store.save(os.path.join(folder, "tokens"))
            files["tokens/store.json"] = describefile(os.path.join(folder, "tokens", "store.json"))
            if self.delegate:
                self.delegate.save(os.path.join(folder, "fde"))
                for name in filesunder(folder, "fde"):
                    files[name] = describefile(os.path.join(folder, name))
            else:
                # Write in the configured dtype
                self.verifyfdes()
                files.update(writefdes(folder, self.fdes, self.settings["encodingdtype"]))

            # Learned model
            if self.learned:
                self.learned.save(os.path.join(folder, LEARNED))
                for name in filesunder(folder, LEARNED):
                    files[name.replace(os.sep, "/")] = describefile(os.path.join(folder, name))

            metadata = {
                "format": FORMAT,
                "version": VERSION,
                "index": (self.config.get("muvera") or {}).get("index"),
                "fingerprint": self.fingerprint,
                "encoding": self.encoding,
                "documents": len(self.store),
                "dimensions": self.dimensions(),
                "delegate": self.delegate.config if self.delegate else None,
                "encodingdtype": None if self.delegate else self.settings["encodingdtype"],
                "files": files,
            }
            writejson(os.path.join(folder, "muvera.json"), metadata)

        # Exclusive: save re-maps files
        with self.lock.write():
            replace(path, write)

    def close(self):
        with self.lock.write():
            self.fdes, self.delegate, self.store, self.verifiers, self.learned = None, None, None, None, None
            super().close()

    def loadlearned(self, path, files, original):
        """
        Loads the learned encoding saved with the index (see learned.loadartifact) and hands it to the vectors model
        through the config, which txtai shares between the backend and the vectors model it creates next.

        Args:
            path: index folder
            files: file descriptions from muvera.json
            original: the muvera block of the config before this load (the sparse slot shares it)

        Returns:
            trained model or None
        """

        model = loadartifact(path, files, self.settings["encoding"])

        # Sparse slot reads the original block
        if model:
            self.config["muvera"]["path"] = os.path.join(path, LEARNED)
            if isinstance(original, dict):
                original["path"] = self.config["muvera"]["path"]

        return model

    def checkvectors(self, embeddings):
        """
        Checks that vectors come from the model and encoding this index was built with.

        Args:
            embeddings: FDE rows, usually a LateArray
        """

        fingerprint, encoding = getattr(embeddings, "fingerprint", None), getattr(embeddings, "encoding", None)
        if fingerprint and self.fingerprint and fingerprint != self.fingerprint:
            raise ValueError(
                "this index was built with a different late-interaction model (model fingerprints differ), search it with the same model"
            )
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

    def incomingstore(self, embeddings):
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
            store = configuredstore(self.settings, embeddings.tokens.shape[1])
            store.append(embeddings.tokens, embeddings.offsets)
            return store

        raise ValueError("txtai_muvera.Muvera needs token vectors with its FDE rows: set method: txtai_muvera.LateVectors")
