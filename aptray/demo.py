"""The main job end to end on the embedded default: synthetic trace -> sentences -> MiniLM -> AE -> scores.

``make demo`` runs it on a local Ray cluster with local files and the packaged model. With ``input`` it runs
on a real trace instead (trained on its benign rows, then scored).
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.dataset as pads

from aptray.config import AptrayConfig, Source
from aptray.io.fs import join

log = logging.getLogger(__name__)


def run_demo(out: str, cfg: AptrayConfig, input_uri: str | None = None, source: Source | None = None) -> dict[str, Any]:
    """Run templatize -> embed -> train -> score and return a summary with AUC and the top alerts.

    Args:
        out: output folder.
        cfg: configuration (model, epochs, ...).
        input_uri: a real trace; None (and no env ``APTRAY_DATA``) uses the synthetic generator.
        source: the trace format of ``input_uri`` (default BETH).
    """
    from aptray.embed.job import run_embed
    from aptray.runtime import init_ray
    from aptray.score import run_score
    from aptray.train import run_train

    start = time.perf_counter()
    init_ray(cfg.ray)
    input_uri = input_uri or os.environ.get("APTRAY_DATA")
    if input_uri:
        src = source or Source.BETH
        train_in = test_in = input_uri
        data_note = f"real data from {input_uri}"
    else:
        from aptray.io.synthetic import default_demo_input

        src = Source.SYNTHETIC
        train_in, test_in = (str(p) for p in default_demo_input(Path(out) / "data"))
        data_note = "SYNTHETIC trace made by aptray.io.synthetic (benign training file, test file with attacks)"
    log.info("demo input: %s", data_note)
    cfg = cfg.model_copy(update={"ingest": cfg.ingest.model_copy(update={"source": src})})

    stages: dict[str, Any] = {}
    stages["embed_train"] = run_embed(train_in, join(out, "embed_train"), cfg, source=str(src))
    stages["train"] = run_train(join(out, "embed_train"), join(out, "model"), cfg)
    score_cfg = cfg.model_copy(update={"score": cfg.score.model_copy(update={"artifact": join(out, "model")})})
    stages["score"] = run_score(test_in, join(out, "scores"), score_cfg)
    summary = {"data": data_note, **_evaluate(out), "stages": stages,
               "seconds": round(time.perf_counter() - start, 1)}
    return summary


def _evaluate(out: str) -> dict[str, Any]:
    """AUC of the scores against the labels, and the top alerts as sentences."""
    from sklearn.metrics import average_precision_score, roc_auc_score

    scores = pads.dataset(join(out, "scores", "scores"), format="parquet").to_table(columns=["score", "malicious"])
    y = np.asarray(scores.column("malicious").fill_null(0).to_numpy(zero_copy_only=False), dtype=int)
    s = np.asarray(scores.column("score").to_numpy(zero_copy_only=False), dtype=float)
    result: dict[str, Any] = {"scored": len(y), "malicious": int(y.sum())}
    if 0 < y.sum() < len(y):
        result["auc_roc"] = round(float(roc_auc_score(y, s)), 4)
        result["pr_auc"] = round(float(average_precision_score(y, s)), 4)
    alerts_dir = Path(join(out, "scores", "alerts"))
    if alerts_dir.exists():
        alerts = pads.dataset(str(alerts_dir), format="parquet").to_table(columns=["sentence", "score", "malicious"])
        top = alerts.sort_by([("score", "descending")]).slice(0, 5).to_pylist()
        result["top_alerts"] = top
        result["alerts"] = alerts.num_rows
    return result
