"""
LateEncoder tests: parity with PyLate on a real model, and tiny random PyLate and Stanford checkpoints.
"""

import json
import shutil
import string

import numpy as np
import pytest
import torch

from safetensors.numpy import load_file

from txtai_muvera.core.encoder import LateEncoder

# pylint: disable=C0411
from models import DOC_MAXLEN, DOCUMENT_LENGTH, QUERY_LENGTH, QUERY_MAXLEN, build_pylate_model

# Texts of varied lengths, all made of words in the tiny vocabulary
TEXTS = [
    "the virus cases",
    "solar panels convert sunlight into electricity with silicon cells",
    "a",
    "new species of frog discovered in the amazon rainforest after two years",
    "",
    "insulin resistance is associated with obesity",
]


@pytest.fixture(scope="module")
def pylate(pylate_model):
    return LateEncoder(pylate_model, gpu=False, batchsize=4)


@pytest.fixture(scope="module")
def stanford(stanford_model):
    return LateEncoder(stanford_model, gpu=False, batchsize=4)


@pytest.fixture(params=["pylate", "stanford"])
def encoder(request):
    return request.getfixturevalue(request.param)


def variant(source, target, **settings):
    """
    Copies the tiny PyLate checkpoint with some config_sentence_transformers.json settings changed.
    """

    shutil.copytree(source, target)
    path = target / "config_sentence_transformers.json"
    config = json.loads(path.read_text(encoding="utf-8"))
    config.update(settings)
    path.write_text(json.dumps(config), encoding="utf-8")
    return target


def test_parity_with_pylate(shared):
    # Token vectors written by PyLate 1.6.0 with batch_size=16, see shared/SOURCES.md
    model = shared / "models" / "minilm-colbert"
    references = load_file(str(shared / "reference" / "pylate-minilm-colbert-scifact.safetensors"))
    with open(shared / "reference" / "pylate-minilm-colbert-scifact.json", encoding="utf-8") as handle:
        texts = json.load(handle)

    encoder = LateEncoder(model, gpu=False)
    assert encoder.dimension == 128 and encoder.settings["format"] == "pylate"

    for category, key, inputs in (("query", "query", texts["queries"]), ("data", "document", texts["documents"])):
        matrices = encoder.encode(inputs, category=category, batchsize=16)
        assert len(matrices) == len(inputs) == len([name for name in references if name.startswith(f"{key}.")])

        for x, matrix in enumerate(matrices):
            reference = references[f"{key}.{x}"]
            assert matrix.dtype == np.float32
            assert matrix.shape == reference.shape, (key, x, inputs[x][:40])
            assert np.abs(matrix - reference).max() <= 1e-4, (key, x)


def test_load_and_settings(pylate, stanford):
    assert pylate.settings == {
        "query_prefix": "[Q] ",
        "document_prefix": "[D] ",
        "query_length": QUERY_LENGTH,
        "document_length": DOCUMENT_LENGTH,
        "do_query_expansion": True,
        "attend_to_expansion_tokens": False,
        "skiplist_words": list(string.punctuation),
        "format": "pylate",
    }

    assert stanford.settings["format"] == "stanford"
    assert (stanford.settings["query_prefix"], stanford.settings["document_prefix"]) == ("[unused0]", "[unused1]")
    assert (stanford.settings["query_length"], stanford.settings["document_length"]) == (QUERY_MAXLEN, DOC_MAXLEN)
    assert stanford.settings["skiplist_words"] == list(string.punctuation)

    for encoder in (pylate, stanford):
        assert encoder.dimension == 16
        assert encoder.device == torch.device("cpu")
        assert encoder.path and isinstance(encoder.fingerprint, str) and len(encoder.fingerprint) == 64


@pytest.mark.parametrize("category", ["query", "data"])
def test_shapes_and_normalised(encoder, category):
    matrices = encoder.encode(TEXTS, category=category)

    assert isinstance(matrices, list) and len(matrices) == len(TEXTS)
    for matrix in matrices:
        assert isinstance(matrix, np.ndarray) and matrix.dtype == np.float32
        assert matrix.ndim == 2 and matrix.shape[0] >= 1 and matrix.shape[1] == encoder.dimension
        assert np.allclose(np.linalg.norm(matrix, axis=1), 1.0, atol=1e-5)


