"""
LEMUR learned encoding tests: the encoder and trainer, and txtai 9.14's artifact format read and written both ways.
"""

import inspect
import json

import numpy as np
import pytest
import torch

from txtai.models.pooling.lemur import Lemur as TxtaiLemur
from txtai.pipeline.train.lemur import LemurTrainer

from txtai_muvera.core import lemurmodel
from txtai_muvera.core.lemur import Lemur
from txtai_muvera.core.lemurartifact import ArtifactError
from txtai_muvera.core.lemurfit import DEFAULTS, fit
from txtai_muvera.core.lemurmodel import LemurModel
from txtai_muvera.core.maxsim import segmax
from txtai_muvera.core.ragged import pack


def collection(count=60, dimension=16, seed=0):
    """
    Random unit token matrices with a shared topic direction per document, so MaxSim has structure to learn.
    """

    generator = np.random.default_rng(seed)
    topics = generator.standard_normal((6, dimension))
    matrices = []
    for x in range(count):
        rows = topics[x % 6] + 0.8 * generator.standard_normal((int(generator.integers(3, 12)), dimension))
        matrices.append((rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32))

    return matrices


def encode(model, matrices, category):
    flat, offsets = pack(matrices)
    return (model.queries if category == "query" else model.documents)(flat, offsets).numpy()


@pytest.mark.parametrize("epochs", [0, 2])
def test_txtai_artifact_loads_in_ours(tmp_path, epochs):
    # txtai trains (uncentered, like LemurTrainer.fit) and saves, ours loads and encodes the same vectors
    matrices = collection()
    theirs = LemurTrainer().fit(
        matrices, output=str(tmp_path), epochs=epochs, finalhiddendim=32, hiddendim=24, olssamplesize=200, validationsplit=0.2
    )
    ours = LemurModel.load(str(tmp_path))

    for category in ("query", "data"):
        np.testing.assert_allclose(encode(ours, matrices, category), theirs(matrices, category), rtol=1e-4, atol=1e-5)


