"""
Store folder module: the files of a saved token store, their metadata, writing and checked reading
"""

import io
import logging
import os

import numpy as np

from .files import IndexFileError, readbytes, readformat, writebytes, writejson
from .integrity import checksha256, checksize, describefile, mapnpy, npyheader, verify
from .folder import current, syncdir
from .ragged import checkoffsets

# Format and readable old version
FORMAT = "txtai-muvera-tokenstore"
VERSION, LEGACY = 2, 1

# Mapped array checksum policies
VERIFY = ("lazy", "load", "off")

# Token dtypes, bytes per element
DTYPES = {"float32": 4, "float16": 2, "int8": 1}

# int8 scale types, float32 before scales were float16
SCALETYPES = ("float16", "float32")

# Bytes per streamed block
BLOCK = 1 << 26

# Logging configuration
logger = logging.getLogger(__name__)


class StoreError(IndexFileError):
    """
    Raised when a token store folder is missing, foreign, corrupt or truncated. The message names the file and the problem.
    """


def writestore(folder, dimension, dtype, tokens, scales, offsets, deleted):
    """
    Writes every file of a token store into folder and fsyncs, metadata last. Every file is described with its size and
    block checksums (integrity.describefile) in store.json, which is sealed with its own checksum.

    Args:
        folder: empty output folder
        dimension: token vector width
        dtype: stored token dtype
        tokens: token arrays written one after the other (memory-mapped base, in-memory tail)
        scales: int8 scale arrays (float16 or float32) written the same way, None for float stores
        offsets: int64 row offsets
        deleted: boolean tombstones

    Returns:
        metadata written to store.json
    """

    # Stream large arrays
    files = {"tokens.npy": streamnpy(os.path.join(folder, "tokens.npy"), *tokens)}
    if scales is not None:
        files["scales.npy"] = streamnpy(os.path.join(folder, "scales.npy"), *scales)

    # Small arrays
    for name, array in [("offsets.npy", offsets), ("deleted.npy", deleted)]:
        buffer = io.BytesIO()
        np.save(buffer, np.ascontiguousarray(array), allow_pickle=False)
        data = buffer.getvalue()
        writebytes(os.path.join(folder, name), data)
        files[name] = {**describefile(None, data), "shape": list(array.shape), "dtype": str(array.dtype)}

    config = {
        "format": FORMAT,
        "version": VERSION,
        "dimension": dimension,
        "dtype": dtype,
        "rows": len(deleted),
        "tokens": int(offsets[-1]),
        "files": files,
    }
    if scales is not None:
        config["scales"] = str(scales[0].dtype)
    writejson(os.path.join(folder, "store.json"), config)
    syncdir(folder)

    return config


