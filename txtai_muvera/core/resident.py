"""
Resident module
"""

import threading

import numpy as np
import torch

from .store import blocks


class Resident:
    """
    Copy of a token store's rows on a torch device (a GPU), so that re-ranking gathers and scores candidates there. Built on
    first use and extended as rows are appended (rows never change once written: deletes empty them). Thread-safe.
    """

    def __init__(self, device):
        """
        Creates an empty copy.

        Args:
            device: torch device or name, for example "cuda" or "cuda:1"
        """

        self.device = torch.device(device)
        self.lock = threading.Lock()
        self.store, self.tokens, self.scales, self.offsets = None, None, None, None

    def gather(self, store, ids):
        """
        Gathers store rows on the device, in the given order, as TokenStore.gather does.

        Args:
            store: TokenStore
            ids: row ids

        Returns:
            (device tokens in the stored dtype, int64 numpy offsets, device per token scales or None)
        """

        with self.lock:
            # New store starts over
            if store is not self.store:
                self.store, self.tokens, self.scales, self.offsets = store, None, None, np.zeros(1, dtype=np.int64)
            for _, tokens, offsets, scales in blocks(store, 4096, len(self.offsets) - 1):
                tokens = torch.from_numpy(np.ascontiguousarray(tokens)).to(self.device)
                self.tokens = tokens if self.tokens is None else torch.cat((self.tokens, tokens))
                if scales is not None:
                    scales = torch.from_numpy(np.ascontiguousarray(scales)).to(self.device)
                    self.scales = scales if self.scales is None else torch.cat((self.scales, scales))
                self.offsets = np.concatenate((self.offsets, self.offsets[-1] + offsets[1:]))

            tokens, scales, base = self.tokens, self.scales, self.offsets

        # Deleted rows come back empty
        ids = np.asarray(ids, dtype=np.int64)
        lengths = np.where(store.deleted[ids], 0, base[ids + 1] - base[ids])
        offsets = np.concatenate(([0], np.cumsum(lengths))).astype(np.int64)
        rows = torch.from_numpy(np.repeat(base[ids] - offsets[:-1], lengths) + np.arange(offsets[-1])).to(self.device)

        return torch.index_select(tokens, 0, rows), offsets, None if scales is None else torch.index_select(scales, 0, rows)
