"""
Scan module
"""

import warnings

import numpy as np
import torch

# Candidate vector storage types
ENCODINGDTYPES = ("float16", "float32")

# Block bytes, fits CPU cache
BLOCK = 5 << 19


class Scan:
    """
    Exact inner product search over float32 or float16 candidate vectors (a full scan of every row).

    Float16 rows halve the bytes read. They are converted to float32 a cache-sized block at a time and multiplied in
    float32: torch's float16 product on CPU rounds its output to float16, which reorders close candidates.

    >>> rows = np.eye(3, 4, dtype=np.float16)
    >>> Scan()(np.array([[1, 2, 3, 4]], dtype=np.float32), rows).tolist()
    [[1.0, 2.0, 3.0]]
    """

    @torch.no_grad()
    def __call__(self, queries, rows):
        """
        Scores queries against every row.

        Args:
            queries: float32 (queries x dimensions) array
            rows: float32 or float16 (documents x dimensions) array, may be memory mapped

        Returns:
            float32 torch tensor (queries x documents)
        """

        queries = torch.from_numpy(np.ascontiguousarray(queries, dtype=np.float32))
        rows = tensor(rows)

        # float32: one product
        if rows.dtype == torch.float32:
            return queries @ rows.T

        # float16: convert block by block
        size = max(1, BLOCK // (4 * max(1, rows.shape[1])))
        scores = torch.empty((rows.shape[0], queries.shape[0]), dtype=torch.float32)
        buffer = torch.empty((min(size, rows.shape[0]), rows.shape[1]), dtype=torch.float32)
        for start in range(0, rows.shape[0], size):
            end = min(start + size, rows.shape[0])
            block = buffer[: end - start]
            block.copy_(rows[start:end])
            torch.mm(block, queries.T, out=scores[start:end])

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
        rows: float32 array
        dtype: "float16" or "float32"

    Returns:
        array of the storage type
    """

    if dtype not in ENCODINGDTYPES:
        raise ValueError(f"encodingdtype must be one of {ENCODINGDTYPES}, got {dtype!r}")

    if dtype == "float32" or rows.dtype == np.float16:
        return rows

    # float16 range check
    largest = float(np.abs(rows).max()) if rows.size else 0.0
    # pylint misreads finfo.max
    # pylint: disable-next=E1101
    if largest > float(np.finfo(np.float16).max):
        raise ValueError(f"candidate vectors hold values up to {largest:g}, beyond float16's range: set muvera: {{encodingdtype: float32}}")

    return rows.astype(np.float16)


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
