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


# Documented settings and the tables derived from them
class FDE:  # pylint: disable=R0902
    """
    MUVERA Fixed Dimensional Encoding (arXiv 2405.19504), following the Google reference implementation
    (github.com/google/graph-mining, sketching/point_cloud/fixed_dimensional_encoding.cc).

    output dimensions = repetitions * 2^hashes * (projection or dimension), or final when a Count-Sketch final projection is set

    Each repetition draws a Gaussian SimHash matrix (hashes columns) and an inner projection (projection columns). A token falls
    in the partition given by its SimHash bits read as a Gray code. Queries sum the projected tokens of each partition,
    documents average them and can fill empty partitions with the projected token whose SimHash bits are closest in Hamming
    distance. Repetitions are concatenated and optionally reduced with a Count-Sketch.

    Two options go beyond the reference, both on by default because they measure better on real token vectors (see
    benchmarks/RESULTS.md, "FDE quality on SciFact"):

    - projector="orthogonal": like the AMS sketch every token coordinate feeds one output per repetition, but the
      repetitions of each group of dimension / projection share a coordinate partition and take orthogonal weights, so
      together they are an orthogonal transform and their projection errors cancel instead of adding up (see orthogonal()).
      projector="ams" is the reference's AMS sketch.
    - normalize=True: document partition centroids are scaled to unit length, so a partition scores the direction of its
      tokens instead of being shrunk by how spread they are. Queries still sum.

    The reference algorithm exactly: FDE(dimension, projector="ams", normalize=False).

    A batch is encoded chunk by chunk of matrices, each chunk with one matrix product (SimHash), one embedding_bag (inner
    projections), one index_add_ (partition sums) and one bincount (partition sizes), no Python loop over matrices.

    >>> fde = FDE(8, repetitions=2, hashes=2, projection=4)
    >>> fde.dimensions
    32
    >>> tokens = np.ones((3, 8), dtype=np.float32)
    >>> fde(tokens, np.array([0, 2, 2, 3]), "data").shape
    (3, 32)
    """

    # Elements of each intermediate tensor of a chunk: bounds memory, keeps a chunk in cache (see benchmarks/RESULTS.md)
    BUDGET = 1 << 21

    # Inner projections
    PROJECTORS = ("orthogonal", "ams")

    # Values of parameters added after the first release, for configs saved without them: an index keeps encoding as built
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

        # Validate parameters, the reference accepts less but these limits keep outputs and partition ids sane
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

        # Derived sizes: partitions per repetition, width of each partition block and output width
        self.partitions = 1 << self.hashes
        self.width = self.projection if self.projection else self.dimension
        self.blocks = self.repetitions * self.partitions * self.width
        self.dimensions = self.final if self.final else self.blocks

        # Random matrices, generated once
        self.gaussian, self.projections, self.buckets, self.signs = self.generate()

        # Gray code tables: binary partition index of a Gray code (SimHash bits) and the Gray code of a partition index
        codes = torch.arange(self.partitions, dtype=torch.int64)
        self.gray = codes ^ (codes >> 1)
        self.binary = torch.empty_like(codes)
        self.binary[self.gray] = codes

        # XOR masks of the SimHash bits sorted by Hamming weight, and how many masks have each weight 1..hashes
        popcounts = torch.tensor([bin(mask).count("1") for mask in range(self.partitions)])
        self.masks = torch.argsort(popcounts, stable=True)[1:]
        self.radii = torch.bincount(popcounts)[1:].tolist()

        # SimHash transform: row r * hashes + i holds SimHash column i of repetition r
        self.sketch = self.gaussian.permute(0, 2, 1).reshape(self.repetitions * self.hashes, self.dimension).contiguous()

        # Inner projections as one embedding bag per output row k * repetitions + r: the weighted token coordinates that sum
        # into column k of repetition r. Each coordinate feeds one output, 16x less work than multiplying by the mostly zero
        # matrices.
        if self.projections is not None:
            bags, repetition, coordinate = self.projections.permute(2, 0, 1).nonzero(as_tuple=True)
            self.coordinates = coordinate
            self.coefficients = self.projections[repetition, coordinate, bags]
            counts = torch.bincount(bags * self.repetitions + repetition, minlength=self.width * self.repetitions)
            self.bags = torch.cumsum(counts, dim=0) - counts

        # Tensors copied per device on first use
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

        # Inputs as a float32 tensor on its own device and CPU int64 offsets
        flat = flat if isinstance(flat, torch.Tensor) else torch.from_numpy(np.asarray(flat))
        if flat.dim() != 2:
            raise ValueError(f"flat must be a 2D (tokens x dimension) matrix, got shape {tuple(flat.shape)}")
        if flat.shape[1] != self.dimension:
            raise ValueError(f"token width {flat.shape[1]} does not match FDE dimension {self.dimension}")
        flat = flat.float()

        offsets = checkoffsets(offsets, flat.shape[0])

        # Encode chunk by chunk of whole matrices, straight into the output rows
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

            # SimHash: independent standard normal entries
            gaussian.append(generator.standard_normal((self.dimension, self.hashes)))

            # AMS sketch: each input coordinate goes to one random output coordinate with a random sign
            if self.projection and self.projector == "ams":
                matrix = np.zeros((self.dimension, self.projection))
                columns = generator.integers(0, self.projection, size=self.dimension)
                matrix[np.arange(self.dimension), columns] = 2.0 * generator.integers(0, 2, size=self.dimension) - 1.0
                projections.append(matrix)

        if self.projection and self.projector == "orthogonal":
            projections = self.orthogonal()

        gaussian = torch.from_numpy(np.stack(gaussian).astype(np.float32))
        projections = torch.from_numpy(np.stack(projections).astype(np.float32)) if projections else None

        # Count-Sketch: each FDE coordinate is added, with a random sign, to one random output coordinate
        buckets, signs = None, None
        if self.final:
            generator = np.random.default_rng(np.random.SeedSequence(self.seed, spawn_key=(self.repetitions,)))
            buckets = torch.from_numpy(generator.integers(0, self.final, size=self.blocks))
            signs = torch.from_numpy((2.0 * generator.integers(0, 2, size=self.blocks) - 1.0).astype(np.float32))

        return gaussian, projections, buckets, signs

    def orthogonal(self):
        """
        Generates grouped orthogonal inner projections. Each group of dimension // projection repetitions splits a random
        permutation of the token coordinates into projection blocks and draws a Haar random orthogonal basis per block:
        output k of the group's j-th repetition is basis row j of block k applied to that block's coordinates. Every
        coordinate feeds one output per repetition, as in the AMS sketch (so encoding costs the same), and the group's
        outputs together are an orthogonal transform: their projection errors cancel. Rows are scaled by sqrt(block size) so
        projected inner products are unbiased. A projection wider than the token vectors is one dense isometry per repetition.

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

            # Projecting up: orthonormal columns of a Gaussian matrix's QR, one isometry per repetition
            if self.projection > self.dimension:
                projections.extend(haar(generator, self.projection, self.dimension).T for _ in range(members))
                continue

            # Coordinate blocks (sizes differ by at most one) and one random orthogonal basis per block
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

        # Elements per token (projected copies + SimHash) and per matrix (partition blocks)
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

        # SimHash values (repetitions x hashes x tokens)
        sketches = torch.mm(tensors["sketch"], flat.T)

        # Projected tokens (width x repetitions x tokens), viewed as one column per (repetition, token)
        if self.projections is not None:
            rows = flat.T.contiguous()
            projected = F.embedding_bag(tensors["coordinates"], rows, tensors["bags"], mode="sum", per_sample_weights=tensors["coefficients"])
            projected = projected.view(width, repetitions * tokens)
        else:
            # Identity projection: the same token values in every repetition
            projected = flat.T.unsqueeze(1).expand(width, repetitions, tokens).reshape(width, repetitions * tokens)

        # Partition of each token in each repetition: SimHash bits read as a Gray code (first bit most significant) and decoded
        # to binary with a running XOR, the reference AppendToGrayCode
        bits = sketches.view(repetitions, self.hashes, tokens) > 0
        bit = bits[:, 0]
        partition = bit.long()
        for x in range(1, self.hashes):
            bit = bit ^ bits[:, x]
            partition = (partition << 1) | bit

        # Flat (matrix, repetition, partition) block of every (repetition, token)
        repetition = torch.arange(repetitions, device=device).view(-1, 1)
        blocks = ((matrix.view(1, -1) * repetitions + repetition) * partitions + partition).view(-1)

        # Partition sums of the projected tokens, one column per block
        sums = torch.zeros((width, count * repetitions * partitions), dtype=torch.float32, device=device)
        sums.index_add_(1, blocks, projected)

        if average:
            # Documents: centroid of each partition, a unit centroid has the direction of the sum so normalize skips the division
            counts = torch.bincount(blocks, minlength=count * repetitions * partitions)
            if not self.normalize:
                sums /= counts.clamp(min=1).view(1, -1)

            # Empty partitions of non-empty documents take the projected token nearest in Hamming distance
            empty = (counts.view(count, -1) == 0) & (lengths.view(-1, 1) > 0)
            if self.fill and empty.any():
                empty = empty.view(-1).nonzero().view(-1)
                nearest = self.nearest(blocks, len(counts), tokens, empty, tensors)

                # Column of the nearest token in the projected matrix: repetition * tokens + token
                columns = (empty // partitions) % repetitions * tokens + nearest
                sums[:, empty] = projected[:, columns]

            # Unit length partition centroids, empty partitions stay zero
            if self.normalize:
                sums /= torch.linalg.vector_norm(sums, dim=0).clamp(min=1e-12)

        # Blocks in (matrix, repetition, partition, width) order
        vectors = sums.T

        # Optional Count-Sketch final projection
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

        # Earliest token of every block, the sentinel `tokens` when a block is empty
        device, partitions = blocks.device, self.partitions
        earliest = torch.full((size,), tokens, dtype=torch.int64, device=device)
        earliest.scatter_reduce_(0, blocks, torch.arange(tokens, device=device).repeat(self.repetitions), reduce="amin")

        # First block of the row of each empty block and the Gray code (SimHash bits) of its partition
        rows, codes = empty - empty % partitions, tensors["gray"][empty % partitions]

        nearest = torch.full_like(empty, tokens)
        pending, start = torch.arange(len(empty), device=device), 0
        for number in self.radii:
            # Partitions at this Hamming distance: flip every combination of that many SimHash bits
            masks, start = tensors["masks"][start : start + number], start + number

            # Earliest token among them, bounded memory per step
            step = max(1, self.BUDGET // number)
            found = torch.cat(
                [earliest[rows[part].view(-1, 1) + tensors["binary"][codes[part].view(-1, 1) ^ masks]].amin(dim=1) for part in pending.split(step)]
            )

            # Keep searching only where no partition at this distance has tokens
            nearest[pending] = found
            pending = pending[found == tokens]
            if not len(pending):
                break

        return nearest