def test_marker_after_cls(encoder):
    # PyLate inserts the marker id after [CLS]; queries pad with [MASK], which the original tokens do not attend to
    tokenizer = encoder.tokenizer
    query = encoder.tokenize(["the virus"], True)
    ids, mask = query["input_ids"][0].tolist(), query["attention_mask"][0].tolist()

    assert ids[0] == tokenizer.cls_token_id
    assert ids[1] == tokenizer.convert_tokens_to_ids(encoder.settings["query_prefix"])
    assert ids[2:5] == tokenizer.convert_tokens_to_ids(["the", "virus", tokenizer.sep_token])
    assert ids[5:] == [tokenizer.mask_token_id] * (encoder.settings["query_length"] - 5)
    assert mask == [1] * 5 + [0] * (encoder.settings["query_length"] - 5)

    document = encoder.tokenize(["the virus"], False)["input_ids"][0].tolist()
    assert document[1] == tokenizer.convert_tokens_to_ids(encoder.settings["document_prefix"])
    assert len(document) == 5


def test_query_expansion(encoder):
    # Short and over-long queries both give exactly query_length vectors
    length = encoder.settings["query_length"]
    matrices = encoder.encode(["a", "the virus cases", " ".join(["virus"] * 100)], category="query")
    assert [matrix.shape[0] for matrix in matrices] == [length] * 3


def test_documents_unpadded_and_truncated(encoder):
    # [CLS] marker tokens [SEP], whatever else is in the batch
    matrices = encoder.encode(["the virus cases", " ".join(["virus"] * 100), "a"], category="data")
    assert [matrix.shape[0] for matrix in matrices] == [6, encoder.settings["document_length"], 4]


def test_skiplist_removed_from_documents(encoder):
    # Punctuation tokens are encoded (they change their neighbours) but their vectors are dropped
    plain, punctuated, only = encoder.encode(["the virus cases", "the, virus! cases?", "!!! ..."], category="data")
    assert plain.shape[0] == punctuated.shape[0] == 6
    assert only.shape[0] == 3

    # Queries keep punctuation
    query = encoder.tokenize(["the, virus!"], True)["attention_mask"][0]
    assert int(query.sum()) == 7


def test_order_preserved(encoder):
    # Batches are sorted by length internally; results come back in input order and match one-by-one encoding
    for category in ("query", "data"):
        batched = encoder.encode(TEXTS, category=category, batchsize=2)
        single = [encoder.encode([text], category=category, batchsize=1)[0] for text in TEXTS]
        for x, (left, right) in enumerate(zip(batched, single)):
            assert left.shape == right.shape, (category, x)
            assert np.allclose(left, right, atol=1e-5), (category, x)


def test_progress_and_empty(pylate, capsys):
    assert pylate.encode([]) == []
    assert len(pylate.encode(("a", "b"), progress=True)) == 2
    assert "Encoding" in capsys.readouterr().err


def test_bad_inputs(pylate):
    with pytest.raises(TypeError, match="list of str"):
        pylate.encode("the virus")
    with pytest.raises(TypeError, match=r"texts\[1\].*int"):
        pylate.encode(["the virus", 1])
    with pytest.raises(TypeError, match=r"texts\[0\].*NoneType"):
        pylate.encode([None])
    with pytest.raises(ValueError, match="category"):
        pylate.encode(["the virus"], category="document")
    with pytest.raises(ValueError, match="batchsize"):
        pylate.encode(["the virus"], batchsize=0)


def test_fingerprint(pylate_model, stanford_model, pylate, stanford, tmp_path):
    # Stable across loads, differs between models
    assert LateEncoder(pylate_model, gpu=False).fingerprint == pylate.fingerprint
    assert pylate.fingerprint != stanford.fingerprint

    residual = LateEncoder(build_pylate_model(tmp_path / "residual", residual=True), gpu=False)
    assert residual.fingerprint not in (pylate.fingerprint, stanford.fingerprint)

    changed = LateEncoder(variant(pylate_model, tmp_path / "changed", query_length=20), gpu=False)
    assert changed.fingerprint != pylate.fingerprint


