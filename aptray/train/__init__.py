"""Training entry point: embed output -> fitted detector -> artifact (:func:`run_train`).

Torch detectors train under Ray Train (:mod:`aptray.train.trainer`), baselines in Ray tasks
(:mod:`aptray.train.baselines`); the loop itself lives in :mod:`aptray.train.loop`.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from aptray.config import AptrayConfig

log = logging.getLogger(__name__)


def run_train(embeddings_uri: str, out_uri: str, cfg: AptrayConfig) -> dict[str, Any]:
    """Train ``cfg.train.model`` on an embed output and save the artifact to ``out_uri``.

    Rows labelled malicious are excluded from training (the count is returned and logged). A seeded,
    stratified ``cfg.train.val_fraction`` of the input is held out: its benign rows give the validation
    loss, its labelled rows the F1 threshold (``cfg.threshold.method == "f1"``) and the validation AUC.

    Returns:
        A summary: model, rows, rows used, benign rows, excluded malicious rows, epochs, final losses,
        thresholds, validation metrics, artifact path, seconds.
    """
    from aptray.artifacts import save_detector
    from aptray.detectors import make_detector
    from aptray.detectors.base import benign_mask
    from aptray.detectors.reconstruction import ReconstructionDetector
    from aptray.models import TORCH_MODELS
    from aptray.runtime import init_ray
    from aptray.train.data import load_embeddings, split_train_val, window_labels, windows

    t0 = time.perf_counter()
    tc = cfg.train
    data = load_embeddings(embeddings_uri)
    if len(data) == 0:
        raise ValueError(f"{embeddings_uri}: no embeddings to train on")
    X, y_row = data.X, data.y
    y_fit = y_row
    if tc.model == "lstm-ae":
        X = windows(X, data.groups, tc.window)
        y_fit = window_labels(y_row, data.groups, tc.window)
    train_idx, val_idx = split_train_val(y_row, tc.val_fraction, tc.seed)
    det = make_detector(tc.model, tc, cfg.threshold)
    init_ray(cfg.ray)
    keep = benign_mask(y_fit[train_idx], len(train_idx))
    n_excluded = int((~keep).sum())
    log.info("%s: %d training rows, %d excluded as malicious, %d validation rows",
             tc.model, len(train_idx), n_excluded, len(val_idx))
    benign_train = X[train_idx][keep]
    history: dict[str, Any] = {}
    if tc.model in TORCH_MODELS:
        from aptray.train.trainer import train_ddp

        assert isinstance(det, ReconstructionDetector)
        val_benign = X[val_idx][benign_mask(y_fit[val_idx], len(val_idx))]
        res = train_ddp(tc.model, benign_train, val_benign, tc)
        det.set_network(res.network, res.history, benign_train, n_excluded)
        history = {**res.history, "seconds": res.seconds}
    else:
        from aptray.train.baselines import fit_parallel

        det = fit_parallel({tc.model: det}, X[train_idx], y_fit[train_idx], num_cpus=tc.cpus_per_worker)[tc.model]
    val_metrics = _validate(det, X[val_idx], y_row[val_idx])
    if cfg.threshold.method == "f1":
        if val_metrics.get("labelled_malicious", 0) and val_metrics.get("labelled_benign", 0):
            labelled = ~np.isnan(y_row[val_idx])
            det.set_threshold_f1(X[val_idx][labelled], y_row[val_idx][labelled])
        else:
            log.warning("threshold method f1 needs malicious and benign rows in the validation split; "
                        "keeping the %g-th percentile of benign training scores", cfg.threshold.percentile)
    m = data.manifest
    meta = {
        "embedder": {"model_id": m.get("model_id"), "revision": m.get("revision"), "dim": m.get("dim")},
        "template_version": m.get("template_version"),
        "template": m.get("template", cfg.template.model_dump(mode="json")),
        "training": {"history": history, "validation": val_metrics, "rows": len(data),
                     "train_rows": len(train_idx), "benign_rows": len(benign_train), "excluded_malicious": n_excluded,
                     "input": embeddings_uri, "window": tc.window if tc.model == "lstm-ae" else None},
        "train_config": tc.model_dump(mode="json"),
    }
    save_detector(det, out_uri, meta)
    return {
        "model": tc.model,
        "rows": len(data),
        "rows_used": len(benign_train),
        "benign_rows": len(benign_train),
        "excluded_malicious": n_excluded,
        "validation_rows": len(val_idx),
        "epochs": history.get("epochs"),
        "final_train_loss": history.get("final_train_loss"),
        "final_val_loss": history.get("final_val_loss"),
        "thresholds": det.thresholds(),
        "validation": val_metrics,
        "artifact": out_uri,
        "seconds": round(time.perf_counter() - t0, 3),
    }


def _validate(det: Any, X_val: np.ndarray, y_val: np.ndarray) -> dict[str, Any]:
    """Validation AUC/AP on the labelled validation rows (for the record, not for model selection)."""
    labelled = ~np.isnan(y_val)
    y = y_val[labelled].astype(int)
    out: dict[str, Any] = {"labelled_malicious": int(y.sum()), "labelled_benign": int((y == 0).sum())}
    if 0 < y.sum() < len(y):
        from sklearn.metrics import average_precision_score, roc_auc_score

        s = det.decision_function(X_val[labelled])
        out["auc"] = float(roc_auc_score(y, s))
        out["average_precision"] = float(average_precision_score(y, s))
    return out
