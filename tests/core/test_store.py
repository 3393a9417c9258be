"""
Store module tests
"""

import gc
import hashlib
import json
import os
import shutil
import tempfile

import numpy as np
import pytest

from hypothesis import settings, strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from txtai_muvera.core.files import canonical, crc, writejson
from txtai_muvera.core.integrity import describefile
from txtai_muvera.core.quantize import dequantize, quantize
from txtai_muvera.core.store import TokenStore
from txtai_muvera.core import storefolder
from txtai_muvera.core.storefolder import StoreError

# Element sizes per stored dtype
SIZES = {"float32": 4, "float16": 2, "int8": 1}


def matrices(seed, lengths, dimension=8):
    """
    Builds random token matrices.

    Args:
        seed: random seed
        lengths: tokens per matrix
        dimension: token width

    Returns:
        list of float32 matrices
    """

    rng = np.random.default_rng(seed)
    return [rng.standard_normal((length, dimension)).astype(np.float32) for length in lengths]


def close(dtype, expected, actual):
    """
    Asserts stored values match inputs within the dtype's rounding: exact for float32, fp16 rounding for float16 and
    scale / 2 per element for int8.

    Args:
        dtype: store dtype
        expected: float32 input matrix
        actual: float32 matrix read back
    """

    assert actual.dtype == np.float32 and actual.shape == expected.shape
    if dtype == "float32":
        assert np.array_equal(actual, expected)
    elif dtype == "float16":
        assert np.array_equal(actual, expected.astype(np.float16).astype(np.float32))
        assert np.allclose(actual, expected, rtol=2**-11, atol=2**-24)
    else:
        bound = np.abs(expected).max(axis=1, keepdims=True) / 127 / 2 if len(expected) else 0
        assert (np.abs(actual - expected) <= bound * (1 + 1e-5) + 1e-12).all()


def rss():
    """
    Reads this process's resident memory.

    Returns:
        resident bytes
    """

    with open("/proc/self/status", encoding="utf-8") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024

    return 0


class Payload:
    """
    Pickled object that leaves a marker file if it's ever unpickled.
    """

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


@pytest.mark.parametrize("dtype", ["float32", "float16", "int8"])
@pytest.mark.parametrize("mmap", [True, False])
def test_roundtrip(tmp_path, dtype, mmap):
    """
    Test values survive append, save and load for every dtype, memory mapped or not
    """

    data = matrices(1, [5, 0, 3, 1, 12])
    store = TokenStore(8, dtype)
    assert store.extend(data) == range(0, 5)

    # In memory
    for uid, matrix in enumerate(data):
        close(dtype, matrix, store.get(uid))

    # Saved and loaded
    store.save(tmp_path / "store")
    loaded = TokenStore.load(tmp_path / "store", mmap=mmap)
    assert loaded.mapped == mmap and (loaded.dimension, loaded.dtype, len(loaded), loaded.tokens) == (8, dtype, 5, 21)
    for uid, matrix in enumerate(data):
        close(dtype, matrix, loaded.get(uid))

    # Stored dtype and scales from gather
    flat, offsets, scales = loaded.gather([4, 0])
    assert flat.dtype == np.dtype(dtype) and offsets.tolist() == [0, 12, 17]
    assert (scales is not None) == (dtype == "int8")


def test_append_flat():
    """
    Test append with flat + offsets, including torch-like inputs converted by np.asarray
    """

    store = TokenStore(3, "float32")
    assert store.append(np.arange(12, dtype=np.float64).reshape(4, 3), np.array([0, 1, 1, 4])) == range(0, 3)
    assert store.append(np.zeros((0, 3)), [0]) == range(3, 3)
    assert store.append(np.ones((2, 3), dtype=np.int32), [0, 2]) == range(3, 4)
    assert store.offsets.tolist() == [0, 1, 1, 4, 6]
    assert store.get(2).tolist() == [[3, 4, 5], [6, 7, 8], [9, 10, 11]]
    assert store.get(3).tolist() == [[1, 1, 1], [1, 1, 1]]

    # Views are read only
    with pytest.raises(ValueError):
        store.offsets[0] = 1


