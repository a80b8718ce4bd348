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


def test_baselines_take_their_representation_by_the_rule_that_chooses_aptrays_model() -> None:
    # mpnet's PCA is better on validation, MiniLM's on test: the baseline column compares chosen with chosen,
    # and the optimistic maximum has its own column beside aptray's best on test
    minilm, mpnet = _doc("minilm", 0.90, 0.20), _doc("mpnet", 0.95, 0.30)
    for run in minilm["runs"]:
        if run["detector"] == "pca":
            run["test"] = {"auc_roc": 0.99, "pr_auc": 0.77}
    minilm["summary"] = summarize(minilm["runs"])
    merged = merge_metrics([minilm, mpnet])

    (best,) = merged["best"]
    assert best["baselines"]["pca"]["embedder"] == "mpnet"
    assert (best["baseline_best_on_test"]["embedder"], best["baseline_best_on_test"]["detector"]) == ("minilm", "pca")
    header, (row,) = results_table(merged)
    cell = dict(zip(header, row, strict=True))
    assert cell["pca"] == "0.940 / 0.290"
    assert cell["baseline, best on test (optimistic)"] == "0.990 / 0.770 (minilm pca)"


def test_a_baseline_with_no_malicious_validation_row_is_not_chosen() -> None:
    doc = _doc("minilm", 0.90, 0.20)
    for run in doc["runs"]:
        run["val"] = {"auc_roc": None, "pr_auc": None}
    doc["summary"] = summarize(doc["runs"])
    header, (row,) = results_table(merge_metrics([doc]))
    cell = dict(zip(header, row, strict=True))
    assert cell["pca"] == cell["aptray, chosen on validation"] == "n/a"
    assert cell["baseline, best on test (optimistic)"] == "0.890 / 0.190 (minilm pca)"
