"""Training entry point: embed output -> fitted detector -> artifact (:func:`run_train`).

Torch detectors train under Ray Train (:mod:`aptray.train.trainer`), baselines in Ray tasks
(:mod:`aptray.train.baselines`); the loop itself lives in :mod:`aptray.train.loop`.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from aptray.config import Aspect, Source, ThresholdMethod
from aptray.errors import EmptyInputError

if TYPE_CHECKING:
    from aptray.config import AptrayConfig

log = logging.getLogger(__name__)


@dataclass
class Fitted:
    """A fitted detector and the facts of its fit (rows as the input counts them, also on distinct rows)."""

    det: Any
    manifest: dict[str, Any]
    rows: int
    train_rows: int
    benign_rows: int
    excluded: int
    validation_rows: int
    validation: dict[str, Any]
    local: bool
    history: dict[str, Any] = field(default_factory=dict)
    facts: dict[str, Any] = field(default_factory=dict)
    benign: Any = None  # the BenignReference for explanations, where the input carries sentences


def run_train(embeddings_uri: str, out_uri: str, cfg: AptrayConfig) -> dict[str, Any]:
    """Train ``cfg.train.model`` on an embed output and save the artifact to ``out_uri``.

    Rows labelled malicious are excluded from training (the count is returned and logged). A seeded,
    stratified ``cfg.train.val_fraction`` of the input is held out: its benign rows give the validation
    loss, its labelled rows the F1 threshold (``cfg.threshold.method == "f1"``) and the validation AUC.

    With ``cfg.train.distinct`` (the default) the input is read as its distinct sentences with their row counts
    (:func:`aptray.train.data.load_distinct`): torch detectors draw their minibatches by those counts, the
    thresholds and validation metrics weigh each sentence by its rows, and baselines fit on a seeded sample of
    at most ``cfg.train.baseline_max_rows`` rows. Windowed detectors (LSTM-AE) train on the rows' windows.

    Returns:
        A summary: model, rows, rows used, benign rows, excluded malicious rows, epochs, final losses,
        thresholds, validation metrics, artifact path, seconds.
    """
    from aptray.artifacts import save_detector
    from aptray.detectors.registry import Family, detector_spec
    from aptray.io.fs import check_output
    from aptray.train.data import check_embeddings

    check_output(out_uri)  # a missing s3 bucket: refused before any work
    check_embeddings(embeddings_uri)

    t0 = time.perf_counter()
    tc = cfg.train
    spec = detector_spec(tc.model)
    fit = _fit_distinct(embeddings_uri, cfg, spec) if tc.distinct and not spec.windowed else _fit_rows(
        embeddings_uri, cfg, spec)
    det, history = fit.det, fit.history
    m = fit.manifest
    # where it was fitted: here, Ray Train's DDP workers (torch), or a Ray task (baselines, ensembles)
    trainer = "local" if fit.local else "ray-train" if spec.family is Family.TORCH else "ray-task"
    meta = {
        "embedder": m.get("embedder") or {"model_id": m.get("model_id"), "revision": m.get("revision"),
                                          "dim": m.get("dim")},
        "data": {"source": m.get("source"), "aspect": m.get("aspect")},
        "template_version": m.get("template_version"),
        "template": m.get("template") or cfg.template.model_dump(mode="json"),
        "training": {"history": history, "validation": fit.validation, "rows": fit.rows,
                     "train_rows": fit.train_rows, "benign_rows": fit.benign_rows, "excluded_malicious": fit.excluded,
                     "input": embeddings_uri, "window": tc.window if spec.windowed else None, "trainer": trainer,
                     **fit.facts},
        "train_config": tc.model_dump(mode="json"),
    }
    save_detector(det, out_uri, meta, benign=fit.benign)
    return {
        "model": tc.model,
        "rows": fit.rows,
        "rows_used": fit.benign_rows,
        "benign_rows": fit.benign_rows,
        "excluded_malicious": fit.excluded,
        "validation_rows": fit.validation_rows,
        **fit.facts,
        "epochs": history.get("epochs"),
        "final_train_loss": history.get("final_train_loss"),
        "final_val_loss": history.get("final_val_loss"),
        "thresholds": det.thresholds(),
        "validation": fit.validation,
        "trainer": trainer,
        "artifact": out_uri,
        "seconds": round(time.perf_counter() - t0, 3),
    }


def _fit_rows(embeddings_uri: str, cfg: AptrayConfig, spec: Any) -> Fitted:
    """Fit on every row of the embed output (windowed detectors, or ``train.distinct`` off)."""
    from aptray.detectors.base import benign_mask
    from aptray.detectors.reconstruction import ReconstructionDetector
    from aptray.detectors.registry import Family
    from aptray.train.data import load_embeddings, split_train_val, windowed

    tc = cfg.train
    data = load_embeddings(embeddings_uri)
    if len(data) == 0:
        raise _nothing_to_train(embeddings_uri)
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
    else:
        det = _fit_baseline(det, X[train_idx], y_fit[train_idx], cfg, local)
    val_metrics = _validate(det, X[val_idx], y_row[val_idx])
    _f1_threshold(det, cfg, val_metrics, X[val_idx], y_row[val_idx])
    return Fitted(det, data.manifest, len(data), len(train_idx), len(benign_train), n_excluded, len(val_idx),
                  val_metrics, local, history)


def _fit_distinct(embeddings_uri: str, cfg: AptrayConfig, spec: Any) -> Fitted:
    """Fit on the distinct sentences of the embed output, each weighted by its row counts."""
    from aptray.detectors.reconstruction import ReconstructionDetector
    from aptray.detectors.registry import Family
    from aptray.train.data import BENIGN, MALICIOUS, UNLABELLED, labelled_entries, load_distinct, split_counts

    tc = cfg.train
    data = load_distinct(embeddings_uri)
    if data.rows == 0:
        raise _nothing_to_train(embeddings_uri)
    train_c, val_c = split_counts(data.counts, tc.val_fraction, tc.seed)
    det = spec.build(tc, cfg.threshold)
    usable = train_c[:, BENIGN] + train_c[:, UNLABELLED]  # unlabelled rows count as benign, as row-level
    n_excluded = int(train_c[:, MALICIOUS].sum())
    benign_rows = int(usable.sum())
    if benign_rows == 0:
        raise EmptyInputError(f"{embeddings_uri}: no benign rows to train on: every row is labelled malicious")
    keep = usable > 0
    local = tc.workers == 1 and not tc.use_gpu and int(keep.sum()) <= tc.local_max_rows
    log.info("%s: %d training rows (%d distinct sentences; %d labelled malicious left out), %d validation rows; "
             "training %s", tc.model, benign_rows, int(keep.sum()), n_excluded, int(val_c.sum()),
             "in this process" if local else f"on Ray ({tc.workers} worker(s))")
    history: dict[str, Any] = {}
    facts: dict[str, Any] = {"distinct_sentences": len(data), "weighting": "row counts"}
    if spec.family is Family.TORCH:
        assert isinstance(det, ReconstructionDetector)
        x_train, w_train = data.X[keep], usable[keep]
        val_usable = val_c[:, BENIGN] + val_c[:, UNLABELLED]
        vkeep = val_usable > 0
        net, history = _fit_network(det, x_train, data.X[vkeep], cfg, local, w_train, val_usable[vkeep])
        det.set_network(net, history, x_train, n_excluded, w_train)
        facts["distinct_train_rows"] = int(keep.sum())
    else:  # the distinct training entries with their counts; the detector samples rows where it needs them
        x_fit, y_fit, w_fit = _count_entries(data.X, train_c)
        det.weighted_fit_max_rows = tc.baseline_max_rows
        det = _fit_baseline(det, x_fit, y_fit, cfg, local, w_fit)
        facts["fit_sample_rows"] = min(benign_rows, tc.baseline_max_rows)
    X_val, y_val, w_val = labelled_entries(data.X, val_c)
    val_metrics = _validate(det, X_val, y_val, w_val)
    _f1_threshold(det, cfg, val_metrics, X_val, y_val, w_val)
    benign = None
    if data.sentences is not None and tc.explain_max_sentences:
        from aptray.triage.explain import BenignReference
        from aptray.triage.vocabulary import benign_values, benign_vocabulary

        kept = [data.sentences[i] for i in np.flatnonzero(keep)]
        vocabulary = benign_vocabulary(embeddings_uri, data.manifest, set(kept), tc.explain_max_attributes)
        values = benign_values(embeddings_uri, data.manifest, set(kept), tc.explain_max_attributes)
        benign = BenignReference.build(kept, data.X[keep], usable[keep], tc.explain_max_sentences, vocabulary,
                                       values)
        facts["explain_sentences"] = len(benign.sentences)
    return Fitted(det, data.manifest, data.rows, int(train_c.sum()), benign_rows, n_excluded, int(val_c.sum()),
                  val_metrics, local, history, facts, benign)


def _count_entries(X: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every non-zero (sentence, label) count as an entry ``(X, y, weight)``: ``y`` 1 malicious, 0 benign, nan
    unlabelled (the form :meth:`Detector.fit` takes with ``weights``)."""
    from aptray.train.data import MALICIOUS, UNLABELLED

    rows, labels = np.nonzero(counts)
    y = np.where(labels == MALICIOUS, 1.0, np.where(labels == UNLABELLED, np.nan, 0.0))
    return X[rows], y, counts[rows, labels].astype(np.float64)


