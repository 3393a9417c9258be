"""
Store module
"""

# INTERFACE STUB - implemented by the token store work (issue 2). No txtai imports in this module.


class TokenStore:
    """
    Holds every document's token vectors as one flat array + offsets. Row ids are stable: row i is the i-th appended
    matrix for the life of the store (deletes leave tombstones, compaction reclaims bytes without renumbering).
    """

    def __init__(self, dimension, dtype="float16"):
        """
        Args:
            dimension: token vector width
            dtype: "float32", "float16" (default) or "int8" (per-vector scale)
        """

        raise NotImplementedError

    def append(self, flat, offsets):
        """
        Appends matrices. Returns the row ids assigned (range).
        """

        raise NotImplementedError

    def delete(self, ids):
        """
        Tombstones rows, ids out of range or already deleted are ignored. Returns ids actually deleted.
        """

        raise NotImplementedError

    def gather(self, ids):
        """
        Returns (flat, offsets, scales) for rows ids in that order: flat in the stored dtype (scales None unless int8).
        Deleted rows come back with zero tokens.
        """

        raise NotImplementedError

    def save(self, path):
        """
        Saves atomically to a folder (write aside, then rename). Never pickle.
        """

        raise NotImplementedError

    @staticmethod
    def load(path, mmap=True):
        """
        Loads a folder written by save, memory mapped. Corrupt, truncated or foreign files raise a clear error.
        """

        raise NotImplementedError
