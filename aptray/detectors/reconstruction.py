"""Estimator wrappers around the torch autoencoders: anomaly score = reconstruction error."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from aptray.detectors.base import Detector

if TYPE_CHECKING:
    from torch import nn

log = logging.getLogger(__name__)


class ReconstructionDetector(Detector):
    """Any network of :data:`aptray.detectors.registry.TORCH_DETECTORS`, trained in this process by :meth:`fit`.

    Distributed training (Ray Train, DDP) builds the same detector and hands it the trained network with
    :meth:`set_network`. ``X`` is ``(rows, dim)``, or ``(rows, window, features)`` for ``lstm-ae``.

    Args:
        model: network name (``ae``, ``vae``, ``dae``, ``ae-attn``, ``vae-attn``, ``dae-attn``, ``lstm-ae``).
        hidden: layer widths (None: derived from the input dimension).
        epochs, batch_size, lr, patience, seed: training settings (Adam, MSE-based losses).
        val_fraction: share of the benign rows held out for the validation loss and early stopping.
        distinct_epoch_rows: rows drawn per epoch when fitting distinct rows with counts (``fit(..., weights)``).
        extra: model keyword arguments (``beta``, ``noise``, ``noise_std``, ``dropout``, ``chunks``...).
        percentile, tiers: threshold settings (see :class:`Detector`).
    """

    name: ClassVar[str] = "reconstruction"

    def __init__(
        self,
        model: str = "ae",
        hidden: list[int] | None = None,
        epochs: int = 15,
        batch_size: int = 128,
        lr: float = 1e-3,
        patience: int = 3,
        val_fraction: float = 0.1,
        seed: int = 0,
        extra: dict[str, Any] | None = None,
        distinct_epoch_rows: int = 8192,
        percentile: float = 99.0,
        tiers: dict[str, float] | None = None,
    ) -> None:
        super().__init__(percentile, tiers)
        self.model = model
        self.hidden = list(hidden) if hidden else None
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.patience = patience
        self.val_fraction = val_fraction
        self.seed = seed
        self.extra = dict(extra or {})
        self.distinct_epoch_rows = distinct_epoch_rows

    def get_params(self) -> dict[str, Any]:
        """Constructor arguments."""
        return {
            "model": self.model, "hidden": self.hidden, "epochs": self.epochs, "batch_size": self.batch_size,
            "lr": self.lr, "patience": self.patience, "val_fraction": self.val_fraction, "seed": self.seed,
            "extra": self.extra, "distinct_epoch_rows": self.distinct_epoch_rows, "percentile": self.percentile,
            "tiers": self.tiers,
        }

    def build_network(self, dim: int) -> nn.Module:
        """A fresh, untrained network for ``dim`` input features."""
        from aptray.models import build_model

        return build_model(self.model, dim, self.hidden, **self.extra)

    def initial_network(self, dim: int) -> nn.Module:
        """The network to train, its initial weights drawn from ``seed`` (torch's global generator is seeded
        differently in each process: unseeded, one seed gave other weights, scores and thresholds per run)."""
        import torch

        torch.manual_seed(self.seed)
        return self.build_network(dim)

    def _fit(self, X: np.ndarray) -> None:
        from aptray.train.loop import fit_local

        rng = np.random.default_rng(self.seed)
        order = rng.permutation(len(X))
        n_val = int(len(X) * self.val_fraction) if len(X) >= 10 else 0
        x_val, x_train = X[order[:n_val]], X[order[n_val:]]
        net = self.initial_network(int(X.shape[-1]))
        hist = fit_local(net, x_train, x_val, epochs=self.epochs, batch_size=self.batch_size, lr=self.lr,
                         patience=self.patience, seed=self.seed)
        self.network_ = net
        self.history_ = hist.as_dict()

    def _fit_weighted(self, X: np.ndarray, weights: np.ndarray, seed: int) -> None:
        """Distinct rows with counts: the counts split into training and validation rows by a seeded binomial draw
        (the counts form of :meth:`_fit`'s split), minibatches drawn by the training counts, as ``aptray train``
        does (:func:`aptray.train.loop.fit_local` with ``weights``)."""
        from aptray.train.loop import epoch_rows, fit_local

        counts = np.asarray(weights, dtype=np.int64)
        rows = int(counts.sum())
        val = np.random.default_rng(self.seed).binomial(counts, self.val_fraction) if rows >= 10 else 0 * counts
        train = counts - val
        tk, vk = train > 0, val > 0
        net = self.initial_network(int(X.shape[-1]))
        hist = fit_local(net, X[tk], X[vk], epochs=self.epochs, batch_size=self.batch_size, lr=self.lr,
                         patience=self.patience, seed=self.seed, weights=train[tk], val_weights=val[vk],
                         epoch_rows=epoch_rows(int(tk.sum()), train[tk], self.distinct_epoch_rows))
        self.network_ = net
        self.history_ = hist.as_dict()

    def set_network(self, net: nn.Module, history: dict[str, Any], benign: np.ndarray, n_excluded: int,
                    weights: np.ndarray | None = None) -> None:
        """Adopt a network trained elsewhere (Ray Train, or on distinct rows) and set thresholds from the benign
        training rows (``weights``: the row count of each distinct row)."""
        self.network_ = net.cpu().eval()
        self.history_ = history
        self.n_train_ = len(benign) if weights is None else int(np.asarray(weights).sum())
        self.n_excluded_ = n_excluded
        self.n_features_in_ = int(benign.shape[-1])
        self.set_threshold_percentile(self.decision_function(benign), weights)

    def decision_function(self, X: np.ndarray) -> np.ndarray:
        """Per-row reconstruction error."""
        from aptray.train.loop import score_array

        return score_array(self.network_, np.asarray(X, dtype=np.float32))

    def state(self) -> dict[str, np.ndarray]:
        """The network's ``state_dict`` as float32 arrays."""
        return {k: v.detach().cpu().numpy() for k, v in self.network_.state_dict().items()}

    def learned(self) -> dict[str, Any]:
        """Input dimension, row counts and the training history."""
        return {**super().learned(), "n_train_": getattr(self, "n_train_", None),
                "n_excluded_": getattr(self, "n_excluded_", None), "history_": getattr(self, "history_", {})}

    def _load_state(self, arrays: dict[str, np.ndarray], learned: dict[str, Any]) -> None:
        import torch

        net = self.build_network(int(learned["n_features_in_"]))
        net.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in arrays.items()})
        self.network_ = net.eval()
