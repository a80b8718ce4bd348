"""Detector contract, baselines equal to scikit-learn, and artifacts (round trip, tampering, provenance)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from aptray.artifacts import ArtifactError, load_detector, save_detector
from aptray.config import DetectorName, ThresholdConfig, TrainConfig
from aptray.detectors import make_detector
from aptray.detectors.base import Detector

DIM = 12
META = {"embedder": {"model_id": "sentence-transformers/all-MiniLM-L6-v2", "revision": "x", "dim": DIM},
        "template_version": "1", "template": {"mask": ["uuid"]}, "training": {"epochs": 2}}


def _data(name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Benign Gaussian rows, a few labelled outliers far away; windows for lstm-ae, 0/1 for avf."""
    rng = np.random.default_rng(0)
    if name == "avf":
        X = (rng.random((300, DIM)) < 0.05).astype(np.float32)
        out = np.ones((6, DIM), dtype=np.float32)
    else:
        X = rng.normal(0, 1, (300, DIM)).astype(np.float32)
        out = rng.normal(6, 1, (6, DIM)).astype(np.float32)
    allx = np.concatenate([X, out])
    y = np.r_[np.zeros(300), np.ones(6)]
    if name == "lstm-ae":
        allx = np.repeat(allx[:, None, :], 4, axis=1)
    return allx, y, out


def _detector(name: str) -> Detector:
    return make_detector(name, TrainConfig(model=name, epochs=3, batch_size=64), ThresholdConfig())


@pytest.mark.parametrize("name", list(DetectorName))
def test_contract(name: str) -> None:
    X, y, _ = _data(name)
    det = _detector(name)
    assert det.fit(X, y) is det
    assert det.n_excluded_ == 6 and det.n_train_ == 300
    s = det.decision_function(X)
    assert s.shape == (len(X),) and np.isfinite(s).all()
    # higher = more anomalous: the labelled outliers outscore the benign rows on average
    assert s[y == 1].mean() > s[y == 0].mean()
    assert set(np.unique(det.predict(X))) <= {0, 1}
    assert det.tiers_.keys() == {"low", "medium", "high"}
    assert len(det.tier(X)) == len(X)
    det.set_threshold_f1(X, y)
    assert det.threshold_method_ == "f1" and 0 < det.val_f1_ <= 1


def test_iforest_and_ocsvm_equal_sklearn_negated() -> None:
    from sklearn.ensemble import IsolationForest
    from sklearn.svm import OneClassSVM

    X, _, _ = _data("iforest")
    ours = _detector("iforest").fit(X)
    ref = IsolationForest(n_estimators=200, max_samples=256, max_features=1.0, random_state=0).fit(X)
    np.testing.assert_allclose(ours.decision_function(X), -ref.score_samples(X), atol=1e-12)
    svm = _detector("ocsvm").fit(X)
    np.testing.assert_allclose(svm.decision_function(X), -OneClassSVM(nu=0.05).fit(X).decision_function(X), atol=1e-9)


@pytest.mark.parametrize("name", list(DetectorName))
def test_artifact_round_trip(name: str, tmp_path: Path) -> None:
    X, y, _ = _data(name)
    det = _detector(name).fit(X, y)
    save_detector(det, str(tmp_path / "a"), META)
    assert {p.name for p in (tmp_path / "a").iterdir()} == {"model.safetensors", "config.json"}
    back = load_detector(str(tmp_path / "a"), expect_embedder=META["embedder"]["model_id"], expect_template_version="1")
    np.testing.assert_allclose(back.decision_function(X), det.decision_function(X), rtol=1e-6)
    assert back.threshold_ == det.threshold_ and back.tiers_ == det.tiers_
    assert list(back.tiers_) == list(det.tiers_) == ["low", "medium", "high"]  # config.json sorts its keys
    cfg = json.loads((tmp_path / "a" / "config.json").read_text())
    assert cfg["embedder"]["dim"] == DIM and cfg["template_version"] == "1" and "torch" in cfg["libraries"]


def test_tampered_weights_are_refused(tmp_path: Path) -> None:
    X, y, _ = _data("pca")
    save_detector(_detector("pca").fit(X, y), str(tmp_path), META)
    raw = bytearray((tmp_path / "model.safetensors").read_bytes())
    raw[-1] ^= 0x01
    (tmp_path / "model.safetensors").write_bytes(bytes(raw))
    with pytest.raises(ArtifactError, match="sha256 mismatch"):
        load_detector(str(tmp_path))


def test_wrong_embedder_or_template_is_refused(tmp_path: Path) -> None:
    X, y, _ = _data("ae")
    save_detector(_detector("ae").fit(X, y), str(tmp_path), META)
    with pytest.raises(ArtifactError, match="all-mpnet-base-v2"):
        load_detector(str(tmp_path), expect_embedder="sentence-transformers/all-mpnet-base-v2")
    with pytest.raises(ArtifactError, match="TEMPLATE_VERSION"):
        load_detector(str(tmp_path), expect_template_version="2")


