"""
FDE module tests
"""

import numpy as np
import pytest
import torch

from hypothesis import given, settings, strategies as st

from txtai_muvera.core.fde import FDE
from txtai_muvera.core.ragged import pack

from helpers import tokens


def appendgray(code, bit):
    """
    Reference AppendToGrayCode.
    """

    return (code << 1) + (bit ^ (code & 1))


def partitionindex(sketch):
    """
    Reference SimHashPartitionIndex.
    """

    index = 0
    for value in sketch:
        index = appendgray(index, int(value > 0))
    return index


def distance(sketch, index):
    """
    Reference DistanceToSimHashPartition.
    """

    total, bits = 0, index ^ (index >> 1)
    for i in range(len(sketch) - 1, -1, -1):
        total += int(sketch[i] > 0) != (bits & 1)
        bits >>= 1
    return total


def reference(fde, points, category):
    """
    Brute-force FDE of one token matrix, a line by line port of the Google reference with the encoder's random matrices.
    """

    points = np.asarray(points, dtype=np.float64)
    partitions, width = 2**fde.hashes, fde.width
    out = np.zeros(fde.repetitions * partitions * width)

    for repetition in range(fde.repetitions):
        sketches = points @ fde.gaussian[repetition].numpy().astype(np.float64)
        projected = points @ fde.projections[repetition].numpy().astype(np.float64) if fde.projections is not None else points

        sizes = [0] * partitions
        for point in range(len(points)):
            start = repetition * partitions * width + partitionindex(sketches[point]) * width
            out[start : start + width] += projected[point]
            sizes[partitionindex(sketches[point])] += 1

        if category == "data":
            for partition in range(partitions):
                start = repetition * partitions * width + partition * width
                if sizes[partition] == 0:
                    # Reference fill: first point with the strictly smallest Hamming distance
                    if fde.fill and len(points):
                        nearest, best = -1, None
                        for point in range(len(points)):
                            current = distance(sketches[point], partition)
                            if best is None or current < best:
                                nearest, best = point, current
                        out[start : start + width] = projected[nearest]
                else:
                    out[start : start + width] /= sizes[partition]

                # Unit length partition centroids (beyond the reference, on by default)
                norm = np.linalg.norm(out[start : start + width])
                if fde.normalize and norm > 0:
                    out[start : start + width] /= norm

    if fde.final:
        final = np.zeros(fde.final)
        for i, value in enumerate(out):
            final[fde.buckets[i].item()] += fde.signs[i].item() * value
        out = final

    return out


def references(fde, matrices, category):
    """
    Brute-force FDE of a list of token matrices.
    """

    return np.stack([reference(fde, matrix, category) for matrix in matrices])


def unit(matrix):
    """
    Normalizes rows to unit length.
    """

    return (matrix / np.linalg.norm(matrix, axis=1, keepdims=True)).astype(np.float32)


def spearman(x, y):
    """
    Spearman rank correlation (no ties expected).
    """

    rx, ry = np.argsort(np.argsort(x)), np.argsort(np.argsort(y))
    return np.corrcoef(rx, ry)[0, 1]


def chamfer(query, document):
    """
    Chamfer / MaxSim similarity: sum over query tokens of the best document token.
    """

    return (query @ document.T).max(axis=1).sum()


def test_dimensions():
    """
    Output width with and without projections
    """

    generator = np.random.default_rng(0)
    flat, offsets = pack(tokens(generator, [5, 3], 32))

    for kwargs, dimensions in [
        ({}, 20 * 32 * 16),
        ({"projection": None}, 20 * 32 * 32),
        ({"projection": 0, "repetitions": 2, "hashes": 3}, 2 * 8 * 32),
        ({"final": 1000}, 1000),
    ]:
        fde = FDE(32, **kwargs)
        assert fde.dimensions == dimensions
        for category in ("query", "data"):
            vectors = fde(flat, offsets, category)
            assert vectors.shape == (2, dimensions) and vectors.dtype == np.float32


def test_determinism():
    """
    Same seed gives the same encoder, another seed a different one
    """

    generator = np.random.default_rng(1)
    flat, offsets = pack(tokens(generator, [7, 12], 16))

    first, second, other = FDE(16, final=256), FDE(16, final=256), FDE(16, final=256, seed=7)
    for category in ("query", "data"):
        assert np.array_equal(first(flat, offsets, category), second(flat, offsets, category))
        assert not np.allclose(first(flat, offsets, category), other(flat, offsets, category))

    assert torch.equal(first.gaussian, second.gaussian) and not torch.equal(first.gaussian, other.gaussian)


