"""
LEMUR artifact module
"""

import json
import os

import torch

from safetensors import safe_open
from safetensors.torch import save_file

from .lemurfeatures import ACTIVATIONS

# txtai 9.14 LEMUR artifact files
CONFIG, WEIGHTS = "config.json", "model.safetensors"

# Keys txtai's LemurModel accepts
KEYS = ("modeltype", "inputdim", "hiddendim", "finalhiddendim", "layers", "activation", "queryscale", "seed", "outputdim", "training")

# Largest config.json read
CONFIGBYTES = 1 << 20


class ArtifactError(ValueError):
    """
    Raised when a LEMUR artifact folder is missing, foreign or inconsistent. The message names the file and the problem.
    """


def writeartifact(path, model):
    """
    Saves a fitted model as a txtai LEMUR artifact folder: config.json and model.safetensors.

    Args:
        path: output folder
        model: LemurModel
    """

    os.makedirs(path, exist_ok=True)
    with open(os.path.join(path, CONFIG), "w", encoding="utf-8") as f:
        json.dump(model.config, f, indent=2, sort_keys=True)
        f.write("\n")

    # Weights, without the readout
    tensors = {name: value.detach().cpu().contiguous() for name, value in model.network.state_dict().items() if not name.startswith("outputlayer.")}
    tensors["lemur.mean"] = torch.tensor([model.mean], dtype=torch.float32)
    tensors["lemur.std"] = torch.tensor([model.std], dtype=torch.float32)
    tensors["lemur.sample"] = model.sample.detach().cpu().contiguous()
    if model.center is not None:
        tensors["lemur.center"] = model.center.detach().cpu().contiguous()

    save_file(tensors, os.path.join(path, WEIGHTS))


def readartifact(path):
    """
    Reads a txtai LEMUR artifact folder, written by txtai's LemurTrainer or by writeartifact. Never unpickles.

    Args:
        path: artifact folder

    Returns:
        (config dict, feature network tensors, (mean, std, sample, center or None))

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
    # Negated so a NaN std fails too
    if mean.numel() != 1 or std.numel() != 1 or not float(std.reshape(-1)[0]) > 0:  # pylint: disable=C0117
        raise ArtifactError(f"{weights}: lemur.mean and lemur.std must be single values with std > 0")
    if center is not None and tuple(center.shape) != (dimension,):
        raise ArtifactError(f"{weights}: lemur.center has shape {tuple(center.shape)}, expected ({dimension},)")
    for name, value in (("lemur.sample", sample), ("lemur.mean", mean), ("lemur.std", std), ("lemur.center", center)):
        if value is not None and not torch.isfinite(value.float()).all():
            raise ArtifactError(f"{weights}: {name} holds NaN or infinite values")

    return config, tensors, (mean, std, sample, center)


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

    # Encoders have a config.json too
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
