"""
Arrays module: growable arrays and reads across a memory-mapped base and an in-memory tail
"""

import numpy as np


def grow(array, size, used=None):
    """
    Grows an array along axis 0 to hold size entries, doubling capacity so appends are amortised O(1).

    Args:
        array: array, or None for an array that holds nothing (passed through)
        size: required entries
        used: entries to keep, all by default

    Returns:
        array with len >= size, used entries kept
    """

    if array is None or size <= len(array):
        return array

    used = len(array) if used is None else used
    grown = np.zeros((max(size, 2 * len(array), 256),) + array.shape[1:], dtype=array.dtype)
    grown[:used] = array[:used]
    return grown


def take(base, tail, index):
    """
    Reads positions across a base (memory map or in memory) and the tail that continues it.

    Args:
        base: base array
        tail: tail array
        index: int64 positions

    Returns:
        array with one entry per index
    """

    size = len(base)
    if not len(index) or index.max() < size:
        return np.asarray(base[index])
    if index.min() >= size:
        return tail[index - size]

    # Mixed reads
    inbase = index < size
    output = np.empty((len(index),) + base.shape[1:], dtype=base.dtype)
    output[inbase] = base[index[inbase]]
    output[~inbase] = tail[index[~inbase] - size]
    return output


def readonly(array):
    """
    Makes a read-only view.

    Args:
        array: array

    Returns:
        read-only view
    """

    view = array.view()
    view.flags.writeable = False
    return view
