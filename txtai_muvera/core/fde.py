"""
FDE module
"""

import numpy as np
import torch
import torch.nn.functional as F

from .ragged import checkoffsets, chunks, pack


def haar(generator, rows, columns):
    """
    Draws a (rows x columns) matrix with orthonormal columns, Haar distributed: QR of a Gaussian matrix with the signs of R's
    diagonal folded into Q.

    Args:
        generator: numpy Generator
        rows: number of rows, >= columns
        columns: number of columns

    Returns:
        numpy array
    """

    q, r = np.linalg.qr(generator.standard_normal((rows, columns)))
    return q * np.sign(np.diag(r))


# Settings plus derived tables
class FDE:  # pylint: disable=R0902
    """
    MUVERA Fixed Dimensional Encoding (arXiv 2405.19504), following the Google reference implementation
    (github.com/google/graph-mining, sketching/point_cloud/fixed_dimensional_encoding.cc).

    Each repetition hashes tokens into 2^hashes partitions (SimHash bits read as a Gray code) and projects them. Queries
    sum each partition's projected tokens, documents average them and, with fill, give empty partitions the token nearest
    in Hamming distance. Repetitions are concatenated: repetitions * 2^hashes * (projection or dimension) outputs, or
    final with a Count-Sketch.

    Two options beyond the reference, on by default as they measure better (benchmarks/RESULTS.md, "FDE quality on SciFact"):

    - projector="orthogonal": groups of repetitions share coordinate blocks with orthogonal weights, so their projection
      errors cancel (see orthogonal()); "ams" is the reference's AMS sketch.
    - normalize=True: document centroids have unit length, scoring the direction of a partition's tokens, not their spread.

    FDE(dimension, projector="ams", normalize=False) is the reference algorithm.

    >>> fde = FDE(8, repetitions=2, hashes=2, projection=4)
    >>> fde.dimensions
    32
    >>> tokens = np.ones((3, 8), dtype=np.float32)
    >>> fde(tokens, np.array([0, 2, 2, 3]), "data").shape
    (3, 32)
    """

    # Chunk tensor elements, fit cache
    BUDGET = 1 << 21

    # Inner projections
    PROJECTORS = ("orthogonal", "ams")

    # Old indexes keep encoding as built
    LEGACY = {"projector": "ams", "normalize": False}

    def __init__(self, dimension, repetitions=20, hashes=5, projection=16, final=None, projector="orthogonal", normalize=True, fill=True, seed=42):
        """
        Creates an FDE encoder.

        Args:
            dimension: token vector width
            repetitions: number of independent repetitions
            hashes: number of SimHash bits, 2^hashes partitions
            projection: AMS inner projection width, None or 0 for identity
            final: Count-Sketch final projection width, None to disable
            projector: inner projection, "orthogonal" (grouped random orthogonal blocks) or "ams" (reference AMS sketch)
            normalize: scale document partition centroids to unit length, queries always sum
            fill: fill empty document partitions (reference rule), queries never fill
            seed: random seed, all random matrices follow from it and the parameters
        """

        # Validate parameters
        checks = [
            (dimension, 1, "dimension"),
            (repetitions, 1, "repetitions"),
            (hashes, 1, "hashes"),
            (projection if projection is not None else 0, 0, "projection"),
            (final if final is not None else 1, 1, "final"),
            (seed, 0, "seed"),
        ]
        for value, minimum, name in checks:
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
                raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
        if hashes > 16:
            raise ValueError(f"hashes must be <= 16 (2^hashes partitions), got {hashes}")
        if projector not in self.PROJECTORS:
            raise ValueError(f"projector must be one of {self.PROJECTORS}, got {projector!r}")

        # Parameters
        self.dimension, self.repetitions, self.hashes = int(dimension), int(repetitions), int(hashes)
        self.projection = int(projection) if projection else None
        self.final = int(final) if final is not None else None
        self.projector, self.normalize = projector, bool(normalize)
        self.fill, self.seed = bool(fill), int(seed)

        # Derived sizes
        self.partitions = 1 << self.hashes
        self.width = self.projection if self.projection else self.dimension
        self.blocks = self.repetitions * self.partitions * self.width
        self.dimensions = self.final if self.final else self.blocks

        # Random matrices, generated once
        self.gaussian, self.projections, self.buckets, self.signs = self.generate()

        # Gray code tables, both ways
        codes = torch.arange(self.partitions, dtype=torch.int64)
        self.gray = codes ^ (codes >> 1)
        self.binary = torch.empty_like(codes)
        self.binary[self.gray] = codes

        # XOR masks by Hamming weight
        popcounts = torch.tensor([bin(mask).count("1") for mask in range(self.partitions)])
        self.masks = torch.argsort(popcounts, stable=True)[1:]
        self.radii = torch.bincount(popcounts)[1:].tolist()

        # SimHash rows, repetition major
        self.sketch = self.gaussian.permute(0, 2, 1).reshape(self.repetitions * self.hashes, self.dimension).contiguous()

        # Sparse projections as embedding bags
        if self.projections is not None:
            bags, repetition, coordinate = self.projections.permute(2, 0, 1).nonzero(as_tuple=True)
            self.coordinates = coordinate
            self.coefficients = self.projections[repetition, coordinate, bags]
            counts = torch.bincount(bags * self.repetitions + repetition, minlength=self.width * self.repetitions)
            self.bags = torch.cumsum(counts, dim=0) - counts

        # Per-device tensor copies
        self.devices = {}

    def config(self):
        """
        Returns every parameter needed to rebuild this exact encoder: FDE(**fde.config()) is identical.

        >>> FDE(**FDE(16, hashes=3, final=64).config()).config() == FDE(16, hashes=3, final=64).config()
        True

        Returns:
            dict
        """

        return {
            "dimension": self.dimension,
            "repetitions": self.repetitions,
            "hashes": self.hashes,
            "projection": self.projection,
            "final": self.final,
            "projector": self.projector,
            "normalize": self.normalize,
            "fill": self.fill,
            "seed": self.seed,
        }

    @torch.no_grad()
    def __call__(self, flat, offsets, category):
        """
        Encodes a batch of ragged token matrices.

        Args:
            flat: (total tokens x dimension) float array (numpy or torch)
            offsets: int64 offsets, one more than the number of matrices
            category: "query" (partition sums) or "data" (partition averages, normalize and fill as set)

        Returns:
            float32 numpy array (matrices x dimensions)
        """

        if category not in ("query", "data"):
            raise ValueError(f"category must be 'query' or 'data', got {category!r}")

        # Float32 tokens, CPU offsets
        flat = flat if isinstance(flat, torch.Tensor) else torch.from_numpy(np.asarray(flat))
        if flat.dim() != 2:
            raise ValueError(f"flat must be a 2D (tokens x dimension) matrix, got shape {tuple(flat.shape)}")
        if flat.shape[1] != self.dimension:
            raise ValueError(f"token width {flat.shape[1]} does not match FDE dimension {self.dimension}")
        flat = flat.float()

        offsets = checkoffsets(offsets, flat.shape[0])

        # Encode chunks into the outputs
        outputs = np.zeros((len(offsets) - 1, self.dimensions), dtype=np.float32)
        for start, end in self.runs(offsets):
            chunk = offsets[start : end + 1]
            self.encode(flat[chunk[0] : chunk[-1]], chunk - chunk[0], category == "data", torch.from_numpy(outputs[start:end]))

        return outputs

    def batch(self, matrices, category):
        """
        Encodes a list of (tokens x dimension) matrices.

        Two tokens in partition 1: queries sum them, documents average them and fill partition 0 with the earliest nearest token.

        >>> fde = FDE(4, repetitions=1, hashes=1, projection=None, normalize=False, fill=True)
        >>> fde.batch([np.eye(4)[:2], np.zeros((0, 4))], "query")
        array([[0., 0., 0., 0., 1., 1., 0., 0.],
               [0., 0., 0., 0., 0., 0., 0., 0.]], dtype=float32)
        >>> fde.batch([np.eye(4)[:2]], "data")
        array([[1. , 0. , 0. , 0. , 0.5, 0.5, 0. , 0. ]], dtype=float32)

        Args:
            matrices: list of 2D arrays or tensors
            category: "query" or "data"

        Returns:
            float32 numpy array (matrices x dimensions)
        """

        if not len(matrices):
            return np.zeros((0, self.dimensions), dtype=np.float32)

        matrices = [m.detach().cpu().float().numpy() if isinstance(m, torch.Tensor) else m for m in matrices]
        return self(*pack(matrices), category)

    def generate(self):
        """
        Generates the random matrices. Repetition r draws from its own stream SeedSequence(seed, spawn_key=(r,)): first its
        Gaussian SimHash matrix, then its AMS buckets and signs. Orthogonal projection group g draws from stream
        spawn_key=(repetitions, 1 + g). The final Count-Sketch draws from stream spawn_key=(repetitions,).

        Returns:
            (gaussian (repetitions x dimension x hashes), dense inner projection matrices (repetitions x dimension x projection)
            or None, Count-Sketch buckets or None, Count-Sketch signs or None)
        """

        gaussian, projections = [], []
        for repetition in range(self.repetitions):
            generator = np.random.default_rng(np.random.SeedSequence(self.seed, spawn_key=(repetition,)))

            # SimHash matrix
            gaussian.append(generator.standard_normal((self.dimension, self.hashes)))

            # AMS: one signed entry per row
            if self.projection and self.projector == "ams":
                matrix = np.zeros((self.dimension, self.projection))
                columns = generator.integers(0, self.projection, size=self.dimension)
                matrix[np.arange(self.dimension), columns] = 2.0 * generator.integers(0, 2, size=self.dimension) - 1.0
                projections.append(matrix)

        if self.projection and self.projector == "orthogonal":
            projections = self.orthogonal()

        gaussian = torch.from_numpy(np.stack(gaussian).astype(np.float32))
        projections = torch.from_numpy(np.stack(projections).astype(np.float32)) if projections else None

        # Count-Sketch buckets and signs
        buckets, signs = None, None
        if self.final:
            generator = np.random.default_rng(np.random.SeedSequence(self.seed, spawn_key=(self.repetitions,)))
            buckets = torch.from_numpy(generator.integers(0, self.final, size=self.blocks))
            signs = torch.from_numpy((2.0 * generator.integers(0, 2, size=self.blocks) - 1.0).astype(np.float32))

        return gaussian, projections, buckets, signs

    def orthogonal(self):
        """
        Generates grouped orthogonal inner projections. Each group of dimension // projection repetitions splits a random
        permutation of the coordinates into projection blocks, each with a Haar orthogonal basis: output k of the group's
        j-th repetition is row j of block k's basis. Every coordinate feeds one output per repetition, as in the AMS
        sketch, and the group together is an orthogonal transform. Rows are scaled by sqrt(block size) so inner products
        are unbiased. A projection wider than the tokens is one isometry per repetition.

        >>> fde = FDE(8, repetitions=2, hashes=1, projection=4)
        >>> blocks = torch.cat(list(fde.projections), dim=1)
        >>> bool(torch.allclose(blocks.T @ blocks, 2 * torch.eye(8), atol=1e-5))
        True

        Returns:
            list of (dimension x projection) numpy arrays, one per repetition
        """

        size = max(1, self.dimension // self.projection)

        projections = []
        for group, start in enumerate(range(0, self.repetitions, size)):
            generator = np.random.default_rng(np.random.SeedSequence(self.seed, spawn_key=(self.repetitions, 1 + group)))
            members = min(size, self.repetitions - start)

            # Projecting up: one isometry each
            if self.projection > self.dimension:
                projections.extend(haar(generator, self.projection, self.dimension).T for _ in range(members))
                continue

            # Blocks and orthogonal bases
            blocks = np.array_split(generator.permutation(self.dimension), self.projection)
            bases = [haar(generator, len(block), len(block)) * np.sqrt(len(block)) for block in blocks]

            for member in range(members):
                matrix = np.zeros((self.dimension, self.projection))
                for column, (block, basis) in enumerate(zip(blocks, bases)):
                    matrix[block, column] = basis[member]
                projections.append(matrix)

        return projections

    def runs(self, offsets):
        """
        Splits matrices into consecutive chunks that keep every intermediate tensor near BUDGET elements.

        Args:
            offsets: int64 numpy offsets

        Returns:
            list of (first matrix, end matrix)
        """

        # Elements per token and matrix
        pertoken = self.repetitions * (self.width + self.hashes)
        maxtokens = max(1, self.BUDGET // pertoken)
        maxmatrices = max(1, self.BUDGET // self.blocks)

        return chunks(offsets, maxtokens, maxmatrices)

    def tensors(self, device):
        """
        Returns the encoder tensors on device, copied once per device.

        Args:
            device: torch device

        Returns:
            dict of tensors
        """

        if device not in self.devices:
            tensors = {"sketch": self.sketch, "gray": self.gray, "binary": self.binary, "masks": self.masks}
            if self.projections is not None:
                tensors.update({"coordinates": self.coordinates, "coefficients": self.coefficients, "bags": self.bags})
            if self.final:
                tensors.update({"buckets": self.buckets, "signs": self.signs})
            self.devices[device] = {name: tensor.to(device) for name, tensor in tensors.items()}

        return self.devices[device]

    def encode(self, flat, offsets, average, outputs):
        """
        Encodes one chunk of matrices.

        Args:
            flat: float32 (chunk tokens x dimension) tensor
            offsets: int64 numpy offsets of the chunk, starting at 0
            average: True for documents (average, normalize and fill as set), False for queries (sum)
            outputs: CPU float32 tensor (chunk matrices x dimensions) that receives the encodings
        """

        device, tensors = flat.device, self.tensors(flat.device)
        tokens, count = flat.shape[0], len(offsets) - 1
        repetitions, partitions, width = self.repetitions, self.partitions, self.width

        # Matrix index of every token
        lengths = torch.from_numpy(np.diff(offsets)).to(device)
        matrix = torch.repeat_interleave(torch.arange(count, device=device), lengths, output_size=tokens)

        # SimHash values
        sketches = torch.mm(tensors["sketch"], flat.T)

        # Project tokens
        if self.projections is not None:
            rows = flat.T.contiguous()
            projected = F.embedding_bag(tensors["coordinates"], rows, tensors["bags"], mode="sum", per_sample_weights=tensors["coefficients"])
            projected = projected.view(width, repetitions * tokens)
        else:
            # Identity: same tokens each time
            projected = flat.T.unsqueeze(1).expand(width, repetitions, tokens).reshape(width, repetitions * tokens)

        # Gray-decode bits (AppendToGrayCode)
        bits = sketches.view(repetitions, self.hashes, tokens) > 0
        bit = bits[:, 0]
        partition = bit.long()
        for x in range(1, self.hashes):
            bit = bit ^ bits[:, x]
            partition = (partition << 1) | bit

        # Block of each token
        repetition = torch.arange(repetitions, device=device).view(-1, 1)
        blocks = ((matrix.view(1, -1) * repetitions + repetition) * partitions + partition).view(-1)

        # Sum tokens per partition
        sums = torch.zeros((width, count * repetitions * partitions), dtype=torch.float32, device=device)
        sums.index_add_(1, blocks, projected)

        if average:
            # Centroids, unit ones need no division
            counts = torch.bincount(blocks, minlength=count * repetitions * partitions)
            if not self.normalize:
                sums /= counts.clamp(min=1).view(1, -1)

            # Fill empty partitions
            empty = (counts.view(count, -1) == 0) & (lengths.view(-1, 1) > 0)
            if self.fill and empty.any():
                empty = empty.view(-1).nonzero().view(-1)
                nearest = self.nearest(blocks, len(counts), tokens, empty, tensors)

                # Column: repetition * tokens + token
                columns = (empty // partitions) % repetitions * tokens + nearest
                sums[:, empty] = projected[:, columns]

            # Unit centroids, empty stay zero
            if self.normalize:
                sums /= torch.linalg.vector_norm(sums, dim=0).clamp(min=1e-12)

        # Blocks in output order
        vectors = sums.T

        # Count-Sketch final projection
        if self.final:
            vectors = vectors.reshape(count, self.blocks) * tensors["signs"]
            vectors = torch.zeros((count, self.final), dtype=torch.float32, device=device).index_add_(1, tensors["buckets"], vectors)

        outputs.view(vectors.shape).copy_(vectors)

    def nearest(self, blocks, size, tokens, empty, tensors):
        """
        Finds the token the reference fill rule picks for every empty (matrix, repetition, partition) block: the earliest token
        whose SimHash bits are closest in Hamming distance to the partition's bits.

        Searches outwards one Hamming radius at a time: the earliest token of the nearest occupied partitions is the earliest
        token at the minimum distance. Most empty blocks stop at radius 1.

        Args:
            blocks: flat block index of every (repetition, token), repetition major
            size: number of blocks
            tokens: number of tokens in the chunk
            empty: flat indices of empty blocks, all in matrices with tokens
            tensors: encoder tensors on the device

        Returns:
            int64 tensor of chunk token indices, one per empty block
        """

        # Earliest token, `tokens` if empty
        device, partitions = blocks.device, self.partitions
        earliest = torch.full((size,), tokens, dtype=torch.int64, device=device)
        earliest.scatter_reduce_(0, blocks, torch.arange(tokens, device=device).repeat(self.repetitions), reduce="amin")

        # Row and Gray code of empty blocks
        rows, codes = empty - empty % partitions, tensors["gray"][empty % partitions]

        nearest = torch.full_like(empty, tokens)
        pending, start = torch.arange(len(empty), device=device), 0
        for number in self.radii:
            # Partitions at this distance
            masks, start = tensors["masks"][start : start + number], start + number

            # Earliest token, in steps
            step = max(1, self.BUDGET // number)
            found = torch.cat(
                [earliest[rows[part].view(-1, 1) + tensors["binary"][codes[part].view(-1, 1) ^ masks]].amin(dim=1) for part in pending.split(step)]
            )

            # Widen where none has tokens
            nearest[pending] = found
            pending = pending[found == tokens]
            if not len(pending):
                break

        return nearest
