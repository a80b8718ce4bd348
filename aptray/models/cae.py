"""Contractive autoencoder (Rifai et al. 2011): the seed AE plus a penalty on the encoder's sensitivity."""

from __future__ import annotations

import torch

from aptray.models.ae import AutoEncoder


class ContractiveAutoEncoder(AutoEncoder):
    """An :class:`AutoEncoder` trained with ``MSE + lam * ||J_f(x)||_F^2``, ``J_f`` the encoder's Jacobian.

    The Frobenius norm is estimated without forming the Jacobian: for a random direction ``v ~ N(0, I)``,
    ``E ||J v||^2 = ||J||_F^2``, and ``J v`` is a finite difference ``(f(x + h v) - f(x)) / h``. A contracted
    encoder maps benign neighbourhoods to nearly one code, so rows off the benign manifold reconstruct worse.
    Scoring is the plain reconstruction MSE.

    Args:
        dim, hidden, dropout, attention, chunks: as for :class:`AutoEncoder`.
        lam: weight of the contraction penalty.
        step: finite-difference step ``h``.
    """

    def __init__(self, dim: int, hidden: list[int] | None = None, dropout: float = 0.0, attention: bool = False,
                 chunks: int = 8, lam: float = 0.1, step: float = 0.01) -> None:
        super().__init__(dim, hidden, dropout, attention, chunks)
        self.lam = lam
        self.step = step

    def loss(self, x: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
        """Reconstruction MSE plus the contraction penalty per row (rows weighted by ``weight`` if given)."""
        from aptray.models import row_mean

        code = self.encode(x)
        per_row = ((self.decoder(code) - x) ** 2).mean(dim=1)
        if self.training and self.lam:
            v = torch.randn_like(x)
            jv = (self.encode(x + self.step * v) - code) / self.step
            per_row = per_row + self.lam * (jv**2).sum(dim=1) / x.shape[1]
        return row_mean(per_row, weight)
