"""
Certified top-k module

Exact MaxSim top k at int8 speed. Every (query, document) pair is screened with int8 products (exact int32 sums) and a
rigorous bound on the difference to float32 MaxSim; only documents whose upper bound can reach the k-th best exact score
are scored again in float32. Ids, order and scores are those of maxsim.rank(maxsim.maxsim(...)).

Error bound. A query token is q = s * Q + rq (Q int8, s = max|q| / 127), a document's tokens d = t * D + rd with one scale
t per document, so the max over its tokens runs on the integers. Then (Cauchy-Schwarz, max over the document's tokens)

    q . d - s * t * (Q . D) = s * Q . rd + rq . d,   |.| <= s * |Q| * max|rd| + |rq| * max|d|

Q . D is exact in int32 and s * t > 0, so the max of screened products is the screened max, and |max a - max b| <=
max |a - b|: summing over query tokens bounds the MaxSim difference. float32 MaxSim is within (d + n + 4) * u * sum |q| *
max|d| of the real value (u = 2^-24, d the width, n query tokens), counted twice and added. Norms and sums are float64.
"""

import functools
import threading
import time

import numpy as np
import torch

from .maxsim import BUDGET, maxsim, rank, reduceat, tensor
from .ragged import checkoffsets
from .store import blocks

# Re-rank precisions, see topk
PRECISIONS = ("exact", "certified", "approximate")

# Unit roundoff of float32
UNIT = 2.0**-24

# Row multiple of screened documents
PADDING = 8