def test_txtai_centered_artifact(tmp_path):
    # An artifact with a center: txtai's pooling centers tokens before Lemur, ours centers inside the encoder
    matrices = collection()
    center = np.concatenate(matrices).mean(axis=0)
    centered = [(m - center) / np.linalg.norm(m - center, axis=1, keepdims=True) for m in matrices]
    theirs = LemurTrainer().fit(centered, output=str(tmp_path), epochs=1, finalhiddendim=32, olssamplesize=100, centermean=center)
    ours = LemurModel.load(str(tmp_path))

    assert ours.center is not None
    for category in ("query", "data"):
        np.testing.assert_allclose(encode(ours, matrices, category), theirs(centered, category), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("epochs,layers", [(0, 1), (3, 1), (3, 2)])
def test_our_artifact_loads_in_txtai(tmp_path, epochs, layers):
    # Ours trains (uncentered) and saves, txtai loads and encodes the same vectors
    matrices = collection()
    flat, offsets = pack(matrices)
    model, statistics = fit(flat, offsets, dimensions=32, hidden=24, layers=layers, epochs=epochs, sample=150, center=False, progress=False)
    model.save(str(tmp_path))
    theirs = TxtaiLemur(str(tmp_path))

    for category in ("query", "data"):
        np.testing.assert_allclose(theirs(matrices, category), encode(model, matrices, category), rtol=1e-4, atol=1e-5)

    # Artifact config keeps to txtai's keys, our training record inside "training"
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["modeltype"] == ("mlp" if epochs else "elm")
    assert (config.get("training", {}).get("selectedepoch") is not None) == bool(epochs)
    assert statistics["documents"] == len(matrices)


def test_learned_scores_track_maxsim():
    # Query . document approximates MaxSim: a trained encoder ranks much closer to exact MaxSim than chance
    matrices = collection(120)
    flat, offsets = pack(matrices)
    model, _ = fit(flat, offsets, dimensions=64, epochs=30, patience=0, progress=False)

    queries = [m[:3] for m in collection(20, seed=1)]
    approx = encode(model, queries, "query") @ encode(model, matrices, "data").T
    exact = np.array([[(q @ d.T).max(axis=1).sum() for d in matrices] for q in queries])
    correlation = np.mean([np.corrcoef(a, e)[0, 1] for a, e in zip(approx, exact)])
    assert correlation > 0.8


def test_bad_artifacts(tmp_path, pylate_model):
    with pytest.raises(ArtifactError, match="config.json is missing"):
        LemurModel.load(str(tmp_path))

    # An encoder folder is not a LEMUR artifact
    with pytest.raises(ArtifactError, match="no modeltype"):
        LemurModel.load(str(pylate_model))

    matrices = collection()
    flat, offsets = pack(matrices)
    model, _ = fit(flat, offsets, dimensions=16, epochs=0, progress=False)
    model.save(str(tmp_path))
    config = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**config, "finalhiddendim": 8}))
    with pytest.raises(ArtifactError, match="do not match"):
        LemurModel.load(str(tmp_path))

    (tmp_path / "model.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(ArtifactError, match="safetensors"):
        LemurModel.load(str(tmp_path))


def test_fit_checks_input():
    with pytest.raises(ValueError, match="at least 2 documents"):
        fit(np.ones((3, 4), np.float32), np.array([0, 3]), progress=False)
    with pytest.raises(ValueError, match="epochs"):
        fit(np.ones((3, 4), np.float32), np.array([0, 1, 3]), epochs=-1, progress=False)


def test_precision_choice():
    matrices = collection()
    flat, offsets = pack(matrices)
    for precision in ("float32", "bfloat16"):
        model, statistics = fit(flat, offsets, dimensions=16, epochs=2, precision=precision, progress=False)
        assert statistics["precision"] == precision
        assert torch.isfinite(model.queries(flat, offsets)).all()


def test_encode_precision(monkeypatch):
    # Documents: float32 products by default (txtai's), bfloat16 under "auto" where the device makes them faster
    matrices = collection()
    flat, offsets = pack(matrices)
    model, _ = fit(flat, offsets, dimensions=16, epochs=2, progress=False)
    exact = encode(model, matrices, "data")

    monkeypatch.setattr(lemurmodel, "bfloat16", lambda device: True)
    model.precision = "auto"
    rounded = encode(model, matrices, "data")
    assert not np.array_equal(rounded, exact)
    np.testing.assert_allclose(rounded, exact, rtol=0.05, atol=0.05 * np.abs(exact).max())

    # A device without fast bfloat16 keeps float32 under "auto"
    monkeypatch.setattr(lemurmodel, "bfloat16", lambda device: False)
    np.testing.assert_array_equal(encode(model, matrices, "data"), exact)

    with pytest.raises(ValueError, match="encodeprecision"):
        Lemur(16, encodeprecision="bfloat16")


def test_learnfrom():
    # Spans of a sample of the texts, encoded as queries; blank texts are never sampled
    calls = []

    def encode(queries):
        calls.append(queries)
        return [np.ones((3, 16), np.float32) for _ in queries]

    lemur = Lemur(16, learn=64)
    lemur.learnfrom(["one two three four five six", "  ", "seven eight nine ten"], encode)
    assert calls == [lemur.spans(["one two three four five six", "seven eight nine ten"])]
    assert lemur.querytokens.shape == (6, 16)

    # Learning from document tokens: nothing encoded
    calls.clear()
    lemur = Lemur(16, learncategory="data")
    lemur.learnfrom(["one two three four"], encode)
    assert not calls and lemur.querytokens is None


def test_ridge_documents():
    # Ridge 0 is txtai's pseudo-inverse; a ridge solves the penalized normal equations and shrinks the weights
    matrices = collection()
    flat, offsets = pack(matrices)
    model, statistics = fit(flat, offsets, dimensions=16, epochs=4, patience=0, progress=False)
    assert len(statistics["history"]) == 4
    plain = encode(model, matrices, "data")

    model.ridge, model.pinv = 0.1, None
    ridged = encode(model, matrices, "data")
    # Rows solve (F'F + ridge * mean eigenvalue * I) w = F't for the standardized sample targets t
    with torch.inference_mode():
        features = model.network.features(model.sample).double()
        targets = (segmax(model.sample, model.prepare(flat), offsets).double() - model.mean) / model.std
    gram = features.T @ features
    gram += 0.1 * gram.diagonal().mean() * torch.eye(16, dtype=torch.float64)
    expected = torch.linalg.solve(gram, features.T @ targets).T.numpy()
    np.testing.assert_allclose(ridged, expected, rtol=1e-3, atol=1e-3)
    assert not np.allclose(plain, ridged, atol=1e-3)
    assert np.linalg.norm(ridged) < np.linalg.norm(plain)


def test_training_settings_checked():
    matrices = collection()
    flat, offsets = pack(matrices)
    with pytest.raises(ValueError, match="schedule"):
        fit(flat, offsets, epochs=1, schedule="linear", progress=False)
    with pytest.raises(ValueError, match="lr"):
        fit(flat, offsets, epochs=1, lr=0, progress=False)
    with pytest.raises(ValueError, match="ridge"):
        Lemur(16, ridge=-1)

    # Constant and cosine schedules both train
    for schedule in ("constant", "cosine"):
        _, statistics = fit(flat, offsets, dimensions=16, epochs=3, patience=0, schedule=schedule, progress=False)
        assert statistics["epochs"] == 3 and np.isfinite(statistics["loss"])


def test_defaults_shared():
    # One source of training defaults: an index's Lemur and the fit command train alike
    encoding = Lemur(16)
    signature = inspect.signature(fit).parameters
    for name, value in DEFAULTS.items():
        assert signature[name].default == value
        key = "trainprecision" if name == "precision" else name
        if key in encoding.params:
            assert encoding.params[key] == value
