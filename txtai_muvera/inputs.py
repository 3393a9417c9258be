"""
Inputs module
"""

import numpy as np


def matrices(encoder, data, category):
    """
    Turns a batch of texts and/or pre-encoded token matrices into token matrices. All texts are encoded in one call
    so that the encoder can sort them by length.

    Args:
        encoder: late-interaction encoder
        data: list of str, numpy arrays or torch tensors (tokens x dimension)
        category: query or data

    Returns:
        list of float32 token matrices
    """

    results, texts, positions = [None] * len(data), [], []
    for x, value in enumerate(data):
        if isinstance(value, str):
            texts.append(value)
            positions.append(x)
        elif hasattr(value, "shape") and hasattr(value, "__array__"):
            results[x] = matrix(encoder, value, x)
        else:
            raise TypeError(f"item {x} must be a str or a (tokens x {encoder.dimension}) token matrix, got {type(value).__name__}")

    if texts:
        for x, result in zip(positions, encoder.encode(texts, category=category)):
            results[x] = result

    return results


def matrix(encoder, value, position):
    """
    Validates a pre-encoded token matrix.

    Args:
        encoder: late-interaction encoder
        value: numpy array or torch tensor
        position: position in the batch, for the error message

    Returns:
        float32 numpy matrix
    """

    # Torch tensors may live on a GPU
    value = value.detach().cpu().float().numpy() if hasattr(value, "detach") else np.asarray(value)

    if value.ndim != 2 or value.shape[1] != encoder.dimension:
        raise ValueError(f"token matrix {position} has shape {value.shape}, expected (tokens, {encoder.dimension}) for this model")
    if not np.isfinite(value).all():
        raise ValueError(f"token matrix {position} contains NaN or inf")

    return value.astype(np.float32, copy=False)
