"""
Ragged module
"""

import numpy as np


def pack(matrices, dtype=np.float32):
    """
    Packs a list of (tokens x dim) matrices into one flat matrix and offsets, without padding.

    >>> flat, offsets = pack([np.ones((2, 3)), np.zeros((1, 3))])
    >>> flat.shape, offsets.tolist()
    ((3, 3), [0, 2, 3])

    Args:
        matrices: list of 2D arrays with the same number of columns
        dtype: output dtype

    Returns:
        (flat, offsets) where rows offsets[i]:offsets[i + 1] of flat belong to matrix i
    """

    if not len(matrices):
        raise ValueError("pack needs at least one matrix")

    widths = {np.shape(m)[1] if np.ndim(m) == 2 else None for m in matrices}
    if None in widths:
        raise ValueError("every token matrix must be 2 dimensional (tokens x dim)")
    if len(widths) > 1:
        raise ValueError(f"token matrices have different widths: {sorted(widths)}")

    lengths = np.array([np.shape(m)[0] for m in matrices], dtype=np.int64)
    offsets = np.concatenate(([0], np.cumsum(lengths))).astype(np.int64)
    flat = np.concatenate([np.asarray(m, dtype=dtype) for m in matrices]) if offsets[-1] else np.zeros((0, widths.pop()), dtype=dtype)

    return flat, offsets


def unpack(flat, offsets):
    """
    Splits a flat matrix back into a list of views, one per matrix.

    >>> [m.shape for m in unpack(np.zeros((3, 2)), np.array([0, 2, 3]))]
    [(2, 2), (1, 2)]

    Args:
        flat: flat (total tokens x dim) matrix
        offsets: int64 offsets, len(matrices) + 1

    Returns:
        list of matrices
    """

    return [flat[offsets[x] : offsets[x + 1]] for x in range(len(offsets) - 1)]


def segments(offsets):
    """
    Maps every flat row to the index of the matrix it belongs to.

    >>> segments(np.array([0, 2, 2, 3])).tolist()
    [0, 0, 2]

    Args:
        offsets: int64 offsets

    Returns:
        int64 array with one matrix index per flat row
    """

    offsets = np.asarray(offsets, dtype=np.int64)
    return np.repeat(np.arange(len(offsets) - 1, dtype=np.int64), np.diff(offsets))


def pad(matrices):
    """
    Pads token matrices with zero rows into one (matrices x tokens x dim) array, txtai's multi-vector format.

    Args:
        matrices: list of (tokens x dim) numpy arrays or torch tensors

    Returns:
        float32 numpy array
    """

    batch = np.zeros((len(matrices), max(m.shape[0] for m in matrices), matrices[0].shape[1]), dtype=np.float32)
    for x, matrix in enumerate(matrices):
        batch[x, : matrix.shape[0]] = np.asarray(matrix, dtype=np.float32)

    return batch


def unpad(batch):
    """
    Splits a zero-padded (matrices x tokens x dim) array into token matrices, dropping all-zero rows (padding).

    Args:
        batch: 3D numpy array or torch tensor

    Returns:
        list of (tokens x dim) numpy arrays
    """

    batch = batch.detach().cpu().numpy() if hasattr(batch, "detach") else np.asarray(batch)
    return [matrix[np.abs(matrix).sum(axis=1) > 0] for matrix in batch]


def checkoffsets(offsets, rows, name="offsets", error=ValueError):
    """
    Validates the offsets of a ragged batch: a 1D integer array that starts at 0, never decreases and ends at rows.

    >>> checkoffsets([0, 2, 3], 3).tolist()
    [0, 2, 3]

    Args:
        offsets: numpy array, tensor or list
        rows: number of flat rows (tokens)
        name: what the offsets are, for messages
        error: exception class raised on a problem

    Returns:
        int64 numpy offsets
    """

    offsets = offsets.detach().cpu().numpy() if hasattr(offsets, "detach") else np.asarray(offsets)
    if offsets.ndim != 1 or not len(offsets) or offsets.dtype.kind not in "iu":
        raise error(f"{name} must be a 1D integer array with one more entry than matrices, got shape {offsets.shape} and dtype {offsets.dtype}")

    offsets = offsets.astype(np.int64)
    if offsets[0] != 0 or offsets[-1] != rows or (np.diff(offsets) < 0).any():
        raise error(f"{name} must rise monotonically from 0 to {rows} (the number of token rows)")

    return offsets


def chunks(offsets, tokens, matrices=None):
    """
    Splits ragged matrices into consecutive runs of at most `tokens` tokens (and `matrices` matrices), at least one
    matrix each.

    >>> chunks(np.array([0, 2, 4, 5]), 3)
    [(0, 1), (1, 3)]

    Args:
        offsets: int64 numpy offsets
        tokens: most tokens per run (a longer matrix runs alone)
        matrices: optional most matrices per run

    Returns:
        list of (first matrix, end matrix)
    """

    runs, start, count = [], 0, len(offsets) - 1
    while start < count:
        end = min(count, start + matrices) if matrices else count
        end = max(start + 1, min(end, int(np.searchsorted(offsets, offsets[start] + tokens, side="right")) - 1))
        runs.append((start, end))
        start = end

    return runs
