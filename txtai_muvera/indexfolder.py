"""
Index folder module: atomic saves, consistency reads and transactional reindexing of a txtai Embeddings index folder, and
the files of the Muvera folder inside it.
"""

import os
import functools
import gc
import sqlite3
import traceback

from urllib.request import pathname2url

import numpy as np

from txtai.embeddings import Embeddings
from txtai.serialize import SerializeFactory

from .core.files import IndexFileError, filesize, openfile, readformat, safename
from .core.integrity import describefile, mapnpy
from .core.scan import ENCODINGDTYPES, Int8Rows, encodingrows
from .core.folder import replace
from .settings import readsettings

# txtai archive suffixes
ARCHIVES = (".tar.bz2", ".tar.gz", ".tar.xz", ".zip")

# muvera.json format and versions
FORMAT, VERSION, LEGACY = "txtai-muvera-index", 3, 2

# Row scales of int8 FDE rows
SCALES = "fde-scales.npy"


def save(embeddings, path):
    """
    Saves a whole txtai Embeddings index folder atomically. txtai's Embeddings.save replaces its files one by one, so a
    crash can leave a mix of old and new files. This writes a sibling folder, swaps it in, then reloads the instance from
    the final folder. After a crash, call recover(path) before loading.

    Args:
        embeddings: txtai Embeddings
        path: index folder (not an archive file)

    Returns:
        embeddings
    """

    if os.path.isfile(path) or str(path).endswith(ARCHIVES):
        raise ValueError(f"{path} is an archive or a file: atomic saves write index folders")

    replace(path, embeddings.save)
    return embeddings.load(path)


def indexids(root, config):
    """
    Reads the index row ids txtai's documents database refers to, so that a Muvera folder can be checked against it
    at load. Only txtai's default SQLite content database is read (opened read only); other setups return None.

    Args:
        root: txtai index folder
        config: txtai embeddings config

    Returns:
        int64 array of indexids, or None when there is no SQLite content database to check

    Raises:
        IndexFileError: the database is missing or unreadable
    """

    if config.get("content") not in (True, "sqlite"):
        return None

    name = os.path.join(root, "documents")
    if not os.path.lexists(name):
        raise IndexFileError(f"{name}: missing, config.json has content enabled (interrupted save?)")

    # In-folder file, read only
    filesize(name, root)
    try:
        connection = sqlite3.connect(f"file:{pathname2url(os.path.abspath(name))}?mode=ro", uri=True)
        try:
            rows = connection.execute("SELECT indexid FROM sections").fetchall()
        finally:
            connection.close()
    except sqlite3.Error as error:
        raise IndexFileError(f"{name}: unreadable documents database ({error})") from error

    return np.array([row[0] for row in rows], dtype=np.int64)


def checkconsistent(path, metadata, store, config):
    """
    Checks a loaded folder against txtai's files: the index id and offset in config.json, and the rows txtai's
    documents database (or ids file) refers to. txtai saves config.json, this folder, then the database: config.json
    ahead of this folder is padded (Muvera.pad), this folder ahead of the database is refused.

    Args:
        path: Muvera index folder
        metadata: muvera.json
        store: loaded token store

    Returns:
        txtai's offset
    """

    # Legacy: config.json may name an id
    name, rows = os.path.join(path, "muvera.json"), len(store)
    block = config.get("muvera") if isinstance(config.get("muvera"), dict) else {}
    if block.get("index") and metadata.get("index") != block["index"] and metadata["version"] != LEGACY:
        raise IndexFileError(f"{name}: belongs to another index than config.json (index {metadata.get('index')}, config.json names {block['index']})")

    offset = config.get("offset", rows)
    if isinstance(offset, bool) or not isinstance(offset, int) or offset < rows:
        raise IndexFileError(f"{name}: {rows} rows, but config.json offset is {offset!r}: the folder is newer than config.json or from another index")

    # Rows txtai uses must be live
    root, referenced = os.path.dirname(path), None
    if os.path.basename(path) == "embeddings":
        referenced = indexids(root, config) if config.get("content") else idsfile(root, config)
    if referenced is not None:
        live = np.flatnonzero(~np.asarray(store.deleted))
        if len(referenced) != len(live) or not np.array_equal(np.sort(referenced), live):
            extra = np.setdiff1d(referenced, live)[:5].tolist()
            missing = np.setdiff1d(live, referenced)[:5].tolist()
            raise IndexFileError(
                f"{name}: txtai's documents do not match the index rows (rows only in the documents: {extra}, only in the index: {missing}): "
                "an interrupted save left the folder inconsistent, restore a backup or rebuild"
            )

    return offset


