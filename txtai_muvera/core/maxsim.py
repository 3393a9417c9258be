"""
MaxSim module
"""

import numpy as np
import torch

from .ragged import checkoffsets, chunks

# Score chunk elements, fits CPU cache
BUDGET = 1 << 20

# Most query tokens scored at once
QUERYTOKENS = 1 << 10

# Larger chunks on accelerators
DEVICEBUDGET = 1 << 26

# Query tokens on accelerators
DEVICEQUERYTOKENS = 1 << 13


@torch.no_grad()
def maxsim(queries, qoffsets, documents, doffsets, reduce="mean", scales=None):
    """
    Scores every query against every document with late interaction (MaxSim), documents held ragged.

    Each chunk of documents takes one product against all query tokens, a max per document and a sum per query. On
    accelerators, a chunk's documents are padded to its longest one for a batched product.

    Documents without tokens score -inf (0.0 could outrank negative scores). Queries without tokens score 0.0.

    >>> queries = np.array([[1.0, 0.0], [0.0, 1.0]], dtype=np.float32)
    >>> documents = np.array([[1.0, 0.0], [0.5, 0.5], [0.0, -1.0]], dtype=np.float32)
    >>> maxsim(queries, [0, 2], documents, [0, 2, 2, 3]).tolist()
    [[0.75, -inf, -0.5]]
    >>> maxsim(queries, [0, 2], documents, [0, 2, 2, 3], reduce="sum").tolist()
    [[1.5, -inf, -1.0]]

    Args:
        queries: (total query tokens x dim) array or tensor
        qoffsets: int64 query offsets
        documents: (total document tokens x dim) array or tensor, float32/float16 or int8 (with scales)
        doffsets: int64 document offsets
        reduce: "mean" over query tokens (txtai's convention) or "sum" (PyLate's)
        scales: optional per-token float32 scales for int8 documents

    Returns:
        float32 torch tensor (queries x documents), on the documents' device
    """

    if reduce not in ("mean", "sum"):
        raise ValueError(f"reduce must be 'mean' or 'sum', got {reduce!r}")

    # Tensors on the documents' device
    documents = tensor(documents)
    device = documents.device
    queries = tensor(queries).to(device)
    if queries.dim() != 2 or documents.dim() != 2:
        raise ValueError(f"queries and documents must be 2D token matrices, got shapes {tuple(queries.shape)} and {tuple(documents.shape)}")
    if queries.shape[1] != documents.shape[1]:
        raise ValueError(f"query width {queries.shape[1]} does not match document width {documents.shape[1]}")

    qoffsets, doffsets = checkoffsets(qoffsets, queries.shape[0], "qoffsets"), checkoffsets(doffsets, documents.shape[0], "doffsets")

    # int8 documents need token scales
    if scales is not None:
        scales = tensor(scales).to(device=device, dtype=torch.float32).view(-1)
        if scales.shape[0] != documents.shape[0]:
            raise ValueError(f"scales has {scales.shape[0]} values for {documents.shape[0]} document tokens")
    elif not documents.is_floating_point():
        raise ValueError(f"{documents.dtype} documents need per-token scales")

    # float32 on CPU: half is slow there
    dtype = documents.dtype if device.type != "cpu" and documents.is_floating_point() else torch.float32
    queries = queries.to(dtype)

    # Token counts
    qlengths, dlengths = np.diff(qoffsets), np.diff(doffsets)
    scores = torch.zeros((len(qlengths), len(dlengths)), dtype=torch.float32, device=device)

    # Chunk sizes per device
    budget, querytokens = (BUDGET, QUERYTOKENS) if device.type == "cpu" else (DEVICEBUDGET, DEVICEQUERYTOKENS)

    for qstart, qend in chunks(qoffsets, querytokens):
        # Query tokens and their owners
        qtokens = queries[qoffsets[qstart] : qoffsets[qend]]
        owners = torch.from_numpy(np.repeat(np.arange(qend - qstart), qlengths[qstart:qend])).to(device)

        for dstart, dend in chunks(doffsets, max(1, budget // max(1, len(qtokens)))):
            # Document tokens, dequantized
            dtokens = documents[doffsets[dstart] : doffsets[dend]].to(dtype)
            if scales is not None:
                dtokens = dtokens * scales[doffsets[dstart] : doffsets[dend]].view(-1, 1).to(dtype)

            # Best token, summed per query
            maxima = segmax(qtokens, dtokens, doffsets[dstart : dend + 1] - doffsets[dstart])
            sums = torch.zeros((qend - qstart, dend - dstart), dtype=torch.float32, device=device).index_add_(0, owners, maxima)
            scores[qstart:qend, dstart:dend] = sums

    # Mean over query tokens
    if reduce == "mean":
        scores /= torch.from_numpy(np.maximum(qlengths, 1)).to(device=device, dtype=torch.float32).view(-1, 1)

    # Empty documents score -inf
    if (dlengths == 0).any():
        scores[:, torch.from_numpy(dlengths == 0).to(device)] = -torch.inf

    return scores


def rank(scores, limit=None):
    """
    Sorts each row of scores, highest first, ties by lowest index.

    >>> rank(torch.tensor([[0.25, 0.75, 0.5], [0.5, 0.5, -0.25]]), 2)
    [[(1, 0.75), (2, 0.5)], [(0, 0.5), (1, 0.5)]]

    Args:
        scores: (queries x documents) tensor or array
        limit: maximum results per row, defaults to all

    Returns:
        list of (index, score) lists, one per row
    """

    scores = tensor(scores).float().cpu()
    values, indices = torch.sort(scores, dim=1, descending=True, stable=True)
    values, indices = values[:, :limit].tolist(), indices[:, :limit].tolist()

    return [list(zip(index, value)) for index, value in zip(indices, values)]


def segmax(qtokens, dtokens, offsets):
    """
    Computes the best document token score of every query token, for each document.

    Args:
        qtokens: (query tokens x dim) tensor
        dtokens: (document tokens x dim) tensor, same dtype and device
        offsets: int64 numpy document offsets into dtokens, starting at 0

    Returns:
        float32 tensor (query tokens x documents), 0 for documents without tokens
    """

    # Segments of non-empty documents
    lengths = np.diff(offsets)
    nonempty = lengths > 0
    if not nonempty.any() or not qtokens.shape[0]:
        return torch.zeros((qtokens.shape[0], len(lengths)), dtype=torch.float32, device=qtokens.device)

    # Padded batches on accelerators
    if qtokens.device.type == "cpu":
        best = reduceat(qtokens, dtokens, offsets[:-1][nonempty])
    else:
        best = padded(qtokens, dtokens, offsets[:-1][nonempty], lengths[nonempty])

    if nonempty.all():
        return best

    # Empty documents: 0, masked later
    maxima = torch.zeros((qtokens.shape[0], len(lengths)), dtype=torch.float32, device=qtokens.device)
    maxima[:, torch.from_numpy(nonempty).to(qtokens.device)] = best
    return maxima


def reduceat(qtokens, dtokens, starts):
    """
    Segmented max with one product and a max over each document's rows (CPU).

    Args:
        qtokens: (query tokens x dim) CPU tensor
        dtokens: (document tokens x dim) CPU tensor
        starts: int64 numpy start of each document, documents without tokens left out

    Returns:
        float32 tensor (query tokens x documents)
    """

    # Pad small operands: MKL rounds them differently,
    # certified top k needs batch-independent scores
    rows, columns = dtokens.shape[0], qtokens.shape[0]
    if rows < 16:
        dtokens = torch.cat((dtokens, dtokens.new_zeros((16 - rows, dtokens.shape[1]))))
    if columns < 16:
        qtokens = torch.cat((qtokens, qtokens.new_zeros((16 - columns, qtokens.shape[1]))))

    # Documents as contiguous rows
    products = torch.mm(dtokens, qtokens.T)[:rows, :columns]
    return rowmax(products, starts, np.diff(np.append(starts, rows))).T.contiguous()


def rowmax(products, starts, lengths):
    """
    Max over each document's rows of a (document tokens x columns) matrix.

    Rows are gathered into a (documents x longest x columns) block, shorter documents repeating their last row, for one
    amax: faster than NumPy's reduceat over narrow rows, which runs instead where padding would more than double the rows.

    Args:
        products: (document tokens x columns) CPU tensor, documents contiguous
        starts: int64 numpy start of each document
        lengths: int64 numpy tokens of each document, all > 0

    Returns:
        tensor (documents x columns), products' dtype
    """

    width = int(lengths.max())
    if width * len(lengths) > 2 * products.shape[0] + 256:
        return torch.from_numpy(np.maximum.reduceat(products.numpy(), starts, axis=0))

    rows = starts[:, None] + np.minimum(np.arange(width)[None, :], lengths[:, None] - 1)
    gathered = torch.index_select(products, 0, torch.from_numpy(rows.ravel()))
    return gathered.view(len(lengths), width, products.shape[1]).amax(dim=1)


def padded(qtokens, dtokens, starts, lengths):
    """
    Segmented max with documents zero padded to the chunk's longest one, one batched product, a masked max (any device,
    made for accelerators where torch.segment_reduce is slow).

    Args:
        qtokens: (query tokens x dim) tensor
        dtokens: (document tokens x dim) tensor, same dtype and device
        starts: int64 numpy start of each document, documents without tokens left out
        lengths: int64 numpy tokens of each document, all > 0

    Returns:
        float32 tensor (query tokens x documents)
    """

    # Rows per position, padding masked
    width = int(lengths.max())
    positions = np.arange(width)
    mask = positions[None, :] < lengths[:, None]
    rows = np.where(mask, starts[:, None] + positions[None, :], starts[:, None])

    # Batched product, padding at -inf
    device = qtokens.device
    products = torch.matmul(dtokens[torch.from_numpy(rows).to(device)], qtokens.T)
    products.masked_fill_(~torch.from_numpy(mask).to(device).unsqueeze(-1), -torch.inf)
    return products.amax(dim=1).float().T


def tensor(data):
    """
    Wraps arrays as tensors without copying.

    Args:
        data: numpy array, tensor or nested list

    Returns:
        tensor
    """

    return data if isinstance(data, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(data))