@pytest.mark.parametrize("dtype", ["float32", "float16", "int8"])
def test_append_after_load(tmp_path, dtype):
    """
    Test a memory-mapped store accepts appends, gathers across mapped and appended tokens, and saves over itself
    """

    first, second = matrices(2, [4, 2, 6]), matrices(3, [3, 0, 5])
    store = TokenStore(8, dtype)
    store.extend(first)
    store.save(tmp_path / "store")

    loaded = TokenStore.load(tmp_path / "store")
    assert loaded.extend(second) == range(3, 6)

    # Mixed gather: mapped base and in-memory tail in one call
    flat, offsets, scales = loaded.gather([5, 0, 3, 2])
    assert offsets.tolist() == [0, 5, 9, 12, 18]
    values = dequantize(flat, scales) if scales is not None else flat.astype(np.float32)
    for (start, end), matrix in zip(zip(offsets[:-1], offsets[1:]), [second[2], first[0], second[0], first[2]]):
        close(dtype, matrix, values[start:end])

    # Save over the folder it's mapped from, then it maps the new folder
    loaded.delete([1])
    loaded.save(tmp_path / "store")
    assert loaded.mapped and loaded.path == str(tmp_path / "store") and not os.path.exists(tmp_path / "store.old")
    assert sorted(os.listdir(tmp_path)) == ["store"]
    loaded.extend(matrices(4, [2]))

    again = TokenStore.load(tmp_path / "store")
    assert (len(again), again.count(), again.deleted.tolist()) == (6, 5, [False, True, False, False, False, False])
    for uid, matrix in enumerate(first + second):
        if uid != 1:
            close(dtype, matrix, again.get(uid))
            close(dtype, matrix, loaded.get(uid))


def test_delete_compact(tmp_path):
    """
    Test delete tombstones, ignores unknown ids and compaction keeps ids stable
    """

    data = matrices(5, [3, 4, 0, 2, 5])
    store = TokenStore(8, "float32")
    store.extend(data)

    assert store.delete([3, 1, 1, 99, -1, "x", 2.5, True]) == [3, 1]
    assert store.delete(3) == [] and store.delete([]) == []
    assert (store.count(), len(store), store.tokens) == (3, 5, 14)

    # Deleted rows gather empty before and after compaction
    assert store.compact() == 6
    assert store.compact() == 0
    assert (store.count(), len(store), store.tokens) == (3, 5, 8)
    assert store.offsets.tolist() == [0, 3, 3, 3, 3, 8]
    for uid in [0, 2, 4]:
        assert np.array_equal(store.get(uid), data[uid])
    for uid in [1, 3]:
        assert store.get(uid).shape == (0, 8)

    # Compaction of a memory-mapped store, then appends and a save
    store.save(tmp_path / "store")
    loaded = TokenStore.load(tmp_path / "store")
    loaded.delete([0])
    assert loaded.compact() == 3 and not loaded.mapped
    loaded.extend(matrices(6, [2]))
    loaded.save(tmp_path / "store")
    assert loaded.mapped

    again = TokenStore.load(tmp_path / "store")
    assert again.offsets.tolist() == [0, 0, 0, 0, 0, 5, 7]
    assert np.array_equal(again.get(4), data[4]) and np.array_equal(again.get(5), matrices(6, [2])[0])


def test_gather():
    """
    Test gather returns rows in request order, with repeats, and rejects bad ids
    """

    data = matrices(7, [2, 1, 3])
    store = TokenStore(8, "float32")
    store.extend(data)

    flat, offsets, scales = store.gather([2, 0, 2, 1])
    assert offsets.tolist() == [0, 3, 5, 8, 9] and scales is None
    assert np.array_equal(flat, np.concatenate([data[2], data[0], data[2], data[1]]))

    flat, offsets, _ = store.gather(np.array([], dtype=np.int64))
    assert flat.shape == (0, 8) and offsets.tolist() == [0]

    for ids in [[3], [-1], [0.5], 0]:
        with pytest.raises(IndexError):
            store.gather(ids)


