"""
Index file tests: corrupt, truncated, foreign and crafted index files are rejected with IndexFileError or StoreError
(both ValueError), nothing is ever unpickled, and a fuzz test drives the loaders with mutated files.
"""

import json
import os
import pickle
import shutil

import numpy as np
import pytest

from hypothesis import HealthCheck, given, settings, strategies as st
from txtai import Embeddings

from txtai_muvera.ann import IndexFileError, Muvera

from txtai_muvera.core.store import TokenStore
from txtai_muvera.core.storefolder import StoreError

from helpers import TEXTS, late, reseal

# Errors a loader may raise for a bad folder
ERRORS = (IndexFileError, StoreError)


@pytest.fixture(scope="module")
def saved(pylate_model, tmp_path_factory):
    """
    Saved indexes: exact FDE search and delegated faiss and hnsw FDE search.

    Returns:
        {name: (index folder, embeddings config, query LateArray)}
    """

    folders = {}
    for name, search in [("exact", "exact"), ("faiss", "faiss"), ("hnsw", "hnsw")]:
        path = str(tmp_path_factory.mktemp(name) / "index")
        embeddings = Embeddings(late(pylate_model, search=search, repetitions=4))
        embeddings.index([(x, text, None) for x, text in enumerate(TEXTS)])
        embeddings.delete([3])
        embeddings.save(path)
        folders[name] = (path, dict(embeddings.config), embeddings.batchtransform([(None, "virus cases", None)]))

    return folders


def copy(source, target):
    """
    Copies an index folder.
    """

    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(source, target)
    return target


def loadann(path, config):
    """
    Loads the Muvera ANN folder of an index, the way Embeddings.load does.
    """

    ann = Muvera({**config, "muvera": dict(config["muvera"])})
    ann.load(os.path.join(path, "embeddings"))
    return ann


def nopickle(*args, **kwargs):
    raise AssertionError("a loader unpickled data")


@pytest.fixture
def guarded(monkeypatch):
    """
    Fails the test if anything unpickles while it runs.
    """

    monkeypatch.setattr(pickle, "load", nopickle)
    monkeypatch.setattr(pickle, "loads", nopickle)


def files(path):
    """
    Lists the files of the ANN folder of an index, relative to it.
    """

    root = os.path.join(path, "embeddings")
    return sorted(os.path.relpath(os.path.join(folder, name), root) for folder, _, names in os.walk(root) for name in names)


