"""The generic training loop (one epoch, validation loss, early stopping), shared by local and Ray Train fits.

Pure torch: it sees batches of tensors and a network exposing ``loss(x)`` and ``score(x)``; the Ray Train
worker function in :mod:`aptray.train.trainer` feeds it its dataset shard, :class:`ReconstructionDetector`
feeds it in-memory arrays.
"""

from __future__ import annotations

import copy
import logging
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

log = logging.getLogger(__name__)


@dataclass
class EarlyStopping:
    """Stop after ``patience`` epochs without a validation-loss improvement (0 disables stopping)."""

    patience: int
    best: float = math.inf
    bad_epochs: int = 0
    best_epoch: int = -1

    def update(self, loss: float, epoch: int) -> bool:
        """Record an epoch's validation loss; True when training should stop."""
        if loss < self.best - 1e-9:
            self.best, self.bad_epochs, self.best_epoch = loss, 0, epoch
            return False
        self.bad_epochs += 1
        return self.patience > 0 and self.bad_epochs >= self.patience


@dataclass
class History:
    """Per-epoch losses of one fit."""

    train_loss: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    stopped_early: bool = False

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready summary."""
        return {
            "epochs": len(self.train_loss),
            "train_loss": self.train_loss,
            "val_loss": self.val_loss,
            "final_train_loss": self.train_loss[-1] if self.train_loss else None,
            "final_val_loss": self.val_loss[-1] if self.val_loss else None,
            "stopped_early": self.stopped_early,
        }


class LossModule(nn.Module):
    """Wraps a network so that ``forward(x)`` returns its training loss.

    DDP syncs gradients only for computations that go through its own ``forward``; wrapping the loss (not
    the reconstruction) lets models whose loss needs more than ``forward`` (VAE, DAE) train under DDP.
    """

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The training loss of batch ``x``."""
        return self.net.loss(x)  # type: ignore[operator,no-any-return]


def train_epoch(step: nn.Module, batches: Iterable[torch.Tensor], optimizer: torch.optim.Optimizer) -> float:
    """One pass over ``batches``; ``step`` maps a batch to its loss (a :class:`LossModule`, maybe in DDP).

    Returns:
        The row-weighted mean training loss.
    """
    step.train()
    total, rows = 0.0, 0
    for x in batches:
        optimizer.zero_grad(set_to_none=True)
        loss = step(x)
        loss.backward()
        optimizer.step()
        total += float(loss.detach()) * x.shape[0]
        rows += x.shape[0]
    return total / max(rows, 1)


@torch.no_grad()
def eval_loss(model: nn.Module, batches: Iterable[torch.Tensor],
              weights: Iterable[torch.Tensor] | None = None) -> tuple[float, float]:
    """Row-weighted mean loss of the bare network over ``batches`` in eval mode, and the row count.

    ``weights``: one tensor per batch, each row's count (distinct rows): the loss is then the mean over the rows
    they stand for, and the count their sum.
    """
    model.eval()
    total, rows = 0.0, 0.0
    if weights is None:
        for x in batches:
            total += float(model.loss(x)) * x.shape[0]  # type: ignore[operator]
            rows += x.shape[0]
    else:
        for x, w in zip(batches, weights, strict=True):
            total += float(model.loss(x, w)) * float(w.sum())  # type: ignore[operator]
            rows += float(w.sum())
    return total / max(rows, 1.0), rows


def sampled_batches(x: torch.Tensor, weights: torch.Tensor, samples: int, batch_size: int,
                    gen: torch.Generator) -> list[torch.Tensor]:
    """``samples`` rows drawn in proportion to ``weights`` (row counts), shuffled, in batches: minibatches of
    distinct rows that follow the distribution of the rows they stand for.

    Systematic, not independent, draws: each row appears ``floor(samples * w / sum(w))`` times, and the
    remaining draws go to the fractional parts without replacement. With ``samples`` equal to the row count
    every row is drawn exactly its count of times, as in a row-level epoch.
    """
    w = weights.double()
    if float(w.sum()) <= 0:  # a worker whose share of the counts is empty draws uniformly
        w = torch.ones_like(w)
    expected = w * (samples / float(w.sum()))
    times = torch.floor(expected).long()
    rest = samples - int(times.sum())
    if rest > 0:
        extra = torch.multinomial(expected - times, rest, replacement=False, generator=gen)
        times[extra] += 1
    idx = torch.repeat_interleave(torch.arange(len(w)), times)
    idx = idx[torch.randperm(len(idx), generator=gen)]
    return [x[idx[i : i + batch_size]] for i in range(0, len(idx), batch_size)]


