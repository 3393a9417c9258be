"""
Candidate vector storage and delegated candidate search: float16 rows, the float16 scan, older float32 indexes, presets.
"""

import json
import math
import os

import numpy as np
import pytest
import torch

from txtai.embeddings import Embeddings

from helpers import TEXTS, late, reseal
from txtai_muvera.delegate import PRESETS, delegateconfig, pqsize
from txtai_muvera.core import scan
from txtai_muvera.core.scan import Scan, encodingrows
from txtai_muvera.errors import ConfigurationError


def ranking(embeddings, queries=("virus cases", "frog", "interest rates", "lottery")):
    """
    Top 5 ids and scores of a few queries.
    """

    return [[(r["id"], round(r["score"], 4)) for r in embeddings.search(query, 5)] for query in queries]


def test_scan(monkeypatch):
    # Float16 rows score like float32 within float16 rounding of the rows only, over several blocks and a partial one
    # (blocks of 64 rows at 64 dimensions)
    monkeypatch.setattr(scan, "BLOCK", 64 * 64 * 4)
    generator = np.random.default_rng(3)
    rows = generator.standard_normal((300, 64)).astype(np.float32)
    queries = generator.standard_normal((5, 64)).astype(np.float32)

    scores = Scan()(queries, rows.astype(np.float16))
    assert scores.shape == (5, 300) and scores.dtype == torch.float32
    np.testing.assert_allclose(scores.numpy(), queries @ rows.astype(np.float16).astype(np.float32).T, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(Scan()(queries[:1], rows).numpy(), queries[:1] @ rows.T, rtol=1e-5, atol=1e-4)


def test_encodingrows():
    rows = np.array([[1.5, -2.0]], dtype=np.float32)
    assert encodingrows(rows, "float16").dtype == np.float16
    assert encodingrows(rows, "float32") is rows

    # Beyond float16's range is an error naming the fix, never inf
    with pytest.raises(ValueError, match="encodingdtype: float32"):
        encodingrows(np.array([[1e6]], dtype=np.float32), "float16")
    with pytest.raises(ValueError, match="encodingdtype"):
        encodingrows(rows, "bfloat16")


def test_float16_rows(pylate_model, tmp_path):
    # Default float16 rows: half the bytes, the same ranking as float32 rows
    half = Embeddings(late(pylate_model))
    half.index(TEXTS)
    full = Embeddings(late(pylate_model, encodingdtype="float32"))
    full.index(TEXTS)
    assert ranking(half) == ranking(full)

    half.save(str(tmp_path / "half"))
    full.save(str(tmp_path / "full"))
    rows = {name: np.load(tmp_path / name / "embeddings" / "fde.npy", mmap_mode="r") for name in ("half", "full")}
    assert rows["half"].dtype == np.float16 and rows["full"].dtype == np.float32
    assert os.path.getsize(tmp_path / "half" / "embeddings" / "fde.npy") < 0.55 * os.path.getsize(tmp_path / "full" / "embeddings" / "fde.npy")
    with open(tmp_path / "half" / "embeddings" / "muvera.json", encoding="utf-8") as f:
        assert json.load(f)["encodingdtype"] == "float16"

    # Upserts after a reload append float16 rows
    loaded = Embeddings().load(str(tmp_path / "half"))
    loaded.upsert([(len(TEXTS), "Frogs sing at night in the rainforest", None)])
    assert loaded.ann.fdes.dtype == np.float16
    assert str(len(TEXTS)) in [str(r["id"]) for r in loaded.search("frog rainforest night", 3)]

    with pytest.raises(ConfigurationError, match="encodingdtype"):
        Embeddings(late(pylate_model, encodingdtype="float8"))


def test_float32_index_loads(pylate_model, tmp_path):
    # An index saved before float16 rows existed: float32 fde.npy, no encodingdtype in muvera.json or the config
    old = Embeddings(late(pylate_model, encodingdtype="float32"))
    old.index(TEXTS)
    expected = ranking(old)
    old.save(str(tmp_path / "old"))

    # muvera.json is sealed: sealed again without the key, as the earlier build wrote it
    reseal(str(tmp_path / "old" / "embeddings" / "muvera.json"), lambda metadata: metadata.pop("encodingdtype", None))
    with open(tmp_path / "old" / "config.json", encoding="utf-8") as f:
        config = json.load(f)
    config["muvera"].pop("encodingdtype", None)
    with open(tmp_path / "old" / "config.json", "w", encoding="utf-8") as f:
        json.dump(config, f, indent=2)

    # Its float32 rows load memory mapped and search as before
    loaded = Embeddings().load(str(tmp_path / "old"))
    assert loaded.ann.fdes.dtype == np.float32
    assert ranking(loaded) == expected

    # Saved again, it is written in the configured float16
    loaded.save(str(tmp_path / "new"))
    assert np.load(tmp_path / "new" / "embeddings" / "fde.npy", mmap_mode="r").dtype == np.float16
    assert ranking(Embeddings().load(str(tmp_path / "new"))) == expected


def test_presets():
    assert delegateconfig("faiss-ivfpq", 10240)["faiss"]["components"] == "IDMap,IVF,PQ1280x4fs,Refine(SQfp16)"
    assert delegateconfig("faiss") == {"backend": "faiss"}
    assert pqsize(10240) == 1280 and pqsize(2048) == 1024 and pqsize(1024) == 512 and pqsize(12) == 6 and pqsize(3) == 1
    assert delegateconfig("faiss-hnsw") is not delegateconfig("faiss-hnsw") and PRESETS["faiss-hnsw"]["faiss"]["efsearch"]
    with pytest.raises(ValueError, match="itself"):
        delegateconfig("txtai_muvera.Muvera")

    # k-means trains on at most maxtrain rows, through txtai's sample fraction
    assert delegateconfig("faiss-ivf", 64, rows=100000)["faiss"]["sample"] == 0.2
    assert "sample" not in delegateconfig("faiss-ivf", 64, rows=1000)["faiss"]


@pytest.mark.parametrize("search", sorted(PRESETS))
def test_preset_search(pylate_model, tmp_path, search):
    # Each preset through txtai: search, delete (rows an index cannot remove are skipped), save, load with its settings.
    # 60 rows (product quantization trains 16 centroids per code): all are candidates, the ranking is exact
    texts = [f"{text} {x}" for x in range(5) for text in TEXTS]
    embeddings = Embeddings(late(pylate_model, search=search))
    embeddings.index(texts)
    exact = Embeddings(late(pylate_model))
    exact.index(texts)
    assert ranking(embeddings) == ranking(exact)

    embeddings.delete([4])
    results = embeddings.search(texts[4], len(texts))
    assert 4 not in [r["id"] for r in results] and len(results) == len(texts) - 1

    embeddings.save(str(tmp_path / "index"))
    loaded = Embeddings().load(str(tmp_path / "index"))
    assert ranking(loaded) == ranking(embeddings)
    assert 4 not in [r["id"] for r in loaded.search(texts[4], len(texts))]

    # faiss search settings txtai does not save are applied again on load
    import faiss

    if search == "faiss-hnsw":
        assert faiss.downcast_index(loaded.ann.delegate.backend.index).hnsw.efSearch == PRESETS[search]["faiss"]["efsearch"]
    if search == "faiss-ivf":
        index = faiss.downcast_index(loaded.ann.delegate.backend)
        assert index.nprobe == math.ceil(PRESETS[search]["faiss"]["probefraction"] * index.nlist)
