"""
Similarity and Reranker pipeline tests.
"""

import numpy as np
import pytest
import torch

from txtai import Embeddings
from txtai.pipeline.text.lateencoder import LateEncoder as TxtaiLateEncoder

from txtai_muvera import Reranker, Similarity

from helpers import SCORES, TEXTS, exactmaxsim, late


@pytest.fixture(scope="module")
def similarity(pylate_model):
    return Similarity(str(pylate_model), gpu=False)


def test_similarity_contract(similarity):
    results = similarity("virus cases", TEXTS)
    assert sorted(uid for uid, _ in results) == list(range(len(TEXTS)))
    assert [s for _, s in results] == sorted((s for _, s in results), reverse=True)
    for uid, score in results:
        assert score == pytest.approx(exactmaxsim(similarity.encoder, "virus cases", TEXTS[uid]), abs=1e-5)

    # Lists of queries, limits
    batch = similarity(["virus cases", "frog"], TEXTS, limit=2)
    assert len(batch) == 2 and all(len(x) == 2 for x in batch)
    assert batch[0] == results[:2]


def test_similarity_pre_encoded(similarity):
    matrices = similarity.matrices(TEXTS, "data")
    assert similarity("frog", matrices) == similarity("frog", TEXTS)

    # encode keeps txtai's Similarity(lateencode=True).encode contract: one zero-padded (batch, tokens, dim) tensor
    batch = similarity.encode(TEXTS, "data")
    assert isinstance(batch, torch.Tensor) and batch.shape == (len(TEXTS), max(len(m) for m in matrices), matrices[0].shape[1])
    for row, matrix in zip(batch, matrices):
        assert torch.equal(row[: len(matrix)], torch.from_numpy(matrix)) and not row[len(matrix) :].any()
    assert similarity("frog", batch) == similarity("frog", TEXTS)
    assert similarity("frog", [torch.from_numpy(m) for m in matrices]) == similarity("frog", TEXTS)

    with pytest.raises(ValueError, match="shape"):
        similarity("frog", [np.zeros((3, 7), dtype=np.float32)])
    with pytest.raises(TypeError):
        similarity("frog", [None])


def test_similarity_same_ranking_as_txtai_scoring(similarity):
    # txtai's LateEncoder.score on the same (PyLate-exact) token matrices, padded as txtai pads them
    queries = similarity.encode(["virus cases", "stock market"], "query")
    documents = similarity.encode(TEXTS, "data")

    theirs = TxtaiLateEncoder.score(None, queries, documents, None)
    ours = similarity(["virus cases", "stock market"], documents)
    for a, b in zip(ours, theirs):
        assert [uid for uid, _ in a] == [uid for uid, _ in b]
        assert np.allclose([s for _, s in a], [s for _, s in b], atol=1e-5)


def test_reranker_reuses_stored_tokens(pylate_model, similarity):
    embeddings = Embeddings(late(pylate_model, dtype="float32"))
    embeddings.index(TEXTS)
    reranker = Reranker(embeddings, similarity)

    # Count document encodings during re-ranking: none when the index holds the token matrices
    calls = []
    encode = similarity.encoder.encode

    def counting(texts, category="data", **kwargs):
        calls.append(category)
        return encode(texts, category=category, **kwargs)

    similarity.encoder.encode = counting
    try:
        results = reranker("virus cases", limit=3, factor=4)
    finally:
        similarity.encoder.encode = encode

    assert "data" not in calls
    assert len(results) == 3
    candidates = embeddings.search("virus cases", 12)
    expected = sorted(candidates, key=lambda r: exactmaxsim(similarity.encoder, "virus cases", r["text"]), reverse=True)[:3]
    assert [r["id"] for r in results] == [r["id"] for r in expected]
    for result in results:
        assert result["score"] == pytest.approx(exactmaxsim(similarity.encoder, "virus cases", result["text"]), abs=SCORES)

    # Batch of queries
    assert [len(x) for x in reranker(["virus", "frog"], limit=2)] == [2, 2]


def test_reranker_encodes_texts_for_other_indexes(pylate_model, similarity):
    # A keyword index: candidates come from BM25, texts are encoded for MaxSim
    embeddings = Embeddings(keyword=True, content=True)
    embeddings.index(TEXTS)
    results = Reranker(embeddings, similarity)("virus cases confirmed", limit=2)
    assert [r["text"] for r in results] == [
        r["text"]
        for r in sorted(
            embeddings.search("virus cases confirmed", 20),
            key=lambda r: exactmaxsim(similarity.encoder, "virus cases confirmed", r["text"]),
            reverse=True,
        )[:2]
    ]
    for result in results:
        assert result["score"] == pytest.approx(exactmaxsim(similarity.encoder, "virus cases confirmed", result["text"]), abs=SCORES)
