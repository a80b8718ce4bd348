"""Torch networks, one per module; :func:`build_model` maps a torch detector to a configured network."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aptray.config import DetectorName

if TYPE_CHECKING:
    import torch
    from torch import nn


def row_mean(per_row: torch.Tensor, weight: torch.Tensor | None) -> torch.Tensor:
    """The mean of per-row losses, weighted by ``weight`` (each distinct row's count) when given."""
    if weight is None:
        return per_row.mean()
    return (per_row * weight).sum() / weight.sum().clamp_min(1e-12)


def build_model(name: DetectorName | str, dim: int, hidden: list[int] | None = None, **extra: Any) -> nn.Module:
    """A fresh network for the torch detector ``name`` on ``dim`` input features.

    Args:
        name: a torch detector (:data:`aptray.detectors.registry.TORCH_DETECTORS`).
        dim: input features (embedding dimension, also per event for ``lstm-ae``).
        hidden: layer widths (None: derived from ``dim``, or the seed's 128/64 for ``lstm-ae``).
        **extra: model-specific keyword arguments (``beta``, ``noise``, ``dropout``, ``chunks``, ...).

    Raises:
        ValueError: ``name`` is not a torch detector.
    """
    from aptray.models.ae import AutoEncoder
    from aptray.models.cae import ContractiveAutoEncoder
    from aptray.models.dae import DenoisingAutoEncoder
    from aptray.models.lstm_ae import LSTMAutoEncoder
    from aptray.models.svdd import DeepSVDD
    from aptray.models.vae import VariationalAutoEncoder

    try:
        model = DetectorName(name)
    except ValueError:
        model = None
    match model:
        case DetectorName.LSTM_AE:
            return LSTMAutoEncoder(dim, hidden, **extra)
        case DetectorName.AE | DetectorName.AE_ATTN:
            return AutoEncoder(dim, hidden, attention=model is DetectorName.AE_ATTN, **extra)
        case DetectorName.VAE | DetectorName.VAE_ATTN:
            return VariationalAutoEncoder(dim, hidden, attention=model is DetectorName.VAE_ATTN, **extra)
        case DetectorName.CAE:
            return ContractiveAutoEncoder(dim, hidden, **extra)
        case DetectorName.DEEP_SVDD:
            return DeepSVDD(dim, hidden, **extra)
        case DetectorName.DAE | DetectorName.DAE_ATTN:
            return DenoisingAutoEncoder(dim, hidden, attention=model is DetectorName.DAE_ATTN, **extra)
    raise ValueError(f"{name!r} is not a torch detector")
