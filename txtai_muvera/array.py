"""
Array module
"""

import numpy as np


class LateArray(np.ndarray):
    """
    FDE rows that carry the token matrices they were encoded from.

    txtai hands an ANN backend only the array its Vectors model returns. This subclass lets the token matrices ride along
    with the FDE rows, unchanged, from txtai_muvera.LateVectors to the txtai_muvera.Muvera backend.

    >>> rows = LateArray(np.ones((2, 4)), tokens=np.ones((3, 2)), offsets=np.array([0, 1, 3]))
    >>> rows.shape, rows.tokens.shape
    ((2, 4), (3, 2))

    Attributes:
        tokens: flat (total tokens x dim) token matrix, or None when the tokens are held in store
        offsets: int64 offsets into tokens
        store: token store holding the rows' token matrices (bulk indexing)
        fingerprint: encoder model fingerprint
        encoding: fixed dimensional encoding parameters
        encoder: learned encoding whose document rows the backend computes from the stored tokens (bulk indexing)
    """

    def __new__(cls, fdes, tokens=None, offsets=None, store=None, fingerprint=None, encoding=None, encoder=None):
        array = np.asarray(fdes).view(cls)
        array.tokens, array.offsets, array.store = tokens, offsets, store
        array.fingerprint, array.encoding, array.encoder = fingerprint, encoding, encoder
        return array

    # NumPy view hook, obj unused
    # pylint: disable-next=W0613
    def __array_finalize__(self, obj):
        # Slices no longer match tokens
        # pylint: disable-next=W0201
        self.tokens, self.offsets, self.store, self.fingerprint, self.encoding, self.encoder = None, None, None, None, None, None
