"""
Folder module
"""

import glob
import os
import shutil
import tempfile


def replace(path, write, swapped=None):
    """
    Writes a folder atomically: write(folder) fills a new sibling folder, which is synced and then swapped in with renames.
    A crash at any point leaves either the previous folder or the new one complete (see current). Staging folders left
    by crashed saves are removed first.

    Args:
        path: target folder
        write: function that writes the folder's files into the folder it is given
        swapped: optional function called once the new folder is in place, before the previous one is removed (a memory
            map of the previous files can be released there)
    """

    path = os.path.abspath(path)
    parent, name = os.path.dirname(path), os.path.basename(path)
    os.makedirs(parent, exist_ok=True)

    # Restore path.old left by a crash
    recover(path)
    for leftover in glob.glob(os.path.join(glob.escape(parent), f".{glob.escape(name)}.*.new")):
        shutil.rmtree(leftover, ignore_errors=True)

    # Write aside
    staging = tempfile.mkdtemp(prefix=f".{name}.", suffix=".new", dir=parent)
    try:
        write(staging)
        sync(staging)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise

    # Swap the folders, drop path.old
    old = f"{path}.old"
    shutil.rmtree(old, ignore_errors=True)
    if os.path.exists(path):
        os.rename(path, old)
    os.rename(staging, path)
    syncdir(parent)
    if swapped:
        swapped()
    shutil.rmtree(old, ignore_errors=True)


def current(path):
    """
    The complete copy of a folder written by replace: path, or path.old when a save was interrupted between its two
    renames. Readers use it as is; the next save restores it (recover).

    Args:
        path: target folder

    Returns:
        folder path, None when neither exists
    """

    path = os.path.abspath(path)
    if os.path.isdir(path):
        return path

    return f"{path}.old" if os.path.isdir(f"{path}.old") else None


def recover(path):
    """
    Restores the previous folder when a save was interrupted between its two renames.

    Args:
        path: target folder

    Returns:
        path
    """

    found = current(path)
    if found and found != os.path.abspath(path):
        os.rename(found, path)

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

    # Windows can't sync folders
    try:
        descriptor = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)
