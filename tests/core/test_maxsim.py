"""
MaxSim module tests
"""

import math

import numpy as np
import pytest
import torch

from hypothesis import given, settings, strategies as st

import txtai_muvera.core.maxsim as module
from txtai_muvera.core.maxsim import maxsim, rank
from txtai_muvera.core.ragged import pack

from helpers import tokens


def reference(queries, documents, reduce="mean"):
    """
    Brute-force MaxSim with plain loops: for each query token the best document token, summed or averaged over query tokens.
    """

    scores = np.zeros((len(queries), len(documents)))
    for x, query in enumerate(queries):
        for y, document in enumerate(documents):
            if not len(document):
                scores[x, y] = -math.inf
                continue

            total = 0.0
            for token in query:
                total += max(float(np.dot(token.astype(np.float64), other.astype(np.float64))) for other in document)
            scores[x, y] = total / max(len(query), 1) if reduce == "mean" else total

    return scores


@pytest.mark.parametrize("reduce", ["mean", "sum"])
def test_reference(reduce):
    """
    Matches the brute-force reference, empty documents included
    """

    generator = np.random.default_rng(0)
    queries, documents = tokens(generator, [32, 5, 1], 16), tokens(generator, [7, 0, 1, 30, 12, 0], 16)

    scores = maxsim(*pack(queries), *pack(documents), reduce=reduce)
    assert scores.dtype == torch.float32 and scores.shape == (3, 6)
    np.testing.assert_allclose(scores.numpy(), reference(queries, documents, reduce), rtol=1e-5, atol=1e-5)


@settings(max_examples=80, deadline=None)
@given(data=st.data())
def test_reference_property(data):
    """
    Property: random ragged queries and documents match the brute-force reference
    """

    dimension = data.draw(st.integers(1, 8), label="dimension")
    qlengths = data.draw(st.lists(st.integers(0, 6), min_size=1, max_size=4), label="qlengths")
    dlengths = data.draw(st.lists(st.integers(0, 9), min_size=1, max_size=6), label="dlengths")
    reduce = data.draw(st.sampled_from(["mean", "sum"]), label="reduce")

    values = st.floats(-2, 2, allow_nan=False, width=32)

    def draw(lengths):
        return [
            np.array(data.draw(st.lists(st.lists(values, min_size=dimension, max_size=dimension), min_size=n, max_size=n)), dtype=np.float32).reshape(
                n, dimension
            )
            for n in lengths
        ]

    queries, documents = draw(qlengths), draw(dlengths)
    scores = maxsim(*pack(queries), *pack(documents), reduce=reduce)
    np.testing.assert_allclose(scores.numpy(), reference(queries, documents, reduce), rtol=1e-5, atol=1e-5)


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), dimension=st.sampled_from([1, 3, 8, 16, 64, 96, 128]))
def test_batch_invariant_property(seed, dimension):
    """
    Property: a document scores bit for bit the same alone as among other documents and queries (certified top k
    re-scores subsets and must reproduce the full scores)
    """

    generator = np.random.default_rng(seed)
    queries = tokens(generator, generator.integers(0, 40, size=generator.integers(1, 5)), dimension)
    documents = tokens(generator, generator.integers(0, 30, size=generator.integers(1, 25)), dimension)
    (qflat, qoffsets), (dflat, doffsets) = pack(queries), pack(documents)

    scores = maxsim(qflat, qoffsets, dflat, doffsets)
    for x, query in enumerate(queries):
        for y, document in enumerate(documents):
            assert maxsim(query, [0, len(query)], document, [0, len(document)])[0, 0].item() == scores[x, y].item()