def streamnpy(path, *parts):
    """
    Writes arrays concatenated along axis 0 as one .npy file without building the concatenation in memory.

    Args:
        path: output file
        parts: arrays with the same dtype and trailing shape

    Returns:
        file description: bytes, block checksums, shape, dtype
    """

    shape = (sum(len(part) for part in parts),) + parts[0].shape[1:]
    dtype = parts[0].dtype
    header = {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False, "shape": shape}

    with open(path, "wb") as output:
        np.lib.format.write_array_header_1_0(output, header)
        for part in parts:
            step = max(1, BLOCK // max(1, part[:1].nbytes))
            for start in range(0, len(part), step):
                output.write(np.ascontiguousarray(part[start : start + step]).data)
        output.flush()
        os.fsync(output.fileno())

    return {**describefile(path), "shape": list(shape), "dtype": str(dtype)}


def openstore(path):
    """
    Opens a saved token store: finds its folder, reads store.json, then reads and checks the offsets and tombstones.

    Recovery follows folder.current: path, or path.old when a save crashed between its two renames. A staging folder
    is never read: it is an unfinished save, removed by the next save.

    A store saved by the previous release (version 1: unsealed store.json, sha256 of offsets and tombstones, no data
    checksums) is read with those checks, its tokens checked by size and header only; saving it writes the current version.

    Args:
        path: store folder

    Returns:
        (folder read, metadata, int64 offsets, boolean tombstones)

    Raises:
        StoreError: missing, foreign, corrupt or truncated store
    """

    path, found = os.path.abspath(os.fspath(path)), current(os.fspath(path))
    if not found:
        raise StoreError(f"{path}: no token store folder")
    path = found

    config = readstoremetadata(path)
    rows, tokens = config["rows"], config["tokens"]

    # No data checksums in old stores
    if config["version"] == LEGACY:
        message = "%s: token store saved by an earlier txtai-muvera release (format version %d) without data checksums, "
        message += "tokens checked by size and header only; saving it again writes the current format"
        logger.info(message, path, LEGACY)

    # Read and check small arrays
    offsets = readsmall(path, config, "offsets.npy", np.int64, (rows + 1,))
    checkoffsets(offsets, tokens, f"{os.path.join(path, 'offsets.npy')}: offsets", StoreError)
    deleted = readsmall(path, config, "deleted.npy", np.bool_, (rows,))

    return path, config, offsets, deleted


def readstoremetadata(path):
    """
    Reads and checks store.json: bounded, sealed, typed.

    Args:
        path: store folder

    Returns:
        metadata dict
    """

    # Earlier version is unsealed
    name = os.path.join(path, "store.json")
    config = readformat(name, path, "token store", FORMAT, (VERSION, LEGACY), StoreError)

    # Required fields and types
    for key in ["dimension", "rows", "tokens"]:
        value = config.get(key)
        if isinstance(value, bool) or not isinstance(value, int) or value < (1 if key == "dimension" else 0):
            raise StoreError(f"{name}: invalid {key} {value!r}")
    if config.get("dtype") not in DTYPES:
        raise StoreError(f"{name}: invalid dtype {config.get('dtype')!r}")
    if config.get("scales", "float32") not in SCALETYPES:
        raise StoreError(f"{name}: invalid scales {config.get('scales')!r}")
    if not isinstance(config.get("files"), dict):
        raise StoreError(f"{name}: files missing")
    if config["version"] == LEGACY and not isinstance(config.get("checksums"), dict):
        raise StoreError(f"{name}: checksums missing")

    return config


def isstore(path):
    """
    Checks if a folder holds token store metadata.

    Args:
        path: folder

    Returns:
        True if path/store.json names this format
    """

    try:
        return readstoremetadata(path).get("format") == FORMAT
    except (StoreError, OSError):
        return False


def readsmall(path, config, name, dtype, shape):
    """
    Reads a small .npy file after verifying its size and checksum.

    Args:
        path: store folder
        config: metadata
        name: file name
        dtype: expected dtype
        shape: expected shape

    Returns:
        writable in-memory array
    """

    # Checksum before parsing
    filename, legacy = os.path.join(path, name), config["version"] == LEGACY
    size = checksize(filename, config["files"].get(name), path, StoreError, "store.json", legacy)
    data = readbytes(filename, path, size, StoreError)
    if legacy:
        checksha256(filename, config["checksums"].get(name), size, path, StoreError, data)
    else:
        verify(filename, config["files"][name], path, StoreError, "store.json", data)

    npyheader(filename, size, dtype, shape, StoreError, path)
    try:
        return np.array(np.load(io.BytesIO(data), allow_pickle=False))
    except Exception as error:  # pylint: disable=W0718
        raise StoreError(f"{filename}: unreadable ({type(error).__name__}: {error})") from error


def maptokens(path, config, policy, mmap=True):
    """
    Opens the tokens (and int8 scales) files of a store folder after checking their sizes and headers.

    Args:
        path: store folder
        config: metadata
        policy: checksum policy (see VERIFY), or "written" for files this process just wrote
        mmap: memory map when True, read into memory (and verify) otherwise

    Returns:
        (tokens, scales or None, [(Verifier, data offset, bytes per row)] of the memory-mapped files)
    """

    tokens, dimension = config["tokens"], config["dimension"]
    arrays, verifiers = [], []
    scaletype = np.dtype(config.get("scales", "float32"))
    for name, dtype, shape in [("tokens.npy", np.dtype(config["dtype"]), (tokens, dimension)), ("scales.npy", scaletype, (tokens,))]:
        if name == "scales.npy" and config["dtype"] != "int8":
            arrays.append(None)
            continue

        # Map without np.load: no pickle
        filename, legacy = os.path.join(path, name), config["version"] == LEGACY
        array, verifier, start = mapnpy(filename, config["files"].get(name), path, dtype, shape, StoreError, "store.json", legacy)
        if verifier:
            if policy == "load" or not mmap:
                verifier.all()
            elif policy == "written":
                verifier.checked[:] = True
            if mmap:
                verifiers.append((verifier, start, dtype.itemsize * int(np.prod(shape[1:]))))

        arrays.append(array if mmap else np.array(array))

    return arrays[0], arrays[1], verifiers
