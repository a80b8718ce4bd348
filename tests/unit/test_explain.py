"""The benign reference of an artifact: stored without pickle, and the nearest benign sentences of a row."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from aptray.artifacts import load_detector, save_detector
from aptray.config import ThresholdConfig, TrainConfig
from aptray.detectors import make_detector
from aptray.triage.explain import BENIGN_FILE, BenignReference


def test_nearest_benign_sentences_round_trip_through_the_artifact(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(50, 8)).astype(np.float32)
    sentences = [f"sentence {i}: ünïcode" for i in range(50)]
    counts = np.arange(50, 0, -1)
    ref = BenignReference.build(sentences, X, counts, limit=20)
    assert ref.sentences == sentences[:20] and ref.counts.tolist() == counts[:20].tolist()  # most frequent kept
    det = make_detector("pca", TrainConfig(model="pca"), ThresholdConfig()).fit(X)
    save_detector(det, str(tmp_path / "a"), {"embedder": {"model_id": "m", "dim": 8}}, benign=ref)
    assert (tmp_path / "a" / BENIGN_FILE).exists()
    back = load_detector(str(tmp_path / "a"))
    loaded: BenignReference = back.benign_  # type: ignore[attr-defined]
    assert loaded.sentences == ref.sentences and back.meta_["explanations"] == {"nearest_benign": 20}  # type: ignore[attr-defined]
    query = X[[3, 7]] * 2.0 + 0.01  # scaled copies: cosine similarity ~1 to sentences 3 and 7
    names, sims = loaded.explain(query, k=2)
    assert [n[0] for n in names] == [sentences[3], sentences[7]]
    assert all(s[0] > 0.99 and s[0] >= s[1] for s in sims)


def test_tampered_benign_reference_is_refused(tmp_path: Path) -> None:
    import pytest

    from aptray.artifacts import ArtifactError

    X = np.random.default_rng(1).normal(size=(20, 4)).astype(np.float32)
    det = make_detector("pca", TrainConfig(model="pca"), ThresholdConfig()).fit(X)
    save_detector(det, str(tmp_path / "a"), {}, benign=BenignReference.build(["a"] * 20, X, np.ones(20), 5))
    path = tmp_path / "a" / BENIGN_FILE
    path.write_bytes(path.read_bytes()[:-1] + b"\x00")
    with pytest.raises(ArtifactError, match="sha256 mismatch"):
        load_detector(str(tmp_path / "a"))
