"""The rank ensemble: places among held-out benign rows, counts split like rows, stored without pickle."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from aptray.config import DetectorName, ThresholdConfig, TrainConfig
from aptray.detectors import make_detector
from aptray.detectors.ensemble import EnsembleDetector
from aptray.evaluate.fusion import place


def test_weighted_place_equals_the_place_among_the_rows_the_counts_stand_for() -> None:
    rng = np.random.default_rng(3)
    ref = rng.normal(size=40)
    counts = rng.integers(1, 6, size=40)
    rows = np.repeat(ref, counts)
    s = np.r_[rng.normal(size=50), ref[:5], [ref.max() + 2.0]]
    np.testing.assert_allclose(place(ref, s, counts.astype(float))[:-1], place(rows, s)[:-1], atol=1e-12)
    # above every reference score the place keeps growing (a log tail), so extremes keep their order
    far = place(ref, np.array([ref.max() + 1, ref.max() + 5]), counts.astype(float))
    assert 1.0 < far[0] < far[1]


def _data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    benign = rng.normal(0, 1, (400, 8)).astype(np.float32)
    outliers = rng.normal(5, 1, (5, 8)).astype(np.float32)
    return benign, outliers


def _ensemble(members: list[DetectorName] | None = None) -> EnsembleDetector:
    cfg = TrainConfig(model=DetectorName.ENSEMBLE, epochs=3, batch_size=64,
                      ensemble_members=members or [DetectorName.KNN, DetectorName.PCA])
    det = make_detector(DetectorName.ENSEMBLE, cfg, ThresholdConfig(percentile=95.0))
    assert isinstance(det, EnsembleDetector)
    return det


def test_members_fit_without_the_held_out_rows_and_the_threshold_comes_from_them() -> None:
    benign, outliers = _data()
    det = _ensemble().fit(benign)
    assert det.n_reference_rows_ == 80  # 20 % of 400 held out
    assert all(m.n_train_ == 320 for m in det.members)
    s_out, s_in = det.decision_function(outliers), det.decision_function(benign)
    assert (s_out > 1.0).all(), "rows beyond every held-out benign row place above 1"
    assert s_out.min() > np.percentile(s_in, 99)
    # the 95th percentile of the held-out rows' fused scores, which lie between 0 and 1
    assert 0.5 < det.threshold_ <= 1.0


def test_distinct_rows_with_counts_split_their_counts_between_members_and_reference() -> None:
    benign, outliers = _data()
    distinct = benign[:100]
    counts = np.full(100, 4.0)
    det = _ensemble().fit(distinct, None, counts)
    assert det.n_reference_rows_ + det.members[0].n_train_ == 400
    assert 40 <= det.n_reference_rows_ <= 120  # a binomial 20 % of 400 rows
    assert (det.decision_function(outliers) > det.threshold_).all()
    with pytest.raises(ValueError, match="whole positive row counts"):
        _ensemble().fit(distinct, None, np.full(100, 0.5))


def test_round_trip_with_a_torch_member_and_refused_members(tmp_path: Path) -> None:
    from aptray.artifacts import load_detector, save_detector

    benign, outliers = _data()
    det = _ensemble([DetectorName.RARITY, DetectorName.AE]).fit(benign)
    meta = {"embedder": {"model_id": "m", "revision": "r", "dim": 8}, "template_version": "1"}
    save_detector(det, str(tmp_path / "a"), meta)
    back = load_detector(str(tmp_path / "a"))
    assert isinstance(back, EnsembleDetector) and [type(m).name for m in back.members] == ["rarity", "reconstruction"]
    both = np.r_[benign[:50], outliers]
    np.testing.assert_allclose(back.decision_function(both), det.decision_function(both), rtol=1e-6)
    assert back.threshold_ == det.threshold_
    for bad in ([DetectorName.ENSEMBLE, DetectorName.KNN], [DetectorName.LSTM_AE, DetectorName.KNN]):
        with pytest.raises(ValueError, match="members score single rows"):
            _ensemble(bad)