def tensor_batches(
    x: np.ndarray, batch_size: int, shuffle: bool, gen: torch.Generator | None = None
) -> list[torch.Tensor]:
    """Split an array into float32 tensor batches (optionally shuffled)."""
    return _split(as_tensor(x), batch_size, shuffle, gen)


def as_tensor(x: np.ndarray) -> torch.Tensor:
    """``x`` as a writable float32 tensor (Arrow buffers are read-only: copied once)."""
    return torch.from_numpy(np.require(x, dtype=np.float32, requirements=["C", "W"]))


def _split(t: torch.Tensor, batch_size: int, shuffle: bool, gen: torch.Generator | None = None) -> list[torch.Tensor]:
    order = torch.randperm(len(t), generator=gen) if shuffle else torch.arange(len(t))
    return [t[order[i : i + batch_size]] for i in range(0, len(t), batch_size)]


def epoch_rows(distinct: int, weights: np.ndarray | None, limit: int) -> int:
    """Rows drawn per epoch from ``distinct`` weighted rows: ``limit``, at least one per distinct row, at most the
    rows they stand for (``distinct`` without weights)."""
    if weights is None:
        return distinct
    return max(distinct, min(int(np.asarray(weights).sum()), limit))


def fit_local(
    model: nn.Module,
    x_train: np.ndarray,
    x_val: np.ndarray | None,
    *,
    epochs: int,
    batch_size: int,
    lr: float,
    patience: int,
    seed: int = 0,
    weights: np.ndarray | None = None,
    val_weights: np.ndarray | None = None,
    epoch_rows: int | None = None,
) -> History:
    """Train ``model`` in this process with Adam; keeps the weights of the best validation epoch.

    Args:
        model: a network with ``loss`` and ``score``.
        x_train: training rows (benign only), or distinct rows with ``weights``.
        x_val: validation rows for the loss and early stopping (None or empty: training loss is used).
        epochs, batch_size, lr, patience, seed: the usual.
        weights: the row count of each distinct training row: an epoch draws ``epoch_rows`` rows with
            probability proportional to the counts (:func:`sampled_batches`), so its minibatches follow the
            rows' distribution while its cost no longer grows with the rows.
        val_weights: the row count of each distinct validation row (the validation loss is their weighted mean).
        epoch_rows: rows drawn per epoch with ``weights`` (default: one per distinct row).
    """
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    stopper = EarlyStopping(patience)
    hist = History()
    best_state = copy.deepcopy(model.state_dict())
    x_t = as_tensor(x_train)  # once, not per epoch
    w_t = None if weights is None else torch.from_numpy(np.asarray(weights, dtype=np.float64))
    has_val = x_val is not None and len(x_val) > 0
    val_batches = tensor_batches(x_val, batch_size, False) if has_val and x_val is not None else []
    val_w = None
    if has_val and val_weights is not None:
        vw = torch.from_numpy(np.asarray(val_weights, dtype=np.float32))
        val_w = [vw[i : i + batch_size] for i in range(0, len(vw), batch_size)]
    for epoch in range(epochs):
        batches = (_split(x_t, batch_size, True, gen) if w_t is None
                   else sampled_batches(x_t, w_t, epoch_rows or len(x_t), batch_size, gen))
        tl = train_epoch(LossModule(model), batches, opt)
        vl = eval_loss(model, val_batches, val_w)[0] if has_val else tl
        hist.train_loss.append(tl)
        hist.val_loss.append(vl)
        log.debug("epoch %d train %.6f val %.6f", epoch, tl, vl)
        improved_before = stopper.best
        stop = stopper.update(vl, epoch)
        if stopper.best < improved_before:
            best_state = copy.deepcopy(model.state_dict())
        if stop:
            hist.stopped_early = True
            break
    model.load_state_dict(best_state)
    return hist


@torch.no_grad()
def score_array(model: nn.Module, x: np.ndarray, batch_size: int = 1024) -> np.ndarray:
    """Per-row anomaly scores of ``x`` (higher = more anomalous) as float64."""
    model.eval()
    out = [model.score(b).double().numpy() for b in tensor_batches(x, batch_size, False)]  # type: ignore[operator]
    return np.concatenate(out) if out else np.zeros(0)
