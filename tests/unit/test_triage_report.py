"""Reports readable without other tools: the experiment's test alerts grouped into incidents, and an alert's
explanation cells."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from aptray.evaluate.report import _incidents_section, _markdown, _Writer, explanation_cells


def test_experiment_test_alerts_are_grouped_into_incidents(tmp_path: Path) -> None:
    rows = pd.DataFrame({
        "row": range(6), "record_id": [f"beth:f.csv:{i}" for i in range(6)],
        "sentence": ["shell connects out", "shell reads shadow", "child downloads", "benign cron", "odd nginx",
                     "below threshold"],
        "malicious": [1, 1, 1, 0, 0, 1],
        "host": ["h1", "h1", "h1", "h1", "h2", "h1"], "pid": [10, 10, 11, 50, 60, 10], "ppid": [1, 1, 10, 1, 1, 1],
        "timestamp": [1.0, 2.0, 3.0, 4.0, 5.0, 6.0], "process_name": ["bash", "bash", "wget", "cron", "nginx", "bash"],
    })
    scores = pd.DataFrame({"row": [0, 1, 2, 3, 4, 5], "score": [0.9, 0.5, 0.7, 0.95, 0.3, 0.1]})
    w = _Writer(str(tmp_path))
    _incidents_section(w, rows, scores, threshold=0.3, label="minilm ae")
    md = _markdown(w.blocks)
    # bash (10) and its child wget (11) are one incident; cron and nginx one each; row 5 is below the threshold
    assert "5 test alert(s) at its threshold 0.3 (3 malicious) in 3 incident(s)" in md
    assert "reads 4 alert(s) in score order or 2 incident(s) in rank order" in md
    assert "#2 (3 alert(s), 3 malicious, top score 0.9)" in md
    assert md.index("| 0.9 | 1 | shell connects out |") < md.index("| 0.7 | 1 | child downloads |")
    assert "below threshold" not in md


def test_explanation_cells() -> None:
    alert = {"attribution_part": "object_addr", "attribution_value": "203.0.113.9:4444",
             "attribution_score_without": 0.25, "unseen_attributes": ["execs: /tmp/.x"],
             "nearest_benign": ["Process <pid> (nginx) accepted a connection."], "nearest_similarity": [0.8123]}
    assert explanation_cells(alert) == ["object_addr = 203.0.113.9:4444 (0.25)", "execs: /tmp/.x",
                                        "Process <pid> (nginx) accepted a connection. (0.812)"]
    assert explanation_cells({}) == ["n/a", "n/a", "n/a"]
    # trained on an unlabelled input, the alert's own sentence is its nearest benign one (it read "x. (1.000)")
    own = {"sentence": "x.", "nearest_benign": ["x.", "y."], "nearest_similarity": [1.0, 0.9]}
    assert explanation_cells(own)[2] == "this very sentence is in benign training; next: y. (0.900)"


def test_report_sentences_cut_with_an_ellipsis() -> None:
    """Report tables cut long sentences at 300 characters; a bare cut read as real values ("on ports 443 and 121"
    for 12132)."""
    from aptray.evaluate.report import _cut

    long = "It communicated with " + ", ".join(f"10.0.0.{i}" for i in range(60)) + " on ports 443 and 12132."
    cut = _cut(long)
    assert len(cut) == 300 and cut.endswith("…") and long.startswith(cut[:-1])
    assert _cut("short sentence.") == "short sentence."


def test_the_score_report_says_where_each_alert_is_and_its_label(tmp_path: Path) -> None:
    """The report's alert tables gave score, tier, sentence and explanation only: no record, file, time or label
    to find the raw event by."""
    import pyarrow as pa

    from aptray.evaluate.report import record_of, write_score_report
    from aptray.triage.incidents import group_incidents

    alerts = pa.table({"record_id": ["cdm-uuid-1", "auditd:a.log:12"], "source_file": ["wget.cdm.json", "a.log"],
                       "score": [2.0, 1.0], "timestamp": [1522294263.0, None], "malicious": [1, None],
                       "sentence": ["x.", "y."], "tier": ["high", "low"], "host": ["h", "h"], "pid": [1, 2],
                       "ppid": [0, 0]})
    assert record_of(alerts.to_pylist()[0]) == "cdm-uuid-1 (wget.cdm.json) at 2018-03-29 03:31:03 UTC"
    assert record_of(alerts.to_pylist()[1]) == "auditd:a.log:12"  # its file is in its id already
    incidents, of = group_incidents(alerts)
    write_score_report(str(tmp_path), incidents, alerts.append_column("incident_id", of))
    md = (tmp_path / "report.md").read_text()
    assert "| score | tier | record | label | sentence |" in md
    assert "| 2 | high | cdm-uuid-1 (wget.cdm.json) at 2018-03-29 03:31:03 UTC | malicious | x. |" in md