@pytest.mark.parametrize("name", ["exact", "faiss", "hnsw"])
def test_truncated_files_rejected(saved, tmp_path, guarded, name):
    # Every file of the folder, cut short, is named in the error
    source, config, _ = saved[name]
    for relative in files(source):
        path = copy(source, str(tmp_path / "copy"))
        target = os.path.join(path, "embeddings", relative)
        with open(target, "r+b") as handle:
            handle.truncate(os.path.getsize(target) // 2)

        with pytest.raises(ERRORS) as error:
            loadann(path, config)
        assert os.path.basename(relative) in str(error.value) or "muvera.json" in str(error.value), str(error.value)


def test_missing_and_foreign_folders(saved, tmp_path, guarded):
    source, config, _ = saved["exact"]

    # Not an index at all
    with pytest.raises(IndexFileError, match="muvera.json is missing"):
        loadann(str(tmp_path / "nothing"), config)

    # Foreign, old or corrupt metadata
    for metadata, match in [
        (b"not json", "is corrupt"),
        (b"[" * 100000, "is corrupt"),
        (json.dumps({"format": "other"}).encode(), "not a txtai-muvera index file"),
        (json.dumps({"format": "txtai-muvera-index", "version": 1}).encode(), "unsupported index version 1"),
        (b"\xff\xfe\x00bytes", "is corrupt"),
        (b" " * (2 << 20), "too large"),
    ]:
        path = copy(source, str(tmp_path / "copy"))
        with open(os.path.join(path, "embeddings", "muvera.json"), "wb") as handle:
            handle.write(metadata)
        with pytest.raises(IndexFileError, match=match):
            loadann(path, config)

    # Missing token store
    path = copy(source, str(tmp_path / "copy"))
    shutil.rmtree(os.path.join(path, "embeddings", "tokens"))
    with pytest.raises(IndexFileError, match="store.json: missing"):
        loadann(path, config)


def test_crafted_metadata_rejected(saved, tmp_path, guarded):
    source, config, _ = saved["exact"]

    def craft(path, change):
        # Changed and sealed again: only the checks after the seal can catch it
        name = os.path.join(path, "embeddings", "muvera.json")
        reseal(name, change)

    cases = [
        (lambda m: m.update(documents=-1), "invalid documents"),
        (lambda m: m.update(documents=99), "muvera.json records 99"),
        (lambda m: m.update(dimensions="wide"), "invalid dimensions"),
        (lambda m: m.update(fingerprint=["x"]), "invalid fingerprint"),
        (lambda m: m.update(encoding={"repetitions": {"nested": 1}}), "invalid encoding"),
        (lambda m: m.update(files={"../../etc/passwd": {"bytes": 1}}), "invalid files"),
        (lambda m: m.update(files={}), "not described in muvera.json"),
        (lambda m: m.update(delegate={"backend": "os.system", "dimensions": 8}), "is not the configured None"),
    ]
    for change, match in cases:
        path = copy(source, str(tmp_path / "copy"))
        craft(path, change)
        with pytest.raises(IndexFileError, match=match):
            loadann(path, config)


def test_object_arrays_never_unpickled(saved, tmp_path, guarded):
    # A .npy of Python objects where float32 FDE rows or int64 offsets belong is refused from its header
    source, config, _ = saved["exact"]
    evil = np.empty(2, dtype=object)
    evil[:] = [{"a": 1}, [2]]

    for relative in ["fde.npy", os.path.join("tokens", "offsets.npy"), os.path.join("tokens", "tokens.npy")]:
        path = copy(source, str(tmp_path / "copy"))
        target = os.path.join(path, "embeddings", relative)
        size = os.path.getsize(target)
        np.save(target, evil, allow_pickle=True)

        # Pad to the recorded size so only the header can reveal it
        with open(target, "ab") as handle:
            handle.write(b"\0" * max(0, size - os.path.getsize(target)))

        with pytest.raises(ERRORS):
            loadann(path, config)


def test_delegate_files_checksummed(saved, tmp_path, guarded):
    # faiss and hnswlib parse their files in native code: a flipped byte is caught by the checksum before they read it
    for name in ["faiss", "hnsw"]:
        source, config, _ = saved[name]
        path = copy(source, str(tmp_path / "copy"))
        target = os.path.join(path, "embeddings", "fde")
        with open(target, "r+b") as handle:
            handle.seek(os.path.getsize(target) // 2)
            byte = handle.read(1)
            handle.seek(-1, 1)
            handle.write(bytes([byte[0] ^ 0xFF]))

        with pytest.raises(IndexFileError, match="checksum mismatch"):
            loadann(path, config)

        # The backend named in the config decides what loads, never the saved file
        path = copy(source, str(tmp_path / "copy"))
        with pytest.raises(IndexFileError, match="is not the configured"):
            loadann(path, {**config, "muvera": {**config["muvera"], "search": "hnsw" if name == "faiss" else "faiss"}})


def test_embeddings_load_reports_our_error(saved, tmp_path, guarded):
    # Through txtai's Embeddings.load, our error arrives unwrapped
    source, _, _ = saved["exact"]
    path = copy(source, str(tmp_path / "copy"))
    target = os.path.join(path, "embeddings", "tokens", "deleted.npy")
    with open(target, "r+b") as handle:
        handle.seek(os.path.getsize(target) - 1)
        handle.write(b"\x01")

    with pytest.raises(StoreError, match="deleted.npy: checksum mismatch"):
        Embeddings().load(path)


# Mutations: (kind, position as a fraction of the file size, bytes)
MUTATIONS = st.tuples(
    st.sampled_from(["flip", "truncate", "random", "append", "delete"]),
    st.floats(min_value=0, max_value=1),
    st.binary(min_size=1, max_size=64),
)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.data())
def test_fuzz_loaders(saved, tmp_path, data):
    # Mutated, truncated, replaced or deleted files: the loaders raise our errors or load; a loaded index searches
    # without any other exception; nothing is unpickled
    name = data.draw(st.sampled_from(["exact", "faiss", "hnsw"]))
    source, config, query = saved[name]
    path = copy(source, str(tmp_path / "fuzz"))

    for _ in range(data.draw(st.integers(min_value=1, max_value=3))):
        relative = data.draw(st.sampled_from(files(source)))
        kind, where, payload = data.draw(MUTATIONS)
        target = os.path.join(path, "embeddings", relative)
        if not os.path.exists(target):
            continue

        size = os.path.getsize(target)
        position = min(int(where * size), max(size - 1, 0))
        with open(target, "r+b") as handle:
            if kind == "flip":
                handle.seek(position)
                handle.write(bytes(b ^ 0xFF for b in payload[: size - position]))
            elif kind == "truncate":
                handle.truncate(position)
            elif kind == "random":
                handle.truncate(0)
                handle.write(payload)
            elif kind == "append":
                handle.seek(0, 2)
                handle.write(payload)
        if kind == "delete":
            os.remove(target)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(pickle, "load", nopickle)
        patch.setattr(pickle, "loads", nopickle)
        try:
            ann = loadann(path, config)
        except ERRORS as error:
            assert str(error)
            return

        # Loaded: bytes changed inside a large array's data are caught by the first search that reads their block
        try:
            results = ann.search(query, 3)
        except ERRORS as error:
            assert "checksum mismatch" in str(error)
            return
        assert len(results) == 1 and all(0 <= uid < len(TEXTS) for uid, _ in results[0])


def test_store_fuzz_direct(tmp_path):
    # The token store loader on its own, against random bytes in place of each of its files
    store = TokenStore(8, dtype="int8")
    store.extend([np.random.default_rng(x).standard_normal((x + 1, 8)) for x in range(5)])
    store.save(str(tmp_path / "store"))

    generator = np.random.default_rng(0)
    for name in sorted(os.listdir(tmp_path / "store")):
        for size in (0, 7, 200):
            path = copy(str(tmp_path / "store"), str(tmp_path / "copy"))
            with open(os.path.join(path, name), "wb") as handle:
                handle.write(generator.bytes(size))
            with pytest.raises(StoreError):
                TokenStore.load(path)