class Screen:
    """
    int8 copy of ragged document token matrices with the per document terms of the error bound.
    """

    def __init__(self, documents, doffsets, scales=None):
        """
        Quantizes documents with one scale per document.

        Args:
            documents: (total tokens x dim) float array or tensor, or int8 with per token scales
            doffsets: int64 document offsets
            scales: per token scales of int8 documents
        """

        documents = tensor(documents).cpu()
        self.offsets = checkoffsets(doffsets, documents.shape[0], "doffsets")

        # Values as maxsim sees them
        values = documents.float()
        if scales is not None:
            values = values * tensor(scales).cpu().float().view(-1, 1)

        # Peaks and norms per document
        lengths = np.diff(self.offsets)
        starts = self.offsets[:-1][lengths > 0]
        peak, norms = values.abs().amax(dim=1).double().numpy() if len(values) else np.zeros(0), values.double().norm(dim=1).numpy()
        self.scale = np.zeros(len(lengths))
        self.norm = np.zeros(len(lengths))
        if len(starts):
            self.scale[lengths > 0] = np.maximum.reduceat(peak, starts) / 127
            self.norm[lengths > 0] = np.maximum.reduceat(norms, starts)

        # int8 codes and residuals
        perrow = torch.from_numpy(np.repeat(np.where(self.scale > 0, self.scale, 1.0), lengths)).view(-1, 1)
        codes = torch.round(values.double() / perrow).clamp_(-127, 127)
        residual = (values.double() - codes * perrow).norm(dim=1).numpy()
        self.residual = np.zeros(len(lengths))
        if len(starts):
            self.residual[lengths > 0] = np.maximum.reduceat(residual, starts)

        self.arrange(codes.to(torch.int8), self.offsets[:-1])

    def __len__(self):
        return len(self.offsets) - 1

    def arrange(self, codes, starts):
        """
        Lays codes out for screening: each document padded to a multiple of PADDING rows by repeating its last row (its
        max is unchanged), documents grouped by padded width, so that a group's products reshape to (documents x width x
        query tokens) for one amax, no gather.

        Args:
            codes: int8 source rows
            starts: first source row of each document, its rows contiguous
        """

        lengths = np.diff(self.offsets)
        self.widths = -(-lengths // PADDING) * PADDING
        order = np.argsort(self.widths, kind="stable")
        self.order = order[self.widths[order] > 0]

        # Source row of each padded row
        widths, lengths = self.widths[self.order], lengths[self.order]
        positions = np.arange(widths.sum()) - np.repeat(np.cumsum(widths) - widths, widths)
        rows = np.repeat(starts[self.order], widths) + np.minimum(positions, np.repeat(lengths - 1, widths))
        self.codes = take(codes, rows)

        # First padded row per document
        self.rowstarts = np.zeros(len(self.widths), dtype=np.int64)
        self.rowstarts[self.order] = np.cumsum(widths) - widths
        self.arranged = True

    def subset(self, ids):
        """
        Takes some documents, in the given order.

        Args:
            ids: document indices

        Returns:
            Screen
        """

        ids = np.asarray(ids, dtype=np.int64)
        screen = Screen.__new__(Screen)
        screen.offsets = np.concatenate(([0], np.cumsum(np.diff(self.offsets)[ids]))).astype(np.int64)
        screen.scale, screen.norm, screen.residual = self.scale[ids], self.norm[ids], self.residual[ids]
        screen.arrange(self.codes, self.rowstarts[ids])
        return screen

    def extend(self, other):
        """
        Appends another screen's documents. The result is arranged again on its next scoring, subsets are arranged.

        Args:
            other: Screen
        """

        self.offsets = np.concatenate((self.offsets, self.offsets[-1] + other.offsets[1:]))
        self.rowstarts = np.concatenate((self.rowstarts, len(self.codes) + other.rowstarts))
        self.codes = torch.cat((self.codes, other.codes))
        self.scale = np.concatenate((self.scale, other.scale))
        self.norm, self.residual = np.concatenate((self.norm, other.norm)), np.concatenate((self.residual, other.residual))
        self.widths = np.concatenate((self.widths, other.widths))
        self.arranged = False

    def scores(self, queries, qoffsets):
        """
        Screened MaxSim sums and their error bounds against float32 MaxSim.

        Args:
            queries: (total query tokens x dim) float tensor
            qoffsets: int64 query offsets

        Returns:
            (screened sums, bounds), float64 arrays (queries x documents), in sum units
        """

        # Quantize queries per token
        values = queries.cpu().double().numpy()
        qscale = np.abs(values).max(axis=1) / 127 if len(values) else np.zeros(0)
        qcodes = np.clip(np.rint(values / np.where(qscale > 0, qscale, 1.0)[:, None]), -127, 127)
        qresidual = np.linalg.norm(values - qcodes * qscale[:, None], axis=1)
        qnorm, qcodenorm = np.linalg.norm(values, axis=1), np.linalg.norm(qcodes, axis=1)
        qcodes = torch.from_numpy(qcodes.astype(np.int8))

        # Rearrange after extend
        if not self.arranged:
            self.arrange(self.codes, self.rowstarts)

        # Best int8 product per query token
        lengths = np.diff(self.offsets)
        best = np.zeros((len(lengths), len(qcodes)), dtype=np.float64)
        if len(qcodes) and len(self.order):
            widths = self.widths[self.order]
            bounds = np.flatnonzero(np.diff(widths)) + 1
            for group in np.split(np.arange(len(self.order)), bounds):
                width = int(widths[group[0]])
                step = max(1, BUDGET // max(8, len(qcodes)) // width)
                for first in range(0, len(group), step):
                    docs = self.order[group[first : first + step]]
                    row = self.rowstarts[docs[0]]
                    # Only int8 matmul with int32 sums
                    # pylint: disable-next=W0212
                    products = torch._int_mm(self.codes[row : row + width * len(docs)], qcodes.T)
                    best[docs] = products.view(len(docs), width, len(qcodes)).amax(dim=1).numpy()

        # Scale back, sum per query
        best *= self.scale.reshape(-1, 1) * qscale.reshape(1, -1)
        qoffsets = np.asarray(qoffsets, dtype=np.int64)
        sums, bounds = segmentsum(best.T, qoffsets), np.zeros((len(qoffsets) - 1, len(lengths)))

        # Quantization and rounding bounds
        qlengths = np.diff(qoffsets)
        quantized = segmentsum((qscale * qcodenorm).reshape(-1, 1), qoffsets)
        qresiduals, qnorms = segmentsum(qresidual.reshape(-1, 1), qoffsets), segmentsum(qnorm.reshape(-1, 1), qoffsets)
        rounding = 2 * (queries.shape[1] + qlengths.reshape(-1, 1) + 4) * UNIT * qnorms * self.norm.reshape(1, -1)
        bounds = quantized * self.residual.reshape(1, -1) + qresiduals * self.norm.reshape(1, -1) + rounding

        return sums, bounds


class Screens:
    """
    Screen of a token store's rows, built on first use and extended as rows are appended (rows never change once written:
    deletes empty them, compaction keeps live rows). Thread-safe.
    """

    def __init__(self):
        self.lock = threading.Lock()
        self.store, self.screen = None, None

    def gather(self, store, ids):
        """
        Screen of some store rows, in the given order.

        Args:
            store: TokenStore (len() rows, gather(ids) -> (flat, offsets, scales))
            ids: row ids

        Returns:
            Screen, or None where this CPU has no fast int8 products (certified top k then scores in float32)
        """

        if not screening():
            return None

        with self.lock:
            # New store starts over
            if store is not self.store:
                self.store, self.screen = store, None
            done = len(self.screen) if self.screen is not None else 0
            for _, *rows in blocks(store, 4096, done):
                screen = Screen(*rows)
                if self.screen is None:
                    self.screen = screen
                else:
                    self.screen.extend(screen)

            return self.screen.subset(ids)


def take(codes, rows):
    """
    Copies rows of an int8 matrix, 8 bytes at a time where rows allow it (faster than int8 index_select).

    Args:
        codes: (rows x dim) int8 tensor
        rows: int64 numpy row indices

    Returns:
        int8 tensor (len(rows) x dim)
    """

    if not len(rows):
        return codes[:0]

    rows = torch.from_numpy(rows)
    if codes.shape[1] % 8 == 0 and codes.is_contiguous():
        return torch.index_select(codes.view(torch.int64), 0, rows).view(torch.int8)
    return torch.index_select(codes, 0, rows)


def segmentsum(rows, offsets):
    """
    Sums consecutive row segments, 0 for empty ones.

    Args:
        rows: 2D float64 array
        offsets: int64 segment offsets

    Returns:
        float64 array (segments x columns)
    """

    sums = np.zeros((len(offsets) - 1, rows.shape[1]))
    lengths = np.diff(offsets)
    if (lengths > 0).any():
        sums[lengths > 0] = np.add.reduceat(rows, offsets[:-1][lengths > 0], axis=0)
    return sums


@functools.lru_cache(maxsize=None)
def screening():
    """
    Measures once whether int8 products (with exact int32 accumulation) run clearly faster than float32 ones on this CPU,
    as with AVX512-VNNI or AMX. Elsewhere certified top k falls back to float32 MaxSim.

    Returns:
        True when the int8 screen pays off
    """

    try:
        generator = torch.Generator().manual_seed(0)
        documents, queries = torch.randn((8192, 128), generator=generator), torch.randn((32, 128), generator=generator)
        codes, qcodes = documents.mul(40).to(torch.int8), queries.mul(40).to(torch.int8)

        # Best thread CPU time, ignores load
        timings = {"int8": [], "float32": []}
        # torch._int_mm, as in Screen
        # pylint: disable-next=W0212
        functions = {"int8": lambda: torch._int_mm(codes, qcodes.T), "float32": lambda: torch.mm(documents, queries.T)}
        for _ in range(7):
            for name, function in functions.items():
                start = time.thread_time()
                function()
                timings[name].append(time.thread_time() - start)

        # Screens cost more than products
        return min(timings["int8"][1:]) < 0.5 * min(timings["float32"][1:])
    except RuntimeError:
        return False


@torch.no_grad()
def topk(queries, qoffsets, documents, doffsets, limit, reduce="mean", scales=None, precision="certified", screen=None, counts=None):
    """
    Top `limit` documents of each query by MaxSim, highest first, ties by lowest index, as rank(maxsim(...), limit).

    Args:
        queries: (total query tokens x dim) array or tensor
        qoffsets: int64 query offsets
        documents: (total document tokens x dim) array or tensor, float32/float16 or int8 (with scales)
        doffsets: int64 document offsets
        limit: results per query
        reduce: "mean" over query tokens or "sum"
        scales: optional per token float32 scales of int8 documents
        precision: "exact" scores everything in float32; "certified" screens with int8 and scores in float32 the documents
            that can still reach the top k (same results as exact); "approximate" scores in float32 only the screen's top k
        screen: optional Screen of the documents, built when missing
        counts: optional dict, its "pairs" and "rescored" counts grow by the (query, document) pairs seen and scored in float32

    Returns:
        list of (index, score) lists, one per query
    """

    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if isinstance(limit, bool) or not isinstance(limit, (int, np.integer)) or limit < 1:
        raise ValueError(f"limit must be a positive integer, got {limit!r}")

    documents = tensor(documents)
    queries = tensor(queries)
    qoffsets = checkoffsets(qoffsets, queries.shape[0], "qoffsets")
    doffsets = checkoffsets(doffsets, documents.shape[0], "doffsets")
    count = len(doffsets) - 1

    # float32 where screens don't pay
    pairs = (len(qoffsets) - 1) * count
    if counts is not None:
        counts["pairs"] = counts.get("pairs", 0) + pairs
    if precision == "exact" or documents.device.type != "cpu" or count <= limit or not screening():
        if counts is not None:
            counts["rescored"] = counts.get("rescored", 0) + pairs
        return rank(maxsim(queries, qoffsets, documents, doffsets, reduce=reduce, scales=scales), limit)

    screen = screen if screen is not None else Screen(documents, doffsets, scales)
    if len(screen) != count:
        raise ValueError(f"screen holds {len(screen)} documents, {count} given")

    sums, bounds = screen.scores(queries, qoffsets)
    qlengths = np.diff(qoffsets)
    divisor = np.maximum(qlengths, 1).reshape(-1, 1) if reduce == "mean" else np.ones((len(qlengths), 1))

    # Score unit bounds, plus rounding
    lower, upper = (sums - bounds) / divisor, (sums + bounds) / divisor
    lower, upper = lower - 4 * UNIT * np.abs(lower), upper + 4 * UNIT * np.abs(upper)

    # Empty documents score -inf
    empty = np.diff(doffsets) == 0

    results = []
    for x in range(len(qlengths)):
        query = queries[qoffsets[x] : qoffsets[x + 1]]
        known = {int(i): -np.inf for i in np.flatnonzero(empty)}

        # Score the screen's top k exactly
        order = np.argsort(-lower[x], kind="stable")
        first = [int(i) for i in order if not empty[i]][:limit]
        known.update(score(query, documents, doffsets, first, reduce, scales))

        # Then any bound reaching the k-th
        if precision == "certified" and len(known) >= limit:
            threshold = sorted(known.values(), reverse=True)[limit - 1]
            rest = [int(i) for i in np.flatnonzero(upper[x] >= threshold) if int(i) not in known]
            known.update(score(query, documents, doffsets, rest, reduce, scales))

        if counts is not None:
            counts["rescored"] = counts.get("rescored", 0) + len(known) - int(empty.sum())
        ranked = sorted(known.items(), key=lambda item: (-item[1], item[0]))[:limit]
        results.append([(index, float(value)) for index, value in ranked])

    return results


def score(query, documents, doffsets, ids, reduce, scales):
    """
    Scores some documents against one query with float32 MaxSim.

    Args:
        query: (tokens x dim) tensor
        documents: (total tokens x dim) tensor
        doffsets: int64 document offsets
        ids: document indices, all with tokens
        reduce: "mean" or "sum"
        scales: optional per token scales

    Returns:
        dict of index: float32 score
    """

    if not ids:
        return {}

    # Rows, dequantized like maxsim
    ids = np.asarray(ids, dtype=np.int64)
    lengths = doffsets[ids + 1] - doffsets[ids]
    offsets = np.concatenate(([0], np.cumsum(lengths))).astype(np.int64)
    rows = torch.from_numpy(np.repeat(doffsets[ids] - offsets[:-1], lengths) + np.arange(offsets[-1]))
    tokens = torch.index_select(documents, 0, rows).float()
    if scales is not None:
        tokens = tokens * torch.index_select(tensor(scales).float().view(-1), 0, rows).view(-1, 1)

    # Same float32 steps as maxsim, bit for bit
    maxima = reduceat(query.float(), tokens, offsets[:-1])
    values = torch.zeros((1, len(ids)), dtype=torch.float32).index_add_(0, torch.zeros(len(query), dtype=torch.int64), maxima)
    if reduce == "mean":
        values /= torch.tensor([[max(len(query), 1)]], dtype=torch.float32)

    return dict(zip(ids.tolist(), values[0].tolist()))
