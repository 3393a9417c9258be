"""
Resident module tests
"""

import numpy as np
import pytest
import torch

from txtai import Embeddings

from txtai_muvera import Muvera, Reranker, Similarity
from txtai_muvera.core.resident import Resident
from txtai_muvera.core.store import TokenStore
from txtai_muvera.errors import ConfigurationError

from helpers import TEXTS, late, tokens


@pytest.mark.parametrize("dtype", ["float32", "float16", "int8"])
def test_gather_like_store(dtype):
    """
    A device copy gathers what the store gathers: repeats, appends after the first gather and deletes included
    """

    generator = np.random.default_rng(0)
    store = TokenStore(8, dtype)
    store.extend(tokens(generator, [3, 0, 5, 2], 8))

    resident = Resident("cpu")
    first = resident.gather(store, [2, 0, 2])
    store.extend(tokens(generator, [4, 1], 8))
    store.delete([0])

    ids = [5, 0, 4, 2, 1]
    found, expected = resident.gather(store, ids), store.gather(ids)
    assert torch.equal(found[0], torch.from_numpy(np.ascontiguousarray(expected[0])))
    assert found[1].tolist() == expected[1].tolist()
    assert (found[2] is None) == (expected[2] is None)
    if found[2] is not None:
        assert torch.equal(found[2], torch.from_numpy(np.ascontiguousarray(expected[2])))

    # First gather, before the append
    assert first[1].tolist() == [0, 5, 8, 13]


def test_index_device(pylate_model):
    """
    An index that keeps its token vectors on a device (here the CPU) returns the same results, and through the Reranker
    """

    baseline, resident = Embeddings(late(pylate_model)), Embeddings(late(pylate_model, device="cpu"))
    for embeddings in (baseline, resident):
        embeddings.index(TEXTS)

    queries = ["virus cases", "frog species"]
    assert resident.batchsearch(queries, 3) == baseline.batchsearch(queries, 3)
    assert resident.ann.resident is not None and resident.ann.resident.tokens.device.type == "cpu"

    similarity = Similarity(str(pylate_model), gpu=False)
    assert Reranker(resident, similarity)(queries, limit=2, factor=3) == Reranker(baseline, similarity)(queries, limit=2, factor=3)

    with pytest.raises(ConfigurationError, match="muvera device"):
        Muvera({"muvera": {"device": "nowhere"}})