def idsfile(root, config):
    """
    Reads the live row ids of txtai's ids file (content disabled): position i holds row i's id, None once deleted.

    Args:
        root: txtai index folder
        config: txtai embeddings config

    Returns:
        int64 array of live row ids, or None when there is no ids file to check
    """

    name = os.path.join(root, "ids")
    if "ids" in config or not os.path.lexists(name):
        return None

    # MessagePack only, never pickle
    try:
        with openfile(name, root) as handle:
            ids = SerializeFactory.create().loadstream(handle)
    except IndexFileError:
        raise
    except Exception as error:  # pylint: disable=W0718
        raise IndexFileError(f"{name}: unreadable txtai ids file ({type(error).__name__}: {error})") from error

    if not isinstance(ids, list):
        raise IndexFileError(f"{name}: not a txtai ids list")

    return np.array([x for x, uid in enumerate(ids) if uid is not None], dtype=np.int64)


def readindexmetadata(path):
    """
    Reads and validates muvera.json, the metadata of a saved Muvera index folder.

    Args:
        path: Muvera index folder

    Returns:
        metadata dict

    Raises:
        IndexFileError: missing, foreign or corrupt metadata
    """

    name = os.path.join(path, "muvera.json")
    metadata = readformat(name, path, "index", FORMAT, (VERSION, LEGACY))

    # Check field types
    problems = []
    for key in ("fingerprint", "index"):
        if not (metadata.get(key) is None or isinstance(metadata[key], str)):
            problems.append(key)
    encoding = metadata.get("encoding")
    if not (encoding is None or (isinstance(encoding, dict) and all(isinstance(v, (int, float, bool, str, type(None))) for v in encoding.values()))):
        problems.append("encoding")
    for key, minimum in (("documents", 0), ("dimensions", 1)):
        value = metadata.get(key)
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            problems.append(key)
    if not (metadata.get("delegate") is None or isinstance(metadata["delegate"], dict)):
        problems.append("delegate")
    files = metadata.get("files")
    if not isinstance(files, dict) or not all(isinstance(v, dict) and safename(k) for k, v in files.items()):
        problems.append("files")
    if problems:
        raise IndexFileError(f"{name} is corrupt: invalid {', '.join(problems)}")

    return metadata


def readfdes(path, files, shape, policy="lazy", legacy=False):
    """
    Memory maps the saved FDE rows (fde.npy, and fde-scales.npy for int8 rows) of a Muvera folder, in the dtype
    muvera.json records (float32 by default).

    Args:
        path: Muvera index folder
        files: file descriptions from muvera.json (integrity.describefile; fde.npy's optionally with a dtype)
        shape: expected shape
        policy: checksum verification, "load" verifies now, "lazy" and "off" only check size and header (the caller
            runs the verifiers before the rows are first searched, or on verify)
        legacy: described by an earlier release: size and header only, no checksums (no verifiers)

    Returns:
        (read-only memory-mapped array or Int8Rows, list of Verifiers or None)

    Raises:
        IndexFileError: missing, truncated, foreign or corrupt file
    """

    filename = os.path.join(path, "fde.npy")
    expected = files.get("fde.npy")
    dtype = (expected or {}).get("dtype", "float32")
    if dtype not in ENCODINGDTYPES:
        raise IndexFileError(f"{filename}: unsupported dtype {dtype!r} in muvera.json")

    fdes, verifier, _ = mapnpy(filename, expected, path, np.dtype(dtype), shape, IndexFileError, "muvera.json", legacy)
    verifiers = [verifier]

    # int8 rows: one scale per row
    if dtype == "int8":
        name = os.path.join(path, SCALES)
        scales, verifier, _ = mapnpy(name, files.get(SCALES), path, np.dtype(np.float32), shape[:1], IndexFileError, "muvera.json", legacy)
        fdes, verifiers = Int8Rows(fdes, scales), verifiers + [verifier]

    if policy == "load" and not legacy:
        for verifier in verifiers:
            verifier.all()

    return fdes, verifiers if shape[0] and not legacy else None


