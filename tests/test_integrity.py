"""
Integrity tests: block checksums of the data arrays under each verification policy, special files and symlinks refused
without blocking, every parser failure raised as IndexFileError, and consistency between txtai's files and ours.
"""

import json
import os
import shutil
import sqlite3
import threading

import pytest

from txtai import Embeddings

from txtai_muvera.ann import IndexFileError
from txtai_muvera.core.files import readbytes
from txtai_muvera.core.integrity import describefile

from helpers import TEXTS, flip, late, reseal

# Queries whose answers are compared
QUERIES = ["virus cases", "stock market", "bear attack"]


@pytest.fixture(scope="module")
def source(pylate_model, tmp_path_factory):
    """
    A saved index (exact FDE search) and its answers.

    Returns:
        (index folder, answers)
    """

    path = str(tmp_path_factory.mktemp("integrity") / "index")
    embeddings = Embeddings(late(pylate_model, repetitions=4))
    embeddings.index([(x, text, None) for x, text in enumerate(TEXTS)])
    embeddings.delete([3])
    embeddings.save(path)
    return path, answers(embeddings)


def answers(embeddings):
    """
    Count and top 5 ids and scores of the test queries.
    """

    return {"count": embeddings.count(), "results": [[(r["id"], round(r["score"], 5)) for r in embeddings.search(q, 5)] for q in QUERIES]}


def copy(source, target):
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(source, target)
    return target


def loadindex(path, **muvera):
    """
    Loads an index, optionally overriding muvera settings.
    """

    return Embeddings().load(path, config={"muvera": muvera} if muvera else None) if muvera else Embeddings().load(path)


def finishes(call, timeout=20):
    """
    Runs call in a thread and returns its exception; fails if it does not finish in time (a hang).
    """

    outcome = {}

    def run():
        try:
            call()
        except BaseException as error:  # pylint: disable=W0718
            outcome["error"] = error

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(timeout)
    assert not thread.is_alive(), "load blocked"
    return outcome.get("error")


@pytest.mark.parametrize("name", ["fde.npy", "tokens/tokens.npy"])
def test_flipped_data_byte_lazy(source, tmp_path, name):
    # Default policy: the folder opens without reading the data; the first search reading the damaged block refuses
    path = copy(source[0], str(tmp_path / "copy"))
    flip(os.path.join(path, "embeddings", name))

    embeddings = loadindex(path)
    with pytest.raises(IndexFileError, match=f"{os.path.basename(name)}: checksum mismatch in block 0"):
        for query in QUERIES + TEXTS:
            embeddings.search(query, 12)

    # Explicit verification
    embeddings = loadindex(path)
    with pytest.raises(IndexFileError, match="checksum mismatch"):
        embeddings.ann.verify()


@pytest.mark.parametrize("name", ["fde.npy", "tokens/tokens.npy"])
def test_flipped_data_byte_policies(source, tmp_path, name):
    path = copy(source[0], str(tmp_path / "copy"))
    flip(os.path.join(path, "embeddings", name))

    # verify: load reads and checks everything at load
    with pytest.raises(IndexFileError, match=f"{os.path.basename(name)}: checksum mismatch"):
        loadindex(path, verify="load")

    # verify: off checks only sizes and headers (documented): loads and searches, an explicit verify() still checks
    embeddings = loadindex(path, verify="off")
    assert embeddings.search(QUERIES[0], 3)
    with pytest.raises(IndexFileError, match="checksum mismatch"):
        embeddings.ann.verify()


def test_undamaged_index_verifies(source, tmp_path):
    path = copy(source[0], str(tmp_path / "copy"))
    for policy in ["lazy", "load", "off"]:
        embeddings = loadindex(path, verify=policy)
        embeddings.ann.verify()
        assert answers(embeddings) == source[1]


def test_save_after_lazy_load_verifies_first(source, tmp_path):
    # Saving copies memory-mapped blocks under fresh checksums: unverified blocks are checked first, never laundered
    path = copy(source[0], str(tmp_path / "copy"))
    flip(os.path.join(path, "embeddings", "tokens", "tokens.npy"))
    embeddings = loadindex(path)
    with pytest.raises(IndexFileError, match="tokens.npy: checksum mismatch"):
        embeddings.save(str(tmp_path / "other"))


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
@pytest.mark.parametrize("name", ["muvera.json", "tokens/store.json", "tokens/offsets.npy", "tokens/tokens.npy", "fde.npy"])
def test_fifo_refused_without_blocking(source, tmp_path, name):
    path = copy(source[0], str(tmp_path / "copy"))
    target = os.path.join(path, "embeddings", name)
    os.remove(target)
    os.mkfifo(target)

    error = finishes(lambda: loadindex(path))
    assert isinstance(error, IndexFileError) and "not a regular file (FIFO)" in str(error), repr(error)


