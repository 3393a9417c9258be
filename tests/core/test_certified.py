"""
Certified top-k module tests
"""

import numpy as np
import pytest
import torch

from hypothesis import given, settings, strategies as st

import txtai_muvera.core.certified as certified

# The real speed check, before the fixture patches it
SCREENING = certified.screening

from txtai_muvera.core.certified import Screen, Screens, topk
from txtai_muvera.core.maxsim import maxsim, rank
from txtai_muvera.core.ragged import pack
from txtai_muvera.core.store import TokenStore
from txtai_muvera.errors import ConfigurationError

from helpers import tokens


@pytest.fixture(autouse=True)
def screened(monkeypatch):
    """
    Screens every certified call, also on CPUs where the int8 screen is not measured faster (the code path under test)
    """

    monkeypatch.setattr(certified, "screening", lambda: True)


def expected(queries, qoffsets, documents, doffsets, limit, reduce="mean", scales=None):
    """
    Float32 MaxSim top k: the results certified top k must reproduce exactly.
    """

    return rank(maxsim(queries, qoffsets, documents, doffsets, reduce=reduce, scales=scales), limit)


def unit(generator, lengths, dimension):
    """
    Unit length token matrices.
    """

    matrices = tokens(generator, lengths, dimension)
    return [x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12) for x in matrices]


@st.composite
def neighbours(draw):
    """
    Adversarial document sets: a few base documents, each copied several times with its tokens shuffled (exact ties), with
    tiny perturbations (near ties far below the int8 screen's error) or exact duplicates, plus empty documents.
    """

    seed = draw(st.integers(0, 2**32 - 1), label="seed")
    dimension = draw(st.sampled_from([3, 8, 16, 64]), label="dimension")
    generator = np.random.default_rng(seed)

    documents = []
    for base in unit(generator, generator.integers(1, 12, size=draw(st.integers(1, 4), label="bases")), dimension):
        documents.append(base)
        for _ in range(draw(st.integers(0, 5), label="copies")):
            epsilon = draw(st.sampled_from([0.0, 1e-7, 1e-6, 1e-5, 1e-4, 1e-3]), label="epsilon")
            copy = base[generator.permutation(len(base))] + epsilon * generator.standard_normal(base.shape).astype(np.float32)
            documents.append(copy.astype(np.float32))
    documents += [np.zeros((0, dimension), dtype=np.float32)] * draw(st.integers(0, 2), label="empty")
    documents = [documents[x] for x in generator.permutation(len(documents))]

    # Queries near a document (high scores in a narrow band) or random
    queries = []
    for _ in range(draw(st.integers(1, 3), label="queries")):
        if draw(st.booleans(), label="near"):
            document = documents[generator.integers(len(documents))]
            rows = document[generator.integers(len(document), size=generator.integers(1, 6))] if len(document) else np.zeros((1, dimension))
            queries.append((rows + 0.05 * generator.standard_normal(rows.shape)).astype(np.float32))
        else:
            queries.append(unit(generator, [int(generator.integers(0, 6))], dimension)[0])

    return queries, documents


@settings(max_examples=150, deadline=None)
@given(data=neighbours(), limit=st.integers(1, 8), reduce=st.sampled_from(["mean", "sum"]), dtype=st.sampled_from(["float32", "float16"]))
def test_exact_property(data, limit, reduce, dtype):
    """
    Property: certified top k returns the ids, order and scores of float32 MaxSim, near ties and exact ties included
    """

    queries, documents = data
    (qflat, qoffsets), (dflat, doffsets) = pack(queries), pack(documents, getattr(np, dtype))

    counts = {}
    found = topk(qflat, qoffsets, dflat, doffsets, limit, reduce, precision="certified", screen=Screen(dflat, doffsets), counts=counts)
    assert found == expected(qflat, qoffsets, dflat, doffsets, limit, reduce)
    assert 0 <= counts["rescored"] <= counts["pairs"]


@settings(max_examples=80, deadline=None)
@given(data=neighbours())
def test_bound_property(data):
    """
    Property: every screened MaxSim sum is within its bound of the float32 sum
    """

    queries, documents = data
    (qflat, qoffsets), (dflat, doffsets) = pack(queries), pack(documents)

    sums, bounds = Screen(dflat, doffsets).scores(torch.from_numpy(qflat), qoffsets)
    reference = maxsim(qflat, qoffsets, dflat, doffsets, reduce="sum").double().numpy()
    live = np.isfinite(reference)
    assert (np.abs(sums - reference)[live] <= bounds[live]).all()


def test_int8_store():
    """
    int8 documents with per token scales: certified results equal float32 MaxSim of the dequantized values
    """

    generator = np.random.default_rng(4)
    flat, offsets = pack(unit(generator, generator.integers(0, 40, size=60), 32))
    scales = (np.abs(flat).max(axis=1) / 127).astype(np.float32)
    quantized = np.round(flat / np.where(scales > 0, scales, 1)[:, None]).astype(np.int8)
    queries, qoffsets = pack(unit(generator, [8, 32], 32))

    screen = Screen(quantized, offsets, scales)
    found = topk(queries, qoffsets, quantized, offsets, 7, scales=scales, screen=screen)
    assert found == expected(queries, qoffsets, quantized, offsets, 7, scales=scales)


