"""
Encoder module
"""

import hashlib
import importlib
import inspect
import json
import string
import threading

from pathlib import Path

import numpy as np
import torch

from huggingface_hub import hf_hub_download
from huggingface_hub.errors import EntryNotFoundError, HFValidationError, RepositoryNotFoundError, RevisionNotFoundError
from huggingface_hub.utils import validate_repo_id
from safetensors import safe_open
from safetensors.torch import load_file
from tqdm.auto import tqdm
from transformers import AutoModel, AutoTokenizer
from transformers.utils import logging

from . import hub


class LateEncoder:
    """
    Encodes text into token vector matrices with a ColBERT checkpoint (PyLate or Stanford format), exactly as PyLate does.
    """

    def __init__(self, path, gpu=True, batchsize=32, revision=None):
        """
        Creates a LateEncoder.

        Args:
            path: local folder or model hub id
            gpu: True picks cuda/mps when available, False forces cpu, an int picks a cuda device id, a string is a torch device
            batchsize: default encoding batch size
            revision: optional hub revision
        """

        if not isinstance(batchsize, int) or isinstance(batchsize, bool) or batchsize < 1:
            raise ValueError(f"batchsize must be a positive int, got {batchsize!r}")

        self.path, self.revision, self.batchsize = hub.expand(str(path)), revision, batchsize
        self.device = LateEncoder.select(gpu)

        # Local folder or model hub id, checked before anything is read
        self.local = Path(self.path).is_dir()
        if not self.local:
            LateEncoder.checkhub(self.path)

            # Hub unreachable: its cached snapshot, or one line saying what to do, never a retry loop
            cached = hub.folder(self.path, self.revision)
            if cached:
                self.path, self.local = cached, True

        # Checkpoint format decides where the settings and the projection come from
        if self.location("modules.json"):
            subfolder, settings, layers, lowercase, prompt = self.pylate()
        elif self.stanfordformat():
            subfolder, settings, layers, lowercase, prompt = self.stanford()
        else:
            where = self.path if self.local else f"{self.path} on the model hub ({hub.endpoint()})"
            raise ValueError(f"no modules.json (PyLate) or artifact.metadata/linear.weight (Stanford) in {where}")

        self.settings, self.lowercase, self.prompt = settings, lowercase, prompt

        # Tokenizer with the prefix markers registered as tokens, as PyLate does
        self.tokenizer = AutoTokenizer.from_pretrained(self.path, subfolder=subfolder, revision=self.revision)
        prefixes = [prefix for prefix in (settings["query_prefix"], settings["document_prefix"]) if prefix]
        if prefixes:
            self.tokenizer.add_tokens(prefixes)

        # Query expansion pads with the mask token (eos token for decoder models)
        if self.tokenizer.mask_token_id is not None:
            self.tokenizer.pad_token = self.tokenizer.mask_token
        elif self.tokenizer.eos_token_id is not None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        elif self.tokenizer.pad_token_id is None:
            raise ValueError(f"tokenizer in {self.path} has no mask, eos or pad token to pad queries with")

        # Transformer in float32, results do not depend on the dtype the checkpoint was saved in
        model = self.transformer(subfolder)
        rows = model.get_input_embeddings().num_embeddings

        # Prefix marker ids, which must have a trained embedding row
        self.queryid = self.tokenid(settings["query_prefix"], rows)
        self.documentid = self.tokenid(settings["document_prefix"], rows)

        # Skiplist words to token ids, words missing from the vocabulary map to the unknown token like PyLate
        skiplist = {self.tokenizer.convert_tokens_to_ids(word) for word in settings["skiplist_words"]}
        self.skiplist = torch.tensor(sorted(uid for uid in skiplist if uid is not None), dtype=torch.long, device=self.device)

        # Identifies this model: settings, vocabulary and projection weights
        self.fingerprint = self.identify(layers, prompt, lowercase)
        self.dimension = layers[-1].out_features

        # Half precision on cuda, float32 elsewhere
        dtype = torch.float16 if self.device.type == "cuda" else torch.float32
        self.model = model.to(self.device, dtype).eval()
        self.layers = torch.nn.ModuleList(layers).to(self.device, dtype).eval()

        # Inputs the transformer accepts (token_type_ids is optional)
        self.arguments = set(inspect.signature(self.model.forward).parameters)

        # A fast tokenizer keeps padding and truncation as state set on each call: calls from several threads with
        # different lengths (queries and documents) must not interleave
        self.tokenizing = threading.Lock()

    def encode(self, texts, category="data", batchsize=None, progress=False):
        """
        Encodes texts.

        Args:
            texts: list of strings
            category: "query" or "data"
            batchsize: overrides the default batch size
            progress: shows a progress bar when True, or counts encoded texts on a given tqdm-like object

        Returns:
            list of float32 numpy arrays, one (tokens x dimension) matrix per text, L2 normalised, unpadded
        """

        # Validate inputs
        if not isinstance(texts, (list, tuple)):
            raise TypeError(f"texts must be a list of str, got {type(texts).__name__}")
        for x, text in enumerate(texts):
            if not isinstance(text, str):
                raise TypeError(f"texts[{x}] must be a str, got {type(text).__name__}")
        if category not in ("query", "data"):
            raise ValueError(f'category must be "query" or "data", got {category!r}')

        batchsize = self.batchsize if batchsize is None else batchsize
        if not isinstance(batchsize, int) or isinstance(batchsize, bool) or batchsize < 1:
            raise ValueError(f"batchsize must be a positive int, got {batchsize!r}")

        # Longest texts first so that each batch pads little, as PyLate orders them
        query = category == "query"
        order = np.argsort([-len(text) for text in texts], kind="stable")

        results = [None] * len(texts)
        owned = not hasattr(progress, "update")
        progressbar = tqdm(total=len(texts), desc=f"Encoding {category}", disable=not progress) if owned else progress
        with torch.inference_mode():
            for start in range(0, len(texts), batchsize):
                indices = order[start : start + batchsize]
                for x, matrix in zip(indices, self.batch([texts[x] for x in indices], query)):
                    results[x] = matrix

                progressbar.update(len(indices))

        if owned:
            progressbar.close()

        return results

    def batch(self, texts, query):
        """
        Encodes one batch of texts.

        Args:
            texts: list of strings
            query: True for queries, False for documents

        Returns:
            list of (tokens x dimension) float32 arrays
        """

        inputs = self.tokenize(texts, query)
        inputs = {name: value.to(self.device) for name, value in inputs.items()}

        # Token vectors: transformer output through each projection layer
        vectors = self.model(**{name: value for name, value in inputs.items() if name in self.arguments}, return_dict=True)[0]
        for layer in self.layers:
            vectors = layer(vectors)

        # Normalised in float32, then padding (and skiplist tokens for documents) dropped
        vectors = torch.nn.functional.normalize(vectors.float(), p=2, dim=-1).cpu().numpy()
        masks = self.masks(inputs, query).cpu().numpy()

        return [vector[mask] for vector, mask in zip(vectors, masks)]

    def tokenize(self, texts, query):
        """
        Tokenizes texts as PyLate does: text stripped, truncated to one less than the target length, then the prefix
        marker inserted after the first ([CLS]) token. Queries are padded to query_length with the mask token when
        query expansion is on.

        Args:
            texts: list of strings
            query: True for queries, False for documents

        Returns:
            dict of input_ids, attention_mask and (when the tokenizer makes them) token_type_ids tensors
        """

        settings = self.settings
        length = settings["query_length"] if query else settings["document_length"]
        prefix = self.queryid if query else self.documentid
        expand = query and settings["do_query_expansion"]

        # Optional model prompt, then sentence-transformers text cleanup
        texts = [(self.prompt + text) if self.prompt else text for text in texts]
        texts = [text.strip() for text in texts]
        if self.lowercase:
            texts = [text.lower() for text in texts]

        # Leave room for the prefix marker
        with self.tokenizing:
            inputs = self.tokenizer(
                texts,
                padding="max_length" if expand else True,
                truncation="longest_first",
                max_length=length - 1 if prefix is not None else length,
                return_tensors="pt",
            )
        inputs = {name: inputs[name] for name in ("input_ids", "attention_mask", "token_type_ids") if name in inputs}

        # Insert the marker token after the first token
        if prefix is not None:
            for name, value in (("input_ids", prefix), ("attention_mask", 1), ("token_type_ids", 0)):
                if name in inputs:
                    tensor = inputs[name]
                    column = torch.full((tensor.shape[0], 1), value, dtype=tensor.dtype)
                    inputs[name] = torch.cat([tensor[:, :1], column, tensor[:, 1:]], dim=1)

        # Expansion tokens are attended to only when the model was trained that way
        if query and settings["attend_to_expansion_tokens"]:
            inputs["attention_mask"].fill_(1)

        return inputs

    def masks(self, inputs, query):
        """
        Selects the token vectors to keep.

        Args:
            inputs: tokenized inputs
            query: True for queries, False for documents

        Returns:
            boolean tensor (batch x tokens)
        """

        # Queries with expansion keep every token, including the [MASK] expansion tokens
        if query:
            if self.settings["do_query_expansion"]:
                return torch.ones_like(inputs["input_ids"], dtype=torch.bool)

            return inputs["attention_mask"].bool()

        # Documents drop padding and skiplist tokens
        skip = torch.isin(inputs["input_ids"], self.skiplist)
        return inputs["attention_mask"].bool() & ~skip

    def pylate(self):
        """
        Reads a PyLate (sentence-transformers) checkpoint: modules.json, config_sentence_transformers.json,
        sentence_bert_config.json and the Dense modules.

        Returns:
            (transformer subfolder, settings, projection layers, lowercase, prompt)
        """

        modules = sorted(self.readjson("modules.json"), key=lambda module: module.get("idx", 0))

        # Transformer module (folder "" is the root) and Dense modules, other modules are ignored as PyLate does
        transformers = [module for module in modules if module["type"].split(".")[-1] == "Transformer"]
        denses = [module for module in modules if module["type"].split(".")[-1] == "Dense"]
        if not transformers:
            raise ValueError(f"no Transformer module in modules.json in {self.path}")
        if not denses:
            raise ValueError(f"no Dense module in modules.json in {self.path}: PyLate would add an untrained projection")

        subfolder = transformers[0].get("path", "").strip("/")
        layers = [self.dense(module["path"].strip("/")) for module in denses]

        # PyLate settings, defaults where absent or null
        config = self.readjson("config_sentence_transformers.json") or {}
        settings = {
            "query_prefix": LateEncoder.value(config, "query_prefix", "[Q] "),
            "document_prefix": LateEncoder.value(config, "document_prefix", "[D] "),
            "query_length": LateEncoder.value(config, "query_length", 32),
            "document_length": LateEncoder.value(config, "document_length", 180),
            "do_query_expansion": LateEncoder.value(config, "do_query_expansion", True),
            "attend_to_expansion_tokens": LateEncoder.value(config, "attend_to_expansion_tokens", False),
            "skiplist_words": list(LateEncoder.value(config, "skiplist_words", list(string.punctuation))),
            "format": "pylate",
        }

        # Without query expansion there is nothing to attend to
        if not settings["do_query_expansion"]:
            settings["attend_to_expansion_tokens"] = False

        # Default sentence-transformers prompt, prepended to every text
        prompts, name = config.get("prompts") or {}, config.get("default_prompt_name")
        prompt = prompts.get(name) if name else None

        # sentence-transformers lowercases text itself when do_lower_case is set
        transformer = self.readjson(f"{subfolder}/sentence_bert_config.json" if subfolder else "sentence_bert_config.json") or {}

        return subfolder, settings, layers, bool(transformer.get("do_lower_case", False)), prompt or None

    def stanford(self):
        """
        Reads a Stanford ColBERT checkpoint: config.json (HF_ColBERT), artifact.metadata and linear.weight.

        Returns:
            (transformer subfolder, settings, projection layers, lowercase, prompt)
        """

        metadata = self.readjson("artifact.metadata") or {}

        # Projection stored next to the BERT weights, no bias
        weight = self.stanfordweight()
        if weight is None:
            raise ValueError(f"no linear.weight (Stanford) in the model weights of {self.path}")

        layer = Dense(weight.shape[1], weight.shape[0], bias=False)
        layer.load_state_dict({"linear.weight": weight})

        # Stanford markers and lengths, punctuation masked from documents when mask_punctuation is set
        settings = {
            "query_prefix": LateEncoder.value(metadata, "query_token_id", "[unused0]"),
            "document_prefix": LateEncoder.value(metadata, "doc_token_id", "[unused1]"),
            "query_length": LateEncoder.value(metadata, "query_maxlen", 32),
            "document_length": LateEncoder.value(metadata, "doc_maxlen", 180),
            "do_query_expansion": True,
            "attend_to_expansion_tokens": LateEncoder.value(metadata, "attend_to_mask_tokens", False),
            "skiplist_words": list(string.punctuation) if LateEncoder.value(metadata, "mask_punctuation", True) else [],
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

        # Quiet load: no warnings and no "Loading weights" bar
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

        # Pooler weights are unused, everything else must come from the checkpoint
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
            activation=LateEncoder.activation(config.get("activation_function")),
            residual=config.get("use_residual", False),
        )

        # Weights must match the layer exactly
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

    def tokenid(self, prefix, rows):
        """
        Gets the token id of a prefix marker.

        Args:
            prefix: marker string, empty for no marker
            rows: number of rows in the embedding matrix

        Returns:
            token id or None for no marker
        """

        if not prefix:
            return None

        uid = self.tokenizer.convert_tokens_to_ids(prefix)
        if uid is None or uid >= rows:
            raise ValueError(f"prefix {prefix!r} has no token embedding in {self.path}: PyLate would add an untrained one")

        return uid

    def identify(self, layers, prompt, lowercase):
        """
        Builds the model fingerprint: sha256 of a canonical JSON of the settings, tokenizer vocabulary size and a hash
        of the projection weights.

        Args:
            layers: projection layers
            prompt: text prompt or None
            lowercase: True when text is lowercased before tokenization

        Returns:
            sha256 hex string
        """

        # Projection weights, names and shapes included
        weights = hashlib.sha256()
        for x, layer in enumerate(layers):
            weights.update(json.dumps([x, layer.config()], sort_keys=True).encode("utf-8"))
            for name, tensor in sorted(layer.state_dict().items()):
                array = np.ascontiguousarray(tensor.detach().cpu().float().numpy(), dtype="<f4")
                weights.update(f"{name}:{list(array.shape)}".encode("utf-8"))
                weights.update(array.tobytes())

        # Prompt and lowercasing only enter the fingerprint when used, so they do not change it otherwise
        data = {"settings": self.settings, "vocab": len(self.tokenizer), "weights": weights.hexdigest()}
        if prompt or lowercase:
            data["text"] = {"prompt": prompt, "lowercase": lowercase}

        return hashlib.sha256(json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode("utf-8")).hexdigest()

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

    @staticmethod
    def select(gpu):
        """
        Picks the torch device, following txtai's gpu option.

        Args:
            gpu: True picks cuda/mps when available, False (or None) forces cpu, an int picks a cuda device id, a string is a torch device

        Returns:
            torch.device

        Examples:
            >>> LateEncoder.select(False)
            device(type='cpu')
            >>> LateEncoder.select("cpu")
            device(type='cpu')
        """

        # Explicit devices
        if isinstance(gpu, torch.device):
            return gpu
        if isinstance(gpu, str):
            return torch.device(gpu)

        # Disabled (bool is checked before int, it is an int subclass)
        if gpu is None or gpu is False or (not isinstance(gpu, bool) and int(gpu) < 0):
            return torch.device("cpu")

        # Device id on cuda, otherwise the best accelerator available
        if torch.cuda.is_available():
            return torch.device("cuda" if gpu is True else f"cuda:{int(gpu)}")
        if torch.backends.mps.is_available():
            return torch.device("mps")

        return torch.device("cpu")


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

        # Residual path needs its own projection when the widths differ
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