@pytest.mark.parametrize("name", ["muvera.json", "tokens/store.json", "tokens/tokens.npy", "fde.npy"])
def test_symlink_out_of_folder_refused(source, tmp_path, name):
    path = copy(source[0], str(tmp_path / "copy"))
    target = os.path.join(path, "embeddings", name)

    # A copy of the right file outside the folder, then /dev/zero
    outside = str(tmp_path / "outside")
    shutil.copy(target, outside)
    for destination in [outside] + (["/dev/zero"] if os.path.exists("/dev/zero") else []):
        os.remove(target)
        os.symlink(destination, target)
        error = finishes(lambda: loadindex(path))
        assert isinstance(error, IndexFileError) and "leaves the index folder" in str(error), repr(error)


def test_symlink_inside_folder_followed(source, tmp_path):
    # A link that stays inside the folder is an ordinary file
    path = copy(source[0], str(tmp_path / "copy"))
    folder = os.path.join(path, "embeddings", "tokens")
    os.rename(os.path.join(folder, "tokens.npy"), os.path.join(folder, "real.npy"))
    os.symlink("real.npy", os.path.join(folder, "tokens.npy"))
    assert answers(loadindex(path)) == source[1]


def test_reads_are_bounded(tmp_path):
    # Bounded by bytes read, not by the size a file reports: a character device reports 0 bytes
    with open(tmp_path / "big", "wb") as handle:
        handle.write(b" " * 1000)
    with pytest.raises(IndexFileError, match="larger than 999 bytes"):
        readbytes(str(tmp_path / "big"), str(tmp_path), 999)
    assert len(readbytes(str(tmp_path / "big"), str(tmp_path), 1000)) == 1000

    if os.path.exists("/dev/zero"):
        with pytest.raises(IndexFileError, match="character device"):
            readbytes("/dev/zero", "/dev")


def npyheader(filename, header):
    """
    Replaces the header dict of a .npy file, keeping its length.
    """

    with open(filename, "r+b") as handle:
        data = bytearray(handle.read())
        length = int.from_bytes(data[8:10], "little")
        data[10 : 10 + length] = header.ljust(length - 1) + b"\n"
        handle.seek(0)
        handle.write(data)


# A dimension of 10**30
HUGE = b"1" + b"0" * 30


@pytest.mark.parametrize(
    "name, change, match",
    [
        # NumPy's header parser raises tokenize.TokenError on an unterminated string
        ("fde.npy", lambda f: npyheader(f, b"{'descr': '''<f4', 'fortran_order': False, 'shape': (3, 4), }"), "TokenError"),
        ("tokens/tokens.npy", lambda f: npyheader(f, b"{'descr': '''<f2', 'fortran_order': False, 'shape': (3, 4), }"), "TokenError"),
        # A dimension of 10**30 (NumPy: Maximum allowed dimension exceeded)
        ("tokens/tokens.npy", lambda f: npyheader(f, b"{'descr': '<f2', 'fortran_order': False, 'shape': (" + HUGE + b", 16), }"), "holds float16"),
        ("fde.npy", lambda f: npyheader(f, b"{'descr': '<f4', 'fortran_order': False, 'shape': (" + HUGE + b", 16), }"), "holds float32"),
    ],
)
def test_parser_failures_are_index_file_errors(source, tmp_path, name, change, match):
    path = copy(source[0], str(tmp_path / "copy"))
    filename = os.path.join(path, "embeddings", name)
    change(filename)

    # Checksums recomputed, so that only the parser sees the damage
    rechecksum(path, name)

    with pytest.raises(IndexFileError, match=match) as error:
        loadindex(path)
    assert error.value.__cause__ is not None or "holds" in str(error.value)


def rechecksum(path, name):
    """
    Records a changed file's current size and checksums in its metadata, and the metadata's in muvera.json.
    """

    folder = os.path.join(path, "embeddings")
    if name.startswith("tokens/") and name != "tokens/store.json":
        reseal(os.path.join(folder, "tokens", "store.json"), lambda m: m["files"][name[7:]].update(describefile(os.path.join(folder, name))))
        name = "tokens/store.json"
    reseal(os.path.join(folder, "muvera.json"), lambda m: m["files"][name].update(describefile(os.path.join(folder, name))))


def test_deep_nesting_store_json(source, tmp_path):
    # RecursionError from JSON nested 100,000 deep
    path = copy(source[0], str(tmp_path / "copy"))
    with open(os.path.join(path, "embeddings", "tokens", "store.json"), "w", encoding="utf-8") as handle:
        handle.write("[" * 100000)
    rechecksum(path, "tokens/store.json")

    with pytest.raises(IndexFileError, match="store.json is corrupt: RecursionError") as error:
        loadindex(path)
    assert isinstance(error.value.__cause__, RecursionError)


