"""
Store module
"""

import os

import numpy as np

from .arrays import grow, readonly, take
from .folder import replace
from .quantize import dequantize, quantize
from .inputs import checkbatch, checkquantized, storedfloats
from .ragged import pack
from .storefolder import DTYPES, SCALETYPES, VERIFY, StoreError, isstore, maptokens, openstore, writestore


class TokenStore:
    """
    Holds every document's token vectors as one flat array + offsets. Row ids are stable: row i is the i-th appended
    matrix for the life of the store (deletes leave tombstones, compaction reclaims bytes without renumbering).

    Tokens live in two parts: a base (the memory-mapped tokens file after load, read only) and an in-memory tail that
    grows by capacity doubling. Appends only ever touch the tail, so a memory-mapped store accepts appends (copy on write)
    until the next save. Offsets and tombstones are small (per document) and always held in memory.

    Not thread safe: guard writes (append, delete, compact, save) with a lock when sharing a store across threads.

    >>> store = TokenStore(4, dtype="float32")
    >>> store.extend([np.ones((2, 4)), np.zeros((3, 4))])
    range(0, 2)
    >>> store.delete([0, 7])
    [0]
    >>> flat, offsets, scales = store.gather([1, 0])
    >>> flat.shape, offsets.tolist(), scales, store.count(), len(store)
    ((3, 4), [0, 3, 3], None, 1, 2)
    """

    def __init__(self, dimension, dtype="float16", scales="float16"):
        """
        Creates an empty in-memory token store.

        Args:
            dimension: token vector width
            dtype: "float32", "float16" (default) or "int8" (per-vector scale)
            scales: int8 scale type, "float16" (default) or "float32" (stores saved before float16 scales)
        """

        if isinstance(dimension, bool) or not isinstance(dimension, (int, np.integer)) or dimension <= 0:
            raise ValueError(f"dimension must be a positive integer, got {dimension!r}")
        if dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {list(DTYPES)}, got {dtype!r}")
        if scales not in SCALETYPES:
            raise ValueError(f"scales must be one of {list(SCALETYPES)}, got {scales!r}")

        # Public attributes
        self.dimension = int(dimension)
        self.dtype = dtype

        # int8 scale type
        self.scaletype = np.dtype(scales)

        # Mapped folder and re-map flag
        self.path = None
        self.mmap = False

        # Checksums and metadata
        self._verifiers, self._lazy, self._config = [], False, None

        # Mapped base and growing tail
        self._base, self._basescales = self._empty(0)
        self._tail, self._tailscales = self._empty(0)
        self._tailsize = 0

        # Offsets and tombstones
        self._offsets = np.zeros(1, dtype=np.int64)
        self._deleted = np.zeros(0, dtype=bool)
        self._rows = 0

    def __len__(self):
        """
        Total number of rows ever appended, deleted rows included (row ids run from 0 to len - 1).

        Returns:
            number of rows
        """

        return self._rows

    def __repr__(self):
        return f"TokenStore(dimension={self.dimension}, dtype={self.dtype!r}, rows={len(self)}, live={self.count()}, tokens={self.tokens})"

    @property
    def tokens(self):
        """
        Number of token vectors stored, deleted rows' tokens included until compact.

        Returns:
            token count
        """

        return int(self._offsets[self._rows])

    @property
    def offsets(self):
        """
        Read-only view of the int64 row offsets into the stored token space (rows + 1 entries).

        Returns:
            offsets array
        """

        return readonly(self._offsets[: self._rows + 1])

    @property
    def deleted(self):
        """
        Read-only view of the boolean tombstones, one per row.

        Returns:
            deleted array
        """

        return readonly(self._deleted[: self._rows])

    @property
    def mapped(self):
        """
        True when the stored tokens (before any appended tail) are memory mapped from a saved folder.

        Returns:
            bool
        """

        return isinstance(self._base, np.memmap)

    @property
    def nbytes(self):
        """
        Bytes held by stored token vectors: tokens x (dtype size x dimension + the int8 scale). Offsets and
        tombstones (9 bytes per row) and spare tail capacity are not counted.

        Returns:
            number of bytes
        """

        return self.tokens * (DTYPES[self.dtype] * self.dimension + (self.scaletype.itemsize if self.dtype == "int8" else 0))

    def count(self):
        """
        Number of live (not deleted) rows.

        Returns:
            live row count
        """

        return self._rows - int(np.count_nonzero(self._deleted[: self._rows]))

    def append(self, flat, offsets, scales=None):
        """
        Appends matrices held ragged (see ragged.pack). Values are converted to the store dtype (int8 quantizes per vector).
        Rows gathered from an int8 store come with their scales: an int8 store appends them as stored, bit for bit,
        unless their float32 scales do not fit its float16 ones (then they are quantized again).

        Args:
            flat: (total tokens x dimension) float array (numpy, or anything np.asarray accepts such as a cpu tensor), or
                int8 rows with scales
            offsets: int offsets, one more than the number of matrices, starting at 0 and ending at len(flat)
            scales: float per token scales of int8 rows (see gather), None for float rows

        Returns:
            range of the row ids assigned
        """

        flat, offsets = checkbatch(flat, offsets, self.dimension)
        if scales is not None:
            flat, scales = checkquantized(flat, scales)
            if self.dtype != "int8" or not fits(scales, self.scaletype):
                flat, scales = dequantize(flat, scales), None

        # Keep int8 rows, quantize floats
        values = flat if scales is not None else storedfloats(flat, offsets, self.dtype)
        if scales is None and self.dtype == "int8":
            values, scales = quantize(values, self.scaletype)

        # Append tokens to the tail
        start = self._tailsize
        self._tail, self._tailscales = grow(self._tail, start + len(values), start), grow(self._tailscales, start + len(values), start)
        self._tail[start : start + len(values)] = values
        if scales is not None:
            self._tailscales[start : start + len(values)] = scales
        self._tailsize += len(values)

        # Append shifted offsets, tombstones
        rows, count = self._rows, len(offsets) - 1
        self._offsets = grow(self._offsets, rows + 1 + count)
        self._offsets[rows + 1 : rows + 1 + count] = offsets[1:] + self._offsets[rows]
        self._deleted = grow(self._deleted, rows + count)
        self._deleted[rows : rows + count] = False
        self._rows += count

        return range(rows, rows + count)

    def extend(self, matrices):
        """
        Appends a list of (tokens x dimension) matrices.

        Args:
            matrices: list of 2D arrays

        Returns:
            range of the row ids assigned
        """

        if not len(matrices):
            return range(self._rows, self._rows)

        # Check widths before packing
        for matrix in matrices:
            shape = np.shape(matrix)
            if len(shape) != 2:
                raise ValueError(f"token matrix must be 2 dimensional (tokens x dim), got shape {shape}")
            if shape[1] != self.dimension:
                raise ValueError(f"token matrix width {shape[1]} does not match store dimension {self.dimension}")

        # Common dtype, converted once
        return self.append(*pack(matrices, dtype=np.result_type(*[np.asarray(m).dtype for m in matrices])))

    def delete(self, ids):
        """
        Tombstones rows. Ids out of range, not integers or already deleted are ignored.

        Args:
            ids: row id or list of row ids

        Returns:
            list of ids actually deleted, in input order
        """

        try:
            array = np.atleast_1d(np.asarray(ids))
        except ValueError:
            array = np.zeros(0, dtype=object)

        # Keep integer ids in range
        if array.dtype.kind not in "iu":
            values = list(ids) if isinstance(ids, (list, tuple)) else np.atleast_1d(np.asarray(ids, dtype=object)).ravel().tolist()
            values = [x for x in values if isinstance(x, (int, np.integer)) and not isinstance(x, bool) and 0 <= x < self._rows]
            array = np.array(values, dtype=np.int64)

        # Live ids, first occurrences
        ids = array.ravel().astype(np.int64)
        ids = ids[(ids >= 0) & (ids < self._rows)]
        ids = ids[np.sort(np.unique(ids, return_index=True)[1])]
        ids = ids[~self._deleted[ids]]

        self._deleted[ids] = True
        return ids.tolist()

    def gather(self, ids):
        """
        Gathers rows into one ragged batch in the order given.

        Args:
            ids: list or array of row ids, repeats allowed

        Returns:
            (flat, offsets, scales): flat in the stored dtype, int64 offsets (len(ids) + 1), per token scales for
            int8 stores (float16, float32 in older stores), otherwise None. Deleted rows come back with zero tokens.
        """

        ids = self._ids(ids)

        # Source rows, deleted ones empty
        starts = self._offsets[ids]
        lengths = self._offsets[ids + 1] - starts
        lengths[self._deleted[ids]] = 0

        # Source index of each output token
        offsets = np.zeros(len(ids) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        index = np.arange(offsets[-1], dtype=np.int64) + np.repeat(starts - offsets[:-1], lengths)

        # Checksum blocks on first read
        for verifier, start, rowbytes in self._verifiers if self._lazy else []:
            ends = np.minimum(starts + lengths, len(self._base))
            verifier.ranges(start + starts * rowbytes, start + ends * rowbytes)

        flat = take(self._base, self._tail, index)
        scales = take(self._basescales, self._tailscales, index) if self.dtype == "int8" else None

        return flat, offsets, scales

    def get(self, uid):
        """
        Gets one row's token vectors as float32 (dequantized for int8 stores). Deleted rows have zero tokens.

        Args:
            uid: row id

        Returns:
            float32 (tokens x dimension) matrix
        """

        flat, _, scales = self.gather([uid])
        return dequantize(flat, scales)

    def compact(self):
        """
        Rewrites the tokens without the deleted rows' tokens. Row ids stay stable: deleted rows become zero length.
        The compacted tokens are held in memory (a memory-mapped store is read in) until the next save.

        Returns:
            number of token vectors reclaimed
        """

        rows = self._rows
        lengths = np.diff(self._offsets[: rows + 1])
        reclaimed = int(lengths[self._deleted[:rows]].sum())
        if not reclaimed:
            return 0

        # Gather live tokens in row order
        flat, offsets, scales = self.gather(np.arange(rows))

        self._base, self._basescales = flat, scales
        self._tail, self._tailscales = self._empty(0)
        self._tailsize = 0
        self._offsets[: rows + 1] = offsets
        self._verifiers = []

        return reclaimed

    def save(self, path):
        """
        Saves to a folder atomically (folder.replace), never pickling. A crash at any point leaves a store that load(path)
        opens. Saving over the folder this store is memory mapped from works: the new files are written before the old
        ones are released. A store loaded with mmap=True re-maps the saved folder, releasing the appended tail's memory.
        Deleted rows' tokens are saved as is, call compact first to drop them.

        Args:
            path: output folder
        """

        path = os.path.abspath(os.fspath(path))

        # Only overwrite token stores
        if os.path.lexists(path) and not (os.path.isdir(path) and (not os.listdir(path) or isstore(path))):
            raise StoreError(f"{path}: exists and is not a txtai-muvera token store, refusing to overwrite it")

        # Verify before copying
        self.verify()
        rows, size = self._rows, self._tailsize
        scales = [self._basescales, self._tailscales[:size]] if self.dtype == "int8" else None

        def write(folder):
            self._config = writestore(
                folder, self.dimension, self.dtype, [self._base, self._tail[:size]], scales, self._offsets[: rows + 1], self._deleted[:rows]
            )

        def remap():
            # Map new files before old go
            if self.mmap:
                self._base, self._basescales = self._map(path, self._config, "written")
                self._tail, self._tailscales = self._empty(0)
                self._tailsize = 0
                self.path = path

        replace(path, write, remap)

    @staticmethod
    def load(path, mmap=True, verify="lazy"):
        """
        Loads a folder written by save. Tokens (and int8 scales) are memory mapped, so a large store opens without being
        read; store.json, offsets and tombstones are read and checksummed. The memory-mapped files are checksummed
        block by block according to verify.

        Crash recovery and the previous release's format: see storefolder.openstore.

        Args:
            path: store folder
            mmap: memory map tokens (default), False reads them into memory (and verifies them)
            verify: "lazy" checksums each block of the memory-mapped files the first time it is read (default), "load"
                checksums them all now, "off" checks only their sizes and headers until verify() or a save

        Returns:
            TokenStore

        Raises:
            StoreError: missing, foreign, corrupt or truncated store
        """

        if verify not in VERIFY:
            raise ValueError(f"verify must be one of {VERIFY}, got {verify!r}")

        path, config, offsets, deleted = openstore(path)
        store = TokenStore(config["dimension"], config["dtype"], config.get("scales", "float32"))

        # Map arrays into the new store
        # pylint: disable-next=W0212
        store._config = config
        # pylint: disable-next=W0212
        store._base, store._basescales = store._map(path, config, verify if mmap else "load", mmap)
        store._offsets, store._deleted, store._rows = offsets, deleted, config["rows"]
        store.path, store.mmap = (path, True) if mmap else (None, False)

        return store

    def verify(self):
        """
        Checksums every block of the memory-mapped files not verified yet.

        Raises:
            StoreError: a block does not match its recorded checksum
        """

        for verifier, _, _ in self._verifiers:
            verifier.all()

    def _ids(self, ids):
        """
        Converts and range checks row ids.

        Args:
            ids: row ids

        Returns:
            int64 array
        """

        ids = np.asarray(ids)
        if ids.ndim != 1 or (len(ids) and ids.dtype.kind not in "iu"):
            raise IndexError(f"row ids must be a 1D list of integers, got {ids!r}")

        ids = ids.astype(np.int64)
        if len(ids) and (ids.min() < 0 or ids.max() >= self._rows):
            bad = ids[(ids < 0) | (ids >= self._rows)][0]
            raise IndexError(f"row id {bad} out of range for a store with {self._rows} rows")

        return ids

    def _empty(self, size):
        """
        Creates an empty token matrix and scales (None unless int8).

        Args:
            size: number of rows

        Returns:
            (tokens, scales)
        """

        return np.zeros((size, self.dimension), dtype=self.dtype), np.zeros(size, dtype=self.scaletype) if self.dtype == "int8" else None

    def _map(self, path, config, policy, mmap=True):
        """
        Opens the tokens (and scales) files of a folder, see storefolder.maptokens.

        Args:
            path: store folder
            config: metadata
            policy: checksum policy, see load, or "written" for files this store just wrote
            mmap: memory map when True, read into memory otherwise

        Returns:
            (tokens, scales)
        """

        if policy != "written":
            self._lazy = policy == "lazy"
        tokens, scales, self._verifiers = maptokens(path, config, policy, mmap)
        return tokens, scales


def fits(scales, scaletype):
    """
    Checks that scales are held exactly by a scale type.

    >>> fits(np.array([0.5, 0.1], dtype=np.float32), np.dtype(np.float16))
    False

    Args:
        scales: float scales
        scaletype: numpy dtype

    Returns:
        True when converting loses nothing
    """

    # Overflow to inf never fits
    with np.errstate(over="ignore"):
        return scales.dtype == scaletype or bool((scales.astype(scaletype).astype(scales.dtype) == scales).all())


def blocks(store, size=1024, start=0):
    """
    Gathers a token store's rows in consecutive blocks (see TokenStore.gather), so a large store is read without one copy
    of it all. Works with any registered store.

    Args:
        store: token store
        size: rows per block
        start: first row

    Yields:
        (first row of the block, flat, offsets, scales)
    """

    for first in range(start, len(store), size):
        yield (first, *store.gather(range(first, min(first + size, len(store)))))
