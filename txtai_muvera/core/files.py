"""
Files module
"""

import hashlib
import os

import numpy as np

# Bytes read at a time when hashing a file
BLOCK = 1 << 24


def checksize(filename, expected, error, metadata):
    """
    Checks that a file exists with the size its metadata records.

    Args:
        filename: file path
        expected: recorded description, a dict with a "bytes" key
        error: exception class raised on a problem
        metadata: name of the metadata file, for messages

    Returns:
        file size in bytes

    Raises:
        error: file not described, missing, truncated or larger than recorded
    """

    if not isinstance(expected, dict) or not isinstance(expected.get("bytes"), int):
        raise error(f"{filename}: not described in {metadata}")

    try:
        size = os.path.getsize(filename)
    except OSError as exception:
        raise error(f"{filename}: missing ({exception})") from exception
    if size != expected["bytes"]:
        problem = "truncated" if size < expected["bytes"] else "larger than recorded"
        raise error(f"{filename}: {problem}, {size} bytes on disk, {expected['bytes']} expected")

    return size


def npyheader(filename, size, dtype, shape, error):
    """
    Checks a .npy file's header against the dtype and shape it must hold, without reading its data or unpickling: the
    header is parsed as a literal and object dtypes are refused before any data is read.

    Args:
        filename: file path
        size: file size in bytes
        dtype: expected dtype
        shape: expected shape
        error: exception class raised on a problem

    Returns:
        offset of the data in the file

    Raises:
        error: not a .npy file, another dtype or shape, or a size that does not match the header
    """

    try:
        with open(filename, "rb") as handle:
            version = np.lib.format.read_magic(handle)
            if version not in [(1, 0), (2, 0)]:
                raise ValueError(f"unsupported .npy version {version}")
            reader = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            fshape, fortran, fdtype = reader(handle)
            start = handle.tell()
    except (ValueError, SyntaxError, OSError) as exception:
        raise error(f"{filename}: not a valid .npy file ({exception})") from exception

    dtype = np.dtype(dtype)
    if fdtype != dtype or tuple(fshape) != tuple(shape) or fortran:
        raise error(f"{filename}: holds {fdtype} {tuple(fshape)}, expected {dtype} {tuple(shape)} in C order")
    if start + dtype.itemsize * int(np.prod(shape)) != size:
        raise error(f"{filename}: file size {size} does not match its header")

    return start


def sha256(filename):
    """
    Hashes a file block by block.

    Args:
        filename: file path

    Returns:
        "sha256:<hex>"
    """

    digest = hashlib.sha256()
    with open(filename, "rb") as handle:
        for block in iter(lambda: handle.read(BLOCK), b""):
            digest.update(block)

    return f"sha256:{digest.hexdigest()}"
