"""
Indexes saved by the previous release (muvera.json version 2, token store version 1, commit 8716bde) keep loading: built
by that release's code in a subprocess (extracted from git at test time, skipped without the history) and from a small
fixture it saved (tests/data/legacy.tar.gz), loaded with today's code, searched with the same ids and scores, changed,
saved in the current format and loaded again with full checks.

The fixture was made with the tiny seeded PyLate model of tests/models.py (build_pylate_model, width 16):
    cd tests && PYTHONPATH=..:. python -c "import test_legacy; test_legacy.fixture()"
"""

import io
import json
import logging
import os
import shutil
import subprocess
import sys
import tarfile

from pathlib import Path

import numpy as np
import pytest

from txtai import Embeddings

from txtai_muvera.core.encoder import LateEncoder
from txtai_muvera.core.files import IndexFileError
from txtai_muvera.core.store import TokenStore

from helpers import TEXTS, late

# Previous release and the fixture it saved
RELEASE = "8716bde"
FIXTURE = Path(__file__).resolve().parent / "data" / "legacy.tar.gz"

# Indexes the previous release builds: exact FDE search or delegated to faiss, each token dtype, 32-wide FDE rows so the
# fixture stays small
FDE = {"repetitions": 2, "hashes": 2, "projection": 4, "candidates": 5}
INDEXES = {
    "exact-float32": {**FDE, "dtype": "float32"},
    "exact-float16": {**FDE, "dtype": "float16"},
    "exact-int8": {**FDE, "dtype": "int8"},
    "faiss-float16": {**FDE, "dtype": "float16", "search": "faiss"},
    "faiss-int8": {**FDE, "dtype": "int8", "search": "faiss"},
}

# Queries whose results are compared between releases
QUERIES = ["virus cases", "bear attack", "solar electricity", "interest rates stock market"]

# Builds, changes and saves each index with the code on PYTHONPATH, records its search results
BUILD = r"""
import json, sys
import txtai_muvera
from txtai import Embeddings

spec = json.load(sys.stdin)
results = {"module": txtai_muvera.__file__}
for name, muvera in spec["indexes"].items():
    embeddings = Embeddings(spec["config"] | {"muvera": muvera})
    embeddings.index([(x, text, None) for x, text in enumerate(spec["texts"])])
    embeddings.delete([4])
    embeddings.save(f"{spec['output']}/{name}")
    results[name] = {
        "fingerprint": embeddings.config["muvera"].get("fingerprint"),
        "results": [[[r["id"], r["score"]] for r in embeddings.search(query, 5)] for query in spec["queries"]],
    }

with open(f"{spec['output']}/results.json", "w", encoding="utf-8") as output:
    json.dump(results, output, indent=1)
"""


def release(tree, model, output):
    """
    Builds the indexes with the previous release's code.

    Args:
        tree: folder holding the previous release's source tree
        model: tiny model folder
        output: output folder

    Returns:
        results.json contents
    """

    spec = {"config": late(model), "indexes": INDEXES, "texts": TEXTS, "queries": QUERIES, "output": str(output)}
    env = {**os.environ, "PYTHONPATH": str(tree), "TXTAI_MUVERA_LOAD_PLUGINS": ""}
    command = [sys.executable, "-c", BUILD]
    process = subprocess.run(command, input=json.dumps(spec), env=env, cwd=str(tree), capture_output=True, text=True, check=False)
    assert process.returncode == 0, process.stderr[-3000:]

    results = json.loads((Path(output) / "results.json").read_text(encoding="utf-8"))
    assert Path(results["module"]).resolve().is_relative_to(Path(tree).resolve()), results["module"]
    return results


def extract(tree):
    """
    Extracts the previous release's source tree from git, skips without the repository's history.

    Args:
        tree: output folder
    """

    root = Path(__file__).resolve().parents[1]
    try:
        archive = subprocess.run(["git", "-C", str(root), "archive", RELEASE], capture_output=True, check=True, timeout=120).stdout
    except (OSError, subprocess.SubprocessError):
        pytest.skip(f"git history with release {RELEASE} not available")

    tree.mkdir(parents=True)
    with tarfile.open(fileobj=io.BytesIO(archive)) as archive:
        archive.extractall(tree, filter="data")


def fixture():
    """
    Rebuilds tests/data/legacy.tar.gz with the previous release (run from the repository root, see the module docstring).
    """

    # pylint: disable=C0415
    import tempfile

    from models import build_pylate_model

    with tempfile.TemporaryDirectory() as temp:
        temp = Path(temp)
        extract(temp / "tree")
        release(temp / "tree", build_pylate_model(temp / "model"), temp / "legacy")
        FIXTURE.parent.mkdir(exist_ok=True)
        with tarfile.open(FIXTURE, "w:gz") as archive:
            archive.add(temp / "legacy", arcname="legacy")


