"""
Candidate vector storage and delegated candidate search: float16 and int8 rows, their scan, older float32 indexes, presets.
"""

import json
import math
import os

import numpy as np
import pytest
import torch

from txtai.embeddings import Embeddings

from helpers import TEXTS, flip, late, reseal
from txtai_muvera.delegate import PRESETS, delegateconfig, pqsize
from txtai_muvera.core import scan
from txtai_muvera.ann import IndexFileError
from txtai_muvera.core.quantize import dequantize
from txtai_muvera.core.scan import Int8Rows, Scan, encodingrows, joinrows
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

    # int8 rows score as their dequantized values, each row times its scale
    quantized = Int8Rows.quantize(rows)
    scores = Scan()(queries, quantized)
    np.testing.assert_allclose(scores.numpy(), queries @ dequantize(quantized.values, quantized.scales).T, rtol=1e-5, atol=1e-4)

    # and within the rounding bound of the float rows: |q| . scale / 2 per row
    bound = np.abs(queries).sum(axis=1, keepdims=True) * quantized.scales[None, :] / 2
    assert (np.abs(scores.numpy() - queries @ rows.T) <= bound + 1e-4).all()


def test_encodingrows():
    rows = np.array([[1.5, -2.0]], dtype=np.float32)
    assert encodingrows(rows, "float16").dtype == np.float16
    assert encodingrows(rows, "float32") is rows

    # Beyond float16's range is an error naming the fix, never inf
    with pytest.raises(ValueError, match="encodingdtype: float32"):
        encodingrows(np.array([[1e6]], dtype=np.float32), "float16")
    with pytest.raises(ValueError, match="encodingdtype"):
        encodingrows(rows, "bfloat16")

    # int8 rows, back to float, appended in the stored type
    quantized = encodingrows(rows, "int8")
    assert quantized.values.dtype == np.int8 and quantized.scales.dtype == np.float32 and quantized.shape == (1, 2)
    np.testing.assert_allclose(encodingrows(quantized, "float32"), rows, atol=2 / 127)
    joined = joinrows(quantized, np.array([[0.0, 4.0]], dtype=np.float32))
    assert isinstance(joined, Int8Rows) and joined.values.tolist() == [[95, -127], [0, 127]]
    assert joinrows(np.zeros((1, 2), dtype=np.float16), rows).dtype == np.float16


def test_int8_rows(pylate_model, tmp_path):
    # int8 rows with a scale per row: FDE scores within the rounding bound of float32 rows, a quarter of the bytes
    full = Embeddings(late(pylate_model, encodingdtype="float32", candidates=0))
    full.index(TEXTS)
    small = Embeddings(late(pylate_model, encodingdtype="int8", candidates=0))
    small.index(TEXTS)
    assert isinstance(small.ann.fdes, Int8Rows)
    for query in ("virus cases", "frog", "interest rates"):
        exact = {r["id"]: r["score"] for r in full.search(query, len(TEXTS))}
        approximate = {r["id"]: r["score"] for r in small.search(query, len(TEXTS))}
        assert exact.keys() == approximate.keys()
        assert max(abs(exact[uid] - approximate[uid]) for uid in exact) < 0.01 * max(abs(v) for v in exact.values())

    # Saved: int8 fde.npy, float32 fde-scales.npy, recorded in muvera.json
    small.save(str(tmp_path / "small"))
    full.save(str(tmp_path / "full"))
    folder = tmp_path / "small" / "embeddings"
    assert np.load(folder / "fde.npy").dtype == np.int8 and np.load(folder / "fde-scales.npy").shape == (len(TEXTS),)
    assert os.path.getsize(folder / "fde.npy") + os.path.getsize(folder / "fde-scales.npy") < 0.3 * os.path.getsize(
        tmp_path / "full" / "embeddings" / "fde.npy"
    )
    with open(folder / "muvera.json", encoding="utf-8") as f:
        metadata = json.load(f)
    assert metadata["encodingdtype"] == "int8" and "fde-scales.npy" in metadata["files"]

    # Loaded memory mapped, the same scores; upserts append int8 rows, and save again
    expected = ranking(small)
    loaded = Embeddings().load(str(tmp_path / "small"))
    assert isinstance(loaded.ann.fdes, Int8Rows) and isinstance(loaded.ann.fdes.values, np.memmap)
    assert ranking(loaded) == expected
    loaded.upsert([(len(TEXTS), "Frogs sing at night in the rainforest", None)])
    assert isinstance(loaded.ann.fdes, Int8Rows) and len(loaded.ann.fdes.scales) == len(TEXTS) + 1
    loaded.save(str(tmp_path / "again"))
    again = Embeddings().load(str(tmp_path / "again"))
    assert ranking(again) == ranking(loaded) and again.search("frog rainforest night", 1)[0]["id"] == str(len(TEXTS))

    # Re-ranked: the same results as float32 rows when every document is a candidate
    reranked = Embeddings().load(str(tmp_path / "small"), config={"muvera": {"candidates": 100}})
    assert ranking(reranked) == ranking(Embeddings().load(str(tmp_path / "full"), config={"muvera": {"candidates": 100}}))


def test_int8_rows_damaged(pylate_model, tmp_path):
    # A damaged or missing scales file is refused, never read as other scales
    embeddings = Embeddings(late(pylate_model, encodingdtype="int8"))
    embeddings.index(TEXTS)
    embeddings.save(str(tmp_path / "index"))
    scales = tmp_path / "index" / "embeddings" / "fde-scales.npy"
    flip(scales)
    with pytest.raises(IndexFileError, match="fde-scales.npy: checksum mismatch"):
        Embeddings().load(str(tmp_path / "index"), config={"muvera": {"verify": "load"}})
    with pytest.raises(IndexFileError, match="fde-scales.npy: checksum mismatch"):
        Embeddings().load(str(tmp_path / "index")).search("virus cases", 3)

    scales.unlink()
    with pytest.raises(IndexFileError, match="fde-scales.npy"):
        Embeddings().load(str(tmp_path / "index"))


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
