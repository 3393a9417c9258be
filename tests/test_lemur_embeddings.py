"""
LEMUR learned encoding inside real txtai indexes: training on index, upsert, delete, save, load, archives, reindex,
subindexes, checkpoints, the sparse slot, delegated search and the MUVERA fallback.
"""

import json
import logging

import numpy as np
import pytest

from txtai import Embeddings

from txtai_muvera.cli import main
from txtai_muvera.core.encoder import LateEncoder
from txtai_muvera.core.lemurfit import fit
from txtai_muvera.core.ragged import pack
from txtai_muvera.core.scan import Int8Rows
from txtai_muvera.errors import ConfigurationError

from helpers import TEXTS, checkscores, late

# Small settings so the tiny corpus trains: every document is a target, few epochs
SMALL = {"encoding": "lemur", "dimensions": 32, "hidden": 32, "epochs": 5, "minimum": 4, "sample": 256}


@pytest.fixture(scope="module")
def encoder(pylate_model):
    return LateEncoder(str(pylate_model), gpu=False)


def test_index_trains_and_search_scores_exact(pylate_model, encoder, caplog):
    embeddings = Embeddings(late(pylate_model, **SMALL))
    with caplog.at_level(logging.INFO, logger="txtai_muvera.core.lemurfit"):
        embeddings.index(TEXTS)
    assert "LEMUR fitted" in caplog.text and "held-out loss" in caplog.text

    # Candidates are learned rows of the configured width, scores exact MaxSim
    assert embeddings.ann.dimensions() == 32
    assert embeddings.config["muvera"]["train"] is True and embeddings.config["dimensions"] == 32
    checkscores(embeddings, encoder, ["virus cases", "lottery ticket winner", "frog species"], 2e-3)
    assert embeddings.search(TEXTS[10], 1)[0]["text"] == TEXTS[10]

    # Candidates only: scores are the learned inner products
    rows = embeddings.model.encoding
    assert rows.model is not None and rows.fallback is None


def test_learns_from_texts_encoded_as_queries(pylate_model, encoder):
    # Texts: learn tokens are spans of the documents encoded as queries (every text is sampled in a small collection)
    embeddings = Embeddings(late(pylate_model, **SMALL))
    embeddings.index(TEXTS)
    lemur = embeddings.model.encoding
    assert lemur.statistics["learncategory"] == "query"
    assert lemur.statistics["learn"] == sum(len(x) for x in encoder.encode(lemur.spans(TEXTS), "query"))

    # Spans are 4 to 16 consecutive words of their text, or the whole of a shorter one
    for text, span in zip(TEXTS, lemur.spans(TEXTS)):
        words = span.split()
        assert span in text and (4 <= len(words) <= 16 or span == text)
    assert lemur.querytokens is None and embeddings.model.learntexts is None

    # learncategory data, or pre-encoded documents: the stored document tokens
    documents = encoder.encode(TEXTS, "data")
    for config, data in ((dict(SMALL, learncategory="data"), TEXTS), (SMALL, documents)):
        embeddings = Embeddings(late(pylate_model, **config))
        embeddings.index(data)
        statistics = embeddings.model.encoding.statistics
        assert statistics["learncategory"] == "data" and statistics["learn"] == sum(len(x) for x in documents)

    with pytest.raises(ConfigurationError, match="learncategory"):
        Embeddings(late(pylate_model, **dict(SMALL, learncategory="queries"))).index(TEXTS)


def test_upsert_delete_save_load_archive(pylate_model, encoder, tmp_path):
    embeddings = Embeddings(late(pylate_model, **SMALL))
    embeddings.index([(x, text, None) for x, text in enumerate(TEXTS[:8])])
    trained = embeddings.ann.learned

    # Upserts encode with the stored sample, no retraining
    embeddings.upsert([(1, "Ice cream sales rise in the summer heat", None), (3, TEXTS[9], None), (20, TEXTS[10], None), (21, TEXTS[11], None)])
    embeddings.delete([0, 5])
    assert embeddings.ann.learned is trained and embeddings.count() == 8

    expected = {q: embeddings.search(q, 5) for q in ["ice cream summer", "virus", "frog"]}
    for path in [tmp_path / "index", tmp_path / "index.tar.gz"]:
        embeddings.save(str(path))
        loaded = Embeddings()
        loaded.load(str(path))

        # Same model: same candidates and scores
        assert loaded.count() == 8
        for query, results in expected.items():
            assert [(r["id"], round(r["score"], 4)) for r in loaded.search(query, 5)] == [(r["id"], round(r["score"], 4)) for r in results]
        np.testing.assert_allclose(loaded.ann.learned.sample.numpy(), trained.sample.numpy())
        checkscores(loaded, encoder, ["ice cream summer", "solar electricity"], 2e-3)

        # Upsert after load keeps working and keeps the model
        loaded.upsert([(30, "Bears attack campers in Yellowstone", None)])
        assert loaded.search("bear attack campers", 1)[0]["id"] == "30"

    # The artifact is in txtai's format, with file checks in muvera.json
    metadata = json.loads((tmp_path / "index" / "embeddings" / "muvera.json").read_text())
    assert {"lemur/config.json", "lemur/model.safetensors"} <= set(metadata["files"])
    assert all("crc32" in metadata["files"][name] for name in ("lemur/config.json", "lemur/model.safetensors"))


