"""
Embeddings integration tests: txtai_muvera.LateVectors + txtai_muvera.Muvera inside real txtai indexes.
"""

import json
import os

import numpy as np
import pytest

from txtai import Embeddings

from txtai_muvera.array import LateArray
from txtai_muvera.core.encoder import LateEncoder
from txtai_muvera.core.files import writejson
from txtai_muvera.core.store import TokenStore
from txtai_muvera.errors import ConfigurationError

from helpers import SCORES, TEXTS, checkscores, exactmaxsim, late


@pytest.fixture(scope="module")
def encoder(pylate_model):
    return LateEncoder(str(pylate_model), gpu=False)


def test_index_search_exact_scores(pylate_model, encoder):
    embeddings = Embeddings(late(pylate_model, dtype="float32"))
    embeddings.index(TEXTS)

    assert embeddings.count() == len(TEXTS)
    checkscores(embeddings, encoder, ["virus cases", "lottery ticket winner", "frog species"], SCORES)

    # Every document is a candidate here, so the top result is the exact MaxSim argmax over the corpus
    query = "ice shelf collapse"
    best = max(range(len(TEXTS)), key=lambda x: exactmaxsim(encoder, query, TEXTS[x]))
    assert embeddings.search(query, 1)[0]["id"] == str(best)


def test_float16_and_int8_scores(pylate_model, encoder):
    for dtype, tolerance in [("float16", 2e-3), ("int8", 1e-2)]:
        embeddings = Embeddings(late(pylate_model, dtype=dtype))
        embeddings.index(TEXTS)
        checkscores(embeddings, encoder, ["interest rates", "diabetes"], tolerance)


def test_batchsearch_and_sql(pylate_model):
    embeddings = Embeddings(late(pylate_model))
    embeddings.index([(f"doc{x}", {"text": text, "topic": x % 2}, None) for x, text in enumerate(TEXTS)])

    single = [embeddings.search(q, 3) for q in ["virus", "stock market"]]
    batch = embeddings.batchsearch(["virus", "stock market"], 3)
    assert [[r["id"] for r in x] for x in single] == [[r["id"] for r in x] for x in batch]

    # SQL similar() with a filter
    rows = embeddings.search("select id, text, topic, score from txtai where similar('stock market') and topic = 1", 10)
    assert rows and all(row["topic"] == 1 for row in rows)
    assert [row["id"] for row in rows] == [row["id"] for row in embeddings.search("stock market", 20) if int(row["id"][3:]) % 2 == 1][: len(rows)]


def test_candidates_zero_is_muvera_only(pylate_model):
    embeddings = Embeddings(late(pylate_model, candidates=0))
    embeddings.index(TEXTS)

    # Scores are FDE inner products
    fdes = embeddings.batchtransform([(None, text, None) for text in TEXTS], category="data")
    query = embeddings.batchtransform([(None, "virus cases", None)])
    expected = np.asarray(query) @ np.asarray(fdes).T

    results = embeddings.search("virus cases", 3)
    for result in results:
        assert result["score"] == pytest.approx(float(expected[0, int(result["id"])]), rel=1e-4)


def test_int8_upsert_appends_stored_rows(pylate_model):
    embeddings = Embeddings(late(pylate_model, dtype="int8"))
    embeddings.index(TEXTS[:6])
    ann, before = embeddings.ann, len(embeddings.ann.store)

    # Codes quantize would never produce (largest 100, not 127): quantizing them again would change every row
    flat = np.random.default_rng(3).integers(-100, 101, size=(5, 16)).astype(np.int8)
    scales = np.linspace(0.01, 0.05, 5, dtype=np.float16)
    incoming = TokenStore(16, "int8")
    incoming.append(flat, [0, 2, 5], scales)

    ann.append(LateArray(np.ones((2, ann.dimensions()), dtype=np.float32), store=incoming))
    tokens, offsets, stored = ann.store.gather([before, before + 1])
    assert offsets.tolist() == [0, 2, 5]
    assert tokens.dtype == np.int8 and tokens.tobytes() == flat.tobytes()
    assert stored.dtype == np.float16 and stored.tobytes() == scales.tobytes()


