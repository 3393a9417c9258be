"""
Index folder module: atomic saves, consistency reads and transactional reindexing of a txtai Embeddings index folder.
"""

import os
import functools
import gc
import sqlite3
import traceback

from urllib.request import pathname2url

import numpy as np

from txtai.embeddings import Embeddings

from .core.files import IndexFileError, filesize
from .core.folder import replace
from .settings import resolve

# Archive suffixes txtai saves as compressed files instead of folders
ARCHIVES = (".tar.bz2", ".tar.gz", ".tar.xz", ".zip")


def save(embeddings, path):
    """
    Saves a whole txtai Embeddings index folder atomically. txtai's Embeddings.save replaces config.json, the ANN folder
    and the documents database one after another (and deletes the database file before copying it), so a crash in
    between leaves a mix of old and new files or no database. This writes the index into a sibling folder, swaps it in
    with renames, then re-loads the instance from its final folder (its database and memory maps pointed into the
    sibling folder). A crash at any point leaves the previous index or the new one complete: call recover(path) before
    loading after a crash.

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

    # Regular file inside the folder only, opened read only
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


def reindex(embeddings, config=None, function=None, **kwargs):
    """
    Runs txtai's Embeddings.reindex so that a failure loses nothing. txtai's reindex replaces the config and the vectors
    model, closes the ANN and rewrites the documents' sections before the new index exists, so a bad config, a model
    that fails to load or an error mid-encoding leaves an index that neither searches nor writes. This checks the muvera:
    block first, then runs the reindex inside an SQLite savepoint and restores the previous index, config and database
    rows if anything raises.

    Args:
        embeddings: txtai Embeddings with content enabled
        config: new config
        function: optional function to prepare content for indexing
        kwargs: additional configuration as keyword args

    Returns:
        embeddings
    """

    # Configuration errors are raised before anything changes
    merged = {**(config or {}), **kwargs}
    if "muvera" in merged or "txtai_muvera" in str(merged.get("method", "")) or "txtai_muvera" in str(merged.get("backend", "")):
        resolve(merged.get("muvera"))

    # Everything txtai's reindex replaces: the instance's attributes (config, model, ANN, scoring, graph, ...), the
    # ANN's own state (it is closed first) and the database object's state and rows
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

            # The failed reindex streamed rows through the database's cursor: a fresh cursor ends that read
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
    Releases the reindex savepoint. A read still in progress on the connection (the frames of a failed reindex hold
    txtai's cursors until they are cleared) keeps SQLite from releasing it: frames are cleared first, and where a read is
    still alive the savepoint stays open inside txtai's transaction, which txtai's next commit (save) ends.

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
    Routes txtai's Embeddings.reindex through reindex above for indexes that use txtai-muvera (their current config or
    the new one names a txtai_muvera class), so that a plain embeddings.reindex(...) validates first and loses nothing on
    failure. Installed once, when a txtai-muvera vectors method or backend is created; other indexes call txtai's
    reindex unchanged.
    """

    # Idempotent: installed once per process
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