@pytest.fixture(scope="module")
def saved(pylate_model, tmp_path_factory):
    """
    Indexes saved by the previous release's code, extracted from git and run now.
    """

    temp = tmp_path_factory.mktemp("release")
    extract(temp / "tree")
    return temp / "legacy", release(temp / "tree", pylate_model, temp / "legacy")


@pytest.fixture(scope="module")
def committed(tmp_path_factory):
    """
    Indexes saved by the previous release, from the committed fixture.
    """

    temp = tmp_path_factory.mktemp("fixture")
    with tarfile.open(FIXTURE) as archive:
        archive.extractall(temp, filter="data")

    return temp / "legacy", json.loads((temp / "legacy" / "results.json").read_text(encoding="utf-8"))


def copy(source, name, model, target):
    """
    Copies a saved index and points its config at the model folder.

    Returns:
        index path
    """

    path = target / name
    shutil.copytree(source / name, path)
    config = json.loads((path / "config.json").read_text(encoding="utf-8"))
    config["path"] = str(model)
    (path / "config.json").write_text(json.dumps(config), encoding="utf-8")
    return path


def search(embeddings):
    """
    Searches every query.
    """

    return [[[r["id"], r["score"]] for r in embeddings.search(query, 5)] for query in QUERIES]


def same(actual, expected):
    """
    Asserts the same ids in the same order with the same scores.
    """

    assert [[uid for uid, _ in rows] for rows in actual] == [[uid for uid, _ in rows] for rows in expected]
    for rows, reference in zip(actual, expected):
        assert [score for _, score in rows] == pytest.approx([score for _, score in reference], rel=1e-6, abs=1e-6)


def checkloaded(source, results, name, model, target, caplog):
    """
    Loads a previous-release index, compares its results, changes it, saves it in the current format and reloads it.
    """

    path = copy(source, name, model, target)

    # Loaded with a log line naming the earlier release, same results as the release that saved it
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="txtai_muvera"):
        embeddings = Embeddings()
        embeddings.load(str(path))
    assert any("earlier txtai-muvera release" in record.getMessage() for record in caplog.records)
    assert embeddings.count() == len(TEXTS) - 1
    same(search(embeddings), results[name]["results"])

    # Upsert, delete, save in the current format
    embeddings.upsert([("new", "Bears attack campers in Yellowstone", None), ("2", TEXTS[2] + " again", None)])
    embeddings.delete(["7"])
    assert embeddings.search("Bears attack campers in Yellowstone", 1)[0]["id"] == "new"
    expected = search(embeddings)
    embeddings.save(str(path))
    embeddings.close()

    metadata = json.loads((path / "embeddings" / "muvera.json").read_text(encoding="utf-8"))
    config = json.loads((path / "config.json").read_text(encoding="utf-8"))
    store = json.loads((path / "embeddings" / "tokens" / "store.json").read_text(encoding="utf-8"))
    assert metadata["version"] == 3 and "checksum" in metadata and store["version"] == 2 and "checksum" in store
    assert metadata["index"] and metadata["index"] == config["muvera"]["index"]

    # Loads again with full checks: no earlier-release line, every block verifies, same results
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="txtai_muvera"):
        loaded = Embeddings()
        loaded.load(str(path))
    assert not any("earlier txtai-muvera release" in record.getMessage() for record in caplog.records)
    loaded.ann.verify()
    assert loaded.count() == len(TEXTS) - 1
    same(search(loaded), expected)
    loaded.close()


@pytest.mark.parametrize("name", list(INDEXES))
def test_release_built_now(saved, pylate_model, tmp_path, caplog, name):
    source, results = saved
    checkloaded(source, results, name, pylate_model, tmp_path, caplog)


@pytest.mark.parametrize("name", list(INDEXES))
def test_release_fixture(committed, pylate_model, tmp_path, caplog, name):
    source, results = committed

    # The fixture's model is the seeded tiny model rebuilt here
    fingerprint = LateEncoder(str(pylate_model), gpu=False).fingerprint
    assert results[name]["fingerprint"] == fingerprint, "tests/models.py changed: rebuild tests/data/legacy.tar.gz (see module docstring)"
    checkloaded(source, results, name, pylate_model, tmp_path, caplog)


def edit(path, name, change):
    """
    Edits a JSON file of a saved index.
    """

    filename = path / name
    data = json.loads(filename.read_text(encoding="utf-8"))
    change(data)
    filename.write_text(json.dumps(data), encoding="utf-8")


def resize(path, name, change):
    """
    Truncates (negative change) or grows (positive change, zero bytes) a file.
    """

    data = (path / name).read_bytes()
    (path / name).write_bytes(data[:change] if change < 0 else data + bytes(change))


def flip(path, name, offset=-1):
    """
    Flips the bits of one byte of a file.
    """

    data = bytearray((path / name).read_bytes())
    data[offset] ^= 0xFF
    (path / name).write_bytes(bytes(data))


