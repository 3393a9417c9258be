"""
Bad input tests: one test per row of the bad input table in docs/hardening.md. Each bad call either raises a clear error
and leaves the index unchanged (count, search results and stored rows identical, and the index still accepts upserts),
or has the documented behaviour.
"""

import itertools
import tempfile

import numpy as np
import pytest
import torch

from txtai import Embeddings

from txtai_muvera.ann import Muvera
from txtai_muvera.array import LateArray
from txtai_muvera.errors import ConfigurationError

from helpers import SCORES, TEXTS, exactmaxsim, late

# Queries whose results are compared before and after a failed call
QUERIES = ["virus cases", "frog species"]

# Ids of the documents upserted after failed calls
AFTER = itertools.count()


def build(model):
    """
    Builds a small content index with ids 0 to 11.
    """

    index = Embeddings(late(model, dtype="float32"))
    index.index([(x, text, None) for x, text in enumerate(TEXTS)])
    return index


@pytest.fixture(scope="module")
def embeddings(pylate_model):
    """
    Index shared by the tests of failing calls: each compares the index before and after its own call.
    """

    return build(pylate_model)


@pytest.fixture
def fresh(pylate_model):
    """
    Index for a test that changes it.
    """

    return build(pylate_model)


@pytest.fixture(scope="module")
def saved(pylate_model, tmp_path_factory):
    """
    A saved index folder.
    """

    path = str(tmp_path_factory.mktemp("saved") / "index")
    index = Embeddings(late(pylate_model))
    index.index([(x, text, None) for x, text in enumerate(TEXTS)])
    index.save(path)
    return path


def snapshot(embeddings, similar=True):
    """
    Everything a failed call must leave as it was: count, stored rows and (when the model can search) top results.
    """

    rows = embeddings.search("select id, text from txtai order by id", 100)
    results = [[(r["id"], round(r["score"], 6)) for r in embeddings.search(query, 5)] for query in QUERIES] if similar else None
    return embeddings.count(), rows, results


def unchanged(embeddings, call, error, match, similar=True):
    """
    Asserts that call raises error with a message matching match, that the index is unchanged, and that it still
    takes an upsert (no half-written batch left behind).
    """

    before = snapshot(embeddings, similar)
    with pytest.raises(error, match=match):
        call()
    assert snapshot(embeddings, similar) == before

    if similar:
        uid = f"after{next(AFTER)}"
        embeddings.upsert([(uid, "Bears attack campers in Yellowstone", None)])
        assert embeddings.count() == before[0] + 1
        assert uid in [r["id"] for r in embeddings.search("bears attack campers", 50)]


def test_empty_text_encodes_markers(fresh):
    # Row: empty text. Stored and counted with one zero token vector (score 0, never returned); queries encode like PyLate
    fresh.upsert([("empty", "", None)])
    assert fresh.count() == len(TEXTS) + 1
    assert fresh.search("select id, text from txtai where id = 'empty'")[0]["text"] == ""

    tokens = fresh.batchtransform([(None, "", None)], category="data").tokens
    assert len(tokens) == 1 and not tokens.any()
    assert fresh.search("", 3) and "empty" not in [r["id"] for r in fresh.search("", len(TEXTS) + 1)]


def test_blank_text_equals_empty(fresh):
    # Row: blank text. Stripped before tokenizing (sentence-transformers cleanup), so it encodes like ""
    blank = fresh.batchtransform([(None, " \t\n  ", None)], category="data")
    empty = fresh.batchtransform([(None, "", None)], category="data")
    np.testing.assert_array_equal(blank.tokens, empty.tokens)
    np.testing.assert_array_equal(np.asarray(blank), np.asarray(empty))

    fresh.upsert([("blank", "   ", None)])
    assert fresh.count() == len(TEXTS) + 1


def test_none_text_rejected(embeddings):
    # Row: None as a document
    unchanged(embeddings, lambda: embeddings.upsert([("new", "fine", None), (3, None, None)]), TypeError, "document 3 must be a str")