def test_empty(tmp_path):
    """
    Test empty stores and stores holding only empty matrices
    """

    for dtype in ["float16", "int8"]:
        store = TokenStore(8, dtype)
        assert store.extend([]) == range(0, 0)
        store.save(tmp_path / dtype)
        loaded = TokenStore.load(tmp_path / dtype)
        assert (len(loaded), loaded.tokens, loaded.count(), loaded.nbytes) == (0, 0, 0, 0)

        # Only empty matrices
        assert loaded.extend([np.zeros((0, 8)), np.zeros((0, 8))]) == range(0, 2)
        loaded.save(tmp_path / dtype)
        again = TokenStore.load(tmp_path / dtype)
        flat, offsets, scales = again.gather([1, 0])
        assert flat.shape == (0, 8) and offsets.tolist() == [0, 0, 0]
        assert scales is None if dtype == "float16" else scales.shape == (0,)


def test_validation():
    """
    Test bad inputs raise ValueError naming the problem
    """

    store = TokenStore(8, "float16")

    with pytest.raises(ValueError, match="width 7 does not match store dimension 8"):
        store.extend([np.ones((2, 7))])
    with pytest.raises(ValueError, match="width 7 does not match store dimension 8"):
        store.append(np.ones((2, 7)), [0, 2])
    with pytest.raises(ValueError, match="2 dimensional"):
        store.append(np.ones(8), [0, 1])
    with pytest.raises(ValueError, match="2 dimensional"):
        store.extend([np.ones(8)])
    with pytest.raises(ValueError, match="offsets"):
        store.append(np.ones((2, 8)), [0, 3])
    with pytest.raises(ValueError, match="offsets"):
        store.append(np.ones((2, 8)), [0, 2, 1, 2])

    # Non finite values and overflow of the stored type, nothing is appended
    bad = np.ones((3, 8))
    bad[2, 1] = np.nan
    with pytest.raises(ValueError, match=r"NaN or infinite values \(matrix 1"):
        store.append(bad, [0, 1, 3])
    with pytest.raises(ValueError, match="NaN or infinite"):
        TokenStore(8, "int8").extend([np.full((1, 8), np.inf)])
    with pytest.raises(ValueError, match="float16 range"):
        store.extend([np.full((1, 8), 1e6)])
    with pytest.raises(ValueError, match="float32 range"):
        TokenStore(8, "int8").extend([np.full((1, 8), 1e300)])
    assert (len(store), store.tokens) == (0, 0)

    for dimension, dtype in [(0, "float16"), (8, "bfloat16"), (True, "int8")]:
        with pytest.raises(ValueError):
            TokenStore(dimension, dtype)


@pytest.mark.parametrize("dtype", ["float32", "float16", "int8"])
def test_bytes(tmp_path, dtype):
    """
    Test bytes per token = dtype size x dimension + 2 (int8 float16 scale), in memory and on disk
    """

    store = TokenStore(128, dtype)
    store.extend(matrices(8, [100, 0, 300], 128))
    store.save(tmp_path / "store")

    pertoken = SIZES[dtype] * 128 + (2 if dtype == "int8" else 0)
    assert store.nbytes == 400 * pertoken

    # On disk: token payload files only, less their .npy headers (at most 128 bytes each)
    names = ["tokens.npy"] + (["scales.npy"] if dtype == "int8" else [])
    size = sum(os.path.getsize(tmp_path / "store" / name) for name in names)
    assert 400 * pertoken <= size <= 400 * pertoken + 128 * len(names)


