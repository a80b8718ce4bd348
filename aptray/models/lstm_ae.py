"""LSTM autoencoder over windows of consecutive events of one process/host (the BETH seed shape)."""

from __future__ import annotations

import torch
from torch import nn


class LSTMAutoEncoder(nn.Module):
    """Stacked LSTM encoder (``hidden[0]`` -> ``hidden[1]``), repeat the code, LSTM decoder back, linear out.

    Input is ``(batch, window, features)``: embeddings of consecutive events or one-hot event features.

    Args:
        dim: features per event.
        hidden: encoder LSTM widths (seed: 128, 64); the decoder mirrors them.
        dropout: dropout after each LSTM layer.
        window: events per window (only recorded; any length works).
    """

    def __init__(self, dim: int, hidden: list[int] | None = None, dropout: float = 0.2, window: int = 8) -> None:
        super().__init__()
        h1, h2 = (list(hidden) if hidden else [128, 64])[:2]
        self.dim = dim
        self.window = window
        self.enc1 = nn.LSTM(dim, h1, batch_first=True)
        self.enc2 = nn.LSTM(h1, h2, batch_first=True)
        self.dec1 = nn.LSTM(h2, h2, batch_first=True)
        self.dec2 = nn.LSTM(h2, h1, batch_first=True)
        self.drop = nn.Dropout(dropout)
        self.out = nn.Linear(h1, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Reconstruction of a batch of windows."""
        h, _ = self.enc1(x)
        h, (code, _) = self.enc2(self.drop(h))
        rep = code[-1].unsqueeze(1).expand(-1, x.shape[1], -1)
        d, _ = self.dec1(rep)
        d, _ = self.dec2(self.drop(d))
        return self.out(self.drop(d))

    def loss(self, x: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
        """Mean squared reconstruction error (windows weighted by ``weight`` if given)."""
        if weight is None:
            return nn.functional.mse_loss(self(x), x)
        from aptray.models import row_mean

        return row_mean(((self(x) - x) ** 2).mean(dim=(1, 2)), weight)

    def score(self, x: torch.Tensor) -> torch.Tensor:
        """Per-window reconstruction MSE."""
        return ((self(x) - x) ** 2).mean(dim=(1, 2))
