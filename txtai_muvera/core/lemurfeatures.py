"""
LEMUR features module
"""

import math

import torch

# Feature activations
ACTIVATIONS = {"relu": torch.nn.ReLU, "gelu": torch.nn.GELU, "silu": torch.nn.SiLU, "mish": torch.nn.Mish}


class RandomFeatures(torch.nn.Module):
    """
    Seeded random projection followed by an activation (the untrained, epochs=0, feature map). The projection is a buffer
    named weight, so it is saved with the artifact.
    """

    def __init__(self, inputdim, outputdim, activation):
        super().__init__()
        self.register_buffer("weight", torch.randn(inputdim, outputdim))
        self.activation = ACTIVATIONS[activation]()
        self.scale = math.sqrt(2.0 / outputdim)

    def forward(self, tokens):
        """
        Maps token vectors to random features.

        Args:
            tokens: (tokens x inputdim) tensor

        Returns:
            (tokens x outputdim) tensor
        """

        return self.scale * self.activation(tokens @ self.weight)


class FeatureNetwork(torch.nn.Module):
    """
    Token feature map of LEMUR: an MLP (trained, "mlp") or random features ("elm"), and during training a linear readout
    predicting a token's standardized MaxSim against each target document. Parameter names follow txtai's artifacts.
    """

    # pylint: disable=R0913,R0917
    def __init__(self, modeltype, inputdim, hiddendim, finalhiddendim, layers, activation, outputdim=None):
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}")

        if modeltype == "elm":
            modules = [RandomFeatures(inputdim, finalhiddendim, activation), torch.nn.LayerNorm(finalhiddendim, elementwise_affine=False)]
        elif modeltype == "mlp":
            # Hidden layers, then output
            modules, widths = [], [inputdim] + [hiddendim] * (layers - 1)
            for x, width in enumerate(widths):
                output = finalhiddendim if x == len(widths) - 1 else hiddendim
                modules.extend([torch.nn.Linear(width, output), torch.nn.LayerNorm(output), ACTIVATIONS[activation]()])
        else:
            raise ValueError(f"modeltype must be 'mlp' or 'elm', got {modeltype!r}")

        self.featureextractor = torch.nn.Sequential(*modules)
        self.outputlayer = torch.nn.Linear(finalhiddendim, outputdim, bias=False) if outputdim else None

    def features(self, tokens):
        """
        Maps token vectors to features.

        Args:
            tokens: (tokens x inputdim) tensor

        Returns:
            (tokens x finalhiddendim) tensor
        """

        return self.featureextractor(tokens)

    def forward(self, tokens):
        """
        Predicts standardized MaxSim scores of tokens against the target documents (training only).

        Args:
            tokens: (tokens x inputdim) tensor

        Returns:
            (tokens x outputdim) tensor
        """

        return self.outputlayer(self.features(tokens))