def test_amortised():
    """
    Test appends grow storage by doubling instead of copying everything every time
    """

    store = TokenStore(8, "float16")
    buffers, row = set(), np.ones((1, 8))
    for _ in range(5000):
        store.append(row, [0, 1])
        buffers.add(id(store._tail))

    assert store.tokens == 5000 and len(buffers) <= 10


def test_recovery(tmp_path, monkeypatch):
    """
    Test crashes at each point of a save leave a loadable store
    """

    path = tmp_path / "store"
    first = TokenStore(8, "float32")
    first.extend(matrices(9, [2, 3]))
    first.save(path)

    def check(expected):
        store = TokenStore.load(path)
        assert len(store) == expected and np.array_equal(store.get(0), matrices(9, [2])[0])

    # Crash while writing: partial staging folder next to the intact store
    os.makedirs(tmp_path / ".store.crashed.new")
    with open(tmp_path / ".store.crashed.new" / "tokens.npy", "wb") as output:
        output.write(b"partial")
    check(2)

    # Crash between renames: only path.old and the finished temp exist
    os.rename(path, f"{path}.old")
    check(2)

    # The next save recovers and cleans up
    second = TokenStore.load(path)
    second.extend(matrices(10, [4]))
    second.save(path)
    assert sorted(os.listdir(tmp_path)) == ["store"]
    check(3)

    # Real save failing before it's swapped in: previous store untouched, temp removed
    def fail(*args):
        raise OSError("disk full")

    monkeypatch.setattr(storefolder, "streamnpy", fail)
    second.extend(matrices(11, [1]))
    with pytest.raises(OSError):
        second.save(path)
    assert sorted(os.listdir(tmp_path)) == ["store"]
    check(3)
    monkeypatch.undo()

    # Real save crashing after the first rename: the previous store loads from path.old
    rename = os.rename

    def crash(source, target):
        if str(source).endswith(".new"):
            raise OSError("power cut")
        rename(source, target)

    monkeypatch.setattr(os, "rename", crash)
    with pytest.raises(OSError):
        second.save(path)
    monkeypatch.undo()
    assert not os.path.exists(path) and os.path.exists(f"{path}.old")
    check(3)

    # Retry succeeds
    second.save(path)
    assert sorted(os.listdir(tmp_path)) == ["store"]
    check(4)


def test_corrupt(tmp_path):
    """
    Test flipped bytes, truncated files and missing files raise StoreError naming the file
    """

    path = tmp_path / "store"
    store = TokenStore(8, "int8")
    store.extend(matrices(12, [3, 4]))
    store.delete([0])
    store.save(path)

    def damage(name, change):
        shutil.copytree(path, tmp_path / "copy")
        filename = tmp_path / "copy" / name
        data = bytearray(filename.read_bytes())
        filename.write_bytes(bytes(change(data)))
        return tmp_path / "copy"

    def flip(data):
        data[-3] ^= 0xFF
        return data

    def edit(**changes):
        # Forged metadata: changed and sealed again, so only the checks after the seal can catch it
        def change(data):
            config = json.loads(bytes(data))
            config.pop("checksum")
            config.update(changes)
            return json.dumps({**config, "checksum": crc(canonical(config))}).encode()

        return change

    cases = [
        ("offsets.npy", flip, "offsets.npy: checksum mismatch"),
        ("deleted.npy", flip, "deleted.npy: checksum mismatch"),
        ("tokens.npy", lambda data: data[:-10], "tokens.npy: truncated"),
        ("scales.npy", lambda data: data[:-1], "scales.npy: truncated"),
        ("tokens.npy", lambda data: data + b"\0", "tokens.npy: larger than recorded"),
        ("store.json", lambda data: data[:20], "store.json is corrupt"),
        ("store.json", lambda data: data.replace(b'"tokens": 7', b'"tokens": 8'), "store.json: checksum mismatch"),
        ("store.json", edit(version=3), "unsupported token store version 3"),
        ("store.json", edit(tokens=8), "offsets.npy: offsets must rise monotonically from 0 to 8"),
        ("store.json", edit(dimension=9), r"tokens.npy: holds int8 \(7, 8\), expected int8 \(7, 9\)"),
    ]
    for name, change, message in cases:
        with pytest.raises(StoreError, match=message):
            TokenStore.load(damage(name, change))
        shutil.rmtree(tmp_path / "copy")

    # Missing file and missing folder
    os.remove(path / "scales.npy")
    with pytest.raises(StoreError, match="scales.npy: missing"):
        TokenStore.load(path)
    with pytest.raises(StoreError, match="no token store folder"):
        TokenStore.load(tmp_path / "nothing")