def test_config():
    """
    config() rebuilds the exact encoder
    """

    generator = np.random.default_rng(2)
    flat, offsets = pack(tokens(generator, [4, 9, 1], 24))

    fde = FDE(24, repetitions=3, hashes=4, projection=8, final=100, fill=False, seed=5)
    copy = FDE(**fde.config())
    assert copy.config() == fde.config()
    for category in ("query", "data"):
        assert np.array_equal(fde(flat, offsets, category), copy(flat, offsets, category))


@pytest.mark.parametrize(
    "kwargs",
    [
        {"repetitions": 3, "hashes": 3, "projection": 4},
        {"repetitions": 2, "hashes": 4, "projection": None},
        {"repetitions": 3, "hashes": 2, "projection": 5, "final": 17},
        {"repetitions": 2, "hashes": 3, "projection": 4, "fill": False},
        {"repetitions": 2, "hashes": 5, "projection": 3},
        {"repetitions": 1, "hashes": 8, "projection": 2},
        {"repetitions": 3, "hashes": 3, "projection": 4, "projector": "ams", "normalize": False, "fill": True},
        {"repetitions": 3, "hashes": 2, "projection": 5, "final": 17, "projector": "ams", "normalize": False, "fill": True},
        {"repetitions": 5, "hashes": 3, "projection": 16, "fill": True},
        {"repetitions": 2, "hashes": 3, "projection": 4, "projector": "ams", "normalize": True},
    ],
)
def test_reference(kwargs):
    """
    Queries sum, documents average (normalize, fill as set), exactly as the brute-force reference
    """

    generator = np.random.default_rng(3)
    matrices = tokens(generator, [1, 2, 0, 6, 13, 40], 12)
    fde = FDE(12, **kwargs)

    for category in ("query", "data"):
        np.testing.assert_allclose(fde.batch(matrices, category), references(fde, matrices, category), rtol=1e-5, atol=1e-5)


@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_reference_property(data):
    """
    Property: any small ragged batch and parameters match the brute-force reference
    """

    dimension = data.draw(st.integers(1, 6), label="dimension")
    kwargs = {
        "repetitions": data.draw(st.integers(1, 3), label="repetitions"),
        "hashes": data.draw(st.integers(1, 4), label="hashes"),
        "projection": data.draw(st.one_of(st.none(), st.integers(1, 5)), label="projection"),
        "final": data.draw(st.one_of(st.none(), st.integers(1, 9)), label="final"),
        "projector": data.draw(st.sampled_from(FDE.PROJECTORS), label="projector"),
        "normalize": data.draw(st.booleans(), label="normalize"),
        "fill": data.draw(st.booleans(), label="fill"),
        "seed": data.draw(st.integers(0, 2**31), label="seed"),
    }
    lengths = data.draw(st.lists(st.integers(0, 7), min_size=1, max_size=4), label="lengths")

    # Values on a coarse grid keep SimHash signs away from rounding ties
    values = st.integers(-4, 4).map(lambda x: x / 4)
    matrices = [
        np.array(data.draw(st.lists(st.lists(values, min_size=dimension, max_size=dimension), min_size=n, max_size=n)), dtype=np.float32).reshape(
            n, dimension
        )
        for n in lengths
    ]
    category = data.draw(st.sampled_from(["query", "data"]), label="category")

    fde = FDE(dimension, **kwargs)
    np.testing.assert_allclose(fde.batch(matrices, category), references(fde, matrices, category), rtol=1e-5, atol=1e-5)


def test_query_single_token():
    """
    A one token query fills exactly one partition block per repetition
    """

    generator = np.random.default_rng(4)
    fde = FDE(32, repetitions=6, hashes=4, projection=8)
    vectors = fde.batch(tokens(generator, [1], 32), "query")

    blocks = vectors.reshape(6, 16, 8)
    assert ((np.abs(blocks).sum(axis=2) > 0).sum(axis=1) == 1).all()


def test_fill():
    """
    Documents with fill have no empty partition block, without fill short documents do, queries never fill
    """

    generator = np.random.default_rng(5)
    matrices = tokens(generator, [1, 3, 10, 50], 32)

    filled = FDE(32, repetitions=4, hashes=4, projection=8, fill=True).batch(matrices, "data").reshape(4, 4, 16, 8)
    assert (np.abs(filled).sum(axis=3) > 0).all()

    empty = FDE(32, repetitions=4, hashes=4, projection=8, fill=False).batch(matrices, "data").reshape(4, 4, 16, 8)
    assert (np.abs(empty[:2]).sum(axis=3) == 0).any(axis=2).all()

    queries = FDE(32, repetitions=4, hashes=4, projection=8).batch(matrices, "query").reshape(4, 4, 16, 8)
    assert ((np.abs(queries[0]).sum(axis=2) > 0).sum(axis=1) == 1).all()