def test_precisions():
    """
    exact and certified agree; approximate returns float32 scores of screened documents; well separated documents are
    mostly not scored again
    """

    generator = np.random.default_rng(5)
    queries = unit(generator, [32, 20], 64)
    documents = unit(generator, generator.integers(32, 60, size=200), 64)

    # Every 10th document holds the first query's tokens, slightly moved: clear winners
    for x in range(0, 200, 10):
        documents[x][:32] = queries[0] + 0.1 * generator.standard_normal(queries[0].shape)
    (qflat, qoffsets), (dflat, doffsets) = pack(queries), pack(documents)

    reference = expected(qflat, qoffsets, dflat, doffsets, 10)
    screen = Screen(dflat, doffsets)
    assert topk(qflat, qoffsets, dflat, doffsets, 10, precision="exact") == reference

    counts = {}
    assert topk(qflat, qoffsets, dflat, doffsets, 10, screen=screen, counts=counts) == reference
    assert counts["pairs"] == 400 and counts["rescored"] < 400

    # Approximate: float32 scores of the documents it returns, mostly the same documents
    scores = maxsim(qflat, qoffsets, dflat, doffsets).numpy()
    approximate = topk(qflat, qoffsets, dflat, doffsets, 10, precision="approximate", screen=screen)
    for x, row in enumerate(approximate):
        assert [score for _, score in row] == sorted([score for _, score in row], reverse=True)
        assert all(score == scores[x, index] for index, score in row)
    assert len({i for i, _ in approximate[0]} & {i for i, _ in reference[0]}) >= 8


def test_screens():
    """
    A store's screen is built once, extended on append, and gives the same screen as the gathered rows
    """

    generator = np.random.default_rng(6)
    store = TokenStore(16, "float32")
    store.extend(unit(generator, [3, 5, 0, 9], 16))

    screens = Screens()
    first = screens.gather(store, [3, 0])
    store.extend(unit(generator, [4, 2], 16))
    second = screens.gather(store, [5, 3, 4])

    for screen, ids in ((first, [3, 0]), (second, [5, 3, 4])):
        direct = Screen(*store.gather(ids))
        assert torch.equal(screen.codes, direct.codes) and (screen.offsets == direct.offsets).all()
        assert np.allclose(screen.scale, direct.scale) and np.allclose(screen.residual, direct.residual)

    # A new store starts over
    other = TokenStore(16, "float32")
    other.extend(unit(generator, [7], 16))
    assert screens.gather(other, [0]).offsets.tolist() == [0, 7]


def test_errors():
    """
    Bad precision, limit or screen size raise clear errors
    """

    generator = np.random.default_rng(7)
    (qflat, qoffsets), (dflat, doffsets) = pack(unit(generator, [4], 8)), pack(unit(generator, [3, 2, 5], 8))

    with pytest.raises(ValueError, match="precision"):
        topk(qflat, qoffsets, dflat, doffsets, 2, precision="bf17")
    with pytest.raises(ValueError, match="limit"):
        topk(qflat, qoffsets, dflat, doffsets, 0)
    with pytest.raises(ValueError, match="screen"):
        topk(qflat, qoffsets, dflat, doffsets, 1, screen=Screen(dflat[:5], doffsets[:3]))


def test_screening():
    """
    The int8 speed check runs once and answers a bool
    """

    assert SCREENING() in (True, False) and SCREENING.cache_info().currsize == 1


def test_slow_int8(monkeypatch):
    """
    Where int8 products are not faster, certified scores everything in float32 and stores keep no screen
    """

    monkeypatch.setattr(certified, "screening", lambda: False)
    generator = np.random.default_rng(8)
    (qflat, qoffsets), (dflat, doffsets) = pack(unit(generator, [4], 8)), pack(unit(generator, [3, 2, 5, 4], 8))

    counts = {}
    assert topk(qflat, qoffsets, dflat, doffsets, 2, counts=counts) == expected(qflat, qoffsets, dflat, doffsets, 2)
    assert counts == {"pairs": 4, "rescored": 4}

    store = TokenStore(8, "float32")
    store.extend(unit(generator, [3], 8))
    assert Screens().gather(store, [0]) is None


def test_txtai_precisions(pylate_model):
    """
    On real txtai: a Muvera index, the Similarity pipeline and the Reranker give the same results with certified precision
    as with exact, and approximate keeps float32 scores
    """

    from txtai import Embeddings

    from txtai_muvera import Muvera, Reranker, Similarity

    from helpers import TEXTS, late

    queries = ["virus cases", "frog species", "interest rates"]
    results = {}
    for precision in ("exact", "certified", "approximate"):
        embeddings = Embeddings(late(pylate_model, precision=precision))
        embeddings.index(TEXTS)
        similarity = Similarity(str(pylate_model), gpu=False, precision=precision)
        results[precision] = (
            embeddings.batchsearch(queries, 3),
            similarity(queries, TEXTS, limit=3),
            Reranker(embeddings, similarity)(queries, limit=3, factor=3),
        )

    assert results["certified"] == results["exact"]
    for index, pipeline, reranker in zip(*results["approximate"]):
        assert [r["score"] for r in index] == sorted((r["score"] for r in index), reverse=True)
        assert len(pipeline) == 3 and len(reranker) == 3

    with pytest.raises(ConfigurationError, match="muvera precision must be one of"):
        Muvera({"muvera": {"precision": "bf16"}})
    with pytest.raises(ValueError, match="precision"):
        Similarity(str(pylate_model), gpu=False, precision="fast")