def test_foreign(tmp_path):
    """
    Test foreign folders and pickled arrays are rejected without unpickling, and save never overwrites foreign folders
    """

    # Random files
    foreign = tmp_path / "foreign"
    os.makedirs(foreign)
    (foreign / "notes.txt").write_text("hello")
    np.save(foreign / "tokens.npy", np.ones((2, 2)))
    with pytest.raises(StoreError, match="not a txtai-muvera token store"):
        TokenStore.load(foreign)

    writejson(str(foreign / "store.json"), {"format": "something-else", "version": 1})
    with pytest.raises(StoreError, match="not a txtai-muvera token store"):
        TokenStore.load(foreign)

    with pytest.raises(StoreError, match="refusing to overwrite"):
        TokenStore(8).save(foreign)
    assert (foreign / "notes.txt").exists()

    # Pickled object arrays in place of tokens and offsets, metadata forged to match their size and checksum
    path = tmp_path / "store"
    store = TokenStore(8, "float32")
    store.extend(matrices(13, [1]))
    store.save(path)

    marker = tmp_path / "unpickled"
    for name in ["tokens.npy", "offsets.npy"]:
        np.save(path / name, np.array([Payload(str(marker))], dtype=object), allow_pickle=True)
        config = json.loads((path / "store.json").read_text())
        config.pop("checksum")
        config["files"][name].update(describefile(None, (path / name).read_bytes()))
        writejson(str(path / "store.json"), config)

        with pytest.raises(StoreError, match=f"{name}: holds object"):
            TokenStore.load(path)
        assert not marker.exists()


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="needs /proc/self/status")
def test_mmap_large(tmp_path):
    """
    Test a ~200 MB store opens memory mapped without being read
    """

    path = tmp_path / "large"
    store = TokenStore(128, "float16")
    store.append(np.ones((800000, 128), dtype=np.float16), np.arange(0, 800001, 1000))
    assert store.nbytes == 204800000
    store.save(path)
    del store
    gc.collect()

    before = rss()
    loaded = TokenStore.load(path)
    flat, offsets, _ = loaded.gather([1])
    del flat
    gc.collect()
    after = rss()

    assert loaded.mapped and isinstance(loaded._base, np.memmap)
    assert offsets.tolist() == [0, 1000]
    assert after - before < 20 * 1024 * 1024


