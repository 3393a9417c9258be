"""
Encoder module
"""

import hashlib
import inspect
import json
import threading

import numpy as np
import torch

from tqdm.auto import tqdm
from transformers import AutoTokenizer

from .checkpoint import Checkpoint


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

        self.batchsize, self.revision = batchsize, revision
        self.device = LateEncoder.select(gpu)

        # Settings before the transformer
        checkpoint = Checkpoint(path, revision)
        self.path = checkpoint.path
        subfolder, settings, layers, lowercase, prompt = checkpoint.read()
        self.settings, self.lowercase, self.prompt = settings, lowercase, prompt

        # Markers as tokens, like PyLate
        self.tokenizer = AutoTokenizer.from_pretrained(self.path, subfolder=subfolder, revision=self.revision)
        prefixes = [prefix for prefix in (settings["query_prefix"], settings["document_prefix"]) if prefix]
        if prefixes:
            self.tokenizer.add_tokens(prefixes)

        # Pad queries with mask or eos
        if self.tokenizer.mask_token_id is not None:
            self.tokenizer.pad_token = self.tokenizer.mask_token
        elif self.tokenizer.eos_token_id is not None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        elif self.tokenizer.pad_token_id is None:
            raise ValueError(f"tokenizer in {self.path} has no mask, eos or pad token to pad queries with")

        # float32, whatever the saved dtype
        model = checkpoint.transformer(subfolder)
        rows = model.get_input_embeddings().num_embeddings

        # Markers need trained embeddings
        self.queryid = self.tokenid(settings["query_prefix"], rows)
        self.documentid = self.tokenid(settings["document_prefix"], rows)

        # Skiplist ids, as PyLate
        skiplist = {self.tokenizer.convert_tokens_to_ids(word) for word in settings["skiplist_words"]}
        self.skiplist = torch.tensor(sorted(uid for uid in skiplist if uid is not None), dtype=torch.long, device=self.device)

        # Model fingerprint
        self.fingerprint = self.identify(layers, prompt, lowercase)
        self.dimension = layers[-1].out_features

        # Half precision on cuda
        dtype = torch.float16 if self.device.type == "cuda" else torch.float32
        self.model = model.to(self.device, dtype).eval()
        self.layers = torch.nn.ModuleList(layers).to(self.device, dtype).eval()

        # Inputs the transformer accepts
        self.arguments = set(inspect.signature(self.model.forward).parameters)

        # Tokenizer calls set state: serialize
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

        # Longest first, as PyLate
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

        # Transformer, then projections
        vectors = self.model(**{name: value for name, value in inputs.items() if name in self.arguments}, return_dict=True)[0]
        for layer in self.layers:
            vectors = layer(vectors)

        # Normalize, then drop masked tokens
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

        # Prompt, then text cleanup
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

        # Insert marker after the first token
        if prefix is not None:
            for name, value in (("input_ids", prefix), ("attention_mask", 1), ("token_type_ids", 0)):
                if name in inputs:
                    tensor = inputs[name]
                    column = torch.full((tensor.shape[0], 1), value, dtype=tensor.dtype)
                    inputs[name] = torch.cat([tensor[:, :1], column, tensor[:, 1:]], dim=1)

        # Attend to expansion if trained so
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

        # Expanded queries keep every token
        if query:
            if self.settings["do_query_expansion"]:
                return torch.ones_like(inputs["input_ids"], dtype=torch.bool)

            return inputs["attention_mask"].bool()

        # Documents drop skiplist tokens
        skip = torch.isin(inputs["input_ids"], self.skiplist)
        return inputs["attention_mask"].bool() & ~skip

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

        # Hash projection weights
        weights = hashlib.sha256()
        for x, layer in enumerate(layers):
            weights.update(json.dumps([x, layer.config()], sort_keys=True).encode("utf-8"))
            for name, tensor in sorted(layer.state_dict().items()):
                array = np.ascontiguousarray(tensor.detach().cpu().float().numpy(), dtype="<f4")
                weights.update(f"{name}:{list(array.shape)}".encode("utf-8"))
                weights.update(array.tobytes())

        # Unset options keep old fingerprints
        data = {"settings": self.settings, "vocab": len(self.tokenizer), "weights": weights.hexdigest()}
        if prompt or lowercase:
            data["text"] = {"prompt": prompt, "lowercase": lowercase}

        return hashlib.sha256(json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode("utf-8")).hexdigest()

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

        # Disabled, bool before int
        if gpu is None or gpu is False or (not isinstance(gpu, bool) and int(gpu) < 0):
            return torch.device("cpu")

        # cuda id, or best accelerator
        if torch.cuda.is_available():
            return torch.device("cuda" if gpu is True else f"cuda:{int(gpu)}")
        if torch.backends.mps.is_available():
            return torch.device("mps")

        return torch.device("cpu")