def test_corrupt_artifact_refused(pylate_model, tmp_path):
    embeddings = Embeddings(late(pylate_model, **SMALL))
    embeddings.index(TEXTS)
    embeddings.save(str(tmp_path / "index"))

    weights = tmp_path / "index" / "embeddings" / "lemur" / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1
    weights.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="checksum"):
        Embeddings().load(str(tmp_path / "index"))


def test_small_index_falls_back_to_muvera(pylate_model, tmp_path, caplog):
    embeddings = Embeddings(late(pylate_model, encoding="lemur", minimum=50))
    with caplog.at_level(logging.WARNING, logger="txtai_muvera.learned"):
        embeddings.index(TEXTS)
    assert "too few to train" in caplog.text and "falling back to MUVERA" in caplog.text

    # The config records what was used: MUVERA with its parameters, no learned settings
    block = embeddings.config["muvera"]
    assert block["encoding"] == "muvera" and "repetitions" in block and "minimum" not in block
    expected = embeddings.search("virus cases", 5)

    embeddings.save(str(tmp_path / "index"))
    loaded = Embeddings().load(str(tmp_path / "index"))
    assert loaded.search("virus cases", 5) == expected
    loaded.upsert([("new", "Bears attack campers in Yellowstone", None)])
    assert loaded.search("Bears attack campers in Yellowstone", 1)[0]["id"] == "new"


def test_pretrained_artifact_path(pylate_model, encoder, tmp_path):
    # An artifact trained separately is used as is: no training on index
    matrices = encoder.encode(TEXTS, category="data")
    flat, offsets = pack(matrices)
    model, _ = fit(flat, offsets, dimensions=24, epochs=3, progress=False)
    model.save(str(tmp_path / "artifact"))

    embeddings = Embeddings(late(pylate_model, encoding="lemur", path=str(tmp_path / "artifact")))
    embeddings.index(TEXTS)
    assert embeddings.config["muvera"]["train"] is False and embeddings.ann.dimensions() == 24
    np.testing.assert_allclose(embeddings.ann.learned.sample.numpy(), model.sample.numpy())
    checkscores(embeddings, encoder, ["virus cases"], 2e-3)

    # Rows are the artifact's encodings, with the encoding's ridge least squares and product precision
    assert embeddings.config["muvera"]["ridge"] > 0
    model.ridge, model.precision = embeddings.config["muvera"]["ridge"], embeddings.config["muvera"]["encodeprecision"]
    rows = embeddings.batchtransform([(None, TEXTS[0], None)], category="data")
    np.testing.assert_allclose(np.asarray(rows), model.documents(*pack(matrices[:1])).numpy(), rtol=1e-4, atol=1e-4)

    # A token width the artifact was not trained for is refused as a configuration error
    other = tmp_path / "other"
    fit(np.random.rand(40, 8).astype(np.float32), np.arange(0, 41, 4), dimensions=8, epochs=0, progress=False)[0].save(str(other))
    with pytest.raises(ConfigurationError, match="8-d token vectors"):
        Embeddings(late(pylate_model, encoding="lemur", path=str(other)))


def test_reindex_refits_and_subindexes(pylate_model):
    embeddings = Embeddings(late(pylate_model, **SMALL))
    embeddings.index(TEXTS)
    first = embeddings.ann.learned

    # Reindex refits on the collection
    embeddings.reindex(late(pylate_model, **{**SMALL, "dimensions": 16}))
    assert embeddings.ann.learned is not first and embeddings.ann.dimensions() == 16
    assert embeddings.search(TEXTS[10], 1)[0]["text"] == TEXTS[10]

    # Subindex with a learned encoding
    subindex = {**late(pylate_model, **SMALL), "content": False}
    embeddings = Embeddings(content=True, defaults=False, indexes={"late": subindex})
    embeddings.index(TEXTS)
    results = embeddings.search(f"select id, text, score from txtai where similar('{TEXTS[10]}', 'late')", 3)
    assert results[0]["text"] == TEXTS[10]


