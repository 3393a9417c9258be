"""
Checkpoint module
"""

import importlib
import json
import string

from pathlib import Path

import torch

from huggingface_hub import hf_hub_download
from huggingface_hub.errors import EntryNotFoundError, HFValidationError, RepositoryNotFoundError, RevisionNotFoundError
from huggingface_hub.utils import validate_repo_id
from safetensors import safe_open
from safetensors.torch import load_file
from transformers import AutoModel
from transformers.utils import logging

from . import hub


class Checkpoint:
    """
    Reads a ColBERT checkpoint, PyLate or Stanford format, from a local folder or the model hub: its settings, its
    transformer and its projection layers.
    """

    def __init__(self, path, revision=None):
        """
        Opens a checkpoint. Nothing is read yet.

        Args:
            path: local folder or model hub id
            revision: optional hub revision
        """

        self.path, self.revision = hub.expand(str(path)), revision

        # Check the path before reading
        self.local = Path(self.path).is_dir()
        if not self.local:
            Checkpoint.checkhub(self.path)

            # Hub down: cached snapshot, no retries
            cached = hub.folder(self.path, self.revision)
            if cached:
                self.path, self.local = cached, True

    def read(self):
        """
        Reads the settings and projection layers; the format decides where they come from.

        Returns:
            (transformer subfolder, settings, projection layers, lowercase, prompt)
        """

        if self.location("modules.json"):
            return self.pylate()
        if self.stanfordformat():
            return self.stanford()

        where = self.path if self.local else f"{self.path} on the model hub ({hub.endpoint()})"
        raise ValueError(f"no modules.json (PyLate) or artifact.metadata/linear.weight (Stanford) in {where}")

    def pylate(self):
        """
        Reads a PyLate (sentence-transformers) checkpoint: modules.json, config_sentence_transformers.json,
        sentence_bert_config.json and the Dense modules.

        Returns:
            (transformer subfolder, settings, projection layers, lowercase, prompt)
        """

        modules = sorted(self.readjson("modules.json"), key=lambda module: module.get("idx", 0))

        # Modules PyLate uses
        transformers = [module for module in modules if module["type"].split(".")[-1] == "Transformer"]
        denses = [module for module in modules if module["type"].split(".")[-1] == "Dense"]
        if not transformers:
            raise ValueError(f"no Transformer module in modules.json in {self.path}")
        if not denses:
            raise ValueError(f"no Dense module in modules.json in {self.path}: PyLate would add an untrained projection")

        subfolder = transformers[0].get("path", "").strip("/")
        layers = [self.dense(module["path"].strip("/")) for module in denses]

        # PyLate settings with defaults
        config = self.readjson("config_sentence_transformers.json") or {}
        settings = {
            "query_prefix": Checkpoint.value(config, "query_prefix", "[Q] "),
            "document_prefix": Checkpoint.value(config, "document_prefix", "[D] "),
            "query_length": Checkpoint.value(config, "query_length", 32),
            "document_length": Checkpoint.value(config, "document_length", 180),
            "do_query_expansion": Checkpoint.value(config, "do_query_expansion", True),
            "attend_to_expansion_tokens": Checkpoint.value(config, "attend_to_expansion_tokens", False),
            "skiplist_words": list(Checkpoint.value(config, "skiplist_words", list(string.punctuation))),
            "format": "pylate",
        }

        # No expansion, nothing to attend to
        if not settings["do_query_expansion"]:
            settings["attend_to_expansion_tokens"] = False

        # Default prompt
        prompts, name = config.get("prompts") or {}, config.get("default_prompt_name")
        prompt = prompts.get(name) if name else None

        # sentence-transformers lowercasing
        transformer = self.readjson(f"{subfolder}/sentence_bert_config.json" if subfolder else "sentence_bert_config.json") or {}

        return subfolder, settings, layers, bool(transformer.get("do_lower_case", False)), prompt or None

    def stanford(self):
        """
        Reads a Stanford ColBERT checkpoint: config.json (HF_ColBERT), artifact.metadata and linear.weight.

        Returns:
            (transformer subfolder, settings, projection layers, lowercase, prompt)
        """

        metadata = self.readjson("artifact.metadata") or {}

        # Projection beside BERT weights
        weight = self.stanfordweight()
        if weight is None:
            raise ValueError(f"no linear.weight (Stanford) in the model weights of {self.path}")

        layer = Dense(weight.shape[1], weight.shape[0], bias=False)
        layer.load_state_dict({"linear.weight": weight})

        # Stanford markers and lengths
        settings = {
            "query_prefix": Checkpoint.value(metadata, "query_token_id", "[unused0]"),
            "document_prefix": Checkpoint.value(metadata, "doc_token_id", "[unused1]"),
            "query_length": Checkpoint.value(metadata, "query_maxlen", 32),
            "document_length": Checkpoint.value(metadata, "doc_maxlen", 180),
            "do_query_expansion": True,
            "attend_to_expansion_tokens": Checkpoint.value(metadata, "attend_to_mask_tokens", False),
            "skiplist_words": list(string.punctuation) if Checkpoint.value(metadata, "mask_punctuation", True) else [],
            "format": "stanford",
        }

        return "", settings, [layer], False, None

    def transformer(self, subfolder):
        """
        Loads the transformer encoder. The loading report is checked here instead of logged: Stanford checkpoints
        always hold an extra linear.weight, while a missing encoder weight would silently leave random values.

        Args:
            subfolder: transformer folder, "" for the root

        Returns:
            transformers model
        """

        # Load quietly
        verbosity, bars = logging.get_verbosity(), logging.is_progress_bar_enabled()
        logging.set_verbosity_error()
        logging.disable_progress_bar()
        try:
            model, info = AutoModel.from_pretrained(
                self.path, subfolder=subfolder, revision=self.revision, dtype=torch.float32, output_loading_info=True
            )
        finally:
            logging.set_verbosity(verbosity)
            if bars:
                logging.enable_progress_bar()

        # All weights but the unused pooler
        missing = sorted(key for key in info.get("missing_keys", ()) if "pooler" not in key)
        mismatched = sorted(str(key) for key in info.get("mismatched_keys", ()))
        if missing or mismatched:
            raise ValueError(f"transformer weights in {self.path} do not match its config: missing {missing[:5]}, mismatched {mismatched[:5]}")

        return model

    def stanfordformat(self):
        """
        Checks for a Stanford ColBERT checkpoint: artifact.metadata or an HF_ColBERT architecture, plus linear.weight.

        Returns:
            True when this is a Stanford checkpoint
        """

        config = self.readjson("config.json") or {}
        architectures = config.get("architectures") or []
        if not self.location("artifact.metadata") and "HF_ColBERT" not in architectures:
            return False

        return self.stanfordweight() is not None

    def stanfordweight(self):
        """
        Reads linear.weight from a Stanford checkpoint, safetensors first, then pytorch_model.bin.

        Returns:
            weight tensor or None
        """

        path = self.location("model.safetensors")
        if path:
            with safe_open(str(path), framework="pt", device="cpu") as tensors:
                return tensors.get_tensor("linear.weight") if "linear.weight" in tensors.keys() else None

        path = self.location("pytorch_model.bin")
        if path:
            return torch.load(str(path), map_location="cpu", weights_only=True).get("linear.weight")

        return None

    def dense(self, folder):
        """
        Loads a PyLate or sentence-transformers Dense module.

        Args:
            folder: module folder

        Returns:
            Dense layer
        """

        config = self.readjson(f"{folder}/config.json")
        if config is None:
            raise ValueError(f"no {folder}/config.json in {self.path}")

        layer = Dense(
            config["in_features"],
            config["out_features"],
            bias=config.get("bias", True),
            activation=Checkpoint.activation(config.get("activation_function")),
            residual=config.get("use_residual", False),
        )

        # Weights must match exactly
        path = self.location(f"{folder}/model.safetensors")
        if path:
            weights = load_file(str(path))
        else:
            path = self.location(f"{folder}/pytorch_model.bin")
            if not path:
                raise ValueError(f"no {folder}/model.safetensors in {self.path}")

            weights = torch.load(str(path), map_location="cpu", weights_only=True)

        layer.load_state_dict({name: tensor.float() for name, tensor in weights.items()})
        return layer

    def location(self, name):
        """
        Finds a file of the checkpoint, downloading it from the model hub when path is a hub id.

        Args:
            name: file path relative to the checkpoint root

        Returns:
            local Path or None when the file does not exist
        """

        if self.local:
            path = Path(self.path) / name
            return path if path.is_file() else None

        subfolder, _, filename = name.rpartition("/")
        try:
            return Path(hf_hub_download(self.path, filename, subfolder=subfolder or None, revision=self.revision))
        except EntryNotFoundError:
            return None
        except (RepositoryNotFoundError, RevisionNotFoundError) as error:
            raise hub.notfound(self.path, error) from None

    def readjson(self, name):
        """
        Reads a JSON file of the checkpoint.

        Args:
            name: file path relative to the checkpoint root

        Returns:
            parsed JSON or None when the file does not exist
        """

        path = self.location(name)
        if not path:
            return None

        with open(path, encoding="utf-8") as handle:
            return json.load(handle)

    @staticmethod
    def value(config, key, default):
        """
        Reads a setting, falling back to default when absent or null.

        Args:
            config: settings dict
            key: setting name
            default: default value

        Returns:
            value
        """

        value = config.get(key)
        return default if value is None else value

    @staticmethod
    def activation(name):
        """
        Creates a Dense activation from its class name. Only torch modules are accepted, so a checkpoint can not import
        arbitrary code.

        Args:
            name: full class name, for example torch.nn.modules.linear.Identity

        Returns:
            activation module
        """

        if not name:
            return torch.nn.Identity()

        module, _, attribute = name.rpartition(".")
        if not (module == "torch" or module.startswith("torch.")):
            raise ValueError(f"unsupported Dense activation {name}: only torch modules are loaded")

        target = getattr(importlib.import_module(module), attribute, None)
        if not (isinstance(target, type) and issubclass(target, torch.nn.Module)):
            raise ValueError(f"unsupported Dense activation {name}")

        return target()

    @staticmethod
    def checkhub(path):
        """
        Checks that path, which is not a local folder, can be a model hub id.

        Args:
            path: model path
        """

        if Path(path).exists():
            raise ValueError(f"{path} is not a folder")

        try:
            validate_repo_id(path)
        except HFValidationError as error:
            raise ValueError(f"{path} is neither a local folder nor a model hub id") from error


