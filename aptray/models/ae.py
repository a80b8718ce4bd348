"""The seed autoencoder (768-512-128-512-768 for mpnet), sizes derived from the embedding dimension."""

from __future__ import annotations

import itertools

import torch
from torch import nn

from aptray.models.attention import ChunkAttention


def default_hidden(dim: int) -> list[int]:
    """Hidden sizes for ``dim``: the seed's 768 -> 512 -> 128 ratios (2/3, 1/6), at least 8 wide."""
    return [max(8, round(dim * 2 / 3)), max(8, round(dim / 6))]


def mlp(sizes: list[int], dropout: float = 0.0, last_activation: bool = False) -> nn.Sequential:
    """Linear layers ``sizes[0] -> ... -> sizes[-1]`` with ReLU (and dropout) between them."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(itertools.pairwise(sizes)):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2 or last_activation:
            layers.append(nn.ReLU())
            if dropout:
                layers.append(nn.Dropout(dropout))
    return nn.Sequential(*layers)


class AutoEncoder(nn.Module):
    """Plain MLP autoencoder trained with MSE; the anomaly score is the per-row reconstruction MSE.

    Args:
        dim: input (embedding) dimension.
        hidden: encoder widths, the last one being the bottleneck; None derives them from ``dim``.
        dropout: dropout between hidden layers.
        attention: put a :class:`ChunkAttention` block in front of the encoder (the ``ae-attn`` variant).
        chunks: tokens for the attention block.
    """

    def __init__(
        self,
        dim: int,
        hidden: list[int] | None = None,
        dropout: float = 0.0,
        attention: bool = False,
        chunks: int = 8,
    ) -> None:
        super().__init__()
        hidden = list(hidden) if hidden else default_hidden(dim)
        self.dim = dim
        self.attention = ChunkAttention(dim, chunks) if attention else None
        self.encoder = mlp([dim, *hidden], dropout, last_activation=True)
        self.decoder = mlp([*reversed(hidden), dim], dropout)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """The bottleneck code of ``x``."""
        if self.attention is not None:
            x = self.attention(x)
        return self.encoder(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Reconstruction of ``x``."""
        return self.decoder(self.encode(x))

    def loss(self, x: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
        """Mean squared reconstruction error of the batch (rows weighted by ``weight``, their counts, if given)."""
        if weight is None:
            return nn.functional.mse_loss(self(x), x)
        from aptray.models import row_mean

        return row_mean(((self(x) - x) ** 2).mean(dim=1), weight)

    def score(self, x: torch.Tensor) -> torch.Tensor:
        """Per-row reconstruction MSE (higher = more anomalous)."""
        return ((self(x) - x) ** 2).mean(dim=1)
