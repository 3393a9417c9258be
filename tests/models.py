"""
Tiny random ColBERT checkpoints for tests: a PyLate-format folder and a Stanford-format folder, built offline and seeded.
"""

import json
import string

from pathlib import Path

import torch

from safetensors.torch import save_file
from transformers import BertConfig, BertModel, BertTokenizer

# Special and marker tokens, in BERT's order
SPECIAL = ["[PAD]", "[unused0]", "[unused1]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]

# Whole words, so common text tokenizes to short sequences; anything else falls back to single characters
WORDS = """
the a an and or of to in on at for with from by as is are was were be been has have had not no do does did it its
this that these those new after before over under up down out than then who what when where which why how all any
more most some such can will would should may might one two three four five million day year man men people world
virus cases confirmed canada last fully intact ice shelf suddenly collapsed forming manhattan sized iceberg beijing
invasion craft along coast taiwan tensions escalate national park service warns against sacrificing slower friends
bear attack maine wins lottery ticket make huge profits without work earn up protein folding predicted amino acid
sequence deep learning vitamin supplements prevent fractures older adults insulin resistance associated obesity
type diabetes stock market rallied central bank cut interest rates species frog discovered amazon rainforest solar
panels convert sunlight into electricity silicon cells cell gene genes cancer risk patients study effect treatment
disease blood brain human protein proteins increase decrease higher lower
""".split()

# Punctuation, digits and letters as whole tokens and as word pieces
CHARACTERS = list(string.punctuation) + list(string.digits) + list(string.ascii_lowercase)

# Settings of the PyLate fixture
QUERY_LENGTH, DOCUMENT_LENGTH = 16, 64

# Settings of the Stanford fixture
QUERY_MAXLEN, DOC_MAXLEN = 12, 48


def build_pylate_model(path, dim=16, residual=False):
    """
    Builds a tiny random PyLate-format checkpoint: BERT (2 layers, hidden 32) with "[Q] " and "[D] " markers added to
    the tokenizer, modules.json, config_sentence_transformers.json, sentence_bert_config.json and Dense module(s).

    Args:
        path: output folder
        dim: token vector width
        residual: when True, the projection is two Dense modules: a 32 -> 32 residual layer with bias and Tanh, then a
                  32 -> dim residual layer with its own residual projection; otherwise one plain 32 -> dim layer

    Returns:
        path
    """

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)

    with torch.random.fork_rng():
        torch.manual_seed(0)

        # Tokenizer with the PyLate markers as added tokens, then the transformer sized to it
        tokenizer = tokenizerfor(path)
        tokenizer.add_tokens(["[Q] ", "[D] "])
        tokenizer.save_pretrained(path)
        bert(len(tokenizer)).save_pretrained(path)

        # Dense modules: (in, out, bias, activation, residual)
        layers = (
            [(32, 32, True, "torch.nn.modules.activation.Tanh", True), (32, dim, False, "torch.nn.modules.linear.Identity", True)]
            if residual
            else [(32, dim, False, "torch.nn.modules.linear.Identity", False)]
        )

        modules = [{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"}]
        for x, (infeatures, outfeatures, bias, activation, useresidual) in enumerate(layers):
            folder = f"{x + 1}_Dense"
            modules.append({"idx": x + 1, "name": str(x + 1), "path": folder, "type": "pylate.models.Dense.Dense"})
            (path / folder).mkdir(exist_ok=True)

            config = {
                "in_features": infeatures,
                "out_features": outfeatures,
                "bias": bias,
                "activation_function": activation,
                "use_residual": useresidual,
            }
            writejson(path / folder / "config.json", config)

            weights = {"linear.weight": torch.randn(outfeatures, infeatures) / infeatures**0.5}
            if bias:
                weights["linear.bias"] = torch.randn(outfeatures) * 0.1
            if useresidual and infeatures != outfeatures:
                weights["residual.weight"] = torch.randn(outfeatures, infeatures) / infeatures**0.5

            save_file(weights, str(path / folder / "model.safetensors"), metadata={"format": "pt"})

    # sentence-transformers and PyLate configuration
    writejson(path / "modules.json", modules)
    writejson(path / "sentence_bert_config.json", {"max_seq_length": 128, "do_lower_case": False})
    writejson(
        path / "config_sentence_transformers.json",
        {
            "prompts": {"query": "", "document": ""},
            "default_prompt_name": None,
            "similarity_fn_name": "MaxSim",
            "query_prefix": "[Q] ",
            "document_prefix": "[D] ",
            "query_length": QUERY_LENGTH,
            "document_length": DOCUMENT_LENGTH,
            "attend_to_expansion_tokens": False,
            "skiplist_words": list(string.punctuation),
            "do_query_expansion": True,
        },
    )

    return path


def build_stanford_model(path, dim=16):
    """
    Builds a tiny random Stanford-format (colbert-ir/colbertv2.0 style) checkpoint: config.json with architectures
    HF_ColBERT, model.safetensors holding bert.* weights and linear.weight, artifact.metadata and the tokenizer.

    Args:
        path: output folder
        dim: token vector width

    Returns:
        path
    """

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)

    with torch.random.fork_rng():
        torch.manual_seed(1)

        # Tokenizer uses [unused0] and [unused1] from the vocabulary as markers
        tokenizer = tokenizerfor(path)
        tokenizer.save_pretrained(path)

        # Stanford checkpoints prefix the BERT weights with "bert." and hold the projection next to them
        model = bert(len(tokenizer))
        weights = {f"bert.{name}": tensor.contiguous() for name, tensor in model.state_dict().items()}
        weights["linear.weight"] = torch.randn(dim, 32) / 32**0.5
        save_file(weights, str(path / "model.safetensors"), metadata={"format": "pt"})

    model.config.architectures = ["HF_ColBERT"]
    model.config.save_pretrained(path)

    writejson(
        path / "artifact.metadata",
        {
            "query_token_id": "[unused0]",
            "doc_token_id": "[unused1]",
            "query_maxlen": QUERY_MAXLEN,
            "doc_maxlen": DOC_MAXLEN,
            "mask_punctuation": True,
            "attend_to_mask_tokens": False,
            "dim": dim,
            "similarity": "cosine",
        },
    )

    return path


def tokenizerfor(path):
    """
    Writes a small WordPiece vocab.txt and builds a BERT tokenizer from it.

    Args:
        path: output folder

    Returns:
        BertTokenizer
    """

    vocab = list(dict.fromkeys(SPECIAL + CHARACTERS + WORDS + [f"##{x}" for x in string.digits + string.ascii_lowercase]))
    with open(path / "vocab.txt", "w", encoding="utf-8") as output:
        output.write("\n".join(vocab) + "\n")

    return BertTokenizer(vocab={token: x for x, token in enumerate(vocab)}, do_lower_case=True)


def bert(vocabsize):
    """
    Creates a tiny random BERT encoder.

    Args:
        vocabsize: vocabulary size

    Returns:
        BertModel
    """

    config = BertConfig(
        vocab_size=vocabsize,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
        pad_token_id=0,
    )

    return BertModel(config).eval()


def writejson(path, data):
    """
    Writes a JSON file.

    Args:
        path: output file
        data: JSON data
    """

    with open(path, "w", encoding="utf-8") as output:
        json.dump(data, output, indent=2)
