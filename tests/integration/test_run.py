"""``aptray run``: the whole pipeline in one command, as ``make demo`` runs it.

One fresh process runs it on the demo's synthetic trace (its own local Ray cluster, as a user's shell would):
stderr stays short and free of Ray's internals, stdout holds one JSON line. A second run of the same settings
(in this process, on the session's cluster) skips every stage; other settings into the same folder are refused.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.timeout(600)

#: What Ray's own console output looks like; none of it may reach a user's terminal by default.
RAY_INTERNALS = ("streaming_executor", "(pid=", "Execution plan", "Loading weights", "worker.py", "Ray Train",
                 "dataset.py", "WARNING", "Traceback")


def test_run_is_quiet_resumable_and_refuses_other_settings(ray_cluster: None, tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str],
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "run"
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "APTRAY_VERBOSE")}
    proc = subprocess.run([sys.executable, "-m", "aptray", "run", "--out", str(out), "--epochs", "3"], cwd=REPO,
                          env=env, capture_output=True, text=True, timeout=540)
    err = proc.stderr.strip().splitlines()
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert len(err) <= 40, proc.stderr
    assert not [ln for ln in err if any(s in ln for s in RAY_INTERNALS)], proc.stderr
    assert any("Ray's own logs: " in ln for ln in err)  # said once, where they are
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    stages = result["stages"]
    assert stages["embed"]["rows"] == 3000 and stages["score"]["rows_read"] == 2000
    assert stages["score"]["rows_scored"] + stages["score"]["rows_quarantined"] == 2000
    assert result["evaluation"]["auc_roc"] > 0.9 and stages["score"]["alerts"] > 0
    # the human summary: the counts, the AUC of the labelled trace, the top alerts, where the report is
    summary = "\n".join(err)
    assert f"{stages['score']['alerts']} alert(s) in {stages['score']['incidents']} incident(s)" in summary
    assert f"AUC-ROC {result['evaluation']['auc_roc']:.3f}" in summary
    assert (out / "scores" / "report.html").is_file() and f"report: {out}/scores/report.html" in summary
    from tests.browser import render

    shown = render(out / "scores" / "report.html")  # the top incidents, readable in a browser
    assert shown["tables"] >= 1 and shown["broken"] == [] and shown["headings"][0] == "aptray score report"
    assert sum(h.startswith("#1 ") for h in shown["headings"]) == 1
    # the score stage reused the embed stage's cache: only sentences the training trace lacked were encoded
    assert stages["score"]["encoded"] < stages["score"]["distinct_sentences"]

    from aptray.cli import main

    def again(*extra: str) -> tuple[int, dict[str, object]]:
        monkeypatch.setattr(sys, "argv", ["aptray", "run", "--out", str(out), "--epochs", "3", *extra])
        code = 0
        try:
            main()
        except SystemExit as exc:
            code = int(exc.code or 0)
        lines = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("{")]
        return code, json.loads(lines[-1])

    code, second = again()
    assert code == 0 and all(s["skipped"] for s in second["stages"].values())  # type: ignore[attr-defined]
    assert second["evaluation"] == result["evaluation"]
    code, refused = again("--detector", "pca")
    assert code == 2 and refused["kind"] == "RunConflictError" and "differs in train" in str(refused["error"])
