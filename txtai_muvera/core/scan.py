"""
Scan module
"""

import warnings

import numpy as np
import torch

from .quantize import dequantize, quantize

# Candidate vector storage types
ENCODINGDTYPES = ("float16", "float32", "int8")

# Block bytes, fits CPU cache
BLOCK = 5 << 19


class Int8Rows:
    """
    int8 candidate vectors with one float32 scale per row (quantize.quantize): a quarter of float32's bytes.

    >>> rows = Int8Rows.quantize(np.array([[2.0, -1.0], [0.0, 0.5]], dtype=np.float32))
    >>> rows.shape, rows.values.tolist(), (rows.scales * 127).tolist()
    ((2, 2), [[127, -64], [0, 127]], [2.0, 0.5])
    """

    def __init__(self, values, scales):
        """
        Wraps int8 rows and their scales.

        Args:
            values: int8 (rows x dimensions) array, may be memory mapped
            scales: float32 scales, one per row
        """

        self.values, self.scales = values, scales

    @staticmethod
    def quantize(rows):
        """
        Quantizes float rows.

        Args:
            rows: float (rows x dimensions) array

        Returns:
            Int8Rows
        """

        return Int8Rows(*quantize(rows))

    @property
    def shape(self):
        """
        Rows x dimensions.

        Returns:
            shape tuple
        """

        return self.values.shape

    def __len__(self):
        return len(self.values)


class Scan:
    """
    Exact inner product search over float32, float16 or int8 candidate vectors (a full scan of every row).

    Float16 and int8 rows read a half and a quarter of float32's bytes. They are converted to float32 a cache-sized
    block at a time and multiplied in float32: torch's float16 product on CPU rounds its output to float16, which
    reorders close candidates. int8 scores are then multiplied by each row's scale.

    >>> rows = np.eye(3, 4, dtype=np.float16)
    >>> Scan()(np.array([[1, 2, 3, 4]], dtype=np.float32), rows).tolist()
    [[1.0, 2.0, 3.0]]
    >>> Scan()(np.array([[1, 2, 3, 4]], dtype=np.float32), Int8Rows.quantize(np.eye(3, 4) / 2)).tolist()
    [[0.5, 1.0, 1.5]]
    """

    @torch.no_grad()
    def __call__(self, queries, rows):
        """
        Scores queries against every row.

        Args:
            queries: float32 (queries x dimensions) array
            rows: float32 or float16 (documents x dimensions) array, may be memory mapped, or Int8Rows

        Returns:
            float32 torch tensor (queries x documents)
        """

        queries = torch.from_numpy(np.ascontiguousarray(queries, dtype=np.float32))
        scales = tensor(rows.scales) if isinstance(rows, Int8Rows) else None
        rows = tensor(rows.values if isinstance(rows, Int8Rows) else rows)

        # float32: one product
        if rows.dtype == torch.float32:
            return queries @ rows.T

        # float16 and int8: convert block by block
        size = max(1, BLOCK // (4 * max(1, rows.shape[1])))
        scores = torch.empty((rows.shape[0], queries.shape[0]), dtype=torch.float32)
        buffer = torch.empty((min(size, rows.shape[0]), rows.shape[1]), dtype=torch.float32)
        for start in range(0, rows.shape[0], size):
            end = min(start + size, rows.shape[0])
            block = buffer[: end - start]
            block.copy_(rows[start:end])
            torch.mm(block, queries.T, out=scores[start:end])

        # int8 row scales
        if scales is not None:
            scores.mul_(scales.unsqueeze(1))

        return scores.T


def tensor(rows):
    """
    Wraps rows as a CPU tensor without copying; read-only memory-mapped arrays are never written.

    Args:
        rows: numpy array

    Returns:
        torch tensor
    """

    with warnings.catch_warnings():
        # Read-only warning: scans only read
        warnings.simplefilter("ignore", UserWarning)
        return torch.from_numpy(np.asarray(rows))


def encodingrows(rows, dtype):
    """
    Converts float32 candidate vectors to their storage type, refusing values float16 cannot hold.

    Args:
        rows: float array or Int8Rows
        dtype: "float16", "float32" or "int8"

    Returns:
        array of the storage type, Int8Rows for int8
    """

    if dtype not in ENCODINGDTYPES:
        raise ValueError(f"encodingdtype must be one of {ENCODINGDTYPES}, got {dtype!r}")

    # int8 rows, or int8 back to float
    if isinstance(rows, Int8Rows):
        rows = rows if dtype == "int8" else dequantize(rows.values, rows.scales)
    if dtype == "int8":
        return rows if isinstance(rows, Int8Rows) else Int8Rows.quantize(rows)

    if dtype == "float32" or rows.dtype == np.float16:
        return rows

    # float16 range check
    largest = float(np.abs(rows).max()) if rows.size else 0.0
    # pylint misreads finfo.max
    # pylint: disable-next=E1101
    if largest > float(np.finfo(np.float16).max):
        raise ValueError(f"candidate vectors hold values up to {largest:g}, beyond float16's range: set muvera: {{encodingdtype: float32}}")

    return rows.astype(np.float16)


def joinrows(rows, more):
    """
    Appends float32 candidate vectors to stored ones, in the stored rows' type.

    >>> joinrows(np.zeros((1, 2), dtype=np.float16), np.ones((1, 2), dtype=np.float32))
    array([[0., 0.],
           [1., 1.]], dtype=float16)

    Args:
        rows: stored rows, a float array or Int8Rows
        more: float32 rows to append

    Returns:
        joined rows
    """

    if isinstance(rows, Int8Rows):
        more = encodingrows(more, "int8")
        return Int8Rows(np.concatenate((rows.values, more.values)), np.concatenate((rows.scales, more.scales)))

    return np.concatenate((rows, encodingrows(more, str(rows.dtype))))


def rowbytes(dimensions, dtype):
    """
    Bytes one stored candidate vector takes.

    >>> rowbytes(2048, "float16"), rowbytes(2048, "int8")
    (4096, 2052)

    Args:
        dimensions: vector dimensions
        dtype: storage type

    Returns:
        bytes per row
    """

    return dimensions * np.dtype(dtype).itemsize + (4 if dtype == "int8" else 0)


def fderows(embeddings):
    """
    Reads FDE rows as a contiguous float32 array, refusing NaN and inf.

    Args:
        embeddings: FDE rows

    Returns:
        float32 array
    """

    fdes = np.ascontiguousarray(embeddings, dtype=np.float32)
    if fdes.ndim != 2:
        raise ValueError(f"FDE vectors must be a 2D array, got shape {fdes.shape}")

    # Chunked, no copy of mapped arrays
    for start in range(0, fdes.shape[0], 65536):
        if not np.isfinite(fdes[start : start + 65536]).all():
            raise ValueError("FDE vectors contain NaN or infinite values")

    return fdes
