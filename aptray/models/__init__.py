"""Torch networks, one per module; :func:`build_model` maps a model name to a configured network."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from torch import nn

#: Torch model names accepted by :func:`build_model` (and by ``aptray train --model``).
TORCH_MODELS: tuple[str, ...] = ("ae", "vae", "dae", "ae-attn", "vae-attn", "dae-attn", "lstm-ae")


def build_model(name: str, dim: int, hidden: list[int] | None = None, **extra: Any) -> nn.Module:
    """A fresh network for ``name`` on ``dim`` input features.

    Args:
        name: one of :data:`TORCH_MODELS`.
        dim: input features (embedding dimension, or event features for ``lstm-ae``).
        hidden: layer widths (None: derived from ``dim``, or the seed's 128/64 for ``lstm-ae``).
        **extra: model-specific keyword arguments (``beta``, ``noise``, ``dropout``, ``chunks``, ...).
    """
    from aptray.models.ae import AutoEncoder
    from aptray.models.dae import DenoisingAutoEncoder
    from aptray.models.lstm_ae import LSTMAutoEncoder
    from aptray.models.vae import VariationalAutoEncoder

    if name == "lstm-ae":
        return LSTMAutoEncoder(dim, hidden, **extra)
    base, _, attn = name.partition("-")
    classes: dict[str, type[nn.Module]] = {
        "ae": AutoEncoder,
        "vae": VariationalAutoEncoder,
        "dae": DenoisingAutoEncoder,
    }
    if base not in classes or attn not in ("", "attn"):
        raise ValueError(f"unknown torch model {name!r}; choose one of {', '.join(TORCH_MODELS)}")
    return classes[base](dim, hidden, attention=bool(attn), **extra)
