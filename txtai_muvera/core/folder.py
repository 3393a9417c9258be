"""
Folder module
"""

import os
import shutil
import tempfile

# Archive suffixes txtai saves as compressed files instead of folders
ARCHIVES = (".tar.bz2", ".tar.gz", ".tar.xz", ".zip")


def replace(path, write):
    """
    Writes a folder atomically: write(folder) fills a new sibling folder, which is synced and then swapped in with renames.
    A crash at any point leaves either the previous folder or the new one complete (see recover).

    Args:
        path: target folder
        write: function that writes the folder's files into the folder it is given
    """

    path = os.path.abspath(path)
    parent = os.path.dirname(path)
    os.makedirs(parent, exist_ok=True)

    # A crash between the renames of an earlier save left the only complete copy in path.old: restore it first
    recover(path)

    # Write everything aside
    staging = tempfile.mkdtemp(prefix=f".{os.path.basename(path)}.", suffix=".new", dir=parent)
    try:
        write(staging)
        sync(staging)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise

    # Swap: path -> path.old, staging -> path, then drop path.old
    old = f"{path}.old"
    shutil.rmtree(old, ignore_errors=True)
    if os.path.exists(path):
        os.rename(path, old)
    os.rename(staging, path)
    syncdir(parent)
    shutil.rmtree(old, ignore_errors=True)


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


def recover(path):
    """
    Restores the previous folder when a save was interrupted between its two renames.

    Args:
        path: target folder

    Returns:
        path
    """

    old = f"{os.path.abspath(path)}.old"
    if not os.path.exists(path) and os.path.isdir(old):
        os.rename(old, path)

    return path


def sync(folder):
    """
    Flushes every file of a folder to disk.

    Args:
        folder: folder path
    """

    for root, _, files in os.walk(folder):
        for name in files:
            with open(os.path.join(root, name), "rb") as f:
                os.fsync(f.fileno())
        syncdir(root)


def syncdir(folder):
    """
    Flushes a folder's entries to disk.

    Args:
        folder: folder path
    """

    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
