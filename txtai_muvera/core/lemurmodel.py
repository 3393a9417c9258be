"""
LEMUR model module
"""

import functools
import os
import time

import numpy as np
import torch

from .lemurartifact import CONFIG, WEIGHTS, ArtifactError, readartifact, writeartifact
from .lemurfeatures import FeatureNetwork
from .maxsim import chunks, segmax

# Elements per product chunk
BUDGET = 1 << 25


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

        # Pseudo-inverse, built on first use
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

        # bfloat16 error << targets' spread
        dtype = torch.bfloat16 if self.precision == "auto" and bfloat16(self.sample.device.type) else torch.float32
        tokens, sample = self.prepare(tokens).to(dtype), self.sample.to(dtype)
        rows = torch.zeros((len(offsets) - 1, self.dimensions), dtype=torch.float32)
        for start, end in chunks(offsets, max(1, BUDGET // len(self.sample))):
            # Standardized targets
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

        writeartifact(path, self)

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

        config, tensors, (mean, std, sample, center) = readartifact(path)
        weights = os.path.join(path, WEIGHTS)

        # Every weight, with its shape
        network = FeatureNetwork(**{k: config[k] for k in ("modeltype", "inputdim", "hiddendim", "finalhiddendim", "layers", "activation")})
        try:
            network.load_state_dict({k: v.float() for k, v in tensors.items()})
        except RuntimeError as error:
            raise ArtifactError(f"{weights}: feature weights do not match {CONFIG} ({error})") from error

        return LemurModel(config, network, mean.reshape(-1)[0], std.reshape(-1)[0], sample.float(), center.float() if center is not None else None)


def pseudoinverse(features, ridge=0.0):
    """
    Moore-Penrose pseudo-inverse with txtai's cutoff of small singular values, or with a ridge penalty.

    Args:
        features: (sample x dimensions) float32 tensor
        ridge: penalty relative to the mean eigenvalue of features.T @ features, 0 for the plain pseudo-inverse

    Returns:
        (dimensions x sample) tensor
    """

    # Ridge solve, float64 for stability
    if ridge:
        features = features.double()
        gram = features.T @ features
        gram.diagonal().add_(ridge * gram.diagonal().mean())
        return torch.linalg.solve(gram, features.T).float()

    left, values, right = torch.linalg.svd(features, full_matrices=False)
    tolerance = torch.finfo(values.dtype).eps * max(features.shape) * values.max()
    scales = torch.where(values > tolerance, values.reciprocal(), torch.zeros_like(values))
    return (right.T * scales) @ left.T


@functools.lru_cache(maxsize=None)
def bfloat16(device):
    """
    Tells whether bfloat16 products are faster on a device: CUDA with bf16 support, or a CPU where a timed bfloat16
    product clearly beats float32 (CPUs without native bf16 instructions are slower).

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