def test_failed_index_leaves_no_spool_file(pylate_model, tmp_path, monkeypatch):
    # txtai spools vectors to a temporary file and leaves it behind when a document fails: LateVectors removes it
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    embeddings = Embeddings(late(pylate_model))
    with pytest.raises(TypeError, match="document 3 must be a str"):
        embeddings.index([(0, "fine", None), (3, None, None)])
    assert not list(tmp_path.glob("*.npy"))

    # A successful index leaves none either
    embeddings.index([(0, "fine", None)])
    assert not list(tmp_path.glob("*.npy"))


@pytest.mark.parametrize("value", [5, b"bytes"])
def test_non_string_rejected(embeddings, value):
    # Row: non-string data
    unchanged(embeddings, lambda: embeddings.upsert([(2, "replacement", None), ("bad", value, None)]), TypeError, "document 'bad' must be a str")


def test_dict_without_text_is_stored_not_indexed(fresh):
    # Row: dict without a text field or with text None (txtai: its JSON goes to the documents table, no section is
    # created and nothing is vectorized, so it is not searchable)
    before = snapshot(fresh)
    fresh.upsert([{"id": "meta", "category": "no text"}, {"id": "none", "text": None}])
    assert snapshot(fresh) == before
    assert fresh.search("select id from txtai where id in ('meta', 'none')", 10) == []

    # The index keeps its offsets: later upserts work
    fresh.upsert([("later", "frog species", None)])
    assert fresh.count() == len(TEXTS) + 1


def test_dict_with_non_string_text_rejected(embeddings):
    # Row: dict whose text is not a string
    unchanged(embeddings, lambda: embeddings.upsert([{"id": "num", "text": 7}]), TypeError, "document 'num' must be a str")


def test_one_megabyte_text_truncated(fresh, pylate_model):
    # Row: 1 MB text. Truncated to the model's document length, like PyLate
    big = ("protein folding " * 70000)[:1000000]
    fresh.upsert([("big", big, None)])
    assert fresh.count() == len(TEXTS) + 1

    full = fresh.batchtransform([(None, big, None)], category="data").tokens
    prefix = fresh.batchtransform([(None, big[:2000], None)], category="data").tokens
    np.testing.assert_array_equal(full, prefix)
    assert fresh.search("select length(text) length from txtai where id = 'big'")[0]["length"] == 1000000


@pytest.mark.parametrize("bad, match", [(np.nan, "NaN or infinite"), (-np.inf, "NaN or infinite")])
def test_nan_inf_matrix_rejected(embeddings, bad, match):
    # Row: NaN and inf in token vectors handed in
    matrix = np.random.default_rng(0).standard_normal((5, 16)).astype(np.float32)
    matrix[2, 3] = bad
    call = lambda: embeddings.upsert([(0, "replaced", None), ("vec", matrix, None)])  # noqa: E731
    unchanged(embeddings, call, ValueError, f"document 'vec': token matrix contains {match}")


def test_nan_query_rejected(embeddings):
    # Row: NaN in a query token matrix
    matrix = np.ones((4, 16), dtype=np.float32)
    matrix[0, 0] = np.nan
    unchanged(embeddings, lambda: embeddings.search(matrix, 3), ValueError, "query 0: token matrix contains NaN")


def test_out_of_range_values_rejected(pylate_model):
    # Row: values past the stored dtype (float16 max is 65504; float64 past float32 overflows too)
    index = Embeddings(late(pylate_model, dtype="float16"))
    index.index(TEXTS)
    huge = np.full((3, 16), 1e6, dtype=np.float32)
    unchanged(index, lambda: index.upsert([("huge", huge, None)]), ValueError, "beyond the float16 range")

    overflow = np.full((3, 16), 1e300, dtype=np.float64)
    unchanged(index, lambda: index.upsert([("overflow", overflow, None)]), ValueError, "NaN or infinite")


@pytest.mark.parametrize(
    "matrix, match",
    [
        (np.ones((4, 8), dtype=np.float32), r"shape \(4, 8\), expected \(tokens, 16\)"),
        (np.ones(16, dtype=np.float32), r"shape \(16,\)"),
        (np.ones((2, 4, 16), dtype=np.float32), r"shape \(2, 4, 16\)"),
        (np.zeros((0, 16), dtype=np.float32), "no token vectors"),
        (np.ones((3, 16), dtype=np.complex64), "dtype complex64"),
        (np.array([["a"] * 16]), "dtype <U1"),
    ],
)
def test_bad_matrix_rejected(embeddings, matrix, match):
    # Row: token matrices of the wrong width, rank, length or type
    unchanged(embeddings, lambda: embeddings.upsert([("mat", matrix, None)]), ValueError, match)


