"""
Quantize module
"""

import numpy as np


def quantize(matrix, scaletype=np.float32):
    """
    Quantizes token vectors to int8 with one symmetric scale per vector (row): scale = max|x| / 127,
    q = round(x / scale). Every element comes back within scale / 2 after dequantize. float16 scales are rounded up to
    the next float16, so that bound still holds and no value is clipped.

    >>> q, scales = quantize(np.array([[1.0, -0.5], [0.0, 0.0]]))
    >>> q.tolist(), (scales * 127).tolist()
    ([[127, -64], [0, 0]], [1.0, 0.0])
    >>> q, scales = quantize(np.array([[0.3, -0.1]]), np.float16)
    >>> q.tolist(), scales.dtype.name, bool(scales[0] >= np.float32(0.3) / 127)
    ([[127, -42]], 'float16', True)

    Args:
        matrix: (tokens x dim) float array
        scaletype: float32 or float16 scales

    Returns:
        (int8 matrix, scales with one entry per row)
    """

    matrix = np.asarray(matrix, dtype=np.float32)
    scales = np.abs(matrix).max(axis=1) / np.float32(127) if matrix.shape[1] else np.zeros(matrix.shape[0], dtype=np.float32)
    scales = roundup(scales, np.dtype(scaletype))

    # Zero rows keep scale 0, no 0 / 0
    divisor = np.where(scales > 0, scales.astype(np.float32), np.float32(1))
    quantized = np.clip(np.rint(matrix / divisor[:, None]), -127, 127).astype(np.int8)

    return quantized, scales


def roundup(scales, dtype):
    """
    Converts float32 scales to dtype, rounding up.

    Args:
        scales: float32 scales
        dtype: float32 or float16

    Returns:
        scales of dtype, each >= its float32 value
    """

    if dtype == np.float32:
        return scales.astype(np.float32)

    # Overflow becomes inf, refused below
    with np.errstate(over="ignore"):
        rounded = scales.astype(dtype)
    low = rounded.astype(np.float32) < scales
    rounded[low] = np.nextafter(rounded[low], np.asarray(np.inf, dtype=dtype))
    if not np.isfinite(rounded).all():
        raise ValueError(f"token vector values up to {float(scales.max()) * 127:g} are too large for int8 with {dtype} scales, store them as float16")

    return rounded


def dequantize(matrix, scales):
    """
    Expands int8 token vectors back to float32.

    >>> dequantize(np.array([[127, -64]], dtype=np.int8), np.array([0.5], dtype=np.float32)).tolist()
    [[63.5, -32.0]]

    Args:
        matrix: (tokens x dim) int8 array, or float rows of a float store
        scales: float scales, one per row, None for float rows

    Returns:
        float32 matrix
    """

    matrix = np.asarray(matrix, dtype=np.float32)
    return matrix * np.asarray(scales, dtype=np.float32)[:, None] if scales is not None else matrix
