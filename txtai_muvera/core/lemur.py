"""
LEMUR module
"""

import functools
import json
import math
import os
import random
import time

import numpy as np
import torch

from safetensors import safe_open
from safetensors.torch import save_file

from .maxsim import chunks, segmax
from .reservoir import Reservoir

# Artifact files, the layout of txtai 9.14's LEMUR artifacts
CONFIG, WEIGHTS = "config.json", "model.safetensors"

# Keys of the artifact config.json: exactly the ones txtai's LemurModel accepts, so artifacts load both ways
KEYS = ("modeltype", "inputdim", "hiddendim", "finalhiddendim", "layers", "activation", "queryscale", "seed", "outputdim", "training")

# Largest config.json read: real ones are a few hundred bytes
CONFIGBYTES = 1 << 20

# Feature activations
ACTIVATIONS = {"relu": torch.nn.ReLU, "gelu": torch.nn.GELU, "silu": torch.nn.SiLU, "mish": torch.nn.Mish}

# Elements of each (sample tokens x document tokens) product chunk while encoding documents
BUDGET = 1 << 25

# Tokens of a ColBERT query (text plus [MASK] expansion), used to size the texts encoded as queries for learn tokens
QUERYTOKENS = 32

# Words of a learn query: a random span of a document text, about as long as a real query
SPAN = (4, 16)


class ArtifactError(ValueError):
    """
    Raised when a LEMUR artifact folder is missing, foreign or inconsistent. The message names the file and the problem.
    """


class RandomFeatures(torch.nn.Module):
    """
    Seeded random projection followed by an activation (the untrained, epochs=0, feature map). The projection is a buffer
    named weight, so it is saved with the artifact.
    """

    def __init__(self, inputdim, outputdim, activation):
        super().__init__()
        self.register_buffer("weight", torch.randn(inputdim, outputdim))
        self.activation = ACTIVATIONS[activation]()
        self.scale = math.sqrt(2.0 / outputdim)

    def forward(self, tokens):
        """
        Maps token vectors to random features.

        Args:
            tokens: (tokens x inputdim) tensor

        Returns:
            (tokens x outputdim) tensor
        """

        return self.scale * self.activation(tokens @ self.weight)


class FeatureNetwork(torch.nn.Module):
    """
    Token feature map of LEMUR: an MLP (trained, "mlp") or random features ("elm"), and during training a linear readout
    predicting a token's standardized MaxSim against each target document. Parameter names follow txtai's artifacts.
    """

    # pylint: disable=R0913,R0917
    def __init__(self, modeltype, inputdim, hiddendim, finalhiddendim, layers, activation, outputdim=None):
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}")

        if modeltype == "elm":
            modules = [RandomFeatures(inputdim, finalhiddendim, activation), torch.nn.LayerNorm(finalhiddendim, elementwise_affine=False)]
        elif modeltype == "mlp":
            # layers - 1 hidden layers, then the output layer, each Linear + LayerNorm + activation
            modules, widths = [], [inputdim] + [hiddendim] * (layers - 1)
            for x, width in enumerate(widths):
                output = finalhiddendim if x == len(widths) - 1 else hiddendim
                modules.extend([torch.nn.Linear(width, output), torch.nn.LayerNorm(output), ACTIVATIONS[activation]()])
        else:
            raise ValueError(f"modeltype must be 'mlp' or 'elm', got {modeltype!r}")

        self.featureextractor = torch.nn.Sequential(*modules)
        self.outputlayer = torch.nn.Linear(finalhiddendim, outputdim, bias=False) if outputdim else None

    def features(self, tokens):
        """
        Maps token vectors to features.

        Args:
            tokens: (tokens x inputdim) tensor

        Returns:
            (tokens x finalhiddendim) tensor
        """

        return self.featureextractor(tokens)

    def forward(self, tokens):
        """
        Predicts standardized MaxSim scores of tokens against the target documents (training only).

        Args:
            tokens: (tokens x inputdim) tensor

        Returns:
            (tokens x outputdim) tensor
        """

        return self.outputlayer(self.features(tokens))