def test_residual_dense(tmp_path):
    # Two Dense modules: residual with bias and Tanh, then residual with its own residual projection
    encoder = LateEncoder(build_pylate_model(tmp_path / "residual", dim=8, residual=True), gpu=False)
    assert encoder.dimension == 8 and len(encoder.layers) == 2
    assert encoder.layers[0].residual is None and encoder.layers[1].residual is not None

    matrices = encoder.encode(TEXTS, category="data")
    assert all(matrix.shape[1] == 8 for matrix in matrices)
    assert all(np.allclose(np.linalg.norm(matrix, axis=1), 1.0, atol=1e-5) for matrix in matrices)


def test_expansion_settings(pylate_model, pylate, tmp_path):
    # Without query expansion, queries are unpadded
    encoder = LateEncoder(variant(pylate_model, tmp_path / "noexpansion", do_query_expansion=False, attend_to_expansion_tokens=True), gpu=False)
    assert encoder.settings["attend_to_expansion_tokens"] is False
    assert [matrix.shape[0] for matrix in encoder.encode(["the virus cases", "a"], category="query")] == [6, 4]

    # Attending to expansion tokens changes the vectors, not their count
    encoder = LateEncoder(variant(pylate_model, tmp_path / "attend", attend_to_expansion_tokens=True), gpu=False)
    attended, plain = encoder.encode(["the virus"], category="query")[0], pylate.encode(["the virus"], category="query")[0]
    assert attended.shape == plain.shape and not np.allclose(attended, plain)

    # Empty skiplist keeps punctuation in documents
    encoder = LateEncoder(variant(pylate_model, tmp_path / "noskip", skiplist_words=[]), gpu=False)
    assert encoder.encode(["the, virus! cases?"])[0].shape[0] == 9


def test_stanford_mask_punctuation(stanford_model, tmp_path):
    # mask_punctuation false keeps punctuation in documents
    path = shutil.copytree(stanford_model, tmp_path / "stanford")
    metadata = json.loads((path / "artifact.metadata").read_text(encoding="utf-8"))
    metadata["mask_punctuation"] = False
    (path / "artifact.metadata").write_text(json.dumps(metadata), encoding="utf-8")

    encoder = LateEncoder(path, gpu=False)
    assert encoder.settings["skiplist_words"] == []
    assert encoder.encode(["the, virus! cases?"])[0].shape[0] == 9


def test_invalid_folders(pylate_model, tmp_path):
    # Neither format
    (tmp_path / "bert").mkdir()
    (tmp_path / "bert" / "config.json").write_text(json.dumps({"model_type": "bert", "architectures": ["BertModel"]}), encoding="utf-8")
    for path in (tmp_path / "bert", tmp_path):
        with pytest.raises(ValueError, match=r"no modules\.json \(PyLate\) or artifact\.metadata/linear\.weight \(Stanford\)"):
            LateEncoder(path, gpu=False)

    # Not a folder or a hub id
    with pytest.raises(ValueError, match="neither a local folder nor a model hub id"):
        LateEncoder(str(tmp_path / "missing" / "deeper" / "model"), gpu=False)

    # PyLate checkpoint without a projection
    path = shutil.copytree(pylate_model, tmp_path / "nodense")
    (path / "modules.json").write_text(
        json.dumps([{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"}]), encoding="utf-8"
    )
    with pytest.raises(ValueError, match="no Dense module"):
        LateEncoder(path, gpu=False)

    # Activation names can only load torch modules
    path = shutil.copytree(pylate_model, tmp_path / "activation")
    config = json.loads((path / "1_Dense" / "config.json").read_text(encoding="utf-8"))
    config["activation_function"] = "os.system"
    (path / "1_Dense" / "config.json").write_text(json.dumps(config), encoding="utf-8")
    with pytest.raises(ValueError, match="activation"):
        LateEncoder(path, gpu=False)

    # Bad batch size
    with pytest.raises(ValueError, match="batchsize"):
        LateEncoder(pylate_model, gpu=False, batchsize=0)


def test_device_selection():
    cpu = torch.device("cpu")
    assert LateEncoder.select(False) == cpu
    assert LateEncoder.select(None) == cpu
    assert LateEncoder.select(-1) == cpu
    assert LateEncoder.select("cpu") == cpu
    assert LateEncoder.select(cpu) == cpu

    # True and device ids take the best accelerator available
    expected = "cuda" if torch.cuda.is_available() else "mps" if torch.backends.mps.is_available() else "cpu"
    assert LateEncoder.select(True).type == expected
    assert LateEncoder.select(0).type == expected