def test_wrong_width_query_rejected(embeddings):
    # Row: query token matrix of the wrong width
    unchanged(embeddings, lambda: embeddings.search(np.ones((3, 32), dtype=np.float32), 3), ValueError, r"query 0: token matrix has shape \(3, 32\)")


def test_token_matrices_accepted(fresh, pylate_model):
    # Row: pre-encoded token matrices (numpy of any real dtype, torch tensors) index like the texts they encode
    vectors = fresh.batchtransform([(None, TEXTS[4], None)], category="data").tokens
    fresh.upsert([("np", vectors.astype(np.float64), None), ("torch", torch.from_numpy(vectors), None)])
    results = {r["id"]: r["score"] for r in fresh.search(TEXTS[4], 5)}
    assert results["np"] == pytest.approx(results["4"], abs=1e-5)
    assert results["torch"] == pytest.approx(results["4"], abs=1e-5)


def test_query_not_a_string(embeddings):
    # Row: None and non-string queries
    unchanged(embeddings, lambda: embeddings.search(None, 3), TypeError, "query 0 must be a str")
    unchanged(embeddings, lambda: embeddings.batchsearch(["fine", 42], 3), TypeError, "query 1 must be a str")


def test_different_model_refused(saved, stanford_model):
    # Row: index searched or upserted with a different model than it was built with (fingerprint saved with the index)
    index = Embeddings().load(saved, config={"path": str(stanford_model)})
    unchanged(index, lambda: index.search("virus", 3), ValueError, "built with a different late-interaction model", similar=False)
    call = lambda: index.upsert([(0, "replacement", None), ("new", "text", None)])  # noqa: E731
    unchanged(index, call, ValueError, "different late-interaction model", similar=False)


def test_different_fde_parameters_refused(saved):
    # Row: index loaded with different FDE parameters
    with pytest.raises(ValueError, match="built with FDE parameters repetitions=20, the config asks for repetitions=5"):
        Embeddings().load(saved, config={"muvera": {"repetitions": 5}})

    # Overriding other settings keeps the saved FDE parameters and model fingerprint
    index = Embeddings().load(saved, config={"muvera": {"candidates": 5}})
    assert index.config["muvera"]["repetitions"] == 20 and index.config["muvera"]["fingerprint"]
    assert index.search(TEXTS[3], 1)[0]["id"] == "3"


def test_zero_and_negative_limits(embeddings):
    # Row: zero and negative limits. txtai turns 0 and None into its default 3; a negative limit is refused
    assert len(embeddings.search("virus", 0)) == 3
    unchanged(embeddings, lambda: embeddings.search("virus", -1), ValueError, "search limit must be a positive integer")

    # The ANN refuses them directly too
    ann = embeddings.ann
    query = embeddings.batchtransform([(None, "virus", None)])
    for limit in (0, -5, 2.5, True):
        with pytest.raises(ValueError, match="search limit must be a positive integer"):
            ann.search(query, limit)


@pytest.mark.parametrize("candidates", [-1, 2.5, True, "10"])
def test_bad_candidates_refused(pylate_model, candidates):
    # Row: negative or non-integer candidates (0 means MUVERA FDE scores only, see test_embeddings)
    with pytest.raises(ConfigurationError, match="candidates must be an integer >= 0"):
        Embeddings(late(pylate_model, candidates=candidates))


def test_unicode_control_rtl_emoji(fresh, pylate_model, tmp_path):
    # Row: control characters, right-to-left text and emoji are indexed; stored text round-trips exactly
    from txtai_muvera.core.encoder import LateEncoder

    texts = {
        "ctl": "tab\there\x00nul\x07bell\x1b[31mred",
        "rtl": "\u05e9\u05dc\u05d5\u05dd \u0645\u0631\u062d\u0628\u0627 \u202eevil",
        "emoji": "\U0001f600 virus \U0001f9ec cases \u2764\ufe0f",
    }
    fresh.upsert([(uid, text, None) for uid, text in texts.items()])
    fresh.save(str(tmp_path / "unicode"))
    loaded = Embeddings().load(str(tmp_path / "unicode"))

    encoder = LateEncoder(str(pylate_model), gpu=False)
    for uid, text in texts.items():
        assert loaded.search(f"select text from txtai where id = '{uid}'")[0]["text"] == text
        result = [r for r in loaded.search(text, 20) if r["id"] == uid]
        assert result and result[0]["score"] == pytest.approx(exactmaxsim(encoder, text, text), abs=SCORES)