def test_upsert_delete_save_load(pylate_model, encoder, tmp_path):
    embeddings = Embeddings(late(pylate_model))
    embeddings.index([(x, text, None) for x, text in enumerate(TEXTS[:8])])

    # Replace two documents, add two, delete two
    embeddings.upsert([(1, "Ice cream sales rise in the summer heat", None), (3, TEXTS[9], None), (20, TEXTS[10], None), (21, TEXTS[11], None)])
    embeddings.delete([0, 5])
    assert embeddings.count() == 8

    for path in [tmp_path / "index", tmp_path / "index.tar.gz"]:
        embeddings.save(str(path))
        loaded = Embeddings()
        loaded.load(str(path))

        assert loaded.count() == 8
        # Content ids come back as strings
        ids = {r["id"] for q in ["ice cream summer", "virus", "profits", "frog"] for r in loaded.search(q, 10)}
        assert not ids & {"0", "5"}
        assert {"1", "3", "20", "21"} <= ids
        checkscores(loaded, encoder, ["ice cream summer", "solar electricity", "bear attack"], 2e-3)

        # Upsert after load keeps working
        loaded.upsert([(30, "Bears attack campers in Yellowstone", None)])
        assert loaded.search("bear attack campers", 1)[0]["id"] == "30"
        checkscores(loaded, encoder, ["bear attack campers"], 2e-3)


def test_index_from_previous_release(pylate_model, tmp_path):
    # An index built before projector and normalize existed: AMS sketch, plain averages, fill, and no record of the new keys
    embeddings = Embeddings(late(pylate_model, candidates=0, projector="ams", normalize=False, fill=True))
    embeddings.index(TEXTS)
    expected = embeddings.search("virus cases", 5)
    embeddings.save(str(tmp_path / "index"))

    for name in ("muvera.json", "../config.json"):
        path = tmp_path / "index" / "embeddings" / name
        data = json.loads(path.read_text(encoding="utf-8"))
        block = data["encoding"] if "encoding" in data else data["muvera"]
        assert block.pop("projector") == "ams" and block.pop("normalize") is False

        # muvera.json is sealed with a checksum of its content: sealed again, as that release wrote it
        if "checksum" in data:
            data.pop("checksum")
            writejson(str(path), data)
        else:
            path.write_text(json.dumps(data), encoding="utf-8")

    # Loaded with today's defaults it still encodes queries and new documents as it was built: same FDE scores
    loaded = Embeddings()
    loaded.load(str(tmp_path / "index"))
    assert loaded.search("virus cases", 5) == expected
    loaded.upsert([("new", "Bears attack campers in Yellowstone", None)])
    assert loaded.search("Bears attack campers in Yellowstone", 1)[0]["id"] == "new"

    # Asking for other FDE parameters than it was built with is refused
    with pytest.raises(Exception, match="projector"):
        Embeddings().load(str(tmp_path / "index"), config={**loaded.config, "muvera": {**loaded.config["muvera"], "projector": "orthogonal"}})


def test_content_disabled(pylate_model):
    config = late(pylate_model)
    config["content"] = False
    embeddings = Embeddings(config)
    embeddings.index([(f"id{x}", text, None) for x, text in enumerate(TEXTS)])

    # A document's own text finds it first, even with a random model
    results = embeddings.search(TEXTS[4], 3)
    assert results[0][0] == "id4"
    embeddings.delete(["id4"])
    assert "id4" not in [uid for uid, _ in embeddings.search(TEXTS[4], 3)]


