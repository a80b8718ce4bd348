"""Several experiments merged into one results table (:func:`aptray.evaluate.report.merge_metrics`): one run per
embedder is how the README table gets MiniLM and mpnet side by side."""

from __future__ import annotations

from typing import Any

import pytest

from aptray.errors import ConfigError
from aptray.evaluate.experiment import summarize
from aptray.evaluate.report import merge_metrics, results_table


def _doc(embedder: str, val_auc: float, test_pr: float, version: str = "2") -> dict[str, Any]:
    runs = [{"dataset": "a/b", "aspect": "All", "protocol": "benign-split", "embedder": embedder, "detector": det,
             "seed": seed, "status": "ok", "train_seconds": 1.0,
             "val": {"auc_roc": val_auc - shift, "pr_auc": 0.5},
             "test": {"auc_roc": val_auc - shift, "pr_auc": test_pr - shift}}
            for seed in range(2) for det, shift in (("knn", 0.0), ("pca", 0.01))]
    target = {"dataset": "a/b", "aspect": "All", "rows": 100, "malicious": 4,
              "embedders": {embedder: {"embedder": embedder, "compose": "none", "template": "prose"}}}
    return {"template": {"version": version}, "targets": [target], "runs": runs, "summary": summarize(runs),
            "config": {"embedders": [embedder]}}


def test_the_choice_is_made_again_over_every_embedder_and_targets_keep_each_ones_record() -> None:
    merged = merge_metrics([_doc("minilm", 0.90, 0.20), _doc("mpnet", 0.95, 0.30)])

    (target,) = merged["targets"]
    assert set(target["embedders"]) == {"minilm", "mpnet"}  # the second document's record is no longer lost
    (best,) = merged["best"]
    assert (best["aptray_selected"]["embedder"], best["aptray_selected"]["detector"]) == ("mpnet", "knn")
    _header, rows = results_table(merged)
    assert len(rows) == 1 and "mpnet knn" in " ".join(rows[0])


def test_the_first_documents_record_wins_where_both_name_an_embedder() -> None:
    first, second = _doc("minilm", 0.90, 0.20), _doc("minilm", 0.95, 0.30)
    second["targets"][0]["embedders"]["minilm"]["compose"] = "aspects"

    (target,) = merge_metrics([first, second])["targets"]
    assert target["embedders"]["minilm"]["compose"] == "none"
    assert first["targets"][0]["embedders"] == {"minilm": target["embedders"]["minilm"]}  # the input is not changed


def test_experiments_of_different_template_versions_are_refused() -> None:
    with pytest.raises(ConfigError, match="template versions 1, 2"):
        merge_metrics([_doc("minilm", 0.9, 0.2, version="1"), _doc("mpnet", 0.9, 0.2)])