class LemurModel:
    """
    A fitted LEMUR encoder (arXiv 2601.21853): a token feature network, the standardization of MaxSim targets and a
    sample of learn tokens.

    A query is the sum of its token features (divided by queryscale). A document is the least-squares weight vector w
    with features(sample) @ w ~ standardized MaxSim(sample token, document) over the sample, so query . document
    approximates the query's MaxSim score. Optional center: token vectors are centered on it and re-normalized first.
    """

    # pylint: disable=R0913,R0917
    def __init__(self, config, network, mean, std, sample, center=None, ridge=0.0, precision="float32"):
        """
        Creates a fitted encoder.

        Args:
            config: artifact config dict (txtai's keys)
            network: FeatureNetwork
            mean: mean of MaxSim targets
            std: standard deviation of MaxSim targets
            sample: (sample x inputdim) float32 learn-token tensor
            center: optional (inputdim) float32 token mean
            ridge: ridge penalty of the document least squares, relative to the mean eigenvalue, 0 is txtai's pseudo-inverse
            precision: document encoding products, "float32" (txtai's) or "auto" (bfloat16 where faster)
        """

        self.config, self.network = config, network.eval()
        self.mean, self.std = float(mean), float(std)
        self.sample = sample.float().contiguous()
        self.center = center.float() if center is not None else None
        self.dimension, self.dimensions = int(config["inputdim"]), int(config["finalhiddendim"])

        # (Regularized) pseudo-inverse of the sample features, computed on first document
        self.ridge, self.pinv = float(ridge), None
        self.precision = precision

    def prepare(self, tokens):
        """
        Converts token vectors to a float32 tensor, centered when the model has a center.

        Args:
            tokens: (tokens x dimension) array or tensor

        Returns:
            float32 tensor
        """

        tokens = tokens if isinstance(tokens, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(tokens))
        if tokens.dim() != 2 or tokens.shape[1] != self.dimension:
            raise ValueError(f"token vectors must be (tokens x {self.dimension}), got shape {tuple(tokens.shape)}")

        tokens = tokens.float()
        if self.center is not None:
            tokens = torch.nn.functional.normalize(tokens - self.center, dim=1)

        return tokens

    @torch.inference_mode()
    def queries(self, tokens, offsets):
        """
        Encodes queries: summed token features.

        Args:
            tokens: flat (tokens x dimension) token vectors
            offsets: int64 numpy offsets

        Returns:
            float32 tensor (queries x dimensions)
        """

        features = self.network.features(self.prepare(tokens))
        owners = torch.from_numpy(np.repeat(np.arange(len(offsets) - 1), np.diff(offsets)))
        sums = torch.zeros((len(offsets) - 1, self.dimensions), dtype=torch.float32).index_add_(0, owners, features.float())
        return sums / self.config["queryscale"]

    @torch.inference_mode()
    def documents(self, tokens, offsets):
        """
        Encodes documents: least-squares weights against the sample's standardized MaxSim targets.

        Args:
            tokens: flat (tokens x dimension) token vectors
            offsets: int64 numpy offsets

        Returns:
            float32 tensor (documents x dimensions)
        """

        if self.pinv is None:
            self.pinv = pseudoinverse(self.network.features(self.sample).float(), self.ridge)

        # Products in bfloat16 where faster: the weights are least squares over targets rounded far below their spread
        dtype = torch.bfloat16 if self.precision == "auto" and bfloat16(self.sample.device.type) else torch.float32
        tokens, sample = self.prepare(tokens).to(dtype), self.sample.to(dtype)
        rows = torch.zeros((len(offsets) - 1, self.dimensions), dtype=torch.float32)
        for start, end in chunks(offsets, max(1, BUDGET // len(self.sample))):
            # Best document token for every sample token, standardized like the training targets
            part = tokens[offsets[start] : offsets[end]]
            targets = (segmax(sample, part, offsets[start : end + 1] - offsets[start]).float() - self.mean) / self.std
            rows[start:end] = (self.pinv @ targets).T

        return rows

    def save(self, path):
        """
        Saves the model as a txtai LEMUR artifact folder: config.json and model.safetensors.

        Args:
            path: output folder
        """

        os.makedirs(path, exist_ok=True)
        with open(os.path.join(path, CONFIG), "w", encoding="utf-8") as f:
            json.dump(self.config, f, indent=2, sort_keys=True)
            f.write("\n")

        # Feature weights without the training readout, then the LEMUR state
        tensors = {
            name: value.detach().cpu().contiguous() for name, value in self.network.state_dict().items() if not name.startswith("outputlayer.")
        }
        tensors["lemur.mean"] = torch.tensor([self.mean], dtype=torch.float32)
        tensors["lemur.std"] = torch.tensor([self.std], dtype=torch.float32)
        tensors["lemur.sample"] = self.sample.detach().cpu().contiguous()
        if self.center is not None:
            tensors["lemur.center"] = self.center.detach().cpu().contiguous()

        save_file(tensors, os.path.join(path, WEIGHTS))

    @staticmethod
    def load(path):
        """
        Loads a txtai LEMUR artifact folder, written by txtai's LemurTrainer or by this module. Never unpickles.

        Args:
            path: artifact folder

        Returns:
            LemurModel

        Raises:
            ArtifactError: missing, foreign or inconsistent artifact
        """

        config = readconfig(path)
        weights = os.path.join(path, WEIGHTS)
        if not os.path.isfile(weights):
            raise ArtifactError(f"{weights} is missing: a LEMUR artifact folder holds {CONFIG} and {WEIGHTS}")

        try:
            with safe_open(weights, framework="pt", device="cpu") as source:
                tensors = {name: source.get_tensor(name) for name in source.keys()}
        except Exception as error:
            raise ArtifactError(f"{weights} is not a readable safetensors file ({error})") from error

        # LEMUR state
        missing = [name for name in ("lemur.mean", "lemur.std", "lemur.sample") if name not in tensors]
        if missing:
            raise ArtifactError(f"{weights} is not a LEMUR artifact: missing {missing}")
        mean, std, sample = tensors.pop("lemur.mean"), tensors.pop("lemur.std"), tensors.pop("lemur.sample")
        center = tensors.pop("lemur.center", None)

        dimension = config["inputdim"]
        if sample.dim() != 2 or sample.shape[1] != dimension or not sample.shape[0]:
            raise ArtifactError(f"{weights}: lemur.sample has shape {tuple(sample.shape)}, expected (tokens x {dimension})")
        # Negated so that a NaN std fails too (NaN <= 0 is False)
        if mean.numel() != 1 or std.numel() != 1 or not float(std.reshape(-1)[0]) > 0:  # pylint: disable=C0117
            raise ArtifactError(f"{weights}: lemur.mean and lemur.std must be single values with std > 0")
        if center is not None and tuple(center.shape) != (dimension,):
            raise ArtifactError(f"{weights}: lemur.center has shape {tuple(center.shape)}, expected ({dimension},)")
        for name, value in (("lemur.sample", sample), ("lemur.mean", mean), ("lemur.std", std), ("lemur.center", center)):
            if value is not None and not torch.isfinite(value.float()).all():
                raise ArtifactError(f"{weights}: {name} holds NaN or infinite values")

        # Feature network: every weight present with its shape
        network = FeatureNetwork(**{k: config[k] for k in ("modeltype", "inputdim", "hiddendim", "finalhiddendim", "layers", "activation")})
        try:
            network.load_state_dict({k: v.float() for k, v in tensors.items()})
        except RuntimeError as error:
            raise ArtifactError(f"{weights}: feature weights do not match {CONFIG} ({error})") from error

        return LemurModel(config, network, mean.reshape(-1)[0], std.reshape(-1)[0], sample.float(), center.float() if center is not None else None)


def readconfig(path):
    """
    Reads and validates a LEMUR artifact's config.json.

    Args:
        path: artifact folder

    Returns:
        config dict
    """

    name = os.path.join(path, CONFIG)
    try:
        if os.path.getsize(name) > CONFIGBYTES:
            raise ArtifactError(f"{name} is too large to be a LEMUR config")
        with open(name, "rb") as f:
            config = json.loads(f.read().decode("utf-8"))
    except FileNotFoundError as error:
        raise ArtifactError(f"{path} is not a LEMUR artifact: {name} is missing") from error
    except (OSError, UnicodeDecodeError, ValueError) as error:
        if isinstance(error, ArtifactError):
            raise
        raise ArtifactError(f"{name} is corrupt: {error}") from error

    # An encoder model folder also has a config.json: LEMUR configs have a modeltype
    if not isinstance(config, dict) or "modeltype" not in config:
        raise ArtifactError(f"{path} is not a LEMUR artifact ({name} has no modeltype), train one with txtai-muvera fit")

    integers = ("inputdim", "hiddendim", "finalhiddendim", "layers")
    bad = [k for k in integers if isinstance(config.get(k), bool) or not isinstance(config.get(k), int) or config[k] < 1]
    if isinstance(config.get("queryscale"), bool) or not isinstance(config.get("queryscale"), (int, float)) or not config["queryscale"] > 0:
        bad.append("queryscale")
    if config.get("modeltype") not in ("mlp", "elm"):
        bad.append("modeltype")
    if config.get("activation") not in ACTIVATIONS:
        bad.append("activation")
    unknown = [k for k in config if k not in KEYS]
    if bad or unknown:
        raise ArtifactError(f"{name}: invalid {bad} and unknown {unknown} settings")

    return config


def pseudoinverse(features, ridge=0.0):
    """
    Moore-Penrose pseudo-inverse with txtai's cutoff of small singular values, or with a ridge penalty.

    Args:
        features: (sample x dimensions) float32 tensor
        ridge: penalty relative to the mean eigenvalue of features.T @ features, 0 for the plain pseudo-inverse

    Returns:
        (dimensions x sample) tensor
    """

    # Ridge: (F'F + ridge * mean eigenvalue * I)^-1 F', in float64 for a well-conditioned solve
    if ridge:
        features = features.double()
        gram = features.T @ features
        gram.diagonal().add_(ridge * gram.diagonal().mean())
        return torch.linalg.solve(gram, features.T).float()

    left, values, right = torch.linalg.svd(features, full_matrices=False)
    tolerance = torch.finfo(values.dtype).eps * max(features.shape) * values.max()
    scales = torch.where(values > tolerance, values.reciprocal(), torch.zeros_like(values))
    return (right.T * scales) @ left.T


class Lemur:
    """
    LEMUR learned candidate encoding, registered as "lemur" (muvera: {encoding: lemur}).

    Trained on the collection when an index is built (the Muvera backend calls fit with the stored token vectors), or
    loaded from a trained artifact folder (path). Documents are encoded with the stored sample, so upserts need no
    retraining. A collection too small to train on falls back to MUVERA: fallback() switches this encoding to an FDE and
    config() then describes that FDE, so the index records what it was built with.

    >>> Lemur(16, dimensions=64).dimensions
    64
    """

    # Documents are encoded after training, from the stored tokens, by the index backend
    learned = True

    # pylint: disable=R0913,R0914,R0917
    def __init__(
        self,
        dimension,
        dimensions=2048,
        path=None,
        train=None,
        epochs=30,
        patience=4,
        targets=1024,
        learn=60000,
        sample=16384,
        hidden=512,
        layers=1,
        activation="gelu",
        validation=0.1,
        batch=1024,
        lr=3e-3,
        schedule="cosine",
        ridge=0.01,
        center=True,
        trainprecision="auto",
        encodeprecision="auto",
        learncategory="query",
        minimum=100,
        seed=42,
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
        # "not ridge >= 0" also refuses NaN, which "ridge < 0" would let through
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

        # Fitted model and MUVERA fallback; learn tokens encoded as queries, handed over by the vectors model
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

        # Imported on use: training code is not needed to search, and lemurfit imports this module
        from .lemurfit import fit  # pylint: disable=C0415,R0401

        names = (
            "epochs",
            "patience",
            "targets",
            "learn",
            "sample",
            "hidden",
            "layers",
            "activation",
            "validation",
            "batch",
            "lr",
            "schedule",
            "center",
            "seed",
        )
        querytokens = self.querytokens if self.params["learncategory"] == "query" else None
        self.model, self.statistics = fit(
            flat,
            offsets,
            self.params["dimensions"],
            device=device,
            progress=progress,
            precision=self.params["trainprecision"],
            querytokens=querytokens,
            **{k: self.params[k] for k in names},
        )
        self.model.ridge, self.model.precision, self.querytokens = self.params["ridge"], self.params["encodeprecision"], None
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
            self.model, self.path = model, path
            self.model.ridge, self.model.precision = self.params["ridge"], self.params["encodeprecision"]
            self.params["dimensions"] = model.dimensions

    def learnsample(self):
        """
        Creates the sample of document texts that learn queries are made from: enough texts for the learn tokens (a query
        has 32 tokens), or None when this encoding does not learn from queries.

        Returns:
            Reservoir or None
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
            sample.add(text for text in texts if isinstance(text, str) and text.strip())
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
        Learn query texts: a random span of 4 to 16 words of each document text. Encoded as queries, short spans carry
        the [MASK] expansion tokens real queries have, which whole documents (truncated at the query length) do not.

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


@functools.lru_cache(maxsize=None)
def bfloat16(device):
    """
    Tells whether bfloat16 makes LEMUR's training and encoding products faster on a device: always on CUDA with bf16 support, on
    CPU when a measured bfloat16 product beats float32 by a clear margin (CPUs without native bf16 instructions are slower).

    Args:
        device: device type string

    Returns:
        bool
    """

    if device == "cuda":
        return torch.cuda.is_bf16_supported()
    if device != "cpu":
        return False

    a, b = torch.randn(1024, 512), torch.randn(512, 2048)

    def timed(dtype):
        x, y = a.to(dtype), b.to(dtype)
        torch.mm(x, y)
        begin = time.perf_counter()
        for _ in range(4):
            torch.mm(x, y)
        return time.perf_counter() - begin

    return timed(torch.bfloat16) * 1.3 < timed(torch.float32)
