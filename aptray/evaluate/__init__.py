"""Evaluation and experiments: metrics, per-seed splits, the experiment driver and its report.

Modules (this package imports nothing heavy; import the one you need):

* :mod:`aptray.evaluate.metrics` -- AUC-ROC, PR-AUC, nDCG of the malicious rows, threshold metrics, seed spread;
* :mod:`aptray.evaluate.splits` -- train / validation / test splits for benign-only training;
* :mod:`aptray.evaluate.runs` -- one detector x seed fit, threshold and test scoring (a Ray task);
* :mod:`aptray.evaluate.experiment` -- :func:`run_experiment` and the ``metrics.json`` schema;
* :mod:`aptray.evaluate.report` / :mod:`aptray.evaluate.plots` -- report.md, report.html and PNG plots.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from aptray.config import AptrayConfig

__all__ = ["run_experiment"]


def run_experiment(input_uri: str, out_uri: str, cfg: AptrayConfig, fresh: bool = False) -> dict[str, Any]:
    """Run every dataset x aspect x embedder x detector x seed, resuming an interrupted run of the same settings
    unless ``fresh`` (:func:`aptray.evaluate.experiment.run_experiment`)."""
    from aptray.evaluate.experiment import run_experiment as _run

    return _run(input_uri, out_uri, cfg, fresh=fresh)