# Damage to a previous-release folder and the error naming it: every check that format allows still applies
DAMAGE = [
    ("exact-int8", lambda p: flip(p, "embeddings/tokens/deleted.npy"), "deleted.npy: checksum mismatch"),
    ("exact-int8", lambda p: flip(p, "embeddings/tokens/offsets.npy"), "offsets.npy: checksum mismatch"),
    ("exact-int8", lambda p: resize(p, "embeddings/tokens/scales.npy", -4), "scales.npy: truncated"),
    ("exact-float16", lambda p: resize(p, "embeddings/fde.npy", 1), "fde.npy: larger than recorded"),
    ("exact-float16", lambda p: flip(p, "embeddings/fde.npy", 20), "not a valid .npy file|holds"),
    ("exact-float32", lambda p: edit(p, "embeddings/muvera.json", lambda d: d.update(checksum="crc32:0")), "earlier format version with a checksum"),
    ("exact-float32", lambda p: edit(p, "embeddings/muvera.json", lambda d: d.update(documents=3)), "holds 12 documents, muvera.json records 3"),
    ("exact-float32", lambda p: edit(p, "embeddings/tokens/store.json", lambda d: d["checksums"].pop("deleted.npy")), "deleted.npy: checksum"),
    ("exact-float32", lambda p: edit(p, "embeddings/tokens/store.json", lambda d: d.pop("checksums")), "checksums missing"),
    ("exact-float32", lambda p: edit(p, "embeddings/muvera.json", lambda d: d["files"]["fde.npy"].pop("bytes")), "not described"),
    ("exact-float32", lambda p: edit(p, "config.json", lambda d: d.update(offset=5)), "config.json offset is 5"),
    ("faiss-float16", lambda p: flip(p, "embeddings/fde"), "fde: checksum mismatch"),
    ("faiss-float16", lambda p: (p / "embeddings/tokens/tokens.npy").unlink(), "tokens.npy: missing"),
]


@pytest.mark.parametrize("name, damage, message", DAMAGE)
def test_release_damaged(committed, pylate_model, tmp_path, name, damage, message):
    source, _ = committed
    path = copy(source, name, pylate_model, tmp_path)
    damage(path)

    with pytest.raises(IndexFileError, match=message):
        Embeddings().load(str(path))


def test_release_interrupted_first_save(committed, pylate_model, tmp_path):
    # The first save after the upgrade died after txtai wrote config.json (naming an index id and a later offset), before
    # the Muvera folder: the previous-release folder still loads, padded up to the offset
    source, results = committed
    path = copy(source, "exact-float32", pylate_model, tmp_path)
    edit(path, "config.json", lambda d: (d["muvera"].update(index="0" * 32), d.update(offset=d["offset"] + 2)))

    embeddings = Embeddings()
    embeddings.load(str(path))
    same(search(embeddings), results["exact-float32"]["results"])
    assert embeddings.config["offset"] == len(TEXTS) + 2 and embeddings.ann.count() == len(TEXTS) - 1


def test_release_documents_checked(committed, pylate_model, tmp_path):
    # The SQLite content ids must still be the live rows: a row deleted in the folder but not in the documents is refused
    source, _ = committed
    path = copy(source, "exact-float32", pylate_model, tmp_path)
    deleted = np.load(path / "embeddings/tokens/deleted.npy")
    assert deleted.tolist().count(True) == 1

    embeddings = Embeddings()
    embeddings.load(str(path))
    embeddings.ann.delete([0])
    embeddings.ann.save(str(path / "embeddings"))

    with pytest.raises(IndexFileError, match="txtai's documents do not match the index rows"):
        Embeddings().load(str(path))


@pytest.mark.parametrize("mmap, verify", [(True, "lazy"), (True, "load"), (False, "lazy")])
def test_release_token_store(committed, tmp_path, caplog, mmap, verify):
    # A previous-release token store on its own: every policy loads it, a save writes the current version
    source, _ = committed
    shutil.copytree(source / "exact-int8" / "embeddings" / "tokens", tmp_path / "tokens")
    with caplog.at_level(logging.INFO, logger="txtai_muvera"):
        store = TokenStore.load(tmp_path / "tokens", mmap=mmap, verify=verify)
    assert any("earlier txtai-muvera release (format version 1)" in record.getMessage() for record in caplog.records)
    assert (len(store), store.count(), store.dtype, store.dimension) == (len(TEXTS), len(TEXTS) - 1, "int8", 16)

    expected = [store.get(x) for x in range(len(store))]
    store.verify()
    store.save(tmp_path / "tokens")
    assert json.loads((tmp_path / "tokens" / "store.json").read_text(encoding="utf-8"))["version"] == 2

    loaded = TokenStore.load(tmp_path / "tokens", verify="load")
    assert all(np.array_equal(loaded.get(x), matrix) for x, matrix in enumerate(expected))
