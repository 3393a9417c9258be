"""
Reindex tests: embeddings.reindex and txtai_muvera.reindex validate the new config before anything changes, and a failed reindex (bad
config, a model that fails to load, an error mid-encoding) leaves the previous index searchable, writable and saveable.
"""

import pytest

from txtai import Embeddings

import txtai_muvera

from txtai_muvera.errors import ConfigurationError

from helpers import TEXTS, late

# Queries compared before and after
QUERIES = ["virus cases", "stock market", "bear attack"]


@pytest.fixture
def embeddings(pylate_model):
    """
    A small index with content.
    """

    embeddings = Embeddings(late(pylate_model, repetitions=4))
    embeddings.index([(x, text, None) for x, text in enumerate(TEXTS)])
    embeddings.delete([3])
    return embeddings


def answers(embeddings):
    """
    Count and top 5 ids, scores and texts of the test queries.
    """

    return {
        "count": embeddings.count(),
        "results": [[(r["id"], round(r["score"], 5), r["text"]) for r in embeddings.search(q, 5)] for q in QUERIES],
    }


def unchanged(embeddings, before, tmp_path):
    """
    Checks the index answers as before, takes an upsert and a delete, and survives a save and load.
    """

    assert answers(embeddings) == before
    embeddings.upsert([("volcano", "A volcano erupted on an island in the Pacific ocean", None)])
    assert embeddings.search("A volcano erupted on an island in the Pacific ocean", 1)[0]["id"] == "volcano"
    embeddings.delete(["volcano"])
    assert answers(embeddings) == before

    embeddings.save(str(tmp_path / "index"))
    assert answers(Embeddings().load(str(tmp_path / "index"))) == before


def test_misspelt_key_refused_before_anything_changes(embeddings, pylate_model, tmp_path):
    before = answers(embeddings)
    with pytest.raises(ValueError, match="unknown muvera setting 'candidtes'"):
        txtai_muvera.reindex(embeddings, late(pylate_model, candidtes=10))
    unchanged(embeddings, before, tmp_path)


@pytest.mark.parametrize("muvera", [{"candidates": -1}, {"dtype": "int4"}, {"repetitions": "many"}])
def test_bad_values_leave_index_unchanged(embeddings, pylate_model, tmp_path, muvera):
    before = answers(embeddings)
    with pytest.raises((ValueError, TypeError, ImportError, ConfigurationError)):
        txtai_muvera.reindex(embeddings, late(pylate_model, **muvera))
    unchanged(embeddings, before, tmp_path)


def test_model_that_fails_to_load(embeddings, tmp_path):
    before = answers(embeddings)
    with pytest.raises(ConfigurationError, match="neither a local folder nor a model hub id"):
        txtai_muvera.reindex(embeddings, late(str(tmp_path / "no-such-model"), repetitions=4))
    unchanged(embeddings, before, tmp_path)


def failing(documents):
    """
    Streams documents and raises after the sixth, once part of them were encoded and written to the rebuild table.
    """

    for x, document in enumerate(documents):
        if x == 6:
            raise RuntimeError("encoding failed")
        yield document


def test_error_mid_encoding(embeddings, pylate_model, tmp_path):
    # The documents stream raises after part of them were encoded and written to the rebuild table
    before = answers(embeddings)

    with pytest.raises(RuntimeError, match="encoding failed"):
        txtai_muvera.reindex(embeddings, late(pylate_model, repetitions=8), function=failing)
    unchanged(embeddings, before, tmp_path)

    # A bad document mid-stream, refused by the vectors model
    def bad(documents):
        for x, (uid, text, tags) in enumerate(documents):
            yield (uid, None if x == 5 else text, tags)

    with pytest.raises(TypeError, match="must be a str"):
        txtai_muvera.reindex(embeddings, late(pylate_model, repetitions=8), function=bad)
    unchanged(embeddings, before, tmp_path)


def test_successful_reindex(embeddings, pylate_model, tmp_path):
    # A reindex that works gives the index the new encoding, and everything keeps working
    txtai_muvera.reindex(embeddings, late(pylate_model, repetitions=8))
    assert embeddings.config["muvera"]["repetitions"] == 8
    assert embeddings.count() == len(TEXTS) - 1
    results = answers(embeddings)
    unchanged(embeddings, results, tmp_path)


def test_plain_reindex_is_guarded(embeddings, pylate_model, tmp_path):
    # txtai's own embeddings.reindex, called as a user would: refused before anything changes, nothing lost on failure
    before = answers(embeddings)
    with pytest.raises(ValueError, match="unknown muvera setting 'candidtes'"):
        embeddings.reindex(late(pylate_model, candidtes=10))
    unchanged(embeddings, before, tmp_path)

    with pytest.raises(ConfigurationError, match="neither a local folder nor a model hub id"):
        embeddings.reindex(late(str(tmp_path / "no-such-model"), repetitions=4))
    unchanged(embeddings, before, tmp_path)

    with pytest.raises(RuntimeError, match="encoding failed"):
        embeddings.reindex(late(pylate_model, repetitions=8), function=failing)
    unchanged(embeddings, before, tmp_path)

    # A good reindex still rebuilds the index with the new settings
    embeddings.reindex(late(pylate_model, repetitions=8))
    assert embeddings.config["muvera"]["repetitions"] == 8
    assert embeddings.search(TEXTS[10], 1)[0]["text"] == TEXTS[10]


def test_guard_leaves_other_indexes_alone():
    # An index without txtai-muvera reindexes through txtai's own code
    import txtai_muvera.indexfolder as indexfolder

    indexfolder.guard()
    assert indexfolder.uses({"method": "txtai_muvera.LateVectors"}) and indexfolder.uses({"muvera": {}})
    assert not indexfolder.uses({"path": "sentence-transformers/all-MiniLM-L6-v2"}) and not indexfolder.uses(None)