def _fit_baseline(det: Any, X: np.ndarray, y: np.ndarray, cfg: AptrayConfig, local: bool,
                  weights: np.ndarray | None = None) -> Any:
    """Fit a baseline detector in this process or in a Ray task (``weights``: counts of distinct rows)."""
    if local:
        return det.fit(X, y, weights)
    from aptray.runtime import init_ray
    from aptray.train.baselines import fit_parallel

    init_ray(cfg.ray)
    return fit_parallel({cfg.train.model: det}, X, y, num_cpus=cfg.train.cpus_per_worker,
                        weights=weights)[cfg.train.model]


def _f1_threshold(det: Any, cfg: AptrayConfig, val_metrics: dict[str, Any], X_val: np.ndarray, y_val: np.ndarray,
                  w_val: np.ndarray | None = None) -> None:
    """With ``threshold.method`` f1, move the threshold to the F1-optimal cut on the labelled validation rows."""
    if cfg.threshold.method is not ThresholdMethod.F1:
        return
    if val_metrics.get("labelled_malicious", 0) and val_metrics.get("labelled_benign", 0):
        labelled = ~np.isnan(y_val)
        det.set_threshold_f1(X_val[labelled], y_val[labelled], None if w_val is None else w_val[labelled])
    else:
        log.warning("threshold method f1 needs malicious and benign rows in the validation split; "
                    "keeping the %g-th percentile of benign training scores", cfg.threshold.percentile)


