"""Training on distinct sentences with their counts: the weighted forms equal the row-level ones on repeated rows."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from aptray.detectors.thresholds import f1_threshold, percentile_threshold
from aptray.train.data import BENIGN, MALICIOUS, UNLABELLED, labelled_entries, load_distinct, split_counts
from aptray.train.loop import eval_loss, fit_local, sampled_batches, tensor_batches


@pytest.mark.parametrize("seed", range(5))
def test_weighted_percentile_is_the_percentile_of_repeated_scores(seed: int) -> None:
    rng = np.random.default_rng(seed)
    scores = rng.normal(size=40)
    counts = rng.integers(0, 30, size=40)
    counts[0] = 1
    repeated = np.repeat(scores, counts)
    for q in (0.5, 50.0, 95.0, 99.0, 99.9, 100.0):
        assert percentile_threshold(scores, q, counts) == pytest.approx(np.percentile(repeated, q), rel=1e-12)


@pytest.mark.parametrize("seed", range(5))
def test_weighted_f1_threshold_is_the_f1_threshold_of_repeated_rows(seed: int) -> None:
    rng = np.random.default_rng(seed)
    scores = rng.normal(size=30)
    y = (rng.random(30) < 0.3).astype(int)
    y[:2] = [0, 1]
    counts = rng.integers(1, 9, size=30)
    assert f1_threshold(scores, y, counts) == pytest.approx(f1_threshold(np.repeat(scores, counts),
                                                                         np.repeat(y, counts)))


def _embed_output(root: Path, hashes: list[str], labels: list[float | None], dim: int = 4) -> Path:
    emb = {h: np.full(dim, i, dtype=np.float32) for i, h in enumerate(sorted(set(hashes)))}
    (root / "embeddings").mkdir(parents=True)
    table = pa.table({
        "record_id": [f"r{i}" for i in range(len(hashes))],
        "sentence_hash": hashes,
        "embedding": pa.array([emb[h].tolist() for h in hashes], pa.list_(pa.float32(), dim)),
        "malicious": pa.array([None if v is None else int(v) for v in labels], pa.int8()),
    })
    for i in range(0, len(hashes), 7):  # several files and batches: a sentence recurs across them
        pq.write_table(table.slice(i, 7), root / "embeddings" / f"part-{i:03d}.parquet")
    return root


def test_load_distinct_counts_rows_per_sentence_and_label(tmp_path: Path) -> None:
    hashes = ["a"] * 20 + ["b"] * 5 + ["c"] * 2 + ["a"] * 3
    labels: list[float | None] = [0] * 20 + [1] * 5 + [None, 0] + [None] * 3
    data = load_distinct(str(_embed_output(tmp_path, hashes, labels)), batch_rows=4)
    assert len(data) == 3 and data.rows == 30
    by_value = {int(x[0]): tuple(c) for x, c in zip(data.X, data.counts, strict=True)}
    assert by_value == {0: (20, 0, 3), 1: (0, 5, 0), 2: (1, 0, 1)}  # a, b, c: (benign, malicious, unlabelled)


def test_split_counts_splits_every_row_once_and_keeps_a_malicious_row_for_validation() -> None:
    counts = np.array([[1000, 0, 10], [0, 2, 0], [7, 0, 0]])
    train, val = split_counts(counts, 0.1, seed=3)
    assert (train + val == counts).all() and (train >= 0).all() and (val >= 0).all()
    assert 60 < val[0, BENIGN] < 140 and val[:, MALICIOUS].sum() >= 1
    assert (split_counts(counts, 0.1, seed=3)[1] == val).all()  # seeded
    X = np.arange(3, dtype=np.float32)[:, None]
    xs, ys, ws = labelled_entries(X, val)
    assert ws.sum() == val[:, BENIGN].sum() + val[:, MALICIOUS].sum()  # unlabelled rows are not labelled entries
    assert set(ys) <= {0.0, 1.0} and UNLABELLED == 2
    assert all(val[int(x[0]), int(label)] == w for x, label, w in zip(xs, ys, ws, strict=True))


def test_weighted_validation_loss_is_the_loss_of_repeated_rows() -> None:
    from aptray.models import build_model

    torch.manual_seed(0)
    net = build_model("ae", 8, [6, 3])
    x = np.random.default_rng(0).normal(size=(12, 8)).astype(np.float32)
    w = np.arange(1, 13)
    weighted, rows = eval_loss(net, tensor_batches(x, 5, False),
                               [torch.from_numpy(w[i : i + 5].astype(np.float32)) for i in range(0, 12, 5)])
    plain, n = eval_loss(net, tensor_batches(np.repeat(x, w, axis=0), 1000, False))
    assert rows == n == w.sum() and weighted == pytest.approx(plain, rel=1e-5)


def test_sampled_batches_follow_the_counts() -> None:
    x = torch.arange(3, dtype=torch.float32)[:, None]
    batches = sampled_batches(x, torch.tensor([1.0, 0.0, 9.0]), 10_000, 256, torch.Generator().manual_seed(0))
    drawn = torch.cat(batches).ravel()
    assert len(drawn) == 10_000 and not (drawn == 1).any()
    assert float((drawn == 2).float().mean()) == pytest.approx(0.9, abs=1e-3)  # systematic: 9,000 of 10,000
    counts = torch.tensor([3.0, 1.0, 5.0])  # as many draws as rows: each row exactly its count, as row-level
    drawn = torch.cat(sampled_batches(x, counts, 9, 4, torch.Generator().manual_seed(1))).ravel()
    assert sorted(drawn.tolist()) == [0.0] * 3 + [1.0] + [2.0] * 5


def test_fit_local_on_distinct_rows_learns_them() -> None:
    from aptray.models import build_model

    rng = np.random.default_rng(1)
    x = rng.normal(size=(50, 16)).astype(np.float32)
    w = rng.integers(1, 100, size=50)
    torch.manual_seed(0)
    net = build_model("ae", 16, [12, 8])
    before = eval_loss(net, tensor_batches(x, 64, False))[0]
    hist = fit_local(net, x, x[:10], epochs=40, batch_size=16, lr=1e-2, patience=0, seed=0, weights=w,
                     val_weights=w[:10])
    assert hist.val_loss[-1] < 0.7 * before


def _repeated_rows(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """40 distinct 6-d rows repeated 1-30 times each (as log sentences repeat), a few labelled malicious."""
    rng = np.random.default_rng(seed)
    distinct = rng.normal(size=(40, 6)).astype(np.float32)
    idx = np.repeat(np.arange(40), rng.integers(1, 30, size=40))
    y = np.zeros(len(idx))
    y[rng.choice(len(idx), 5, replace=False)] = 1.0
    return distinct[idx], y


def test_distinct_rows_keep_every_row_once_per_label() -> None:
    from aptray.evaluate.runs import distinct_rows

    X, y = _repeated_rows(0)
    x_d, y_d, counts = distinct_rows(X, y)
    assert counts.sum() == len(X)
    assert len(x_d) < len(X)
    for label in (0.0, 1.0):  # each (row, label) pair's count is its number of rows
        for row, c in zip(x_d[y_d == label], counts[y_d == label], strict=True):
            assert c == int(((row == X).all(axis=1) & (y == label)).sum())


def test_baseline_fit_on_distinct_rows_with_counts_equals_the_fit_on_rows() -> None:
    """Below ``weighted_fit_max_rows`` a baseline fits every row the counts stand for: the same model."""
    from aptray.detectors.baselines import PCADetector
    from aptray.evaluate.runs import distinct_rows

    X, y = _repeated_rows(1)
    rows = PCADetector(n_components=3).fit(X, y)
    x_d, y_d, counts = distinct_rows(X, y)
    distinct = PCADetector(n_components=3).fit(x_d, y_d, weights=counts)
    assert distinct.n_train_ == rows.n_train_ == int((y == 0).sum())
    assert distinct.n_excluded_ == rows.n_excluded_ == 5
    np.testing.assert_allclose(distinct.decision_function(X), rows.decision_function(X), rtol=1e-5, atol=1e-6)
    assert distinct.threshold_ == pytest.approx(rows.threshold_, rel=1e-5)


def test_autoencoder_fit_on_distinct_rows_sets_count_weighted_thresholds() -> None:
    from aptray.detectors.reconstruction import ReconstructionDetector
    from aptray.evaluate.runs import distinct_rows

    X, y = _repeated_rows(2)
    x_d, y_d, counts = distinct_rows(X, y)
    det = ReconstructionDetector("ae", hidden=[4, 2], epochs=3, batch_size=32, distinct_epoch_rows=256)
    det.fit(x_d, y_d, weights=counts)
    benign = y_d == 0
    assert det.n_train_ == int(counts[benign].sum())
    scores = det.decision_function(x_d[benign])
    assert det.threshold_ == pytest.approx(np.percentile(np.repeat(scores, counts[benign]), det.percentile))
    with pytest.raises(ValueError, match="weights has 3 entries"):
        ReconstructionDetector("ae").fit(x_d, y_d, weights=counts[:3])


def test_local_training_is_seeded_from_the_initial_weights_on() -> None:
    """train.seed fixes the network's initial weights too: they were drawn before fit_local seeded torch, from
    torch's global generator, so two ``aptray train`` runs on one embed output gave different thresholds."""
    from aptray.config import load_config
    from aptray.detectors.registry import detector_spec
    from aptray.train import _fit_network

    cfg = load_config(overrides={"train.model": "ae", "train.hidden": [4, 2], "train.epochs": 2})
    x = np.random.default_rng(3).normal(size=(40, 6)).astype(np.float32)
    weights = []
    for global_seed in (1, 2):
        torch.manual_seed(global_seed)  # whatever else drew from torch's generator before training
        det = detector_spec(cfg.train.model).build(cfg.train, cfg.threshold)
        net, _ = _fit_network(det, x[:30], x[30:], cfg, local=True)
        weights.append({k: v.clone() for k, v in net.state_dict().items()})
    assert weights[0].keys() == weights[1].keys()
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])


@pytest.mark.parametrize("weighted", [False, True])
def test_detector_fit_is_seeded_from_the_initial_weights_on(weighted: bool) -> None:
    """The experiment's path (ReconstructionDetector.fit, rows or distinct rows with counts): one seed, one model,
    whatever torch's global generator held before."""
    from aptray.detectors.reconstruction import ReconstructionDetector

    x = np.random.default_rng(4).normal(size=(40, 6)).astype(np.float32)
    scores = []
    for global_seed in (1, 2):
        torch.manual_seed(global_seed)
        det = ReconstructionDetector("ae", hidden=[4, 2], epochs=2, seed=7)
        det.fit(x, np.zeros(len(x)), weights=np.full(len(x), 2.0) if weighted else None)
        scores.append(det.decision_function(x))
    np.testing.assert_array_equal(scores[0], scores[1])