def test_chunks(monkeypatch):
    """
    Tiny chunks on both sides give the same scores
    """

    generator = np.random.default_rng(1)
    queries, documents = tokens(generator, generator.integers(0, 12, size=9), 8), tokens(generator, generator.integers(0, 20, size=25), 8)
    expected = maxsim(*pack(queries), *pack(documents)).numpy()

    monkeypatch.setattr(module, "BUDGET", 30)
    monkeypatch.setattr(module, "QUERYTOKENS", 7)
    np.testing.assert_allclose(maxsim(*pack(queries), *pack(documents)).numpy(), expected, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(expected, reference(queries, documents), rtol=1e-5, atol=1e-5)


def test_half():
    """
    float16 documents and queries score like the reference on their float32 values
    """

    generator = np.random.default_rng(2)
    queries = [x.astype(np.float16) for x in tokens(generator, [4, 9], 32)]
    documents = [x.astype(np.float16) for x in tokens(generator, [3, 0, 17], 32)]

    scores = maxsim(*pack(queries, np.float16), *pack(documents, np.float16))
    assert scores.dtype == torch.float32
    np.testing.assert_allclose(
        scores.numpy(), reference([x.astype(np.float32) for x in queries], [x.astype(np.float32) for x in documents]), rtol=1e-5, atol=1e-5
    )


def test_int8():
    """
    int8 documents with per-token scales score like the reference on the dequantised values
    """

    generator = np.random.default_rng(3)
    queries, documents = tokens(generator, [6, 2], 16), tokens(generator, [5, 11, 0, 1], 16)

    # Symmetric per-token quantisation
    flat, offsets = pack(documents)
    scales = (np.abs(flat).max(axis=1) / 127).astype(np.float32)
    quantized = np.round(flat / scales[:, None]).astype(np.int8)
    dequantized = [x.astype(np.float32) * s[:, None] for x, s in zip(np.split(quantized, offsets[1:-1]), np.split(scales, offsets[1:-1]))]

    for reduce in ("mean", "sum"):
        scores = maxsim(*pack(queries), quantized, offsets, reduce=reduce, scales=scales)
        np.testing.assert_allclose(scores.numpy(), reference(queries, dequantized, reduce), rtol=1e-5, atol=1e-5)

        # Torch inputs give the same result
        tensors = maxsim(
            *[torch.from_numpy(x) for x in pack(queries)],
            torch.from_numpy(quantized),
            torch.from_numpy(offsets),
            reduce=reduce,
            scales=torch.from_numpy(scales),
        )
        assert torch.equal(tensors, scores)

    with pytest.raises(ValueError, match="scales"):
        maxsim(*pack(queries), quantized, offsets)
    with pytest.raises(ValueError, match="scales"):
        maxsim(*pack(queries), quantized, offsets, scales=scales[:-1])


def test_inputs():
    """
    numpy, torch and list offsets inputs agree
    """

    generator = np.random.default_rng(4)
    (qflat, qoffsets), (dflat, doffsets) = pack(tokens(generator, [3, 8], 12)), pack(tokens(generator, [4, 6, 2], 12))

    expected = maxsim(qflat, qoffsets, dflat, doffsets)
    assert torch.equal(maxsim(torch.from_numpy(qflat), torch.from_numpy(qoffsets), torch.from_numpy(dflat), torch.from_numpy(doffsets)), expected)

    # Tensors that require gradients score without building a graph
    scores = maxsim(torch.from_numpy(qflat).requires_grad_(), qoffsets, torch.from_numpy(dflat).requires_grad_(), doffsets)
    assert torch.equal(scores, expected) and not scores.requires_grad
    assert torch.equal(maxsim(qflat, qoffsets.tolist(), torch.from_numpy(dflat), doffsets.tolist()), expected)


def test_empty():
    """
    Empty documents score -inf, empty queries 0, empty batches give empty scores
    """

    generator = np.random.default_rng(5)
    queries, documents = tokens(generator, [0, 3], 4), tokens(generator, [0, 2, 0], 4)

    scores = maxsim(*pack(queries), *pack(documents)).numpy()
    assert np.isneginf(scores[:, [0, 2]]).all()
    assert scores[0, 1] == 0.0 and np.isfinite(scores[1, 1])

    # Every document empty, no documents, no queries
    assert np.isneginf(maxsim(*pack(queries), np.zeros((0, 4), dtype=np.float32), [0, 0, 0]).numpy()).all()
    assert maxsim(*pack(queries), np.zeros((0, 4), dtype=np.float32), [0]).shape == (2, 0)
    assert maxsim(np.zeros((0, 4), dtype=np.float32), [0], *pack(documents)).shape == (0, 3)

    # Empty documents rank last
    assert [index for index, _ in rank(maxsim(*pack(queries[1:]), *pack(documents)))[0]] == [1, 0, 2]


def test_validation():
    """
    Mismatched widths, bad offsets and bad reduce raise ValueError
    """

    generator = np.random.default_rng(6)
    (qflat, qoffsets), (dflat, doffsets) = pack(tokens(generator, [3], 8)), pack(tokens(generator, [4], 6))

    with pytest.raises(ValueError, match="8.*6"):
        maxsim(qflat, qoffsets, dflat, doffsets)
    with pytest.raises(ValueError, match="doffsets"):
        maxsim(qflat, qoffsets, qflat, [0, 2])
    with pytest.raises(ValueError, match="reduce"):
        maxsim(qflat, qoffsets, qflat, qoffsets, reduce="max")


def test_padded():
    """
    The accelerator path (padded per chunk, batched product, masked max) gives the CPU path's (NumPy reduceat) maxima,
    here on CPU tensors
    """

    generator = np.random.default_rng(8)
    (qflat, _), (dflat, doffsets) = pack(tokens(generator, [5, 7], 16)), pack(tokens(generator, [1, 9, 30, 2], 16))

    qflat, dflat = torch.from_numpy(qflat), torch.from_numpy(dflat)
    expected = module.reduceat(qflat, dflat, doffsets[:-1])
    assert expected.shape == (12, 4)
    found = module.padded(qflat, dflat, doffsets[:-1], np.diff(doffsets))
    assert found.dtype == torch.float32 and torch.allclose(found, expected, rtol=1e-6, atol=1e-6)

    # Negative scores everywhere: padding never wins the max
    found = module.padded(-qflat.abs(), dflat.abs(), doffsets[:-1], np.diff(doffsets))
    assert torch.allclose(found, module.reduceat(-qflat.abs(), dflat.abs(), doffsets[:-1]), rtol=1e-6, atol=1e-6)


def test_device_path(monkeypatch):
    """
    maxsim's accelerator path (large chunks, padded products) run on CPU tensors matches the CPU path, empty documents
    and chunk boundaries included
    """

    generator = np.random.default_rng(9)
    queries, documents = tokens(generator, generator.integers(0, 12, size=9), 8), tokens(generator, generator.integers(0, 20, size=25), 8)
    expected = maxsim(*pack(queries), *pack(documents))

    # Route CPU tensors through the accelerator kernel with small chunks
    monkeypatch.setattr(module, "reduceat", lambda q, d, starts: module.padded(q, d, starts, np.diff(np.append(starts, len(d)))))
    monkeypatch.setattr(module, "BUDGET", 40)
    monkeypatch.setattr(module, "QUERYTOKENS", 9)
    np.testing.assert_allclose(maxsim(*pack(queries), *pack(documents)).numpy(), expected.numpy(), rtol=1e-6, atol=1e-6)


def test_rank():
    """
    rank sorts rows by score, ties by index, and limits results
    """

    scores = torch.tensor([[0.5, 0.75, -torch.inf, 0.75], [0.0, 1.0, 2.0, 3.0]])
    assert rank(scores) == [[(1, 0.75), (3, 0.75), (0, 0.5), (2, -math.inf)], [(3, 3.0), (2, 2.0), (1, 1.0), (0, 0.0)]]
    assert rank(scores.numpy(), 1) == [[(1, 0.75)], [(3, 3.0)]]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda():
    """
    CUDA tensors score on the device and match CPU scores
    """

    generator = np.random.default_rng(7)
    (qflat, qoffsets), (dflat, doffsets) = pack(tokens(generator, [3, 32], 64)), pack(tokens(generator, [4, 0, 100], 64))

    expected = maxsim(qflat, qoffsets, dflat, doffsets)
    scores = maxsim(torch.from_numpy(qflat).cuda(), qoffsets, torch.from_numpy(dflat).cuda(), doffsets)
    assert scores.device.type == "cuda"
    np.testing.assert_allclose(scores.cpu().numpy(), expected.numpy(), rtol=1e-4, atol=1e-4)

    half = maxsim(torch.from_numpy(qflat).cuda().half(), qoffsets, torch.from_numpy(dflat).cuda().half(), doffsets)
    np.testing.assert_allclose(half.cpu().numpy(), expected.numpy(), rtol=1e-2, atol=1e-2)