def _fit_network(det: Any, benign_train: np.ndarray, val_benign: np.ndarray, cfg: AptrayConfig, local: bool,
                 weights: np.ndarray | None = None, val_weights: np.ndarray | None = None
                 ) -> tuple[Any, dict[str, Any]]:
    """Train the detector's network in this process (small inputs) or with Ray Train DDP; the best weights.

    ``weights`` / ``val_weights``: the row counts of distinct training / validation rows.
    """
    tc = cfg.train
    if local:
        from aptray.train.loop import epoch_rows, fit_local

        start = time.perf_counter()
        net = det.initial_network(int(benign_train.shape[-1]))  # seeded (the DDP workers seed before they build)
        hist = fit_local(net, benign_train, val_benign, epochs=tc.epochs, batch_size=tc.batch_size, lr=tc.lr,
                         patience=tc.patience, seed=tc.seed, weights=weights, val_weights=val_weights,
                         epoch_rows=epoch_rows(len(benign_train), weights, tc.distinct_epoch_rows)).as_dict()
        return net, {**hist, "workers": 1, "seconds": round(time.perf_counter() - start, 3)}
    from aptray.runtime import init_ray
    from aptray.train.trainer import train_ddp

    init_ray(cfg.ray)
    res = train_ddp(tc.model, benign_train, val_benign, tc, weights=weights, val_weights=val_weights)
    return res.network, {**res.history, "seconds": res.seconds}


def _nothing_to_train(uri: str) -> EmptyInputError:
    return EmptyInputError(f"{uri}: no embeddings to train on: its input kept no row (see the embed stage's counts; "
                           "an ADAPT ground-truth file lists labels, not events)")


def _check_windows(spec: Any, manifest: dict[str, Any], uri: str) -> None:
    """Windowed detectors need ordered single events: refuse process contexts (ADAPT, or an aspect)."""
    if spec.windowed and manifest.get("source"):
        aspect = manifest.get("aspect")
        check_windowed(spec, Source(manifest["source"]), Aspect(aspect) if aspect else None, f"{uri} holds")


def check_windowed(spec: Any, source: Source, aspect: Aspect | None, where: str) -> None:
    """Refuse a windowed detector (``spec``) for rows without event order: process contexts (ADAPT, or an aspect).

    Args:
        where: how the message names the rows' place (``"OUT/embed holds"``, ``"INPUT is read as"``).

    Raises:
        ConfigError: naming the detector, the rows and what to train it on.
    """
    from aptray.errors import ConfigError
    from aptray.io.sources import source_spec

    if not spec.windowed or source_spec(source).windows_possible(aspect):
        return
    what = f"{source.value} {aspect.value} process contexts" if aspect else f"{source.value} rows"
    raise ConfigError(f"{spec.name.value} trains on windows of a process's consecutive events, but {where} {what}, "
                      "which have no event order; train it on single events (BETH, CDM or auditd without --aspect), "
                      "or pick another --detector")


def _validate(det: Any, X_val: np.ndarray, y_val: np.ndarray, w_val: np.ndarray | None = None) -> dict[str, Any]:
    """Validation AUC/AP on the labelled validation rows (for the record, not for model selection); ``w_val``:
    the row count of each distinct entry."""
    labelled = ~np.isnan(y_val)
    y = y_val[labelled].astype(int)
    w = np.ones(len(y)) if w_val is None else np.asarray(w_val, dtype=np.float64)[labelled]
    malicious, benign = int(w[y == 1].sum()), int(w[y == 0].sum())
    out: dict[str, Any] = {"labelled_malicious": malicious, "labelled_benign": benign}
    if malicious and benign:
        from aptray.evaluate.metrics import auc_roc, average_precision

        s = det.decision_function(X_val[labelled])
        out["auc"] = auc_roc(y, s, w)
        out["average_precision"] = average_precision(y, s, w)
    return out
