"""
Inputs module
"""

import numpy as np

from .ragged import checkoffsets

# Largest finite value per dtype
# pylint misreads finfo.max
# pylint: disable-next=E1101
LIMITS = {"float32": float(np.finfo(np.float32).max), "float16": float(np.finfo(np.float16).max), "int8": float(np.finfo(np.float32).max)}


def matrices(encoder, data, category, names=None, dtype="float32", progress=None):
    """
    Turns a batch of texts and/or pre-encoded token matrices into token matrices. All texts are encoded in one call
    so that the encoder can sort them by length.

    Args:
        encoder: late-interaction encoder
        data: list of str, numpy arrays or torch tensors (tokens x dimension)
        category: query or data
        names: optional labels of the items for error messages ("document 7"), "query 0", "document 0", ... otherwise
        dtype: token dtype the matrices will be stored in, values past its range are refused
        progress: optional progress display, counts texts as they are encoded

    Returns:
        list of float32 token matrices
    """

    results, texts, positions = [None] * len(data), [], []
    for x, value in enumerate(data):
        label = names[x] if names is not None else f"{'query' if category == 'query' else 'document'} {x}"
        value = checkinput(value, encoder.dimension, label, dtype)
        if isinstance(value, str):
            texts.append(value)
            positions.append(x)
        else:
            results[x] = value

    if texts:
        for x, result in zip(positions, encoder.encode(texts, category=category, **({"progress": progress} if progress is not None else {}))):
            results[x] = result

    return results


def nonblank(data):
    """
    Texts of a batch that hold words: non-blank strings, not token matrices.

    >>> list(nonblank(["a b", " ", np.zeros((1, 2)), "c"]))
    ['a b', 'c']

    Args:
        data: texts or token matrices

    Returns:
        generator of texts
    """

    return (x for x in data if isinstance(x, str) and x.strip())


def checkinput(value, dimension, label, dtype="float32"):
    """
    Checks one input: a text or a pre-encoded (tokens x dimension) token matrix. Texts of any content are accepted,
    empty and blank ones included: they encode to the marker tokens only, as PyLate encodes them.

    Args:
        value: input item
        dimension: token vector width of the model
        label: item label for error messages, such as "document 'a1'" or "query 0"
        dtype: token dtype the matrix will be stored in

    Returns:
        the text, or the token matrix as a float32 numpy array

    Raises:
        TypeError: the item is neither a text nor a token matrix
        ValueError: a token matrix of the wrong shape, without tokens, or with NaN, inf or out of range values
    """

    if isinstance(value, str):
        return value

    if hasattr(value, "shape") and hasattr(value, "__array__"):
        return matrix(value, dimension, label, dtype)

    raise TypeError(f"{label} must be a str or a (tokens x {dimension}) token matrix, got {type(value).__name__}")


def matrix(value, dimension, label, dtype="float32"):
    """
    Validates a pre-encoded token matrix.

    Args:
        value: numpy array or torch tensor
        dimension: token vector width of the model
        label: item label for error messages
        dtype: token dtype the matrix will be stored in

    Returns:
        float32 numpy matrix
    """

    # Tensors may be on a GPU
    value = value.detach().cpu().numpy() if hasattr(value, "detach") else np.asarray(value)

    if value.dtype.kind not in "fiu":
        raise ValueError(f"{label}: token matrix has dtype {value.dtype}, expected real numbers")
    if value.ndim != 2 or value.shape[1] != dimension:
        raise ValueError(f"{label}: token matrix has shape {value.shape}, expected (tokens, {dimension}) for this model")
    if not value.shape[0]:
        raise ValueError(f"{label}: token matrix has no token vectors, MaxSim needs at least one")

    # After the cast: it can overflow
    with np.errstate(over="ignore", invalid="ignore"):
        value = value.astype(np.float32, copy=False)
    if not np.isfinite(value).all():
        raise ValueError(f"{label}: token matrix contains NaN or infinite values")
    if np.abs(value).max() > LIMITS.get(dtype, LIMITS["float32"]):
        raise ValueError(f"{label}: token matrix has values beyond the {dtype} range the index stores")

    return value


def checkbatch(flat, offsets, dimension):
    """
    Checks a ragged batch of token vectors before it is stored.

    Args:
        flat: (total tokens x dimension) array
        offsets: offsets, one more than the number of matrices
        dimension: token vector width of the store

    Returns:
        (flat, int64 offsets) as numpy arrays
    """

    flat = np.asarray(flat)
    if flat.ndim != 2:
        raise ValueError(f"token matrix must be 2 dimensional (tokens x dim), got shape {flat.shape}")
    if flat.shape[1] != dimension:
        raise ValueError(f"token matrix width {flat.shape[1]} does not match store dimension {dimension}")
    if flat.dtype.kind not in "fiu":
        raise ValueError(f"token vectors must be real numbers, got dtype {flat.dtype}")

    return flat, checkoffsets(offsets, len(flat))


def storedfloats(flat, offsets, dtype):
    """
    Converts a checked batch to the float type a store keeps (float32 for int8 stores, which quantize it next), refusing
    NaN, inf and values past that type's range.

    Args:
        flat: checked flat token matrix
        offsets: checked offsets, to name the matrix at fault
        dtype: store dtype

    Returns:
        float16 or float32 rows
    """

    # Cast first to catch overflow
    with np.errstate(over="ignore"):
        values = flat.astype(np.float16 if dtype == "float16" else np.float32, copy=False)
    if not np.isfinite(values).all():
        row = int(np.searchsorted(offsets, np.flatnonzero(~np.isfinite(values).all(axis=1))[0], side="right")) - 1
        overflow = flat.dtype.kind != "f" or np.isfinite(flat).all()
        problem = f"values beyond the {values.dtype} range" if overflow else "NaN or infinite values"
        raise ValueError(f"token vectors contain {problem} (matrix {row} of the batch)")

    return values


def checkquantized(flat, scales):
    """
    Checks int8 token vectors and their per token scales (see TokenStore.gather).

    Args:
        flat: int8 rows
        scales: float scales, one per row

    Returns:
        (int8 rows, float32 scales)
    """

    scales = np.asarray(scales)
    if flat.dtype != np.int8:
        raise ValueError(f"token vectors with scales must be int8, got dtype {flat.dtype}")
    if scales.shape != (len(flat),) or scales.dtype.kind != "f" or not (np.isfinite(scales) & (scales >= 0)).all():
        raise ValueError(f"scales must be {len(flat)} finite, non-negative floats, one per token vector")

    return flat, scales.astype(np.float32, copy=False)
