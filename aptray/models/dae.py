"""Denoising autoencoder: the seed AE trained to reconstruct clean rows from Gaussian-noised or masked ones."""

from __future__ import annotations

import torch
from torch import nn

from aptray.models.ae import AutoEncoder


class DenoisingAutoEncoder(AutoEncoder):
    """An :class:`AutoEncoder` whose training input is corrupted; scoring uses the clean input.

    Args:
        dim, hidden, dropout, attention, chunks: as for :class:`AutoEncoder`.
        noise: ``"gaussian"`` (add N(0, ``noise_std``)) or ``"mask"`` (zero a ``mask_prob`` share of values).
        noise_std: standard deviation of the Gaussian noise.
        mask_prob: share of values zeroed by masking noise.
    """

    def __init__(
        self,
        dim: int,
        hidden: list[int] | None = None,
        dropout: float = 0.0,
        attention: bool = False,
        chunks: int = 8,
        noise: str = "gaussian",
        noise_std: float = 0.05,
        mask_prob: float = 0.1,
    ) -> None:
        super().__init__(dim, hidden, dropout, attention, chunks)
        if noise not in ("gaussian", "mask"):
            raise ValueError(f"noise must be 'gaussian' or 'mask', not {noise!r}")
        self.noise = noise
        self.noise_std = noise_std
        self.mask_prob = mask_prob

    def corrupt(self, x: torch.Tensor) -> torch.Tensor:
        """A noisy copy of ``x``."""
        if self.noise == "gaussian":
            return x + self.noise_std * torch.randn_like(x)
        keep = (torch.rand_like(x) >= self.mask_prob).to(x.dtype)
        return x * keep

    def loss(self, x: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
        """MSE between the reconstruction of the corrupted batch and the clean batch (rows weighted by
        ``weight`` if given)."""
        if weight is None:
            return nn.functional.mse_loss(self(self.corrupt(x)), x)
        from aptray.models import row_mean

        return row_mean(((self(self.corrupt(x)) - x) ** 2).mean(dim=1), weight)