def test_int8_accuracy():
    """
    Test int8 dequantised dot products stay within 1% on random unit vectors of dim 128
    """

    rng = np.random.default_rng(14)

    def unit(x):
        return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)

    queries, documents = unit(rng.standard_normal((32, 128))), unit(rng.standard_normal((4000, 128)))
    exact = queries @ documents.T
    approx = queries @ dequantize(*quantize(documents)).T

    # Every dot product within 1% of |q||d| (the largest possible score)
    assert np.abs(approx - exact).max() <= 0.01

    # Similar pairs (cosine 0.3 to 0.9, as matched query/document tokens are) within 1% relative
    cosine = rng.uniform(0.3, 0.9, (32, 50, 1))
    noise = rng.standard_normal((32, 50, 128))
    noise = unit(noise - np.einsum("qnd,qd->qn", noise, queries)[..., None] * queries[:, None])
    similar = unit(cosine * queries[:, None] + np.sqrt(1 - cosine**2) * noise)
    exact = np.einsum("qd,qnd->qn", queries, similar)
    approx = np.einsum("qd,qnd->qn", queries, dequantize(*quantize(similar.reshape(-1, 128))).reshape(similar.shape))
    assert exact.min() > 0.29 and (np.abs(approx - exact) / exact).max() <= 0.01

    # MaxSim scores (mean over query tokens of max over document tokens) within 1% relative
    documents = documents.reshape(80, 50, 128)
    dequantised = dequantize(*quantize(documents.reshape(-1, 128))).reshape(documents.shape)
    exact = np.einsum("qd,ntd->nqt", queries, documents).max(axis=-1).mean(axis=-1)
    approx = np.einsum("qd,ntd->nqt", queries, dequantised).max(axis=-1).mean(axis=-1)
    assert (np.abs(approx - exact) / np.abs(exact)).max() <= 0.01


class StoreMachine(RuleBasedStateMachine):
    """
    Checks append, delete, compact, gather and save/load against a plain list model (None marks deleted rows).
    """

    def __init__(self):
        super().__init__()
        self.folder = tempfile.mkdtemp()
        self.model, self.store = [], None

    @initialize(dtype=st.sampled_from(["float32", "float16"]))
    def create(self, dtype):
        self.dtype = dtype
        self.store = TokenStore(3, dtype)

    @rule(lengths=st.lists(st.integers(0, 4), max_size=4), seed=st.integers(0, 1000), flat=st.booleans())
    def append(self, lengths, seed, flat):
        data = matrices(seed, lengths, 3)
        if flat and data:
            ids = self.store.append(np.concatenate(data), np.concatenate(([0], np.cumsum(lengths))))
        else:
            ids = self.store.extend(data)

        assert ids == range(len(self.model), len(self.model) + len(data))
        self.model.extend(matrix.astype(self.dtype).astype(np.float32) for matrix in data)

    @rule(ids=st.lists(st.integers(-2, 30), max_size=5))
    def delete(self, ids):
        expected = list(dict.fromkeys(x for x in ids if 0 <= x < len(self.model) and self.model[x] is not None))
        assert self.store.delete(ids) == expected
        for x in expected:
            self.model[x] = None

    @rule()
    def compact(self):
        self.store.compact()
        assert self.store.tokens == sum(len(matrix) for matrix in self.model if matrix is not None)

    @precondition(lambda self: self.model)
    @rule(data=st.data())
    def gather(self, data):
        ids = data.draw(st.lists(st.integers(0, len(self.model) - 1), max_size=6))
        flat, offsets, _ = self.store.gather(ids)
        expected = [self.model[x] if self.model[x] is not None else np.zeros((0, 3), dtype=np.float32) for x in ids]
        assert np.diff(offsets).tolist() == [len(matrix) for matrix in expected]
        assert np.array_equal(flat.astype(np.float32), np.concatenate(expected) if expected else np.zeros((0, 3)))

    @rule(mmap=st.booleans())
    def reload(self, mmap):
        self.store.save(self.folder)
        self.store = TokenStore.load(self.folder, mmap=mmap)

    @invariant()
    def counts(self):
        if self.store is not None:
            assert len(self.store) == len(self.model)
            assert self.store.count() == sum(matrix is not None for matrix in self.model)

    def teardown(self):
        shutil.rmtree(self.folder, ignore_errors=True)
        shutil.rmtree(f"{self.folder}.old", ignore_errors=True)


TestStoreMachine = StoreMachine.TestCase
TestStoreMachine.settings = settings(max_examples=40, stateful_step_count=20, deadline=None)


