"""
MaxSim module
"""

# INTERFACE STUB - implemented by the MaxSim work (issue 2). No txtai imports in this module.


def maxsim(queries, qoffsets, documents, doffsets, reduce="mean", scales=None):
    """
    Scores every query against every document with late interaction (MaxSim), documents held ragged.

    Args:
        queries: (total query tokens x dim) array or tensor
        qoffsets: int64 query offsets
        documents: (total document tokens x dim) array or tensor, float32/float16 or int8 (with scales)
        doffsets: int64 document offsets
        reduce: "mean" over query tokens (txtai's convention) or "sum" (PyLate's)
        scales: optional per-token float32 scales for int8 documents

    Returns:
        float32 torch tensor (queries x documents)
    """

    raise NotImplementedError
