"""Classic baselines on the same rows: IForest, OC-SVM, PCA reconstruction, DBSCAN distance, and AVF.

Each is fitted with scikit-learn (AVF by counting) and then keeps only plain arrays, scoring with numpy,
so an artifact is a safetensors file of parameters and loading never unpickles anything. sklearn's
"higher = more normal" scores are negated here, at the boundary.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from aptray.detectors.base import Detector, unique_rows

_EULER = 0.5772156649015329


def _average_path_length(n: np.ndarray) -> np.ndarray:
    """Expected path length of an unsuccessful BST search among ``n`` points (IForest's c(n))."""
    n = np.asarray(n, dtype=np.float64)
    out = np.zeros_like(n)
    out[n == 2] = 1.0
    big = n > 2
    out[big] = 2.0 * (np.log(n[big] - 1.0) + _EULER) - 2.0 * (n[big] - 1.0) / n[big]
    return out


def _subsample(X: np.ndarray, max_samples: int, seed: int) -> np.ndarray:
    if len(X) <= max_samples:
        return X
    return X[np.random.default_rng(seed).choice(len(X), max_samples, replace=False)]


class Baseline(Detector):
    """Shared plumbing: hyperparameters stored as given, ``get_params`` from :attr:`_params`."""

    _params: ClassVar[tuple[str, ...]] = ()

    def get_params(self) -> dict[str, Any]:
        """Constructor arguments."""
        return {**{p: getattr(self, p) for p in self._params}, "percentile": self.percentile, "tiers": self.tiers}

    def state(self) -> dict[str, np.ndarray]:
        """Every learned array attribute (name ending in ``_``)."""
        return {k: v for k, v in vars(self).items() if k.endswith("_") and isinstance(v, np.ndarray)}

    def _load_state(self, arrays: dict[str, np.ndarray], learned: dict[str, Any]) -> None:
        for key, value in arrays.items():
            setattr(self, key, np.asarray(value))


class IForestDetector(Baseline):
    """Isolation Forest; score = sklearn's anomaly score ``2 ** (-E[h(x)] / c(psi))`` (in (0, 1]).

    Args:
        n_estimators: trees.
        max_samples: rows per tree (``psi``).
        seed: random state.
    """

    name: ClassVar[str] = "iforest"
    _params = ("n_estimators", "max_samples", "seed")

    def __init__(self, n_estimators: int = 200, max_samples: int = 256, seed: int = 0, **kw: Any) -> None:
        super().__init__(**kw)
        self.n_estimators, self.max_samples, self.seed = n_estimators, max_samples, seed

    def _fit(self, X: np.ndarray) -> None:
        from sklearn.ensemble import IsolationForest

        forest = IsolationForest(n_estimators=self.n_estimators, max_samples=min(self.max_samples, len(X)),
                                 max_features=1.0, random_state=self.seed).fit(X)
        trees = [est.tree_ for est in forest.estimators_]
        self.node_offset_ = np.cumsum([0] + [t.node_count for t in trees]).astype(np.int64)
        self.feature_ = np.concatenate([t.feature for t in trees]).astype(np.int64)
        self.cut_ = np.concatenate([t.threshold for t in trees]).astype(np.float64)
        self.left_ = np.concatenate([t.children_left for t in trees]).astype(np.int64)
        self.right_ = np.concatenate([t.children_right for t in trees]).astype(np.int64)
        self.leaf_size_ = np.concatenate([t.n_node_samples for t in trees]).astype(np.float64)
        self.psi_ = np.array([forest.max_samples_], dtype=np.float64)

    def decision_function(self, X: np.ndarray) -> np.ndarray:
        """Isolation score; higher = isolated sooner = more anomalous."""
        X = np.asarray(X, dtype=np.float32)  # trees compare in float32, as sklearn does
        rows = np.arange(len(X))
        depth_sum = np.zeros(len(X))
        for t in range(len(self.node_offset_) - 1):
            base = int(self.node_offset_[t])
            node = np.zeros(len(X), dtype=np.int64)
            depth = np.zeros(len(X))
            while True:
                g = base + node
                inner = self.left_[g] != -1
                if not inner.any():
                    break
                go_left = X[rows, np.where(inner, self.feature_[g], 0)] <= self.cut_[g]
                nxt = np.where(go_left, self.left_[g], self.right_[g])
                node = np.where(inner, nxt, node)
                depth += inner
            depth_sum += depth + _average_path_length(self.leaf_size_[base + node])
        c = _average_path_length(self.psi_)[0]
        trees = len(self.node_offset_) - 1
        return np.asarray(2.0 ** (-depth_sum / (trees * c)), dtype=np.float64)


class OCSVMDetector(Baseline):
    """One-class SVM with an RBF kernel; score = minus sklearn's decision function.

    Args:
        nu: upper bound on the share of training outliers.
        gamma: kernel width, ``"scale"`` or a float.
        max_samples: training rows kept (OC-SVM is quadratic in rows).
        seed: subsampling seed.
    """

    name: ClassVar[str] = "ocsvm"
    _params = ("nu", "gamma", "max_samples", "seed")

    def __init__(self, nu: float = 0.05, gamma: str | float = "scale", max_samples: int = 5000, seed: int = 0,
                 **kw: Any) -> None:
        super().__init__(**kw)
        self.nu, self.gamma, self.max_samples, self.seed = nu, gamma, max_samples, seed

    def _fit(self, X: np.ndarray) -> None:
        from sklearn.svm import OneClassSVM

        svm = OneClassSVM(kernel="rbf", nu=self.nu, gamma=self.gamma).fit(_subsample(X, self.max_samples, self.seed))
        self.support_vectors_ = np.asarray(svm.support_vectors_, dtype=np.float64)
        self.dual_coef_ = np.asarray(svm.dual_coef_[0], dtype=np.float64)
        self.intercept_ = np.asarray(svm.intercept_, dtype=np.float64)
        self.gamma_ = np.array([svm._gamma], dtype=np.float64)

    def decision_function(self, X: np.ndarray) -> np.ndarray:
        """Minus the SVM margin; higher = further outside the benign region."""
        X = np.asarray(X, dtype=np.float64)
        sv = self.support_vectors_
        out = np.empty(len(X))
        for i in range(0, len(X), 2048):
            b = X[i : i + 2048]
            d2 = (b**2).sum(1)[:, None] - 2 * b @ sv.T + (sv**2).sum(1)[None, :]
            out[i : i + 2048] = np.exp(-self.gamma_[0] * np.maximum(d2, 0)) @ self.dual_coef_ + self.intercept_[0]
        return -out


class PCADetector(Baseline):
    """PCA reconstruction error: squared distance of a row to the principal subspace of benign rows.

    Args:
        n_components: components kept, or a share of variance in (0, 1).
    """

    name: ClassVar[str] = "pca"
    _params = ("n_components",)

    def __init__(self, n_components: float = 0.9, **kw: Any) -> None:
        super().__init__(**kw)
        self.n_components = n_components

    def _fit(self, X: np.ndarray) -> None:
        from sklearn.decomposition import PCA

        n = self.n_components if self.n_components < 1 else min(int(self.n_components), *X.shape)
        pca = PCA(n_components=n, svd_solver="full").fit(X)
        self.mean_ = np.asarray(pca.mean_, dtype=np.float64)
        self.components_ = np.asarray(pca.components_, dtype=np.float64)

    def decision_function(self, X: np.ndarray) -> np.ndarray:
        """Squared reconstruction residual."""
        c = np.asarray(X, dtype=np.float64) - self.mean_
        resid = c - (c @ self.components_.T) @ self.components_
        return np.asarray((resid**2).sum(1))


class DBSCANDetector(Baseline):
    """DBSCAN on benign rows; score = Euclidean distance to the nearest core point.

    Args:
        eps: neighbourhood radius; None picks the 90th percentile of the ``min_samples``-th neighbour
            distance of the training rows.
        min_samples: DBSCAN's core-point count.
        max_samples: training rows kept (DBSCAN is quadratic in the worst case).
        seed: subsampling seed.
    """

    name: ClassVar[str] = "dbscan"
    _params = ("eps", "min_samples", "max_samples", "seed")

    def __init__(self, eps: float | None = None, min_samples: int = 5, max_samples: int = 20000, seed: int = 0,
                 **kw: Any) -> None:
        super().__init__(**kw)
        self.eps, self.min_samples, self.max_samples, self.seed = eps, min_samples, max_samples, seed

    def _fit(self, X: np.ndarray) -> None:
        from sklearn.cluster import DBSCAN
        from sklearn.neighbors import NearestNeighbors

        X = _subsample(np.asarray(X, dtype=np.float64), self.max_samples, self.seed)
        k = min(self.min_samples, len(X))
        eps = self.eps
        if eps is None:
            dist, _ = NearestNeighbors(n_neighbors=k).fit(X).kneighbors(X)
            eps = max(float(np.percentile(dist[:, -1], 90)), 1e-9)
        db = DBSCAN(eps=eps, min_samples=k).fit(X)
        core = X[db.core_sample_indices_] if len(db.core_sample_indices_) else X
        self.core_ = np.asarray(core, dtype=np.float64)
        self.eps_ = np.array([eps])

    def decision_function(self, X: np.ndarray) -> np.ndarray:
        """Distance to the nearest core point."""
        X = np.asarray(X, dtype=np.float64)
        core = self.core_
        c2 = (core**2).sum(1)
        out = np.empty(len(X))
        for i in range(0, len(X), 1024):
            b = X[i : i + 1024]
            d2 = (b**2).sum(1)[:, None] - 2 * b @ core.T + c2[None, :]
            out[i : i + 1024] = np.sqrt(np.maximum(d2.min(1), 0))
        return out


class AVFDetector(Baseline):
    """Attribute Value Frequency (Koufakou et al. 2007), the ADAPT papers' baseline.

    A row's AVF is the mean, over attributes, of how often its value occurs among benign training rows;
    the score is ``1 - AVF`` so rare value combinations score high. Meant for raw 0/1 attributes (ADAPT
    process contexts); continuous columns (e.g. embeddings) are cut into at most ``n_bins`` quantile bins.

    Args:
        n_bins: most distinct values (bins) per attribute.
    """

    name: ClassVar[str] = "avf"
    _params = ("n_bins",)

    def __init__(self, n_bins: int = 10, **kw: Any) -> None:
        super().__init__(**kw)
        self.n_bins = n_bins

    def _fit(self, X: np.ndarray) -> None:
        X = np.asarray(X, dtype=np.float64)
        cuts = np.full((X.shape[1], self.n_bins - 1), np.inf)
        for j in range(X.shape[1]):
            u = np.unique(X[:, j])
            if len(u) <= self.n_bins:
                c = (u[:-1] + u[1:]) / 2
            else:
                c = np.unique(np.quantile(X[:, j], np.linspace(0, 1, self.n_bins + 1)[1:-1]))
            cuts[j, : len(c)] = c
        self.cuts_ = cuts
        bins = self._bins(X)
        freq = np.zeros((X.shape[1], self.n_bins))
        for j in range(X.shape[1]):
            freq[j] = np.bincount(bins[:, j], minlength=self.n_bins) / len(X)
        self.freq_ = freq

    def _bins(self, X: np.ndarray) -> np.ndarray:
        return np.stack([np.searchsorted(self.cuts_[j], X[:, j], side="right") for j in range(X.shape[1])], 1)

    def decision_function(self, X: np.ndarray) -> np.ndarray:
        """``1 - mean attribute-value frequency``."""
        X = np.asarray(X, dtype=np.float64)
        bins = self._bins(X)
        avf = self.freq_[np.arange(X.shape[1])[None, :], bins].mean(1)
        return np.asarray(1.0 - avf)




def k_best(X: np.ndarray, n_ref: int, k: int, measure: Any, largest: bool) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` best of ``n_ref`` reference rows for each row of ``X``, best first: ``measure(chunk)`` gives a chunk's
    (rows x n_ref) distances (``largest=False``) or similarities (``largest=True``). Chunks keep that matrix under
    about 64 MB. Returns the values and the reference indices, both (rows, min(k, n_ref))."""
    k = min(k, n_ref)
    values = np.empty((len(X), k))
    idx = np.empty((len(X), k), dtype=np.int64)
    step = max(16, min(1024, 8_000_000 // max(n_ref, 1)))
    for i in range(0, len(X), step):
        m = measure(X[i : i + step])
        key = -m if largest else m
        part = np.argpartition(key, k - 1, axis=1)[:, :k] if k < n_ref else np.tile(np.arange(k), (len(m), 1))
        order = np.argsort(np.take_along_axis(key, part, 1), axis=1)
        idx[i : i + step] = np.take_along_axis(part, order, 1)
        values[i : i + step] = np.take_along_axis(m, idx[i : i + step], 1)
    return values, idx


class _Neighbours(Baseline):
    """Shared by the neighbour detectors: the distinct benign training rows and their row counts.

    Log rows repeat, so the reference set is the distinct rows with their counts (rows given one by one are made
    distinct here; ``fit(..., weights)`` passes them distinct already). At most ``max_samples`` distinct rows are
    kept, the most frequent first; the rest are recorded in ``dropped_rows_``. Scores use Euclidean distance (on
    normalised embeddings a monotone function of cosine distance), computed in chunks with numpy, so an artifact
    is two arrays and nothing is unpickled.
    """

    _params: ClassVar[tuple[str, ...]] = ("max_samples",)

    def __init__(self, max_samples: int = 50_000, **kw: Any) -> None:
        super().__init__(**kw)
        self.max_samples = max_samples

    def _fit(self, X: np.ndarray) -> None:
        rows = np.asarray(X, dtype=np.float32)
        first, counts = unique_rows(rows)
        self._keep(rows[first], counts)

    def _fit_weighted(self, X: np.ndarray, weights: np.ndarray, seed: int) -> None:
        self._keep(np.asarray(X, dtype=np.float32), np.asarray(weights))

    def _keep(self, rows: np.ndarray, counts: np.ndarray) -> None:
        counts = np.rint(counts).astype(np.int64)
        order = np.argsort(-counts, kind="stable")[: self.max_samples]
        self.ref_ = np.ascontiguousarray(rows[order], dtype=np.float32)
        self.counts_ = counts[order]
        self.dropped_rows_ = np.array([int(counts.sum() - self.counts_.sum())])

    def _neighbours(self, X: np.ndarray, k: int, own: np.ndarray | None = None
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per row of ``X``: distances and counts of its ``k`` nearest distinct reference rows (ascending) and
        their indices. ``own``: per row, the reference row that is the row itself (-1: none), whose count drops by
        one (the row-level leave-one-out neighbours of a training row)."""
        ref = self.ref_.astype(np.float64)
        r2 = (ref**2).sum(1)

        def distance(b: np.ndarray) -> np.ndarray:
            b = np.asarray(b, dtype=np.float64)
            return np.sqrt(np.maximum((b**2).sum(1)[:, None] - 2 * b @ ref.T + r2[None, :], 0))

        dist, idx = k_best(X, len(ref), k, distance, largest=False)
        counts = self.counts_[idx].astype(np.float64)
        if own is not None:
            counts = counts - ((idx == own[:, None]) & (own[:, None] >= 0))
        return dist, counts, idx

    def _training_scores(self, benign: np.ndarray, weights: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """The reference rows scored leave-one-out (a training row is not its own neighbour), with their counts."""
        return self._scores(self.ref_, np.arange(len(self.ref_))), self.counts_

    def decision_function(self, X: np.ndarray) -> np.ndarray:
        """The detector's score of each row."""
        return self._scores(np.asarray(X), None)

    def training_row_scores(self, X: np.ndarray) -> np.ndarray:
        """Scores of rows that were themselves training rows, each left out of its own reference (a row of ``X``
        found in the reference set, within 1e-6, does not count itself), as the unsupervised protocol needs."""
        dist, _, idx = self._neighbours(np.asarray(X), 1)
        own = np.where(dist[:, 0] <= 1e-6, idx[:, 0], -1)
        return self._scores(np.asarray(X), own)

    def _scores(self, X: np.ndarray, own: np.ndarray | None) -> np.ndarray:
        raise NotImplementedError


class KNNDetector(_Neighbours):
    """k-nearest-neighbour distance to the benign training rows (Ramaswamy et al. 2000, PyOD's ``KNN`` 'mean').

    The score is the mean distance to the ``n_neighbors`` nearest benign training rows, counted with their
    repeats (a sentence seen 40 times is 40 neighbours at the same distance), computed on the distinct rows.
    Training rows are scored leave-one-out for the threshold. PyOD's and scikit-learn's models are stored by
    pickle; here the fitted model *is* the reference rows, so it is kept as arrays (safetensors) instead.

    Args:
        n_neighbors: neighbours averaged (k).
        max_samples: distinct reference rows kept (the most frequent).
    """

    name: ClassVar[str] = "knn"
    _params = ("n_neighbors", "max_samples")

    def __init__(self, n_neighbors: int = 5, max_samples: int = 50_000, **kw: Any) -> None:
        super().__init__(max_samples=max_samples, **kw)
        self.n_neighbors = n_neighbors

    def _scores(self, X: np.ndarray, own: np.ndarray | None) -> np.ndarray:
        k = self.n_neighbors
        dist, counts, _ = self._neighbours(X, k + int(own is not None), own)
        before = np.cumsum(counts, axis=1) - counts
        take = np.clip(k - before, 0, counts)  # repeats fill the k slots nearest first
        return np.asarray((take * dist).sum(1) / np.maximum(take.sum(1), 1))


class RarityDetector(_Neighbours):
    """Sentence rarity: how seldom the row's exact sentence occurred among the benign training rows.

    The score is ``-log10((c + 1) / (N + 1))`` for a sentence seen ``c`` times in ``N`` training rows: 0 for a
    sentence every row had, ``log10(N + 1)`` for one never seen. The same sentence embeds to the same vector (up to
    float noise from batching), so "the same sentence" is the nearest reference row within ``match_distance``.
    Training rows are scored leave-one-out (their own occurrence not counted).

    Args:
        match_distance: largest Euclidean distance at which a reference row is the same sentence.
        max_samples: distinct reference rows kept (the most frequent).
    """

    name: ClassVar[str] = "rarity"
    _params = ("match_distance", "max_samples")

    def __init__(self, match_distance: float = 1e-3, max_samples: int = 50_000, **kw: Any) -> None:
        super().__init__(max_samples=max_samples, **kw)
        self.match_distance = match_distance

    def _scores(self, X: np.ndarray, own: np.ndarray | None) -> np.ndarray:
        dist, counts, _ = self._neighbours(X, 1, own)
        seen = np.where(dist[:, 0] <= self.match_distance, counts[:, 0], 0.0)
        total = float(self.counts_.sum() + self.dropped_rows_[0]) - (0.0 if own is None else (own >= 0))
        return np.asarray(-np.log10((seen + 1.0) / (total + 1.0)))
