"""
LEMUR module
"""

import random

import numpy as np
import torch

from .inputs import nonblank
from .lemurartifact import ArtifactError
from .lemurfit import DEFAULTS, fit
from .lemurmodel import LemurModel
from .reservoir import Reservoir

# Tokens of an expanded ColBERT query
QUERYTOKENS = 32

# Words per learn query
SPAN = (4, 16)


class Lemur:
    """
    LEMUR learned candidate encoding, registered as "lemur" (muvera: {encoding: lemur}).

    Fits on the collection when an index is built, or loads a trained artifact (path). Documents are encoded with the
    stored sample, so upserts need no retraining. A collection too small to train on falls back to MUVERA (usefallback),
    and config() then records that FDE.

    >>> Lemur(16, dimensions=64).dimensions
    64
    """

    # Documents encode after training
    learned = True

    # pylint: disable=R0913,R0914,R0917
    def __init__(
        self,
        dimension,
        dimensions=DEFAULTS["dimensions"],
        path=None,
        train=None,
        epochs=DEFAULTS["epochs"],
        patience=DEFAULTS["patience"],
        targets=DEFAULTS["targets"],
        learn=DEFAULTS["learn"],
        sample=DEFAULTS["sample"],
        hidden=DEFAULTS["hidden"],
        layers=DEFAULTS["layers"],
        activation=DEFAULTS["activation"],
        validation=DEFAULTS["validation"],
        batch=DEFAULTS["batch"],
        lr=DEFAULTS["lr"],
        schedule=DEFAULTS["schedule"],
        ridge=0.01,
        center=DEFAULTS["center"],
        trainprecision=DEFAULTS["precision"],
        encodeprecision="auto",
        learncategory="query",
        minimum=100,
        seed=DEFAULTS["seed"],
    ):
        """
        Creates a LEMUR encoding.

        Args:
            dimension: token vector width
            dimensions: output dimensions
            path: trained artifact folder (txtai 9.14 LEMUR format), used as is
            train: fit on the collection when an index is built, defaults to True without path
            epochs: most training epochs, 0 for untrained random features
            patience: epochs without a better held-out loss before training stops
            targets: most target documents
            learn: most learn tokens
            sample: most tokens stored to encode documents
            hidden: hidden width of a multi-layer network
            layers: network layers
            activation: feature activation (relu, gelu, silu, mish)
            validation: fraction of learn tokens held out for early stopping
            batch: training batch size
            lr: Adam learning rate
            schedule: learning rate schedule, "constant" or "cosine"
            ridge: ridge penalty of the document least squares (relative), 0 is txtai's pseudo-inverse
            center: center tokens on the collection mean
            trainprecision: training precision, "auto" uses bfloat16 where it is faster (the index setting precision is re-ranking's)
            encodeprecision: document encoding products, "auto" uses bfloat16 where it is faster, "float32" matches txtai
            learncategory: learn tokens from spans of document texts encoded as queries ("query") or from the documents'
                stored tokens ("data"); "query" needs texts and falls back to "data" for pre-encoded documents
            minimum: fewest documents to train on, smaller collections fall back to MUVERA
            seed: random seed
        """

        for name, value, least in (("dimensions", dimensions, 1), ("minimum", minimum, 2), ("seed", seed, 0)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < least:
                raise ValueError(f"lemur {name} must be an integer >= {least}, got {value!r}")
        # Negated to refuse NaN
        # pylint: disable-next=C0117
        if isinstance(ridge, bool) or not isinstance(ridge, (int, float)) or not ridge >= 0:
            raise ValueError(f"lemur ridge must be a number >= 0, got {ridge!r}")
        if not (train is None or isinstance(train, bool)):
            raise ValueError(f"lemur train must be true, false or null, got {train!r}")
        if encodeprecision not in ("auto", "float32"):
            raise ValueError(f"lemur encodeprecision must be 'auto' or 'float32', got {encodeprecision!r}")
        if learncategory not in ("query", "data"):
            raise ValueError(f"lemur learncategory must be 'query' or 'data', got {learncategory!r}")

        self.dimension = int(dimension)
        self.path, self.train = path, (path is None) if train is None else train
        self.params = {
            "dimensions": int(dimensions),
            "epochs": epochs,
            "patience": patience,
            "targets": targets,
            "learn": learn,
            "sample": sample,
            "hidden": hidden,
            "layers": layers,
            "activation": activation,
            "validation": validation,
            "batch": batch,
            "lr": lr,
            "schedule": schedule,
            "ridge": float(ridge),
            "center": bool(center),
            "trainprecision": trainprecision,
            "encodeprecision": encodeprecision,
            "learncategory": learncategory,
            "minimum": int(minimum),
            "seed": int(seed),
        }

        # Fitted state and learn query tokens
        self.model, self.fallback, self.statistics, self.querytokens = None, None, None, None
        self.attach(path)

    @property
    def dimensions(self):
        """
        Output width.

        Returns:
            int
        """

        return self.fallback.dimensions if self.fallback else self.params["dimensions"]

    def config(self):
        """
        Parameters recorded with an index. The artifact itself is saved with the index, so path is not recorded.

        Returns:
            dict
        """

        if self.fallback:
            return self.fallback.config()

        return {"dimension": self.dimension, **self.params, "train": self.train}

    def __call__(self, flat, offsets, category):
        """
        Encodes a batch of ragged token matrices.

        Args:
            flat: (total tokens x dimension) token vectors
            offsets: int64 offsets
            category: "query" (summed features) or "data" (least-squares weights)

        Returns:
            float32 numpy array (matrices x dimensions)
        """

        if self.fallback:
            return self.fallback(flat, offsets, category)
        if category not in ("query", "data"):
            raise ValueError(f"category must be 'query' or 'data', got {category!r}")
        if self.model is None:
            raise ValueError("the lemur encoding is not trained: index documents first, or set path to a trained LEMUR artifact")

        offsets = offsets.cpu().numpy() if isinstance(offsets, torch.Tensor) else np.asarray(offsets, dtype=np.int64)
        if not len(offsets) - 1:
            return np.zeros((0, self.dimensions), dtype=np.float32)

        rows = self.model.queries(flat, offsets) if category == "query" else self.model.documents(flat, offsets)
        return rows.numpy()

    def fit(self, flat, offsets, device=None, progress=None):
        """
        Trains on a collection's token vectors. Learn tokens come from querytokens (documents encoded as queries) when
        learncategory is "query" and they were handed over, else from the documents' tokens.

        Args:
            flat: flat token vectors
            offsets: int64 document offsets
            device: training device
            progress: progress bar setting

        Returns:
            training statistics
        """

        # Train with shared parameters
        querytokens = self.querytokens if self.params["learncategory"] == "query" else None
        model, self.statistics = fit(
            flat,
            offsets,
            device=device,
            progress=progress,
            precision=self.params["trainprecision"],
            querytokens=querytokens,
            **{k: v for k, v in self.params.items() if k in DEFAULTS},
        )
        self.usemodel(model)
        self.querytokens = None
        self.statistics["learncategory"] = "query" if querytokens is not None else "data"
        return self.statistics

    def attach(self, path):
        """
        Loads a trained artifact into an encoding that has none yet.

        Args:
            path: artifact folder or None
        """

        if path and self.model is None and self.fallback is None:
            model = LemurModel.load(path)
            if model.dimension != self.dimension:
                raise ArtifactError(f"{path}: LEMUR artifact takes {model.dimension}-d token vectors, the encoder makes {self.dimension}-d")
            self.usemodel(model)
            self.path, self.params["dimensions"] = path, model.dimensions

    def usemodel(self, model):
        """
        Takes a trained model, encoding documents with this encoding's ridge and precision settings.

        Args:
            model: LemurModel
        """

        model.ridge, model.precision = self.params["ridge"], self.params["encodeprecision"]
        self.model = model

    def learnsample(self):
        """
        Creates the sample of document texts that learn queries are made from, sized for the learn tokens.

        Returns:
            Reservoir, or None when this encoding does not learn from queries
        """

        if not self.train or self.model is not None or self.fallback is not None or self.params["learncategory"] != "query":
            return None

        return Reservoir(-(-self.params["learn"] // QUERYTOKENS), self.params["seed"])

    def learnfrom(self, texts, encode):
        """
        Encodes learn queries from a collection whose texts are all at hand: samples them (learnsample), then encodes
        spans of the sample (learnqueries). Does nothing when this encoding does not learn from queries.

        Args:
            texts: document texts
            encode: function encoding a list of texts as queries into token matrices
        """

        sample = self.learnsample()
        if sample:
            sample.add(nonblank(texts))
            self.learnqueries(sample.items, encode)

    def learnqueries(self, texts, encode):
        """
        Encodes learn queries from sampled document texts and keeps their tokens for fit.

        Args:
            texts: sampled document texts
            encode: function encoding a list of texts as queries into token matrices
        """

        queries = self.spans(texts)
        self.querytokens = np.concatenate(encode(queries)) if queries else None

    def spans(self, texts):
        """
        Learn query texts: a random span of SPAN words of each document text. Encoded as queries, short spans get the
        [MASK] expansion tokens of real queries, which truncated whole documents do not.

        Args:
            texts: document texts

        Returns:
            list of texts
        """

        generator, queries = random.Random(self.params["seed"]), []
        for text in texts:
            words = text.split()
            size = generator.randint(*SPAN)
            start = generator.randint(0, max(0, len(words) - size))
            queries.append(" ".join(words[start : start + size]))

        return queries

    def trainable(self, documents):
        """
        Tells whether a collection is large enough to train on.

        Args:
            documents: number of documents with tokens

        Returns:
            bool
        """

        return documents >= self.params["minimum"]

    def usefallback(self, fde):
        """
        Switches this encoding to a MUVERA FDE.

        Args:
            fde: FDE encoding
        """

        self.model, self.fallback = None, fde