def test_append_stored_int8_rows():
    """
    Test int8 rows with their scales append as stored to an int8 store, dequantized to a float store, checked first
    """

    flat = np.array([[100, -3], [7, 0], [-50, 50]], dtype=np.int8)
    scales = np.array([0.5, 0.25, 0.125], dtype=np.float32)

    store = TokenStore(2, "int8")
    assert store.append(flat, [0, 1, 3], scales) == range(0, 2)
    tokens, _, stored = store.gather([0, 1])
    assert tokens.tobytes() == flat.tobytes() and stored.dtype == np.float16 and stored.tolist() == scales.tolist()

    floats = TokenStore(2, "float32")
    floats.append(flat, [0, 3], scales)
    assert floats.get(0).tolist() == dequantize(flat, scales).tolist()

    with pytest.raises(ValueError, match="must be int8"):
        store.append(flat.astype(np.float32), [0, 3], scales)
    with pytest.raises(ValueError, match="finite, non-negative"):
        store.append(flat, [0, 3], np.array([0.5, np.nan, 0.1], dtype=np.float32))
    with pytest.raises(ValueError, match="finite, non-negative"):
        store.append(flat, [0, 3], scales[:2])
    assert len(store) == 2


def test_float16_scales():
    """
    Test int8 stores keep float16 scales rounded up: every value within scale / 2, none clipped; float32 scales that
    float16 cannot hold are quantized again, within the same bound
    """

    rng = np.random.default_rng(21)
    values = (rng.standard_normal((500, 16)) * rng.uniform(1e-3, 10, (500, 1))).astype(np.float32)
    store = TokenStore(16, "int8")
    store.extend([values])
    flat, _, scales = store.gather([0])
    assert scales.dtype == np.float16 and (scales.astype(np.float32) >= np.abs(values).max(axis=1) / 127).all()
    assert (np.abs(dequantize(flat, scales) - values) <= scales.astype(np.float32)[:, None] / 2 * (1 + 1e-6)).all()
    assert np.abs(flat).max() == 127

    # float32 scales: quantized again
    quantized, wide = quantize(values)
    assert wide.dtype == np.float32 and not (wide.astype(np.float16).astype(np.float32) == wide).all()
    store.append(quantized, [0, 500], wide)
    again, _, rescaled = store.gather([1])
    assert rescaled.dtype == np.float16 and (np.abs(dequantize(again, rescaled) - values) <= np.float32(1.01) * wide[:, None]).all()

    # Beyond float16 scales: a clear error, nothing appended
    with pytest.raises(ValueError, match="too large for int8 with float16 scales"):
        store.extend([np.full((1, 16), 1e7)])
    assert len(store) == 2


def test_float32_scales_store(tmp_path):
    """
    Test an int8 store written with float32 scales (before float16 scales) loads, appends and saves in float32 scales
    """

    first, second = matrices(5, [4, 3]), matrices(6, [2, 5])
    store = TokenStore(8, "int8", scales="float32")
    store.extend(first)
    store.save(tmp_path / "store")

    # Sealed again without the scales key, as earlier releases wrote it
    name = tmp_path / "store" / "store.json"
    config = json.loads(name.read_text())
    config.pop("checksum")
    assert config.pop("scales") == "float32"
    name.write_text(json.dumps({**config, "checksum": crc(canonical(config))}))

    loaded = TokenStore.load(tmp_path / "store")
    assert loaded.scaletype == np.float32 and loaded.nbytes == 7 * (8 + 4)
    loaded.extend(second)
    for uid, matrix in enumerate(first + second):
        close("int8", matrix, loaded.get(uid))
    loaded.save(tmp_path / "again")
    again = TokenStore.load(tmp_path / "again")
    assert again.gather([0, 3])[2].dtype == np.float32
    for uid, matrix in enumerate(first + second):
        close("int8", matrix, again.get(uid))

    # An unknown scale type is refused
    config["scales"] = "float64"
    name.write_text(json.dumps({**config, "checksum": crc(canonical(config))}))
    with pytest.raises(StoreError, match="invalid scales 'float64'"):
        TokenStore.load(tmp_path / "store")
