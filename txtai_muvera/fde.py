"""
FDE module
"""

# INTERFACE STUB - implemented by the FDE work (issue 2). No txtai imports in this module.


class FDE:
    """
    MUVERA Fixed Dimensional Encoding (arXiv 2405.19504), following the Google reference implementation.

    output dimensions = repetitions * 2^hashes * (projection or dimension), or final when a Count-Sketch final projection is set
    """

    def __init__(self, dimension, repetitions=20, hashes=5, projection=16, final=None, fill=True, seed=42):
        """
        Creates an FDE encoder.

        Args:
            dimension: token vector width
            repetitions: number of independent repetitions
            hashes: number of SimHash bits, 2^hashes partitions
            projection: AMS inner projection width, None or 0 for identity
            final: Count-Sketch final projection width, None to disable
            fill: fill empty document partitions (reference rule), queries never fill
            seed: random seed, all random matrices follow from it and the parameters
        """

        # Public attributes: self.dimensions (int, output width)
        raise NotImplementedError

    def config(self):
        """
        Returns every parameter needed to rebuild this exact encoder: FDE(**fde.config()) is identical.

        Returns:
            dict
        """

        raise NotImplementedError

    def __call__(self, flat, offsets, category):
        """
        Encodes a batch of ragged token matrices.

        Args:
            flat: (total tokens x dimension) float array (numpy or torch)
            offsets: int64 offsets, one more than the number of matrices
            category: "query" (partition sums) or "data" (partition averages + fill)

        Returns:
            float32 numpy array (matrices x dimensions)
        """

        raise NotImplementedError
