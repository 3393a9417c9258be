"""
Folder module
"""

import os
import shutil
import tempfile


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

    # Folders can't be opened or synced on Windows
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
