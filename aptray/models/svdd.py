"""Deep SVDD (Ruff et al. 2018, one-class): map benign rows close to a fixed centre; score = squared distance."""

from __future__ import annotations

import itertools

import torch
from torch import nn

from aptray.models.ae import default_hidden


class DeepSVDD(nn.Module):
    """One-class Deep SVDD network: an MLP without biases (so it cannot map every row to the centre, the
    "hypersphere collapse" the paper rules out) trained to pull benign rows towards a centre ``c``.

    ``c`` is the mean output of the untrained network over the first training batch (the paper uses one initial
    forward pass over the data), with coordinates near zero pushed to ``±eps``; it is a buffer, saved with the
    weights and broadcast to DDP workers. The loss and the anomaly score are the squared distance to ``c``.

    Args:
        dim: input (embedding) dimension.
        hidden: widths, the last one the output space; None derives them from ``dim`` as the AE does.
        eps: smallest magnitude of a centre coordinate.
    """

    center: torch.Tensor
    center_set: torch.Tensor

    def __init__(self, dim: int, hidden: list[int] | None = None, eps: float = 0.1) -> None:
        super().__init__()
        sizes = [dim, *(list(hidden) if hidden else default_hidden(dim))]
        layers: list[nn.Module] = []
        for i, (a, b) in enumerate(itertools.pairwise(sizes)):
            layers.append(nn.Linear(a, b, bias=False))
            if i < len(sizes) - 2:
                layers.append(nn.LeakyReLU(0.1))
        self.net = nn.Sequential(*layers)
        self.eps = eps
        self.register_buffer("center", torch.zeros(sizes[-1]))
        self.register_buffer("center_set", torch.zeros(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The row's image in the output space."""
        return self.net(x)

    def _distance(self, x: torch.Tensor) -> torch.Tensor:
        z = self(x)
        if self.training and not bool(self.center_set):
            with torch.no_grad():
                c = z.mean(0)
                c = torch.where(c.abs() < self.eps, torch.where(c < 0, -self.eps, self.eps), c)
                self.center.copy_(c)
                self.center_set.fill_(1.0)
        return ((z - self.center) ** 2).sum(dim=1)

    def loss(self, x: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
        """Mean squared distance to the centre (rows weighted by ``weight``, their counts, if given)."""
        from aptray.models import row_mean

        return row_mean(self._distance(x), weight)

    def score(self, x: torch.Tensor) -> torch.Tensor:
        """Squared distance to the centre (higher = more anomalous)."""
        return self._distance(x)