def test_renamed_encoding_key_is_index_file_error(source, tmp_path):
    # Was txtai's ImportError: Unable to resolve vectors backend
    path = copy(source[0], str(tmp_path / "copy"))
    reseal(os.path.join(path, "embeddings", "muvera.json"), lambda m: m["encoding"].update(repetitionz=m["encoding"].pop("repetitions")))

    with pytest.raises(IndexFileError, match="repetitionz"):
        loadindex(path)


def test_offset_ahead_is_padded(source, tmp_path, pylate_model):
    # config.json written by a save whose Muvera folder never arrived: offset ahead of the rows. Padding with deleted rows
    # keeps every later write correct
    path = copy(source[0], str(tmp_path / "copy"))
    with open(os.path.join(path, "config.json"), encoding="utf-8") as handle:
        config = json.load(handle)
    config["offset"] += 5
    with open(os.path.join(path, "config.json"), "w", encoding="utf-8") as handle:
        json.dump(config, handle)

    embeddings = loadindex(path)
    assert answers(embeddings) == source[1]

    # New documents are found by their own text, deletes hit the right document
    embeddings.upsert([("new", "A volcano erupted on an island in the Pacific ocean", None)])
    assert embeddings.search("A volcano erupted on an island in the Pacific ocean", 1)[0]["id"] == "new"
    embeddings.delete(["new"])
    assert answers(embeddings) == source[1]
    embeddings.save(path)
    assert answers(loadindex(path)) == source[1]


def test_offset_behind_refused(source, tmp_path):
    path = copy(source[0], str(tmp_path / "copy"))
    with open(os.path.join(path, "config.json"), encoding="utf-8") as handle:
        config = json.load(handle)
    config["offset"] -= 1
    with open(os.path.join(path, "config.json"), "w", encoding="utf-8") as handle:
        json.dump(config, handle)

    with pytest.raises(IndexFileError, match="config.json offset is 11"):
        loadindex(path)


def test_folders_from_another_index_refused(source, tmp_path, pylate_model):
    # Another index with the same number of documents and the same deletes
    other = str(tmp_path / "other")
    embeddings = Embeddings(late(pylate_model, repetitions=4, dtype="float32"))
    embeddings.index([(x, text[::-1], None) for x, text in enumerate(TEXTS)])
    embeddings.delete([3])
    embeddings.save(other)

    # Its token store
    path = copy(source[0], str(tmp_path / "copy"))
    shutil.rmtree(os.path.join(path, "embeddings", "tokens"))
    shutil.copytree(os.path.join(other, "embeddings", "tokens"), os.path.join(path, "embeddings", "tokens"))
    with pytest.raises(IndexFileError, match="store.json: (checksum mismatch|larger than recorded|truncated)"):
        loadindex(path)

    # Its whole Muvera folder
    path = copy(source[0], str(tmp_path / "copy"))
    shutil.rmtree(os.path.join(path, "embeddings"))
    shutil.copytree(os.path.join(other, "embeddings"), os.path.join(path, "embeddings"))
    with pytest.raises(IndexFileError, match="belongs to another index"):
        loadindex(path)


def test_documents_behind_index_refused(source, tmp_path):
    # The Muvera folder saved, txtai's documents database not (crash before it was copied): the rows differ
    path = copy(source[0], str(tmp_path / "copy"))
    connection = sqlite3.connect(os.path.join(path, "documents"))
    connection.execute("DELETE FROM sections WHERE indexid = 5")
    connection.commit()
    connection.close()
    with pytest.raises(IndexFileError, match="txtai's documents do not match the index rows"):
        loadindex(path)

    os.remove(os.path.join(path, "documents"))
    with pytest.raises(IndexFileError, match="documents: missing"):
        loadindex(path)


def test_content_disabled_ids_checked(pylate_model, tmp_path):
    # txtai's ids file (content disabled) must refer to exactly the live rows: an ids file of an older save is refused
    from txtai.serialize import SerializeFactory

    config = late(pylate_model, repetitions=4)
    config["content"] = False
    embeddings = Embeddings(config)
    embeddings.index([(f"id{x}", text, None) for x, text in enumerate(TEXTS)])
    path = str(tmp_path / "index")
    embeddings.save(path)
    assert Embeddings().load(path).count() == len(TEXTS)

    serializer = SerializeFactory.create()
    ids = serializer.load(os.path.join(path, "ids"))
    ids[4] = None
    serializer.save(ids, os.path.join(path, "ids"))
    with pytest.raises(IndexFileError, match="txtai's documents do not match the index rows"):
        Embeddings().load(path)
