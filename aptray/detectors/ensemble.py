"""The rank ensemble: several detectors fused into one artifact that ``score`` and ``serve`` load like any other.

The experiment's fusion (:mod:`aptray.evaluate.fusion`) shows that the mean *place* of a few detectors' scores
often beats each of them; this is the same transform as a model of its own. :meth:`EnsembleDetector.fit` keeps a
seeded ``holdout`` share of the benign training rows out of every member's training (for distinct rows with
counts, each count is split by a binomial draw, so a sentence seen 40 times lands on both sides as rows would),
fits each member on the rest, and keeps each member's scores of the held-out rows as its *reference*. A score
becomes its place among the reference scores (:func:`aptray.evaluate.fusion.place`: the share of held-out benign
rows scored below it, extended above the largest), and the ensemble's score is the mean place over the members.
The threshold and tiers are percentiles of the held-out rows' own fused scores: rows no member was fitted on, as
new benign rows would be.

Everything is stored as arrays and JSON (each member's own state under ``m<i>.``, the references beside it): no
pickle. Members are configured by ``train.ensemble_members`` (any detectors that score single rows of
embeddings, not another ensemble).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np

from aptray.detectors.base import Detector

#: The ``m<i>.`` prefix of member ``i``'s arrays in the artifact.
_PREFIX = "m{}."


class EnsembleDetector(Detector):
    """Mean place of its members' scores among their scores of held-out benign training rows.

    Args:
        members: fitted or unfitted detectors, or their stored form ``{"kind": ..., "params": ...}``.
        holdout: share of benign training rows kept out of the members' training as the reference.
        seed: the held-out draw's seed.
        percentile, tiers: as every detector (of the held-out rows' fused scores).
    """

    name: ClassVar[str] = "ensemble"

    def __init__(self, members: Sequence[Detector | dict[str, Any]], holdout: float = 0.2, seed: int = 0,
                 **kw: Any) -> None:
        super().__init__(**kw)
        from aptray.detectors import detector_class

        if not 0 < holdout < 1:
            raise ValueError(f"ensemble holdout must be between 0 and 1, got {holdout}")
        built = [m if isinstance(m, Detector) else detector_class(m["kind"])(**m["params"]) for m in members]
        if len(built) < 2:
            raise ValueError("an ensemble needs at least two members")
        if any(isinstance(m, EnsembleDetector) for m in built):
            raise ValueError("an ensemble's members cannot be ensembles")
        self.members = built
        self.holdout, self.seed = float(holdout), int(seed)

    # -- fitting ------------------------------------------------------------------------------------------
    def _fit(self, X: np.ndarray) -> None:
        order = np.random.default_rng(self.seed).permutation(len(X))
        n_ref = round(len(X) * self.holdout) if len(X) >= 4 else 0
        ref, train = order[:n_ref], order[n_ref:]
        self._fit_members(X[train], None, X[ref], None)

    def _fit_weighted(self, X: np.ndarray, weights: np.ndarray, seed: int) -> None:
        counts = np.rint(np.asarray(weights, dtype=np.float64)).astype(np.int64)
        if (counts <= 0).any() or not np.allclose(counts, weights):
            raise ValueError("an ensemble fits distinct rows with whole positive row counts")
        held = np.random.default_rng(self.seed).binomial(counts, self.holdout)
        kept = counts - held
        t, r = kept > 0, held > 0
        self._fit_members(X[t], kept[t].astype(np.float64), X[r], held[r].astype(np.float64))

    def _fit_members(self, x_fit: np.ndarray, w_fit: np.ndarray | None, x_ref: np.ndarray,
                     w_ref: np.ndarray | None) -> None:
        if len(x_fit) == 0:
            raise ValueError("no benign rows left to fit the ensemble's members on")
        for m in self.members:
            m.weighted_fit_max_rows = self.weighted_fit_max_rows  # ``train.baseline_max_rows``, as set on the ensemble
            m.fit(x_fit, None, w_fit)
        if len(x_ref) == 0:  # too few rows to hold any out: the members' training rows, scored as they score them
            x_ref, w_ref = x_fit, w_fit
            raw = [m.training_row_scores(x_ref) for m in self.members]
        else:
            raw = [m.decision_function(x_ref) for m in self.members]
        self.references_ = [np.sort(np.asarray(s, dtype=np.float64)) for s in raw]
        order = [np.argsort(np.asarray(s, dtype=np.float64), kind="stable") for s in raw]
        ones = np.ones(len(x_ref))
        w = ones if w_ref is None else np.asarray(w_ref, dtype=np.float64)
        self.reference_weights_ = [w[o] for o in order]
        self.n_reference_rows_ = int(w.sum())
        self._held_out = (self._fuse(raw), None if w_ref is None else w)

    def _training_scores(self, benign: np.ndarray, weights: np.ndarray | None) -> tuple[np.ndarray, np.ndarray | None]:
        """The held-out rows' fused scores: the threshold comes from rows no member was fitted on."""
        scores, w = self._held_out
        return scores, w

    # -- scoring ------------------------------------------------------------------------------------------
    def _fuse(self, raw: Sequence[np.ndarray]) -> np.ndarray:
        from aptray.evaluate.fusion import place

        return np.asarray(np.mean([place(ref, s, w) for ref, w, s in
                                   zip(self.references_, self.reference_weights_, raw, strict=True)], axis=0))

    def decision_function(self, X: np.ndarray) -> np.ndarray:
        """Mean place of the members' scores among their held-out benign references."""
        X = np.asarray(X)
        return self._fuse([m.decision_function(X) for m in self.members])

    # -- storage ------------------------------------------------------------------------------------------
    def get_params(self) -> dict[str, Any]:
        """Members in their stored form (kind and hyperparameters), holdout, seed, percentile and tiers."""
        return {"members": [{"kind": type(m).name, "params": m.get_params()} for m in self.members],
                "holdout": self.holdout, "seed": self.seed, "percentile": self.percentile, "tiers": self.tiers}

    def state(self) -> dict[str, np.ndarray]:
        """Each member's arrays under ``m<i>.``, its sorted reference scores and their row counts."""
        out: dict[str, np.ndarray] = {}
        for i, m in enumerate(self.members):
            p = _PREFIX.format(i)
            out.update({p + k: v for k, v in m.state().items()})
            out[p + "reference_"] = self.references_[i]
            out[p + "reference_weights_"] = self.reference_weights_[i]
        return out

    def learned(self) -> dict[str, Any]:
        """Base scalars, the reference size and each member's learned scalars and thresholds."""
        return {**super().learned(), "n_reference_rows_": getattr(self, "n_reference_rows_", None),
                "member_states_": [{"learned": m.learned(), "thresholds": m.thresholds()} for m in self.members]}

    def _load_state(self, arrays: dict[str, np.ndarray], learned: dict[str, Any]) -> None:
        states = learned.get("member_states_") or []
        if len(states) != len(self.members):
            raise ValueError(f"the artifact stores {len(states)} member states for {len(self.members)} members")
        self.references_, self.reference_weights_ = [], []
        for i, (m, st) in enumerate(zip(self.members, states, strict=True)):
            p = _PREFIX.format(i)
            own = {k[len(p):]: v for k, v in arrays.items() if k.startswith(p)}
            self.references_.append(np.asarray(own.pop("reference_"), dtype=np.float64))
            self.reference_weights_.append(np.asarray(own.pop("reference_weights_"), dtype=np.float64))
            m.restore(own, st["learned"], st["thresholds"])
