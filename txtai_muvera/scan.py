"""
Scan module
"""

import logging
import time
import warnings

import numpy as np
import torch

# Storage types of candidate vectors (FDE or learned encoding rows)
ENCODINGDTYPES = ("float16", "float32")

# Rows converted to float32 at a time by the blocked scan: a block stays in the CPU's L2 cache
BLOCK = 128

# Rows timed when the scan chooses its float16 method
SAMPLE = 2048

logger = logging.getLogger(__name__)


class Scan:
    """
    Exact inner product search over float32 or float16 candidate vectors (a full scan of every row).

    Float16 rows halve the bytes read. CPUs differ in how fast they multiply float16: some have native float16 or
    fast conversion kernels, some do not. The first float16 scan of each query batch shape (one query, many queries)
    times two methods on a sample of rows and keeps the faster one:

    - matmul: torch's float16 matrix product (queries rounded to float16, float32 accumulation on CPU)
    - blocked: converts BLOCK rows at a time to float32 in a reused buffer and multiplies in float32

    >>> rows = np.eye(3, 4, dtype=np.float16)
    >>> Scan()(np.array([[1, 2, 3, 4]], dtype=np.float32), rows).tolist()
    [[1.0, 2.0, 3.0]]
    """

    def __init__(self):
        # Chosen float16 method per batch shape: 1 (one query) or 2 (many)
        self.methods = {}

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

        # Float32 rows: one matrix product
        if rows.dtype == torch.float32:
            return queries @ rows.T

        # Float16 rows: the method measured fastest on this machine for this batch shape
        shape = min(queries.shape[0], 2)
        if shape not in self.methods:
            self.methods[shape] = self.choose(queries, rows)

        return self.run(self.methods[shape], queries, rows)

    def run(self, method, queries, rows):
        """
        Runs one float16 scan method.

        Args:
            method: "matmul" or "blocked"
            queries: float32 tensor
            rows: float16 tensor

        Returns:
            float32 torch tensor (queries x documents)
        """

        # Queries outside float16's range cannot be rounded to it
        if method == "matmul" and queries.abs().max() < 60000:
            return (queries.to(rows.dtype) @ rows.T).float()

        scores = torch.empty((rows.shape[0], queries.shape[0]), dtype=torch.float32)
        buffer = torch.empty((min(BLOCK, rows.shape[0]), rows.shape[1]), dtype=torch.float32)
        for start in range(0, rows.shape[0], BLOCK):
            end = min(start + BLOCK, rows.shape[0])
            block = buffer[: end - start]
            block.copy_(rows[start:end])
            torch.mm(block, queries.T, out=scores[start:end])

        return scores.T

    def choose(self, queries, rows):
        """
        Times each float16 method on a sample of rows and returns the faster.

        Args:
            queries: float32 tensor
            rows: float16 tensor

        Returns:
            method name
        """

        sample = rows[:SAMPLE]
        timings = {"matmul": [], "blocked": []}

        # Alternate the methods, keep each one's best of three after a warm up
        for _ in range(4):
            for method, times in timings.items():
                start = time.perf_counter()
                self.run(method, queries, sample)
                times.append(time.perf_counter() - start)

        best = {method: min(times[1:]) for method, times in timings.items()}
        method = min(best, key=best.get)
        logger.debug("float16 scan of %d queries: %s (%s)", queries.shape[0], method, {k: f"{v * 1000:.2f} ms" for k, v in best.items()})
        return method


def tensor(rows):
    """
    Wraps rows as a CPU tensor without copying; read-only memory-mapped arrays are never written.

    Args:
        rows: numpy array

    Returns:
        torch tensor
    """

    with warnings.catch_warnings():
        # torch warns that a read-only array is shared as writable: scans only read it
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

    # float16 holds magnitudes up to 65504
    largest = float(np.abs(rows).max()) if rows.size else 0.0
    if largest > float(np.finfo(np.float16).max):
        raise ValueError(f"candidate vectors hold values up to {largest:g}, beyond float16's range: set muvera: {{encodingdtype: float32}}")

    return rows.astype(np.float16)
