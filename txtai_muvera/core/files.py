"""
Files module
"""

import json
import os
import stat
import zlib

# Largest metadata file read
METADATA = 1 << 20

# Checksum key sealing metadata
SEAL = "checksum"


class IndexFileError(ValueError):
    """
    Raised when a saved index folder is missing, foreign, corrupt, truncated or inconsistent. The message names the file
    and the problem; the original exception, if any, is its __cause__.
    """


def openfile(filename, root, error=IndexFileError):
    """
    Opens a file of an index folder for reading. Only regular files inside root are opened: a symlink that leaves root,
    a FIFO, a device or a socket is refused before any byte is read, and opening never blocks (O_NONBLOCK, then fstat).

    Args:
        filename: file path
        root: index folder the file must stay inside
        error: exception class raised on a problem

    Returns:
        binary file object
    """

    real, base = os.path.realpath(filename), os.path.realpath(root)
    if os.path.commonpath([real, base]) != base:
        raise error(f"{filename}: leaves the index folder {root} (links to {real}), refusing to read it")

    try:
        descriptor = os.open(real, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0) | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError as exception:
        raise error(f"{filename}: missing") from exception
    except OSError as exception:
        raise error(f"{filename}: unreadable ({exception})") from exception

    # Regular files, checked once open
    mode = os.fstat(descriptor).st_mode
    if not stat.S_ISREG(mode):
        os.close(descriptor)
        raise error(f"{filename}: not a regular file ({kind(mode)}), refusing to read it")

    return os.fdopen(descriptor, "rb")


def kind(mode):
    """
    Names the type of a file from its stat mode.

    Args:
        mode: st_mode

    Returns:
        name
    """

    for test, name in [(stat.S_ISDIR, "folder"), (stat.S_ISFIFO, "FIFO"), (stat.S_ISCHR, "character device"), (stat.S_ISBLK, "block device")]:
        if test(mode):
            return name

    return "socket" if stat.S_ISSOCK(mode) else "special file"


def filesize(filename, root, error=IndexFileError):
    """
    Size of a regular file inside root (see openfile), for files that are memory mapped rather than read.

    Args:
        filename: file path
        root: index folder
        error: exception class raised on a problem

    Returns:
        size in bytes
    """

    with openfile(filename, root, error) as handle:
        return os.fstat(handle.fileno()).st_size


def readbytes(filename, root, limit=METADATA, error=IndexFileError):
    """
    Reads a whole small file, bounded by the bytes actually read (at most limit + 1), never by the size the file claims.

    Args:
        filename: file path
        root: index folder
        limit: largest accepted size in bytes
        error: exception class raised on a problem

    Returns:
        bytes
    """

    with openfile(filename, root, error) as handle:
        try:
            data = handle.read(limit + 1)
        except OSError as exception:
            raise error(f"{filename}: unreadable ({exception})") from exception

    if len(data) > limit:
        raise error(f"{filename}: larger than {limit} bytes, too large to be txtai-muvera metadata")

    return data


def readformat(filename, root, kind, fmt, versions, error=IndexFileError):
    """
    Reads the sealed metadata file of a saved folder (see readjson) after checking it names the format and a version
    this release reads. The earlier version, written without a seal, is accepted only without one.

    Args:
        filename: metadata file path
        root: folder the metadata describes
        kind: what the folder is, for messages ("index", "token store")
        fmt: format name recorded in the file
        versions: (current version, earlier version still read)
        error: exception class raised on a problem

    Returns:
        dict without the seal
    """

    if not os.path.lexists(filename):
        raise error(f"{root} is not a txtai-muvera {kind}: {filename} is missing")

    current, legacy = versions

    def checkformat(metadata):
        if metadata.get("format") != fmt:
            raise error(f"{filename}: not a txtai-muvera {kind} file (format is not {fmt!r})")
        if metadata.get("version") not in (current, legacy):
            version = metadata.get("version")
            raise error(f"{filename}: unsupported {kind} version {version!r}, this txtai-muvera reads versions {legacy} and {current}")

    return readjson(filename, root, error, checkformat, lambda metadata: metadata.get("version") == legacy)


def readjson(filename, root, error=IndexFileError, check=None, unsealed=None):
    """
    Reads a metadata file written by writejson: bounded read, strict UTF-8 JSON object, then its seal (a CRC32 of its
    canonical form) is checked, so a flipped byte that still parses is caught.

    Args:
        filename: file path
        root: index folder
        error: exception class raised on a problem
        check: optional function called with the metadata before its seal is checked (format and version checks, so a
            foreign file is named as such)
        unsealed: optional function that returns True for metadata of an earlier release, written without a seal: it
            is accepted only without one

    Returns:
        dict without the seal
    """

    data = readbytes(filename, root, METADATA, error)
    try:
        metadata = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exception:
        raise error(f"{filename} is corrupt: {type(exception).__name__}: {str(exception)[:200]}") from exception

    if not isinstance(metadata, dict):
        raise error(f"{filename} is corrupt: not a JSON object")

    seal = metadata.pop(SEAL, None)
    if check:
        check(metadata)
    if unsealed and unsealed(metadata):
        if seal is not None:
            raise error(f"{filename} is corrupt: an earlier format version with a checksum")
        return metadata
    if seal != crc(canonical(metadata)):
        raise error(f"{filename}: checksum mismatch, file is corrupt or was edited")

    return metadata


def writejson(filename, metadata):
    """
    Writes a metadata file sealed with a CRC32 of its canonical form, and fsyncs it.

    Args:
        filename: file path
        metadata: JSON serializable dict
    """

    data = {**metadata, SEAL: crc(canonical(metadata))}
    writebytes(filename, json.dumps(data, indent=2).encode("utf-8"))


def writebytes(filename, data):
    """
    Writes bytes to a file and fsyncs it.

    Args:
        filename: file path
        data: bytes
    """

    with open(filename, "wb") as output:
        output.write(data)
        output.flush()
        os.fsync(output.fileno())


def canonical(metadata):
    """
    Canonical bytes of a JSON object: sorted keys, no whitespace.

    Args:
        metadata: dict

    Returns:
        bytes
    """

    return json.dumps(metadata, sort_keys=True, separators=(",", ":")).encode("utf-8")


def crc(data, value=0):
    """
    CRC32 of bytes (zlib).

    Args:
        data: bytes-like
        value: running CRC

    Returns:
        "crc32:<8 hex digits>"
    """

    return f"crc32:{zlib.crc32(data, value):08x}"


def safename(name):
    """
    Checks that a file name recorded in metadata stays inside its folder.

    Args:
        name: relative file name

    Returns:
        True when name is a plain relative path without parent references
    """

    parts = name.replace("\\", "/").split("/") if isinstance(name, str) else []
    return bool(parts) and not os.path.isabs(name) and all(part not in ("", ".", "..") for part in parts)


def filesunder(folder, name):
    """
    Lists a file, or every file under a folder, as names relative to folder (links listed, never followed).

    Args:
        folder: parent folder
        name: file or folder name inside it

    Returns:
        sorted relative file names
    """

    target = os.path.join(folder, name)
    if not os.path.isdir(target) or os.path.islink(target):
        return [name] if os.path.lexists(target) else []

    names = []
    for root, folders, files in os.walk(target):
        names.extend(os.path.relpath(os.path.join(root, f), folder) for f in files + [f for f in folders if os.path.islink(os.path.join(root, f))])

    return sorted(names)
