"""Per-seed train / validation / test splits for benign-only training with very few malicious rows.

Benign rows are split by ``test_fraction`` and ``val_fraction`` (the rest trains). Malicious rows are never
trained on (every detector drops them in ``fit``), so putting some into the train split would only waste
them: ADAPT datasets hold as few as one. They are divided between validation and test in the ratio
``val_fraction : test_fraction``, test first (one malicious row goes to test, none to validation). The split
is therefore stratified over the evaluation splits; validation may hold no malicious row, in which case
thresholds fall back to the benign percentile and validation metrics are NaN. The test split is never used
for any choice.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Split:
    """Row indices of one seed's split (each sorted)."""

    seed: int
    train: np.ndarray
    val: np.ndarray
    test: np.ndarray

    def counts(self, y: np.ndarray) -> dict[str, int]:
        """Rows and malicious rows per split."""
        t = np.asarray(y) == 1
        return {
            "train": len(self.train), "train_benign": int((~t[self.train]).sum()),
            "val": len(self.val), "val_malicious": int(t[self.val].sum()),
            "test": len(self.test), "test_malicious": int(t[self.test].sum()),
        }


def split_rows(y: np.ndarray, seed: int, test_fraction: float = 0.3, val_fraction: float = 0.2) -> Split:
    """Draw one seed's split (see the module docstring for the rules).

    Args:
        y: 0/1 labels (1 = malicious).
        seed: random seed; the same seed and labels give the same split.
        test_fraction: share of benign rows held out for test.
        val_fraction: share of benign rows for validation (threshold choice).

    Returns:
        The :class:`Split`.

    Raises:
        ValueError: fractions that leave no training share.
    """
    if not 0 < test_fraction < 1 or not 0 <= val_fraction < 1 or test_fraction + val_fraction >= 1:
        raise ValueError(f"test_fraction {test_fraction} + val_fraction {val_fraction} must leave rows to train on")
    t = np.asarray(y) == 1
    rng = np.random.default_rng(seed)
    benign = rng.permutation(np.flatnonzero(~t))
    malicious = rng.permutation(np.flatnonzero(t))
    n_test = round(len(benign) * test_fraction)
    n_val = round(len(benign) * val_fraction)
    b_test, b_val, b_train = benign[:n_test], benign[n_test : n_test + n_val], benign[n_test + n_val :]
    m_test_n = 0
    if len(malicious):
        m_test_n = max(1, round(len(malicious) * test_fraction / (test_fraction + val_fraction)))
    m_test, m_val = malicious[:m_test_n], malicious[m_test_n:]
    return Split(
        seed=seed,
        train=np.sort(b_train),
        val=np.sort(np.r_[b_val, m_val]).astype(np.int64),
        test=np.sort(np.r_[b_test, m_test]).astype(np.int64),
    )


def all_rows(n: int, seed: int) -> Split:
    """The unsupervised protocol's split: every row trains (labels unused) and every row is ranked."""
    rows = np.arange(n, dtype=np.int64)
    return Split(seed=seed, train=rows, val=np.zeros(0, dtype=np.int64), test=rows)