def test_fill_single_token():
    """
    A one token document repeats its projected token in every partition of every repetition
    """

    generator = np.random.default_rng(6)
    matrix = tokens(generator, [1], 16)[0]
    fde = FDE(16, repetitions=3, hashes=3, projection=4, normalize=False, fill=True)

    blocks = fde.batch([matrix], "data").reshape(3, 8, 4)
    for repetition in range(3):
        expected = matrix @ fde.projections[repetition].numpy()
        np.testing.assert_allclose(blocks[repetition], np.tile(expected, (8, 1)), rtol=1e-6, atol=1e-6)


def test_final_projection():
    """
    The Count-Sketch final projection is a fixed linear map of the full FDE
    """

    generator = np.random.default_rng(7)
    matrices = tokens(generator, [3, 8, 20], 16)
    full, reduced = FDE(16, repetitions=4, hashes=3, projection=4, normalize=False), FDE(
        16, repetitions=4, hashes=3, projection=4, final=50, normalize=False
    )

    sketch = np.zeros((full.dimensions, 50), dtype=np.float32)
    sketch[np.arange(full.dimensions), reduced.buckets.numpy()] = reduced.signs.numpy()

    for category in ("query", "data"):
        np.testing.assert_allclose(reduced.batch(matrices, category), full.batch(matrices, category) @ sketch, rtol=1e-5, atol=1e-5)

    # Linear in the tokens: a query FDE is the sum of its token FDEs, scaling tokens scales documents
    queries = reduced.batch([matrices[1]] + [row[None] for row in matrices[1]], "query")
    np.testing.assert_allclose(queries[0], queries[1:].sum(axis=0), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(reduced.batch([2 * matrices[2]], "data"), 2 * reduced.batch([matrices[2]], "data"), rtol=1e-5, atol=1e-5)


def test_empty():
    """
    Matrices without tokens encode to zero rows, empty batches to empty outputs
    """

    fde = FDE(8, repetitions=2, hashes=2, projection=4, final=10)
    generator = np.random.default_rng(8)

    vectors = fde.batch([np.zeros((0, 8)), tokens(generator, [3], 8)[0], np.zeros((0, 8))], "data")
    assert not vectors[0].any() and vectors[1].any() and not vectors[2].any()

    assert not fde(np.zeros((0, 8), dtype=np.float32), np.array([0, 0, 0]), "data").any()
    assert fde(np.zeros((0, 8), dtype=np.float32), np.array([0]), "query").shape == (0, 10)
    assert fde.batch([], "query").shape == (0, 10)


def test_chunks():
    """
    Chunked encoding matches one chunk, torch and numpy inputs agree
    """

    generator = np.random.default_rng(9)
    flat, offsets = pack(tokens(generator, generator.integers(0, 30, size=40), 16))

    fde, small = FDE(16, repetitions=3, hashes=3, projection=4), FDE(16, repetitions=3, hashes=3, projection=4)
    small.BUDGET = 200
    assert len(small.runs(offsets)) > 10

    for category in ("query", "data"):
        expected = fde(flat, offsets, category)
        np.testing.assert_allclose(small(flat, offsets, category), expected, rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(fde(torch.from_numpy(flat), torch.from_numpy(offsets), category), expected, rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(
            fde(torch.from_numpy(flat).half(), offsets, category), fde(torch.from_numpy(flat).half().float(), offsets, category)
        )


def test_validation():
    """
    Bad parameters and inputs raise ValueError
    """

    for kwargs in [
        {"hashes": 0},
        {"hashes": 17},
        {"repetitions": 0},
        {"projection": -1},
        {"final": 0},
        {"seed": -1},
        {"dimension": 0},
        {"projector": "gaussian"},
    ]:
        with pytest.raises(ValueError):
            FDE(**{"dimension": 8, **kwargs})

    fde = FDE(8)
    with pytest.raises(ValueError, match="12.*8"):
        fde(np.zeros((3, 12), dtype=np.float32), np.array([0, 3]), "query")
    with pytest.raises(ValueError, match="category"):
        fde(np.zeros((3, 8), dtype=np.float32), np.array([0, 3]), "document")
    with pytest.raises(ValueError, match="offsets"):
        fde(np.zeros((3, 8), dtype=np.float32), np.array([0, 2]), "query")


def test_orthogonal():
    """
    Orthogonal projections: each group of dimension / projection repetitions tiles one scaled orthogonal matrix, so
    summed over a group projected inner products are exact; wider projections are isometries
    """

    generator = np.random.default_rng(11)
    x, y = tokens(generator, [1, 1], 32)

    # 32 / 8 = 4 repetitions per group, 10 repetitions: groups of 4, 4 and 2 from different matrices
    fde = FDE(32, repetitions=10, hashes=2, projection=8)
    projections = fde.projections.numpy()
    for group in (projections[:4], projections[4:8]):
        blocks = np.concatenate(list(group), axis=1)
        np.testing.assert_allclose(blocks.T @ blocks, 4 * np.eye(32), atol=1e-4)
        np.testing.assert_allclose(sum((x @ p) @ (y @ p).T for p in group) / 4, x @ y.T, atol=1e-5)
    assert not np.allclose(projections[0], projections[4])

    # Every coordinate feeds one output per repetition, like the AMS sketch, so encoding costs the same
    ams = FDE(32, repetitions=10, hashes=2, projection=8, projector="ams").projections.numpy()
    assert (np.count_nonzero(ams, axis=2) == 1).all() and (np.count_nonzero(projections, axis=2) == 1).all()

    # Token width not a multiple of the projection: blocks of 4 and 5 coordinates, still orthogonal outputs
    uneven = np.concatenate(list(FDE(30, repetitions=3, hashes=2, projection=7).projections.numpy()), axis=1)
    gram = uneven.T @ uneven
    np.testing.assert_allclose(gram, np.diag(np.diag(gram)), atol=1e-5)

    # Wider than the token vectors: every repetition preserves inner products exactly
    wide = FDE(8, repetitions=3, hashes=2, projection=12).projections.numpy()
    for p in wide:
        np.testing.assert_allclose(p @ p.T, np.eye(8), atol=1e-5)


def test_normalize():
    """
    normalize scales every non-empty document partition block to unit length, queries still sum
    """

    generator = np.random.default_rng(12)
    matrices = tokens(generator, [2, 9, 40], 16)
    fde, plain = FDE(16, repetitions=3, hashes=3, projection=4), FDE(16, repetitions=3, hashes=3, projection=4, normalize=False)

    blocks, averages = fde.batch(matrices, "data").reshape(3, 24, 4), plain.batch(matrices, "data").reshape(3, 24, 4)
    norms = np.linalg.norm(averages, axis=2, keepdims=True)
    np.testing.assert_allclose(blocks, np.divide(averages, norms, out=np.zeros_like(averages), where=norms > 0), rtol=1e-5, atol=1e-6)
    assert np.allclose(np.linalg.norm(blocks, axis=2)[norms[..., 0] > 0], 1.0, atol=1e-5)
    assert np.array_equal(fde.batch(matrices, "query"), plain.batch(matrices, "query"))


def test_legacy():
    """
    Configs saved before projector and normalize existed rebuild the encoder they were built with
    """

    saved = FDE(16, projector="ams", normalize=False, fill=True).config()
    old = {key: value for key, value in saved.items() if key not in FDE.LEGACY}
    assert FDE(**{**FDE.LEGACY, **old}).config() == saved


def test_chamfer():
    """
    FDE inner products track Chamfer similarity: near-duplicates win and similarities rank alike
    """

    generator = np.random.default_rng(10)
    fde = FDE(64)

    # Random documents, and queries made of noisy copies of 8 tokens of the first 20 documents
    documents = tokens(generator, generator.integers(20, 60, size=200), 64)
    queries = []
    for document in documents[:20]:
        noisy = document[generator.choice(len(document), size=8, replace=False)] + 0.1 * generator.standard_normal((8, 64))
        queries.append(unit(noisy))

    # The source document ranks first for every query under both similarities
    scores = fde.batch(queries, "query") @ fde.batch(documents, "data").T
    exact = np.array([[chamfer(query, document) for document in documents] for query in queries])
    assert (exact.argmax(axis=1) == np.arange(20)).all()
    assert (scores.argmax(axis=1) == np.arange(20)).all()

    # Topical token sets: tokens near 1 to 3 of 12 topic centroids, so Chamfer similarity varies across documents
    centroids = unit(generator.standard_normal((12, 64)))

    def sample(length, topics):
        topics = generator.choice(12, size=topics, replace=False)
        return unit(centroids[generator.choice(topics, size=length)] + 0.1 * generator.standard_normal((length, 64)))

    documents = [sample(int(generator.integers(20, 60)), int(generator.integers(1, 4))) for _ in range(200)]
    queries = [sample(8, int(generator.integers(1, 3))) for _ in range(20)]

    # FDE scores rank documents like Chamfer similarity does (about 0.85 here, 0 for unrelated scores)
    scores = fde.batch(queries, "query") @ fde.batch(documents, "data").T
    exact = np.array([[chamfer(query, document) for document in documents] for query in queries])
    assert np.mean([spearman(scores[x], exact[x]) for x in range(20)]) > 0.75