def test_duplicate_ids_in_one_upsert(fresh):
    # Row: duplicate ids in one call (txtai: kept as sections of one document id; a later upsert or delete of the id
    # replaces or removes every section)
    fresh.upsert([("dup", "first section about bears", None), ("dup", "second section about frogs", None)])
    assert fresh.count() == len(TEXTS) + 2
    assert len(fresh.search("select id from txtai where id = 'dup'", 10)) == 2

    fresh.upsert([("dup", "only section", None)])
    assert fresh.count() == len(TEXTS) + 1
    assert fresh.search("select text from txtai where id = 'dup'", 10) == [{"text": "only section"}]

    assert fresh.delete(["dup"]) == ["dup"]
    assert fresh.count() == len(TEXTS)


def test_upsert_existing_id_replaces(fresh, pylate_model):
    # Row: upsert of an existing id replaces the document
    fresh.upsert([(4, "Solar farms sell electricity", None)])
    assert fresh.count() == len(TEXTS)
    assert fresh.search("select text from txtai where id = 4")[0]["text"] == "Solar farms sell electricity"
    assert TEXTS[4] not in [r["text"] for r in fresh.search(TEXTS[4], 12)]


def test_delete_unknown_ids(fresh):
    # Row: deleting unknown ids returns [] and changes nothing
    before = snapshot(fresh)
    assert fresh.delete(["nope", 999, -1, None]) == []
    assert snapshot(fresh) == before

    # The ANN ignores row ids it does not hold
    ann = fresh.ann
    ann.delete([10**6, -3, "x"])
    assert ann.count() == len(TEXTS)


def test_search_empty_index(pylate_model):
    # Row: searching an empty index
    assert Embeddings(late(pylate_model)).search("virus", 3) == []

    # Every document deleted
    index = Embeddings(late(pylate_model))
    index.index([(x, text, None) for x, text in enumerate(TEXTS)])
    index.delete(list(range(len(TEXTS))))
    assert index.count() == 0 and index.search("virus", 3) == []

    # The ANN alone, never indexed
    ann = Muvera({"muvera": {}})
    assert ann.count() == 0
    assert ann.search(LateArray(np.ones((1, 8), dtype=np.float32)), 3) == [[]]


def test_misspelt_config_key(pylate_model):
    # Row: a misspelt key inside the muvera: block
    with pytest.raises(ConfigurationError) as error:
        Embeddings(late(pylate_model, candidtes=10))
    assert "unknown muvera setting 'candidtes' (did you mean 'candidates'?)" in str(error.value)

    # And the ANN reports the same when built directly
    with pytest.raises(ConfigurationError, match="did you mean 'repetitions'"):
        Muvera({"muvera": {"repetition": 5}})
    with pytest.raises(ConfigurationError, match="muvera settings must be a dict"):
        Muvera({"muvera": ["candidates"]})


def test_bad_fde_rows_refused(embeddings):
    # Row: FDE rows handed to the ANN directly must be finite and of the index width
    ann = embeddings.ann
    query = embeddings.batchtransform([(None, "virus", None)])
    width, count, size = np.asarray(query).shape[1], ann.count(), len(ann.store)

    rows = LateArray(np.full((1, width), np.nan, dtype=np.float32), tokens=np.ones((2, 16), np.float32), offsets=np.array([0, 2]))
    with pytest.raises(ValueError, match="NaN or infinite"):
        ann.append(rows)

    narrow = LateArray(np.ones((1, width - 1), dtype=np.float32), tokens=np.ones((2, 16), np.float32), offsets=np.array([0, 2]))
    with pytest.raises(ValueError, match=f"FDE vectors have {width - 1} dimensions, this index has {width}"):
        ann.append(narrow)
    assert ann.count() == count and len(ann.store) == size
