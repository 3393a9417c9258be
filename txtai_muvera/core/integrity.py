"""
Integrity module: file descriptions (size and block CRC32s), their checks, lazy block verification, .npy header checks
and checked memory maps
"""

import hashlib
import os
import threading
import zlib

import numpy as np

from .files import IndexFileError, filesize, openfile

# Bytes per checksummed block
BLOCK = 1 << 22


def describefile(filename, data=None):
    """
    Describes a written file for its folder's metadata: size and one CRC32 per BLOCK bytes. Every file the backend
    writes is described with this function and checked with verify or Verifier.

    Args:
        filename: file path
        data: the file's bytes when the caller holds them (skips reading the file back)

    Returns:
        {"bytes": size, "block": BLOCK, "crc32": [hex per block]}
    """

    sums = []
    if data is not None:
        view = memoryview(data).cast("B")
        sums = [f"{zlib.crc32(view[start : start + BLOCK]):08x}" for start in range(0, len(view), BLOCK)]
        size = len(view)
    else:
        with open(filename, "rb") as handle:
            for block in iter(lambda: handle.read(BLOCK), b""):
                sums.append(f"{zlib.crc32(block):08x}")
        size = os.path.getsize(filename)

    return {"bytes": size, "block": BLOCK, "crc32": sums}


