"""
Sparse slot and hybrid search tests.
"""

import subprocess
import sys

import numpy as np
import pytest

from txtai import Embeddings

from txtai_muvera.core.encoder import LateEncoder

from helpers import TEXTS, exactmaxsim, late


def explicit(model):
    """
    Explicit sparse-slot config: no import needed.
    """

    return {"path": str(model), "vectormethod": "txtai_muvera.LateVectors", "backend": "txtai_muvera.Muvera"}


def test_explicit_sparse_config(pylate_model, tmp_path):
    encoder = LateEncoder(str(pylate_model), gpu=False)
    embeddings = Embeddings(sparse=explicit(pylate_model), content=True)
    embeddings.index(TEXTS)

    results = embeddings.search(TEXTS[0], 5)
    assert results[0]["text"] == TEXTS[0]
    for result in results:
        assert result["score"] == pytest.approx(exactmaxsim(encoder, TEXTS[0], result["text"]), abs=2e-3)

    # Upsert, delete, save and load through the sparse slot
    embeddings.upsert([("20", "Frogs sing at night in the rainforest", None)])
    embeddings.delete(["0"])
    embeddings.save(str(tmp_path / "sparse"))

    loaded = Embeddings().load(str(tmp_path / "sparse"))
    assert loaded.count() == len(TEXTS)
    assert "0" not in [r["id"] for r in loaded.search(TEXTS[0], 5)]
    assert loaded.search("Frogs sing at night in the rainforest", 1)[0]["id"] == "20"


def test_explicit_config_has_no_import_side_effects(pylate_model):
    # A fresh interpreter: the explicit config works and txtai's Sparse class is left as it was
    code = f"""
import sys
from txtai import Embeddings
from txtai.scoring.sparse import Sparse
original = Sparse.__init__
embeddings = Embeddings(sparse={explicit(pylate_model)!r}, content=True)
embeddings.index(["one text about frogs", "another about stocks"])
assert embeddings.search("one text about frogs", 1)[0]["id"] == "0"
assert Sparse.__init__ is original
assert "txtai_muvera.sparse" not in sys.modules
print("clean")
"""
    output = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "clean" in output.stdout


def test_sparse_shortcut_with_import(pylate_model, tmp_path):
    # The seed's first snippet: txtai alone fails on it (ImportError, or ValueError about trust_remote_code with
    # sentence-transformers 6: which error depends on the installed packages), the import makes it work
    code = f"""
from txtai import Embeddings
try:
    Embeddings(sparse={str(pylate_model)!r}, content=True).index(["text"])
    raise SystemExit("txtai alone accepted a late-interaction sparse model")
except Exception:
    pass

import txtai_muvera.sparse
txtai_muvera.sparse.enable()  # idempotent

embeddings = Embeddings(sparse={str(pylate_model)!r}, content=True)
embeddings.index(["one text about frogs", "another about stocks"])
assert embeddings.search("one text about frogs", 1)[0]["id"] == "0"
assert embeddings.config["scoring"]["vectormethod"] == "txtai_muvera.LateVectors"
embeddings.save({str(tmp_path / "shortcut")!r})
print("ok")
"""
    output = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert output.returncode == 0, output.stderr[-3000:]

    # The saved config names the classes, so it loads without the import
    loaded = Embeddings().load(str(tmp_path / "shortcut"))
    assert loaded.search("one text about frogs", 1)[0]["id"] == "0"


def test_hybrid_late_dense_with_bm25(pylate_model):
    config = late(pylate_model)
    config["hybrid"] = True
    embeddings = Embeddings(config)
    embeddings.index(TEXTS)

    assert embeddings.scoring is not None and embeddings.ann is not None
    results = embeddings.search(TEXTS[4], 3)
    assert results[0]["text"] == TEXTS[4]

    # Keyword-only and late-only weights give each side's own ranking
    assert embeddings.search("lottery ticket", 3, weights=0.0)[0]["text"] == TEXTS[4]
    late_only = embeddings.search(TEXTS[4], 3, weights=1.0)
    assert late_only[0]["text"] == TEXTS[4]


def test_hybrid_dense_model_with_late_sparse(pylate_model):
    # A single-vector dense model (mean pooling over the same tiny BERT) plus late interaction in the sparse slot
    embeddings = Embeddings(path=str(pylate_model), method="meanpooling", sparse=explicit(pylate_model), content=True)
    embeddings.index(TEXTS)

    assert embeddings.ann is not None and embeddings.scoring is not None
    results = embeddings.search(TEXTS[10], 3)
    assert len(results) == 3
    assert all(np.isfinite(r["score"]) for r in results)

    # All weight on the sparse (late) side ranks by MaxSim
    sparse = embeddings.search(TEXTS[10], 3, weights=0.0)
    assert sparse[0]["text"] == TEXTS[10]
