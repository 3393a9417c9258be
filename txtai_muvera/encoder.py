"""
Encoder module
"""

# INTERFACE STUB - implemented by the encoder work (issue 2). No txtai imports in this module.


class LateEncoder:
    """
    Encodes text into token vector matrices with a ColBERT checkpoint (PyLate or Stanford format), exactly as PyLate does.
    """

    def __init__(self, path, gpu=True, batchsize=32, revision=None):
        """
        Creates a LateEncoder.

        Args:
            path: local folder or model hub id
            gpu: True picks cuda/mps when available, False forces cpu, an int picks a cuda device id, a string is a torch device
            batchsize: default encoding batch size
            revision: optional hub revision
        """

        # Public attributes the rest of the package reads:
        #   self.path, self.device (torch.device), self.dimension (int, token vector width),
        #   self.settings (dict: query_prefix, document_prefix, query_length, document_length,
        #                  do_query_expansion, attend_to_expansion_tokens, skiplist_words, format="pylate"|"stanford"),
        #   self.fingerprint (str: stable sha256 hex over the settings + tokenizer vocab size + projection weights, identifies the model)
        raise NotImplementedError

    def encode(self, texts, category="data", batchsize=None, progress=False):
        """
        Encodes texts.

        Args:
            texts: list of strings
            category: "query" or "data"
            batchsize: overrides the default batch size
            progress: shows a progress bar when True

        Returns:
            list of float32 numpy arrays, one (tokens x dimension) matrix per text, L2 normalised, unpadded
        """

        raise NotImplementedError
