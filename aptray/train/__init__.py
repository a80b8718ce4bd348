"""Training entry point: embed output -> fitted detector -> artifact (:func:`run_train`).

Torch detectors train under Ray Train (:mod:`aptray.train.trainer`), baselines in Ray tasks
(:mod:`aptray.train.baselines`); the loop itself lives in :mod:`aptray.train.loop`.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

import numpy as np

from aptray.config import Aspect, ThresholdMethod

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
    from aptray.detectors.base import benign_mask
    from aptray.detectors.reconstruction import ReconstructionDetector
    from aptray.detectors.registry import Family, detector_spec
    from aptray.train.data import load_embeddings, split_train_val, windowed

    t0 = time.perf_counter()
    tc = cfg.train
    spec = detector_spec(tc.model)
    data = load_embeddings(embeddings_uri)
    if len(data) == 0:
        raise ValueError(f"{embeddings_uri}: no embeddings to train on")
    _check_windows(spec, data.manifest, embeddings_uri)
    X, y_row = data.X, data.y
    y_fit = y_row
    if spec.windowed:
        X, y_fit = windowed(data, tc.window)
    train_idx, val_idx = split_train_val(y_row, tc.val_fraction, tc.seed)
    det = spec.build(tc, cfg.threshold)
    keep = benign_mask(y_fit[train_idx], len(train_idx))
    n_excluded = int((~keep).sum())
    benign_train = X[train_idx][keep]
    local = tc.workers == 1 and not tc.use_gpu and len(benign_train) <= tc.local_max_rows
    log.info("%s: %d training rows, %d excluded as malicious, %d validation rows; training %s",
             tc.model, len(train_idx), n_excluded, len(val_idx),
             "in this process" if local else f"on Ray ({tc.workers} worker(s))")
    history: dict[str, Any] = {}
    if spec.family is Family.TORCH:
        assert isinstance(det, ReconstructionDetector)
        val_benign = X[val_idx][benign_mask(y_fit[val_idx], len(val_idx))]
        net, history = _fit_network(det, benign_train, val_benign, cfg, local)
        det.set_network(net, history, benign_train, n_excluded)
    elif local:
        det.fit(X[train_idx], y_fit[train_idx])
    else:
        from aptray.runtime import init_ray
        from aptray.train.baselines import fit_parallel

        init_ray(cfg.ray)
        det = fit_parallel({tc.model: det}, X[train_idx], y_fit[train_idx], num_cpus=tc.cpus_per_worker)[tc.model]
    val_metrics = _validate(det, X[val_idx], y_row[val_idx])
    if cfg.threshold.method is ThresholdMethod.F1:
        if val_metrics.get("labelled_malicious", 0) and val_metrics.get("labelled_benign", 0):
            labelled = ~np.isnan(y_row[val_idx])
            det.set_threshold_f1(X[val_idx][labelled], y_row[val_idx][labelled])
        else:
            log.warning("threshold method f1 needs malicious and benign rows in the validation split; "
                        "keeping the %g-th percentile of benign training scores", cfg.threshold.percentile)
    m = data.manifest
    meta = {
        "embedder": {"model_id": m.get("model_id"), "revision": m.get("revision"), "dim": m.get("dim")},
        "data": {"source": m.get("source"), "aspect": m.get("aspect")},
        "template_version": m.get("template_version"),
        "template": m.get("template") or cfg.template.model_dump(mode="json"),
        "training": {"history": history, "validation": val_metrics, "rows": len(data),
                     "train_rows": len(train_idx), "benign_rows": len(benign_train), "excluded_malicious": n_excluded,
                     "input": embeddings_uri, "window": tc.window if spec.windowed else None,
                     "trainer": "local" if local else "ray-train"},
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
        "trainer": "local" if local else "ray-train",
        "artifact": out_uri,
        "seconds": round(time.perf_counter() - t0, 3),
    }


def _fit_network(det: Any, benign_train: np.ndarray, val_benign: np.ndarray, cfg: AptrayConfig,
                 local: bool) -> tuple[Any, dict[str, Any]]:
    """Train the detector's network in this process (small inputs) or with Ray Train DDP; the best weights."""
    tc = cfg.train
    if local:
        from aptray.train.loop import fit_local

        start = time.perf_counter()
        net = det.build_network(int(benign_train.shape[-1]))
        hist = fit_local(net, benign_train, val_benign, epochs=tc.epochs, batch_size=tc.batch_size, lr=tc.lr,
                         patience=tc.patience, seed=tc.seed).as_dict()
        return net, {**hist, "workers": 1, "seconds": round(time.perf_counter() - start, 3)}
    from aptray.runtime import init_ray
    from aptray.train.trainer import train_ddp

    init_ray(cfg.ray)
    res = train_ddp(tc.model, benign_train, val_benign, tc)
    return res.network, {**res.history, "seconds": res.seconds}


def _check_windows(spec: Any, manifest: dict[str, Any], uri: str) -> None:
    """Windowed detectors need ordered single events: refuse process contexts (ADAPT, or an aspect)."""
    if not spec.windowed or not manifest.get("source"):
        return
    from aptray.io.sources import source_spec

    source = source_spec(manifest["source"])
    aspect = manifest.get("aspect")
    if not source.windows_possible(Aspect(aspect) if aspect else None):
        what = f"{source.source.value} {aspect} process contexts" if aspect else f"{source.source.value} rows"
        raise ValueError(f"{spec.name.value} trains on windows of a process's consecutive events, but {uri} holds "
                         f"{what}, which have no event order; train it on single events (BETH, CDM or auditd "
                         "without --aspect)")


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
