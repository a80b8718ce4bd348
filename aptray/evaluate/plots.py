"""The report's figures as PNG bytes (matplotlib, Agg backend; no display needed).

Each function takes plain data and returns PNG bytes, or None when there is nothing to draw.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from aptray.evaluate.metrics import curves

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def _figure(width: float = 6.0, height: float = 4.0, ncols: int = 1) -> tuple[Figure, Any]:
    import matplotlib

    matplotlib.use("Agg", force=True)
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100)
    axes = fig.subplots(1, ncols)
    return fig, axes


def _png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def heatmap(values: np.ndarray, rows: Sequence[str], cols: Sequence[str], title: str) -> bytes | None:
    """Annotated heatmap (embedder x detector mean test AUC); NaN cells are grey and marked ``n/a``."""
    if values.size == 0:
        return None
    fig, ax = _figure(max(4.0, 0.9 * len(cols) + 2), max(2.0, 0.6 * len(rows) + 1.5))
    masked = np.ma.masked_invalid(values)
    im = ax.imshow(masked, vmin=0.0, vmax=1.0, cmap="viridis", aspect="auto")
    ax.set_xticks(range(len(cols)), labels=list(cols), rotation=45, ha="right")
    ax.set_yticks(range(len(rows)), labels=list(rows))
    for i in range(len(rows)):
        for j in range(len(cols)):
            v = values[i, j]
            ax.text(j, i, "n/a" if not np.isfinite(v) else f"{v:.2f}", ha="center", va="center",
                    color="white" if np.isfinite(v) and v < 0.6 else "black", fontsize=8)
    fig.colorbar(im, ax=ax, label="mean test AUC-ROC")
    ax.set_title(title, fontsize=9)
    return _png(fig)


def roc_pr(series: Sequence[tuple[str, np.ndarray, np.ndarray]], title: str) -> bytes | None:
    """ROC (linear and log-scaled false-positive axis) and precision-recall curves, one line per
    ``(label, y, scores)``; None if no series has both classes.

    The log axis shows the low false-positive rates where rare attacks are found (a rate of 0 is drawn at half
    of one benign row's share, the smallest rate the data can show)."""
    drawn = [(lab, curves(y, s), int(np.sum(np.asarray(y) == 0))) for lab, y, s in series]
    drawn = [(lab, c, n) for lab, c, n in drawn if c["fpr"]]
    if not drawn:
        return None
    fig, (ax1, ax_log, ax2) = _figure(15, 4, ncols=3)
    floor = 0.5 / max(n for _, _, n in drawn)
    for label, c, _ in drawn:
        ax1.plot(c["fpr"], c["tpr"], label=label)  # straight segments: tied scores interpolate
        ax_log.plot(np.maximum(c["fpr"], floor), c["tpr"], label=label)
        ax2.plot(c["recall"], c["precision"], drawstyle="steps-pre", label=label)
    ax1.plot([0, 1], [0, 1], ls=":", color="grey")
    ax1.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC (test, seed 0)")
    ax_log.set_xscale("log")
    ax_log.set(xlabel="false positive rate (log)", ylabel="true positive rate", title="ROC, low false-positive rates",
               xlim=(floor, 1), ylim=(0, 1.05))
    ax2.set(xlabel="recall", ylabel="precision", title="Precision-recall (test, seed 0)", ylim=(0, 1.05))
    ax1.legend(fontsize=7, loc="lower right")
    fig.suptitle(title, fontsize=9)
    return _png(fig)


def histogram(y: np.ndarray, scores: np.ndarray, threshold: float | None, title: str) -> bytes | None:
    """Score (reconstruction error) histograms of benign vs malicious rows, with the threshold marked."""
    if len(scores) == 0:
        return None
    fig, ax = _figure()
    bins = np.histogram_bin_edges(scores, bins=40)
    ax.hist(scores[y != 1], bins=bins, alpha=0.6, label=f"benign ({int((y != 1).sum())})", density=True)
    if (y == 1).any():
        ax.hist(scores[y == 1], bins=bins, alpha=0.7, label=f"malicious ({int((y == 1).sum())})", density=True)
    if threshold is not None and np.isfinite(threshold):
        ax.axvline(threshold, color="black", ls="--", label="threshold")
    ax.set(xlabel="anomaly score", ylabel="density", title=title)
    ax.title.set_fontsize(9)
    ax.legend(fontsize=7)
    return _png(fig)


def losses(histories: Sequence[tuple[str, dict[str, Any]]], title: str) -> bytes | None:
    """Training and validation loss per epoch, one line per ``(label, history)``."""
    drawn = [(lab, h) for lab, h in histories if h and h.get("train_loss")]
    if not drawn:
        return None
    fig, (ax1, ax2) = _figure(10, 4, ncols=2)
    for label, h in drawn:
        ax1.plot(range(1, len(h["train_loss"]) + 1), h["train_loss"], label=label)
        if h.get("val_loss"):
            ax2.plot(range(1, len(h["val_loss"]) + 1), h["val_loss"], label=label)
    ax1.set(xlabel="epoch", ylabel="loss", title="training loss", yscale="log")
    ax2.set(xlabel="epoch", ylabel="loss", title="validation loss (benign)", yscale="log")
    ax1.legend(fontsize=7)
    fig.suptitle(title, fontsize=9)
    return _png(fig)


def scatter(x: np.ndarray, y: np.ndarray, label: np.ndarray, title: str) -> bytes | None:
    """2-D embedding map (t-SNE) coloured by label, malicious drawn on top."""
    if len(x) == 0:
        return None
    fig, ax = _figure(5, 5)
    ben, mal = label != 1, label == 1
    ax.scatter(x[ben], y[ben], s=6, alpha=0.5, label=f"benign ({int(ben.sum())})")
    ax.scatter(x[mal], y[mal], s=22, marker="x", color="red", label=f"malicious ({int(mal.sum())})")
    ax.set(title=title, xticks=[], yticks=[])
    ax.title.set_fontsize(9)
    ax.legend(fontsize=7)
    return _png(fig)
