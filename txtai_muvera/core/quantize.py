"""
Quantize module
"""

import numpy as np


def quantize(matrix):
    """
    Quantizes token vectors to int8 with one symmetric float32 scale per vector (row): scale = max|x| / 127,
    q = round(x / scale). Every element comes back within scale / 2 after dequantize.

    >>> q, scales = quantize(np.array([[1.0, -0.5], [0.0, 0.0]]))
    >>> q.tolist(), (scales * 127).tolist()
    ([[127, -64], [0, 0]], [1.0, 0.0])

    Args:
        matrix: (tokens x dim) float array

    Returns:
        (int8 matrix, float32 scales with one entry per row)
    """

    matrix = np.asarray(matrix, dtype=np.float32)
    scales = np.abs(matrix).max(axis=1) / np.float32(127) if matrix.shape[1] else np.zeros(matrix.shape[0], dtype=np.float32)

    # Zero rows keep scale 0, no 0 / 0
    divisor = np.where(scales > 0, scales, np.float32(1))
    quantized = np.clip(np.rint(matrix / divisor[:, None]), -127, 127).astype(np.int8)

    return quantized, scales.astype(np.float32)


def dequantize(matrix, scales):
    """
    Expands int8 token vectors back to float32.

    >>> dequantize(np.array([[127, -64]], dtype=np.int8), np.array([0.5], dtype=np.float32)).tolist()
    [[63.5, -32.0]]

    Args:
        matrix: (tokens x dim) int8 array, or float rows of a float store
        scales: float32 scales, one per row, None for float rows

    Returns:
        float32 matrix
    """

    matrix = np.asarray(matrix, dtype=np.float32)
    return matrix * np.asarray(scales, dtype=np.float32)[:, None] if scales is not None else matrix