def test_checkpoint_and_sparse_slot(pylate_model, tmp_path):
    checkpoint = str(tmp_path / "checkpoint")
    first = Embeddings(late(pylate_model, **SMALL))
    first.index(TEXTS, checkpoint=checkpoint)
    second = Embeddings(late(pylate_model, **SMALL))
    second.index(TEXTS, checkpoint=checkpoint)
    for query in ["virus", "frog"]:
        assert [(r["id"], round(r["score"], 4)) for r in first.search(query, 5)] == [(r["id"], round(r["score"], 4)) for r in second.search(query, 5)]

    # Sparse slot: the late-interaction index as txtai's sparse index, beside a dense one
    config = {
        "content": True,
        "defaults": False,
        "sparse": {"path": str(pylate_model), "vectormethod": "txtai_muvera.LateVectors", "backend": "txtai_muvera.Muvera", "muvera": SMALL},
    }
    embeddings = Embeddings(config)
    embeddings.index(TEXTS)
    assert embeddings.search(TEXTS[4], 1)[0]["text"] == TEXTS[4]
    embeddings.save(str(tmp_path / "sparse"))
    assert Embeddings().load(str(tmp_path / "sparse")).search(TEXTS[4], 1)[0]["text"] == TEXTS[4]


@pytest.mark.parametrize("search", ["faiss", "hnsw"])
def test_delegated_search(pylate_model, encoder, tmp_path, search):
    embeddings = Embeddings(late(pylate_model, search=search, **SMALL))
    embeddings.index(TEXTS)
    embeddings.delete(["4"])
    checkscores(embeddings, encoder, ["virus cases", "frog"], 2e-3)
    embeddings.save(str(tmp_path / "delegated"))
    loaded = Embeddings().load(str(tmp_path / "delegated"))
    assert [r["id"] for r in loaded.search("frog", 3)] == [r["id"] for r in embeddings.search("frog", 3)]


def test_int8_tokens_certified(pylate_model, tmp_path):
    # The smallest learned index: int8 tokens and candidate rows, certified re-rank returns what exact re-rank of the
    # same tokens returns
    indexes = {}
    for precision in ("exact", "certified"):
        indexes[precision] = Embeddings(late(pylate_model, dtype="int8", encodingdtype="int8", precision=precision, **SMALL))
        indexes[precision].index(TEXTS)

    exact, certified = indexes["exact"], indexes["certified"]
    assert isinstance(certified.ann.fdes, Int8Rows) and np.array_equal(exact.ann.fdes.values, certified.ann.fdes.values)
    for query in ["virus cases", "frog species", TEXTS[7]]:
        expected, found = exact.search(query, 5), certified.search(query, 5)
        assert [r["id"] for r in found] == [r["id"] for r in expected]
        assert np.allclose([r["score"] for r in found], [r["score"] for r in expected], atol=1e-5)

    # Saved and loaded: the settings, the compact files and the results stay
    certified.save(str(tmp_path / "certified"))
    loaded = Embeddings().load(str(tmp_path / "certified"))
    settings = loaded.config["muvera"]
    assert (settings["dtype"], settings["encodingdtype"], settings["precision"]) == ("int8", "int8", "certified")
    folder = tmp_path / "certified" / "embeddings"
    assert np.load(folder / "fde.npy").dtype == np.int8 and np.load(folder / "tokens" / "scales.npy").dtype == np.float16
    assert [r["id"] for r in loaded.search("frog species", 5)] == [r["id"] for r in certified.search("frog species", 5)]

    # Upserts encode with the stored sample into int8 rows
    loaded.upsert([(len(TEXTS), "Frogs sing at night in the rainforest", None)])
    assert len(loaded.ann.fdes) == len(TEXTS) + 1 and loaded.search("frogs sing at night", 1)[0]["id"] == str(len(TEXTS))


def test_bad_settings(pylate_model):
    # txtai wraps errors raised while it creates a Vectors method in an ImportError: ours is its cause
    for muvera, message in [
        ({"epoch": 3}, "did you mean 'epochs'"),
        ({"minimum": 1}, "minimum"),
        ({"path": str(pylate_model)}, "not a LEMUR artifact"),
    ]:
        with pytest.raises(ConfigurationError) as error:
            Embeddings(late(pylate_model, encoding="lemur", **muvera))
        assert message in str(error.value)


def test_fit_command(pylate_model, encoder, tmp_path, capsys):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(TEXTS), encoding="utf-8")
    output = tmp_path / "artifact"
    settings = json.dumps({"dimensions": 24, "epochs": 3, "hidden": 16})
    assert main(["fit", str(pylate_model), str(corpus), "--output", str(output), "--lemur", settings, "--cpu", "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "muvera: {encoding: lemur, path:" in printed

    # It learns from spans of the texts encoded as queries, like an index
    statistics = json.loads(printed.splitlines()[0])
    assert statistics["learncategory"] == "query" and statistics["learn"] == len(TEXTS) * len(encoder.encode(["x"], "query")[0])

    # The artifact indexes as is
    embeddings = Embeddings(late(pylate_model, encoding="lemur", path=str(output)))
    embeddings.index(TEXTS)
    assert embeddings.ann.dimensions() == 24
    checkscores(embeddings, encoder, ["virus cases"], 2e-3)
