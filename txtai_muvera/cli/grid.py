"""
Grid module
"""

import inspect
import itertools
import json

from .. import plugins
from ..settings import DEFAULTS

# Default grid; 0/None mean off
REPETITIONS, HASHES, PROJECTIONS, FINALS, FILLS = (5, 10, 20), (3, 4), (8, 16), (None,), (True, False)

# Sort keys to minimize
OBJECTIVES = {
    "work": lambda point: (point["work"], point["bytes"], point["depth"], -point["recall"]),
    "bytes": lambda point: (point["bytes"], point["depth"], -point["recall"]),
    "depth": lambda point: (point["depth"], point["bytes"], -point["recall"]),
}


def configurations(
    repetitions=REPETITIONS,
    hashes=HASHES,
    projections=PROJECTIONS,
    finals=FINALS,
    fills=FILLS,
    baseline=True,
    learned=(),
    encoding=DEFAULTS["encoding"],
):
    """
    Builds a grid of FDE configurations: every combination, except final projections that would not shrink the encoding.

    >>> grid = configurations()
    >>> len(grid), grid[0], grid[-1]["repetitions"], grid[-1]["hashes"]
    (25, {'repetitions': 5, 'hashes': 3, 'projection': 8, 'final': None, 'fill': True}, 20, 5)

    Args:
        repetitions: repetition counts
        hashes: SimHash bit counts
        projections: inner projection widths, 0 or None for identity
        finals: Count-Sketch final widths, None for none
        fills: fill settings of empty document partitions
        baseline: also adds the encoding's defaults (an index without FDE settings), when missing
        learned: learned encoding settings to add, each a dict with an "encoding" key, e.g. {"encoding": "lemur"}
        encoding: registered encoding whose defaults are the baseline

    Returns:
        list of encoding parameter dicts
    """

    grid = []
    for repetition, bits, projection, final, fill in itertools.product(repetitions, hashes, projections, finals, fills):
        # Skip finals that don't shrink
        width = repetition * (1 << bits) * projection if projection else None
        if final and width and final >= width:
            continue

        params = {"repetitions": repetition, "hashes": bits, "projection": projection or 0, "final": final, "fill": bool(fill)}
        if params not in grid:
            grid.append(params)

    # Encoding defaults as baseline
    if baseline:
        defaults = inspect.signature(plugins.lookup("encodings", encoding)).parameters
        params = {key: defaults[key].default for key in ("repetitions", "hashes", "projection", "final", "fill") if key in defaults}
        if "projection" in params:
            params["projection"] = params["projection"] or 0
        if params not in grid:
            grid.append(params)

    # Learned encodings
    grid.extend(dict(params) for params in learned if params not in grid)

    return grid


def frontier(points):
    """
    Finds the Pareto frontier of grid points: those that no other point dominates on FDE bytes per document (lower is
    better), candidate depth (lower is better) and recall (higher is better).

    >>> points = [{"bytes": 4, "depth": 10, "recall": 0.5}, {"bytes": 8, "depth": 10, "recall": 0.4}, {"bytes": 8, "depth": 5, "recall": 0.9}]
    >>> [point["recall"] for point in frontier(points)]
    [0.9, 0.5]

    Args:
        points: list of dicts with bytes, depth and recall

    Returns:
        non-dominated points, sorted by depth then bytes
    """

    def dominates(a, b):
        better = a["bytes"] <= b["bytes"] and a["depth"] <= b["depth"] and a["recall"] >= b["recall"]
        return better and (a["bytes"] < b["bytes"] or a["depth"] < b["depth"] or a["recall"] > b["recall"])

    results = [point for point in points if not any(dominates(other, point) for other in points)]
    return sorted(results, key=lambda point: (point["depth"], point["bytes"], -point["recall"]))


def recommend(points, target, objective="work"):
    """
    Picks the cheapest grid point that reaches a target recall. Ties go to fewer bytes, fewer candidates, then higher
    recall, so the pick is always on the Pareto frontier.

    Args:
        points: list of dicts with bytes, depth, recall and work
        target: recall to reach
        objective: key of OBJECTIVES

    Returns:
        point dict or None when no point reaches the target
    """

    reached = [point for point in points if point["recall"] >= target]
    return min(reached, key=OBJECTIVES[objective]) if reached else None


def recommendation(point, dtype=None, **settings):
    """
    Builds the muvera: config block of a grid point.

    >>> recommendation({"params": {"repetitions": 10, "hashes": 4, "projection": 16, "final": None, "fill": False}, "depth": 50})
    {'candidates': 50, 'repetitions': 10, 'hashes': 4, 'projection': 16, 'fill': False}
    >>> recommendation({"params": {"encoding": "lemur"}, "depth": 50}, "int8", encoder="stanford", encodingdtype=None)
    {'candidates': 50, 'encoding': 'lemur', 'dtype': 'int8', 'encoder': 'stanford'}

    Args:
        point: grid point
        dtype: optional token store dtype
        settings: other index settings written to the block, those set to None left out

    Returns:
        muvera: config block
    """

    params = point["params"]
    if "encoding" in params:
        # Other encodings, as tuned
        block = {"candidates": point["depth"], **params}
    else:
        block = {"candidates": point["depth"], "repetitions": params["repetitions"], "hashes": params["hashes"], "projection": params["projection"]}
        if params.get("final"):
            block["final"] = params["final"]
        # Explicit: defaults may change
        if "fill" in params:
            block["fill"] = bool(params["fill"])

    if dtype:
        block["dtype"] = dtype

    return {**block, **{key: value for key, value in settings.items() if value is not None}}


def yamlblock(block):
    """
    Formats a muvera: config block as YAML, ready to paste into a txtai configuration.

    >>> print(yamlblock({"candidates": 50, "hashes": 4}))
    muvera:
      candidates: 50
      hashes: 4

    Args:
        block: muvera: config block

    Returns:
        YAML string
    """

    return "\n".join(["muvera:"] + [f"  {key}: {json.dumps(value)}" for key, value in block.items()])