def test_reindex_and_subindexes(pylate_model):
    # Subindexes hold no content of their own
    subindex = {**late(pylate_model), "content": False}
    embeddings = Embeddings(content=True, defaults=False, indexes={"late": subindex})
    embeddings.index(TEXTS)

    results = embeddings.search(f"select id, text, score from txtai where similar('{TEXTS[10]}', 'late')", 3)
    assert results[0]["text"] == TEXTS[10]

    # Reindex with other encoding parameters
    embeddings = Embeddings(late(pylate_model))
    embeddings.index(TEXTS)
    embeddings.reindex(late(pylate_model, repetitions=10, hashes=4))
    assert embeddings.config["muvera"]["repetitions"] == 10
    assert embeddings.search(TEXTS[10], 1)[0]["text"] == TEXTS[10]


def test_checkpoint_recovery(pylate_model, tmp_path):
    checkpoint = str(tmp_path / "checkpoint")
    first = Embeddings(late(pylate_model))
    first.index(TEXTS, checkpoint=checkpoint)

    # A second run with the same checkpoint reads vectors and token matrices from it
    assert os.listdir(checkpoint)
    second = Embeddings(late(pylate_model))
    second.index(TEXTS, checkpoint=checkpoint)
    for query in ["virus", "frog", "rates"]:
        assert [(r["id"], round(r["score"], 5)) for r in first.search(query, 5)] == [(r["id"], round(r["score"], 5)) for r in second.search(query, 5)]


@pytest.mark.parametrize("search", ["faiss", "hnsw", {"backend": "hnsw", "hnsw": {"efsearch": 64, "m": 8}}])
def test_delegated_fde_search(pylate_model, encoder, tmp_path, search):
    embeddings = Embeddings(late(pylate_model, search=search))
    embeddings.index(TEXTS)
    embeddings.delete(["4"])
    checkscores(embeddings, encoder, ["virus cases", "frog"], 2e-3)
    assert "4" not in [r["id"] for r in embeddings.search(TEXTS[4], 5)]

    embeddings.save(str(tmp_path / "delegated"))
    loaded = Embeddings().load(str(tmp_path / "delegated"))
    assert [r["id"] for r in loaded.search("frog", 3)] == [r["id"] for r in embeddings.search("frog", 3)]


def test_similarity_method(pylate_model, encoder):
    embeddings = Embeddings(late(pylate_model))
    scores = embeddings.similarity("virus cases", TEXTS[:4])
    assert sorted(uid for uid, _ in scores) == [0, 1, 2, 3]
    for uid, score in scores:
        assert score == pytest.approx(exactmaxsim(encoder, "virus cases", TEXTS[uid]), abs=SCORES)


def test_bad_config(pylate_model):
    # Configuration errors pass through txtai's ImportError wrapper as ConfigurationError
    for muvera, message in [({"candidate": 10}, "did you mean 'candidates'"), ({"dtype": "float8"}, "dtype"), ({"candidates": -1}, "candidates")]:
        with pytest.raises(ConfigurationError) as error:
            Embeddings(late(pylate_model, **muvera))
        assert message in str(error.value)


def test_fingerprint_mismatch(pylate_model, stanford_model, tmp_path):
    embeddings = Embeddings(late(pylate_model))
    embeddings.index(TEXTS)
    embeddings.save(str(tmp_path / "index"))

    with pytest.raises(ValueError, match="different late-interaction model|dimensions"):
        Embeddings().load(str(tmp_path / "index"), config={"path": str(stanford_model)}).search("virus", 3)


def test_vectors_guarded_against_txtai_changes():
    # LateVectors re-implements txtai's Vectors.vectors: a txtai whose methods changed is refused at import
    from txtai.vectors import Vectors

    from txtai_muvera.vectors import LateVectors, compatible

    compatible(Vectors, LateVectors, "9.14.0")
    with pytest.raises(ImportError, match="supports txtai"):
        compatible(Vectors, LateVectors, "10.0.0")

    class Changed(Vectors):
        def vectors(self, documents, batchsize=500):
            return None

    class Ours(Changed):
        def vectors(self, documents, batchsize=500, checkpoint=None, buffer=None, dtype=None):
            return None

    with pytest.raises(ImportError, match=r"changed \['vectors'\]"):
        compatible(Changed, Ours, "9.14.0")
