"""Reading a score job's output: its top alerts and, where the scored trace has labels, its metrics."""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow.fs as pafs_

from aptray.io.fs import join, resolve

#: What a score output folder may hold, in the order the summary names them (all folders but the report).
OUTPUTS: tuple[str, ...] = ("scores", "alerts", "incidents", "quarantine", "report.html")


def top_alerts(out_uri: str, n: int = 5) -> list[dict[str, Any]]:
    """The ``n`` highest-scored distinct alert sentences of a score output, best first: each the top alert of its
    sentence (sentence, score, tier, label, its ``incident_id``) with ``alerts``, how many alerts share the sentence,
    and ``incidents``, how many incidents those alerts fall in (``incident_id`` is the top alert's only)."""
    import pyarrow.dataset as pads

    fs, root = resolve(join(out_uri, "alerts"))
    if fs.get_file_info(root).type != pafs_.FileType.Directory:
        return []
    table = pads.dataset(root, filesystem=fs, format="parquet")
    cols = [c for c in ("sentence", "score", "tier", "malicious", "incident_id") if c in table.schema.names]
    top: dict[str, dict[str, Any]] = {}
    incidents: dict[str, set[Any]] = {}
    for alert in table.to_table(columns=cols).sort_by([("score", "descending")]).to_pylist():
        first = top.setdefault(alert["sentence"], {**alert, "alerts": 0})
        first["alerts"] += 1
        incidents.setdefault(alert["sentence"], set()).add(alert.get("incident_id"))
    best = list(top.values())[:n]
    for entry in best:
        if "incident_id" in entry:
            entry["incidents"] = len(incidents[entry["sentence"]] - {None})
    return best


def evaluate_scores(out_uri: str) -> dict[str, Any]:
    """Rows scored and, where the scored trace has labels of both kinds, AUC-ROC and PR-AUC of its scores
    (:mod:`aptray.evaluate.metrics`, the experiment's own metrics). Where the detector scored each sentence
    alike (one score per ``sentence_hash``; not so for window models), also what the labels allow any such
    detector: ``sentence_ceiling`` (AUC-ROC) and ``malicious_with_benign_twin`` / ``twin_sentences``."""
    import pyarrow.dataset as pads

    from aptray.evaluate.metrics import auc_roc, average_precision

    fs, root = resolve(join(out_uri, "scores"))
    dataset = pads.dataset(root, filesystem=fs, format="parquet")
    cols = [c for c in ("score", "malicious", "sentence_hash") if c in dataset.schema.names]
    table = dataset.to_table(columns=cols)
    labels = table.column("malicious")
    result: dict[str, Any] = {"scored": table.num_rows, "labelled": table.num_rows - labels.null_count}
    if labels.null_count == 0 and table.num_rows:
        y = np.asarray(labels.to_numpy(zero_copy_only=False), dtype=int)
        result["malicious"] = int(y.sum())
        if 0 < y.sum() < len(y):
            s = np.asarray(table.column("score").to_numpy(zero_copy_only=False), dtype=float)
            result["auc_roc"] = round(auc_roc(y, s), 4)
            result["pr_auc"] = round(average_precision(y, s), 4)
            result.update(_ceiling(table, y))
    return result


def _ceiling(table: Any, y: np.ndarray) -> dict[str, Any]:
    """The sentence ceiling and benign twins of a labelled score table, its sentences keyed by ``sentence_hash``
    (no sentence text reaches the driver); empty where a sentence got several scores or the hashes are missing."""
    import pyarrow as pa
    import pyarrow.compute as pc

    from aptray.evaluate.metrics import ceiling_of_counts, sentence_label_counts, twins_of_counts

    if "sentence_hash" not in table.column_names or table.column("sentence_hash").null_count:
        return {}
    hashes = table.column("sentence_hash")
    pairs = pa.table({"hash": hashes, "score": table.column("score")}).group_by(["hash", "score"]).aggregate([])
    if pairs.num_rows != pc.count_distinct(hashes).as_py():  # a window model: one sentence, several scores
        return {}
    pos, neg = sentence_label_counts(hashes, y)
    return {"sentence_ceiling": round(ceiling_of_counts(pos, neg)["auc_roc"], 4), **twins_of_counts(pos, neg)}