def checkdescription(filename, expected, error, metadata):
    """
    Checks that a recorded file description is well formed.

    Args:
        filename: file path
        expected: recorded description
        error: exception class raised on a problem
        metadata: name of the metadata file, for messages
    """

    # Sizes, one checksum per block
    # type(): isinstance accepts bools
    # pylint: disable-next=C0123
    valid = isinstance(expected, dict) and all(type(expected.get(key)) is int for key in ("bytes", "block"))
    valid = valid and expected["bytes"] >= 0 and expected["block"] > 0 and isinstance(expected.get("crc32"), list)
    valid = valid and len(expected["crc32"]) == -(-expected["bytes"] // expected["block"])
    if not valid or not all(isinstance(x, str) for x in expected["crc32"]):
        raise error(f"{filename}: not described in {metadata}")


def checksize(filename, expected, root, error=IndexFileError, metadata="metadata", legacy=False):
    """
    Checks that a regular file exists inside root with the size its metadata records.

    Args:
        filename: file path
        expected: recorded description (see describefile)
        root: index folder
        error: exception class raised on a problem
        metadata: name of the metadata file, for messages
        legacy: description written by an earlier release, which records the size only (no block checksums)

    Returns:
        file size in bytes

    Raises:
        error: file not described, missing, special, outside root, truncated or larger than recorded
    """

    if not legacy:
        checkdescription(filename, expected, error, metadata)
    # pylint: disable-next=C0123
    elif not isinstance(expected, dict) or type(expected.get("bytes")) is not int or expected["bytes"] < 0:
        raise error(f"{filename}: not described in {metadata}")
    size = filesize(filename, root, error)
    if size != expected["bytes"]:
        problem = "truncated" if size < expected["bytes"] else "larger than recorded"
        raise error(f"{filename}: {problem}, {size} bytes on disk, {expected['bytes']} expected")

    return size


def verify(filename, expected, root, error=IndexFileError, metadata="metadata", data=None):
    """
    Checks a file's size (see checksize), then reads it once and checks every block checksum of its description.

    Args:
        filename: file path
        expected: description with size and block checksums (see describefile)
        root: folder the file must stay inside
        error: exception class raised on a size or checksum problem
        metadata: metadata file that records the description, named in messages
        data: the file's bytes when already read (bounded by the caller)

    Returns:
        file size in bytes
    """

    size = checksize(filename, expected, root, error, metadata)
    if data is None:
        with openfile(filename, root, error) as handle:
            data = handle.read(size + 1)
    if len(data) != size:
        raise error(f"{filename}: changed while it was read")

    view, block = memoryview(data).cast("B"), expected["block"]
    for x, start in enumerate(range(0, size, block)):
        if f"{zlib.crc32(view[start : start + block]):08x}" != expected["crc32"][x]:
            raise error(f"{filename}: checksum mismatch in block {x} (bytes {start} to {min(start + block, size)}), file is corrupt")

    return size


def checksha256(filename, expected, size, root, error=IndexFileError, data=None):
    """
    Checks a file against the sha256 an earlier release recorded for it ("sha256:<hex>"), reading a regular file inside
    root block by block, never more than its checked size plus one byte.

    Args:
        filename: file path
        expected: recorded "sha256:<hex>" string
        size: file size checked against its metadata (see checksize)
        root: index folder
        error: exception class raised on a problem
        data: the file's bytes when already read (bounded by the caller)
    """

    digest, read = hashlib.sha256(), 0
    if data is not None:
        digest.update(data)
        read = len(data)
    else:
        with openfile(filename, root, error) as handle:
            for block in iter(lambda: handle.read(min(BLOCK, size + 1 - read)), b""):
                digest.update(block)
                read += len(block)

    if read != size:
        raise error(f"{filename}: changed while it was read")
    if not isinstance(expected, str) or expected != f"sha256:{digest.hexdigest()}":
        raise error(f"{filename}: checksum mismatch, file is corrupt")


class Verifier:
    """
    Verifies a memory-mapped file block by block, each block the first time it is read, so a large file opens without
    being read and no search answers from an unverified block. Thread safe: two threads may verify the same block, the
    result is the same.
    """

    def __init__(self, filename, expected, error=IndexFileError):
        """
        Creates a verifier for a file whose size was checked (see checksize).

        Args:
            filename: file path
            expected: recorded description (see describefile)
            error: exception class raised on a mismatch
        """

        self.filename, self.expected, self.error = filename, expected, error
        self.block = expected["block"]
        self.blocks = len(expected["crc32"])
        self.checked = np.zeros(self.blocks, dtype=bool)
        self.raw = np.memmap(filename, dtype=np.uint8, mode="r") if expected["bytes"] else np.zeros(0, dtype=np.uint8)
        self.lock = threading.Lock()

    def ranges(self, starts, ends):
        """
        Verifies the blocks holding byte ranges [start, end).

        Args:
            starts: byte offsets
            ends: byte offsets, exclusive
        """

        starts, ends = np.asarray(starts, dtype=np.int64), np.asarray(ends, dtype=np.int64)
        keep = ends > starts
        if not keep.any():
            return

        # First, last and inner blocks
        first, last = starts[keep] // self.block, (ends[keep] - 1) // self.block
        blocks = np.concatenate([first, last] + [np.arange(a + 1, b) for a, b in zip(first, last) if b - a > 1])
        blocks = np.unique(blocks)
        self.blockset(blocks[~self.checked[blocks]])

    def all(self):
        """
        Verifies every block not verified yet.
        """

        self.blockset(np.flatnonzero(~self.checked))

    def blockset(self, blocks):
        """
        Verifies blocks by index.

        Args:
            blocks: block indices
        """

        for x in blocks.tolist():
            start = x * self.block
            if f"{zlib.crc32(self.raw[start : start + self.block]):08x}" != self.expected["crc32"][x]:
                end = min(start + self.block, self.expected["bytes"])
                raise self.error(f"{self.filename}: checksum mismatch in block {x} (bytes {start} to {end}), file is corrupt")
            self.checked[x] = True


def npyheader(filename, size, dtype, shape, error=IndexFileError, root=None):
    """
    Checks a .npy file's header against the dtype and shape it must hold, without reading its data or unpickling: the
    header is parsed as a literal and object dtypes are refused before any data is read. Whatever the parser raises
    becomes error.

    Args:
        filename: file path
        size: file size in bytes
        dtype: expected dtype
        shape: expected shape
        error: exception class raised on a problem
        root: index folder the file must stay inside (defaults to the file's folder)

    Returns:
        offset of the data in the file

    Raises:
        error: not a .npy file, another dtype or shape, or a size that does not match the header
    """

    try:
        with openfile(filename, root or os.path.dirname(filename), error) as handle:
            version = np.lib.format.read_magic(handle)
            if version not in [(1, 0), (2, 0)]:
                raise ValueError(f"unsupported .npy version {version}")
            reader = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            fshape, fortran, fdtype = reader(handle)
            start = handle.tell()
    except error:
        raise
    except Exception as exception:  # pylint: disable=W0718
        # NumPy's parser raises many types
        raise error(f"{filename}: not a valid .npy file ({type(exception).__name__}: {str(exception)[:200]})") from exception

    dtype = np.dtype(dtype)
    if fdtype != dtype or tuple(fshape) != tuple(shape) or fortran:
        raise error(f"{filename}: holds {fdtype} {tuple(fshape)}, expected {dtype} {tuple(shape)} in C order")
    if start + dtype.itemsize * int(np.prod(shape, dtype=object)) != size:
        raise error(f"{filename}: file size {size} does not match its header")

    return start


def mapnpy(filename, expected, root, dtype, shape, error=IndexFileError, metadata="metadata", legacy=False):
    """
    Memory maps a saved .npy array after checking its size against its description and its header against dtype and
    shape. Never unpickles, never reads the data: the returned verifier checksums it.

    Args:
        filename: file path
        expected: recorded description (see describefile)
        root: folder the file must stay inside
        dtype: expected dtype
        shape: expected shape
        error: exception class raised on a problem
        metadata: name of the metadata file, for messages
        legacy: described by an earlier release (size only): no verifier

    Returns:
        (read-only array, Verifier or None, offset of the data in the file)
    """

    size = checksize(filename, expected, root, error, metadata, legacy)
    start = npyheader(filename, size, dtype, shape, error, root)
    verifier = Verifier(filename, expected, error) if not legacy else None

    # Zero rows can't be mapped
    shape = tuple(shape)
    array = np.memmap(filename, dtype=dtype, mode="r", offset=start, shape=shape) if shape[0] else np.zeros(shape, dtype=dtype)
    return array, verifier, start