def test_missing_hash_needs_trusted(tmp_path: Path) -> None:
    X, y, _ = _data("pca")
    save_detector(_detector("pca").fit(X, y), str(tmp_path), META)
    cfg = json.loads((tmp_path / "config.json").read_text())
    cfg["files"] = {}
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ArtifactError, match="trusted"):
        load_detector(str(tmp_path))
    assert load_detector(str(tmp_path), trusted=True).threshold_ == cfg["thresholds"]["threshold"]


def test_artifact_on_s3(s3_server: str) -> None:
    import boto3

    boto3.client("s3", endpoint_url=s3_server).create_bucket(Bucket="artifacts")
    X, y, _ = _data("iforest")
    det = _detector("iforest").fit(X, y)
    save_detector(det, "s3://artifacts/det/iforest", META)
    back = load_detector("s3://artifacts/det/iforest", expect_embedder=META["embedder"]["model_id"])
    np.testing.assert_allclose(back.decision_function(X), det.decision_function(X))


def test_knn_on_distinct_rows_equals_brute_force_knn_on_rows() -> None:
    """The k nearest rows, repeats counted, from the distinct rows; training rows scored leave-one-out."""
    from aptray.detectors.baselines import KNNDetector

    rng = np.random.default_rng(3)
    distinct = rng.normal(size=(30, 5))
    rows = distinct[rng.integers(0, 30, size=200)]
    query = rng.normal(size=(25, 5))
    det = KNNDetector(n_neighbors=4).fit(rows)
    d = np.linalg.norm(query[:, None, :] - rows[None, :, :], axis=2)
    np.testing.assert_allclose(det.decision_function(query), np.sort(d, axis=1)[:, :4].mean(1), rtol=1e-6, atol=1e-9)
    # the threshold comes from each training row's distances to the *other* rows
    own = np.linalg.norm(rows[:, None, :] - rows[None, :, :], axis=2)
    np.fill_diagonal(own, np.inf)
    loo = np.sort(own, axis=1)[:, :4].mean(1)
    assert det.threshold_ == pytest.approx(np.percentile(loo, det.percentile), rel=1e-6)
    # the unsupervised protocol scores the training rows themselves, each left out of its own reference
    np.testing.assert_allclose(det.training_row_scores(rows), loo, rtol=1e-5, atol=1e-6)  # float32 reference rows


def test_rarity_scores_how_often_the_exact_sentence_was_seen() -> None:
    from aptray.detectors.baselines import RarityDetector

    a, b, c = np.eye(3)
    rows = np.array([a] * 90 + [b] * 9 + [c])
    det = RarityDetector().fit(rows)
    unseen = np.array([0.5, 0.5, 0.0])
    s = det.decision_function(np.array([a, b, c, a + 1e-6, unseen]))
    np.testing.assert_allclose(s, -np.log10(np.array([91, 10, 2, 91, 1]) / 101))
    assert s[4] > s[2] > s[1] > s[0]
    # left out of its own count: the one-off sentence c becomes unseen among the other 99 rows
    np.testing.assert_allclose(det.training_row_scores(np.array([a, c])), -np.log10(np.array([90, 1]) / 100))


def test_knn_wide_outvotes_a_few_benign_copies_of_an_attack(tmp_path: Path) -> None:
    """Three benign-labelled copies of an attack's vector fill most of knn's 5 slots, so a benign row that is merely
    odd outranks the attack; knn-wide's 20 neighbours put the attack first. Its k survives the artifact and wins
    over ``train.extra`` (else ``knn-wide`` with ``n_neighbors`` set would be plain knn)."""
    rng = np.random.default_rng(0)
    attack = np.full(DIM, 5.0 / np.sqrt(DIM), dtype=np.float32)  # 5 from the benign cluster
    benign = rng.normal(0, 0.05, (200, DIM)).astype(np.float32)
    X = np.concatenate([benign, np.repeat(attack[None], 3, axis=0)])
    odd = np.full(DIM, 3.0 / np.sqrt(DIM), dtype=np.float32)  # a benign row 3 from the cluster
    probe = np.stack([attack, odd])
    cfg = TrainConfig(extra={"n_neighbors": 5})
    narrow, wide = (make_detector(n, cfg, ThresholdConfig()).fit(X, np.zeros(len(X))) for n in ("knn", "knn-wide"))
    assert narrow.decision_function(probe)[0] < narrow.decision_function(probe)[1]
    assert wide.decision_function(probe)[0] > wide.decision_function(probe)[1]
    save_detector(wide, str(tmp_path / "art"), META)
    loaded = load_detector(str(tmp_path / "art"))
    assert loaded.n_neighbors == 20
    np.testing.assert_allclose(loaded.decision_function(probe), wide.decision_function(probe))
