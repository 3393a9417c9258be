"""
Vectors module
"""

import inspect
import logging
import os

import numpy as np

from txtai.vectors import Vectors
from txtai.version import __version__ as TXTAI

from . import plugins, progress
from .array import LateArray
from .core.inputs import checkinput, matrices as tokenmatrices, nonblank
from .core.maxsim import maxsim
from .core.ragged import pack
from .errors import configuration
from .indexfolder import guard
from .settings import checkconfig, configuredstore, readsettings

logger = logging.getLogger(__name__)

# txtai majors we override
SUPPORTED = (9,)


# vectorize replaces encode
# pylint: disable-next=W0223
class LateVectors(Vectors):
    """
    txtai Vectors method for late-interaction models. Each text becomes a token matrix and its MUVERA fixed dimensional
    encoding (FDE). txtai sees the FDE rows; the token matrices travel with them (LateArray) to the txtai_muvera.Muvera
    ANN backend, which stores them and re-ranks FDE candidates with exact MaxSim.

    Works in the dense slot (method: txtai_muvera.LateVectors, backend: txtai_muvera.Muvera) and in the sparse slot
    (sparse: {path: ..., vectormethod: txtai_muvera.LateVectors, backend: txtai_muvera.Muvera}).
    """

    def __init__(self, config, scoring, models):
        # Make reindex safe to fail
        guard()

        # Raise past txtai's ImportError
        with configuration():
            # Validate before loading model
            checkconfig(config)
            self.settings, self.params = readsettings(config.get("muvera") if config else None)

            if config and config.get("quantize"):
                raise ValueError("quantize is not supported by txtai_muvera.LateVectors, set muvera: {dtype: int8} to shrink token vectors")

            super().__init__(config, scoring, models)

            # Encoding for this model
            self.encoding = plugins.lookup("encodings", self.settings["encoding"])(dimension=self.model.dimension, **self.params)

        # Progress of index()
        self.progressbar = None

        # Scores need no rescaling
        self.isnormalize = True

        # Learned encoding state
        self.deferred, self.learntexts, self.spooled = False, None, None

    def loadmodel(self, path):
        # Registered encoder
        factory = plugins.lookup("encoders", self.settings["encoder"])
        return factory(path, gpu=self.config.get("gpu", True), batchsize=self.config.get("encodebatch", 32))

    def index(self, documents, batchsize=500, checkpoint=None):
        # Check model before txtai stores
        self.checkmodel()

        # Check documents as they stream
        with progress.progressbar("Encoding", "docs", self.settings["progress"]) as self.progressbar:

            def stream():
                for document in documents:
                    self.checkdocument(document)
                    yield document

            try:
                return super().index(stream(), batchsize, checkpoint)
            except BaseException:
                # txtai keeps spool on failure
                if self.spooled and os.path.exists(self.spooled):
                    os.remove(self.spooled)
                raise
            finally:
                self.progressbar, self.spooled = None, None

    def spool(self, checkpoint, vectorsid):
        # Spool to remove on failure
        output = super().spool(checkpoint, vectorsid)
        self.spooled = None if checkpoint else output.name
        return output

    def checkdocument(self, document):
        """
        Checks one streamed (id, data, tags) document. txtai's Transform writes a batch of documents to its database
        (deleting the old rows of upserted ids first) only after the batch's last document streamed, so a bad
        document raises here before its batch touches the index.

        Args:
            document: (id, data, tags)
        """

        uid, data, _ = document
        try:
            data = self.prepare(data, "data")
        except TypeError as error:
            raise TypeError(f"document {uid!r}: {error}") from error

        checkinput(data, self.model.dimension, f"document {uid!r}", self.settings["dtype"])

    def checkmodel(self):
        """
        Checks that the loaded model is the one the index was built with (fingerprint recorded in the muvera: block).
        """

        block = self.config.get("muvera") if self.config else None
        expected = block.get("fingerprint") if isinstance(block, dict) else None
        actual = self.fingerprint()
        if expected and actual and expected != actual:
            raise ValueError(
                f"this index was built with a different late-interaction model (fingerprint {expected[:12]}..., the loaded model "
                f"{self.config.get('path')!r} has {actual[:12]}...): load the index with the model it was built with"
            )

    def vectors(self, documents, batchsize=500, checkpoint=None, buffer=None, dtype=None):
        # Learned: backend encodes later
        learned = getattr(self.encoding, "learned", False)
        self.deferred = learned

        # Sample texts for learn queries
        self.learntexts = self.encoding.learnsample() if hasattr(self.encoding, "learnsample") else None
        try:
            ids, dimensions, batches, stream = self.index(documents, batchsize, checkpoint)
        finally:
            self.deferred = False
        if learned:
            self.learnqueries()

        embeddings = None
        if ids:
            # FDEs to buffer, tokens to store
            fdes = (
                np.memmap(buffer, dtype=np.float32, shape=(len(ids), dimensions), mode="w+")
                if buffer
                else np.empty((len(ids), dimensions), np.float32)
            )
            store = configuredstore(self.settings, self.model.dimension)

            with open(stream, "rb") as queue:
                x = 0
                for _ in range(batches):
                    batch = self.loadembeddings(queue)
                    fdes[x : x + batch.shape[0]] = batch
                    store.append(batch.tokens, batch.offsets)
                    x += batch.shape[0]

            encoder = self.encoding if learned else None
            embeddings = LateArray(fdes, store=store, fingerprint=self.fingerprint(), encoding=self.encoding.config(), encoder=encoder)

        # Remove spool unless checkpoint
        if not checkpoint:
            os.remove(stream)

        return (ids, dimensions, embeddings)

    def learnqueries(self):
        """
        Hands the learned encoding its learn queries: spans of the sampled document texts, encoded as queries once all
        documents are read (txtai's LemurTrainer encodes whole documents as queries). Pre-encoded documents leave none.
        """

        texts, self.learntexts = (self.learntexts.items if self.learntexts else []), None
        if texts:
            logger.info("Encoding %d spans of document texts as learn queries for the %s encoding", len(texts), self.settings["encoding"])
            with progress.progressbar("Encoding learn queries", "texts", self.settings["progress"]) as progressbar:
                self.encoding.learnqueries(texts, lambda queries: self.model.encode(queries, "query", self.encodebatch, progress=progressbar))

    def batchtransform(self, documents, category=None):
        # Base class stacks arrays
        return self.vectorize([self.prepare(data, category) for _, data, _ in documents], category)

    def vectorize(self, data, category=None):
        category = "query" if category in (None, "query") else "data"
        self.checkmodel()

        # Encode texts
        matrices = tokenmatrices(self.model, data, category, dtype=self.settings["dtype"], progress=self.progressbar if category == "data" else None)

        # Blank documents: one zero token
        # (PyLate's markers match any query)
        if category == "data":
            empty = np.zeros((1, self.model.dimension), np.float32)
            matrices = [empty if isinstance(x, str) and not x.strip() else m for x, m in zip(data, matrices)]

        tokens, offsets = pack(matrices) if matrices else (np.zeros((0, self.model.dimension), np.float32), np.zeros(1, np.int64))
        if category == "data" and self.learntexts is not None:
            self.learntexts.add(nonblank(data))

        # Never normalize FDE rows
        if getattr(self.encoding, "learned", False):
            # Sparse slot: index's model
            self.encoding.attach((self.config.get("muvera") or {}).get("path"))
        if category == "data" and self.deferred:
            fdes = np.zeros((len(offsets) - 1, self.encoding.dimensions), dtype=np.float32)
        else:
            fdes = self.encoding(tokens, offsets, category)

        # Count pre-encoded matrices
        if self.progressbar is not None and category == "data":
            self.progressbar.update(sum(not isinstance(x, str) for x in data))

        return LateArray(fdes, tokens=tokens, offsets=offsets, fingerprint=self.fingerprint(), encoding=self.encoding.config())

    def fingerprint(self):
        """
        Identifies the encoder model, saved with an index to detect a search with another model.

        Returns:
            fingerprint string or None
        """

        return getattr(self.model, "fingerprint", None)

    def dot(self, queries, data):
        # MaxSim, ranks like search
        if isinstance(queries, LateArray) and isinstance(data, LateArray) and queries.tokens is not None and data.tokens is not None:
            scores = maxsim(queries.tokens, queries.offsets, data.tokens, data.offsets, reduce=self.settings["reduce"])
            return scores.tolist()

        return super().dot(np.asarray(queries), np.asarray(data))

    def saveembeddings(self, f, embeddings):
        # Spool FDEs and tokens together
        spool = np.float32 if self.settings["dtype"] == "float32" else np.float16
        np.save(f, np.asarray(embeddings, dtype=np.float32), allow_pickle=False)
        np.save(f, np.asarray(embeddings.tokens, dtype=spool), allow_pickle=False)
        np.save(f, np.asarray(embeddings.offsets, dtype=np.int64), allow_pickle=False)

    def loadembeddings(self, f):
        fdes = np.load(f, allow_pickle=False)
        tokens = np.load(f, allow_pickle=False)
        offsets = np.load(f, allow_pickle=False)
        return LateArray(fdes, tokens=tokens, offsets=offsets)

    def normalize(self, embeddings):
        # FDE rows stay unnormalized
        return embeddings


def compatible(base, cls, version):
    """
    Checks that the txtai Vectors methods a subclass overrides still exist with the same parameters, so that a txtai
    release that changed them fails at import with a clear message instead of indexing wrong rows.

    Args:
        base: txtai Vectors class
        cls: subclass
        version: txtai version string

    Raises:
        ImportError: an unsupported txtai major version or a changed method
    """

    changed = []
    for name, method in vars(cls).items():
        if callable(method) and not name.startswith("__") and hasattr(base, name):
            if list(inspect.signature(getattr(base, name)).parameters) != list(inspect.signature(method).parameters):
                changed.append(name)

    if int(version.split(".", maxsplit=1)[0]) not in SUPPORTED or changed:
        raise ImportError(
            f"txtai_muvera.LateVectors supports txtai {SUPPORTED} and overrides Vectors methods of those releases, found txtai {version}"
            + (f" whose Vectors changed {changed}" if changed else "")
            + ": install a txtai version this txtai-muvera supports"
        )


# Fail on unknown txtai
compatible(Vectors, LateVectors, TXTAI)
