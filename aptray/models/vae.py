"""Variational autoencoder with a beta-weighted KL term; scores are reconstruction errors of the mean code."""

from __future__ import annotations

import torch
from torch import nn

from aptray.models.ae import default_hidden, mlp
from aptray.models.attention import ChunkAttention


class VariationalAutoEncoder(nn.Module):
    """MLP VAE: loss = MSE + ``beta`` * KL(q(z|x) || N(0, I)) per dimension.

    Args:
        dim: input dimension.
        hidden: encoder widths, the last one being the latent size; None derives them from ``dim``.
        dropout: dropout between hidden layers.
        attention: put a :class:`ChunkAttention` block in front of the encoder (``vae-attn``).
        chunks: tokens for the attention block.
        beta: weight of the KL term.
    """

    def __init__(
        self,
        dim: int,
        hidden: list[int] | None = None,
        dropout: float = 0.0,
        attention: bool = False,
        chunks: int = 8,
        beta: float = 1e-3,
    ) -> None:
        super().__init__()
        hidden = list(hidden) if hidden else default_hidden(dim)
        self.dim = dim
        self.beta = beta
        self.attention = ChunkAttention(dim, chunks) if attention else None
        self.encoder = mlp([dim, *hidden[:-1]], dropout, last_activation=True) if len(hidden) > 1 else nn.Identity()
        width = hidden[-2] if len(hidden) > 1 else dim
        self.mu = nn.Linear(width, hidden[-1])
        self.logvar = nn.Linear(width, hidden[-1])
        self.decoder = mlp([*reversed(hidden), dim], dropout)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and log-variance of q(z|x)."""
        if self.attention is not None:
            x = self.attention(x)
        h = self.encoder(x)
        return self.mu(h), self.logvar(h).clamp(-10.0, 10.0)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(reconstruction, mu, logvar)``; samples z in training, uses the mean otherwise."""
        mu, logvar = self.encode(x)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar) if self.training else mu
        return self.decoder(z), mu, logvar

    def loss(self, x: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
        """Reconstruction MSE plus ``beta`` times the mean KL divergence (rows weighted by ``weight`` if given)."""
        recon, mu, logvar = self(x)
        if weight is None:
            kl = -0.5 * torch.mean(1 + logvar - mu.pow(2) - logvar.exp())
            return nn.functional.mse_loss(recon, x) + self.beta * kl
        from aptray.models import row_mean

        kl_row = -0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).mean(dim=1)
        return row_mean(((recon - x) ** 2).mean(dim=1) + self.beta * kl_row, weight)

    def score(self, x: torch.Tensor) -> torch.Tensor:
        """Per-row reconstruction MSE of the decoded mean code."""
        mu, _ = self.encode(x)
        return ((self.decoder(mu) - x) ** 2).mean(dim=1)