class Dense(torch.nn.Module):
    """
    Projection layer of a ColBERT checkpoint, as PyLate's Dense: activation(linear(x)), plus a residual connection when
    use_residual is set (the input itself, or a bias-free linear map of it when the widths differ).

    Examples:
        >>> layer = Dense(4, 2, bias=False, residual=True)
        >>> layer(torch.ones(3, 4)).shape
        torch.Size([3, 2])
    """

    def __init__(self, infeatures, outfeatures, bias=True, activation=None, residual=False):
        """
        Creates a Dense layer.

        Args:
            infeatures: input width
            outfeatures: output width
            bias: adds a bias vector
            activation: activation module, identity when None
            residual: adds the residual connection
        """

        super().__init__()

        self.in_features, self.out_features, self.bias, self.use_residual = infeatures, outfeatures, bias, residual
        self.linear = torch.nn.Linear(infeatures, outfeatures, bias=bias)
        self.activation = activation if activation is not None else torch.nn.Identity()

        # Project residuals of another width
        self.residual = torch.nn.Linear(infeatures, outfeatures, bias=False) if residual and infeatures != outfeatures else None

    def forward(self, inputs):
        """
        Projects token vectors.

        Args:
            inputs: (..., in_features) tensor

        Returns:
            (..., out_features) tensor
        """

        outputs = self.activation(self.linear(inputs))
        if self.use_residual:
            outputs = outputs + (inputs if self.residual is None else self.residual(inputs))

        return outputs

    def config(self):
        """
        Layer configuration, used in the model fingerprint.

        Returns:
            dict
        """

        return {
            "in_features": self.in_features,
            "out_features": self.out_features,
            "bias": self.bias,
            "activation": f"{type(self.activation).__module__}.{type(self.activation).__name__}",
            "use_residual": self.use_residual,
        }