def writefdes(folder, rows, dtype):
    """
    Saves FDE rows in a storage type: fde.npy, and fde-scales.npy for int8 rows.

    Args:
        folder: Muvera index folder
        rows: float array or Int8Rows
        dtype: storage type (see scan.encodingrows)

    Returns:
        {file name: description} for muvera.json
    """

    rows = encodingrows(rows, dtype)
    values = rows.values if isinstance(rows, Int8Rows) else rows
    np.save(os.path.join(folder, "fde.npy"), values, allow_pickle=False)
    files = {"fde.npy": {**describefile(os.path.join(folder, "fde.npy")), "dtype": str(values.dtype)}}

    if isinstance(rows, Int8Rows):
        np.save(os.path.join(folder, SCALES), np.asarray(rows.scales, dtype=np.float32), allow_pickle=False)
        files[SCALES] = describefile(os.path.join(folder, SCALES))

    return files


def reindex(embeddings, config=None, function=None, **kwargs):
    """
    Runs txtai's Embeddings.reindex so that a failure loses nothing. txtai's reindex replaces the config, model and ANN
    before the new index exists, so a failure leaves a broken index. This checks the muvera: block first, then runs the
    reindex inside an SQLite savepoint and restores the previous state if anything raises.

    Args:
        embeddings: txtai Embeddings with content enabled
        config: new config
        function: optional function to prepare content for indexing
        kwargs: additional configuration as keyword args

    Returns:
        embeddings
    """

    # Validate first
    merged = {**(config or {}), **kwargs}
    if "muvera" in merged or "txtai_muvera" in str(merged.get("method", "")) or "txtai_muvera" in str(merged.get("backend", "")):
        readsettings(merged.get("muvera"))

    # Snapshot what reindex replaces
    state = dict(vars(embeddings))
    ann = embeddings.ann
    annstate = dict(vars(ann)) if ann is not None else None
    database = embeddings.database
    dbstate = dict(vars(database)) if database is not None else None
    connection = getattr(database, "connection", None)
    if connection is not None:
        connection.execute("SAVEPOINT txtai_muvera_reindex")

    try:
        txtaireindex(embeddings, config, function, **kwargs)
    except BaseException as error:
        if connection is not None:
            connection.execute("ROLLBACK TO txtai_muvera_reindex")

            # Fresh cursor ends the failed read
            if getattr(database, "cursor", None) is not None:
                database.cursor.close()
                dbstate["cursor"] = connection.cursor()

            release(connection, error)
        for instance, saved in [(database, dbstate), (ann, annstate), (embeddings, state)]:
            if instance is not None:
                vars(instance).clear()
                vars(instance).update(saved)
        raise

    if connection is not None:
        release(connection)

    return embeddings


def release(connection, error=None):
    """
    Releases the reindex savepoint. An open read blocks the release: the failed reindex's frames, which hold txtai's
    cursors, are cleared first; if a read is still alive, txtai's next commit ends the savepoint.

    Args:
        connection: sqlite3 connection
        error: exception that failed the reindex, if any
    """

    if error is not None:
        traceback.clear_frames(error.__traceback__)
    gc.collect()
    try:
        connection.execute("RELEASE txtai_muvera_reindex")
    except sqlite3.OperationalError:
        pass


def guard():
    """
    Routes txtai's Embeddings.reindex through reindex for indexes whose current or new config names txtai_muvera.
    Installed once, when a txtai-muvera vectors method or backend is created; other indexes are unchanged.
    """

    # Install once per process
    if getattr(Embeddings.reindex, "txtaimuvera", False):
        return

    original = Embeddings.reindex

    @functools.wraps(original)
    def wrapper(self, config=None, function=None, **kwargs):
        if uses(self.config) or uses(config) or uses(kwargs):
            return reindex(self, config, function, **kwargs)

        return original(self, config, function, **kwargs)

    wrapper.txtaimuvera = True
    Embeddings.reindex = wrapper


def txtaireindex(embeddings, config=None, function=None, **kwargs):
    """
    Runs txtai's own Embeddings.reindex, past the guard.

    Args:
        embeddings: txtai Embeddings
        config: new config
        function: optional function to prepare content for indexing
        kwargs: additional configuration as keyword args
    """

    method = Embeddings.reindex
    return getattr(method, "__wrapped__", method)(embeddings, config, function, **kwargs)


def uses(config):
    """
    Tells whether a txtai config names a txtai-muvera class (dense slot, sparse slot or muvera: block).

    Args:
        config: txtai config dict or None

    Returns:
        True or False
    """

    return isinstance(config, dict) and ("muvera" in config or "txtai_muvera" in str(config))
