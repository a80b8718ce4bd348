"""A labelled score output's evaluation: its metrics and, where each sentence got one score, its sentence ceiling."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from aptray.evaluate.score_output import evaluate_scores

# Sentence hashes a (1 malicious, 1 benign), b and d (malicious), c (2 benign); the ceiling is 8.5 / 9
# (worked out in tests/unit/test_metrics.py::test_benign_twins_and_the_sentence_ceiling_by_hand).
HASHES = ["a", "a", "b", "c", "c", "d"]
LABELS = [True, False, True, False, False, True]


def _write(root: Path, scores: list[float]) -> str:
    part = root / "scores" / "group=x"
    part.mkdir(parents=True)
    pq.write_table(pa.table({"record_id": [f"r{i}" for i in range(6)], "score": scores, "sentence_hash": HASHES,
                             "malicious": LABELS}), part / "part-0.parquet")
    return str(root)


def test_one_score_per_sentence_gives_the_ceiling_and_the_twins(tmp_path: Path) -> None:
    result = evaluate_scores(_write(tmp_path, [0.5, 0.5, 0.9, 0.1, 0.1, 0.2]))
    assert (result["scored"], result["malicious"]) == (6, 3)
    assert result["sentence_ceiling"] == pytest.approx(8.5 / 9, abs=1e-4)
    assert result["auc_roc"] <= result["sentence_ceiling"]
    assert (result["malicious_with_benign_twin"], result["twin_sentences"]) == (1, 1)


def test_a_sentence_scored_twice_differently_gives_no_ceiling(tmp_path: Path) -> None:
    # a window model scores an event by its neighbours: the sentence alone does not bound it
    result = evaluate_scores(_write(tmp_path, [0.5, 0.7, 0.9, 0.1, 0.1, 0.2]))
    assert "auc_roc" in result and "sentence_ceiling" not in result and "malicious_with_benign_twin" not in result


def test_run_summary_says_what_the_sentences_allow_only_where_labels_disagree() -> None:
    from aptray.commands.summary import run_lines

    stages = {"embed": {"rows": 10, "distinct_sentences": 4}, "train": {"model": "ae"},
              "score": {"rows_scored": 6, "rows_read": 6, "rows_quarantined": 0, "alerts": 2, "incidents": 1}}
    ev = {"scored": 6, "malicious": 3, "auc_roc": 0.8, "pr_auc": 0.7, "sentence_ceiling": 0.9444,
          "malicious_with_benign_twin": 1, "twin_sentences": 1}
    result = {"stages": stages, "evaluation": ev, "outputs": {"report": "out/scores/report.html"}}
    (line,) = [ln for ln in run_lines(result) if ln.startswith("labelled:")]
    assert line.endswith("AUC-ROC 0.800, PR-AUC 0.700; any score of the sentence alone reaches at most AUC-ROC "
                         "0.944 here (1 malicious row shares a benign row's sentence)")
    clean = {**result, "evaluation": {**ev, "sentence_ceiling": 1.0, "malicious_with_benign_twin": 0}}
    (line,) = [ln for ln in run_lines(clean) if ln.startswith("labelled:")]
    assert line.endswith("PR-AUC 0.700")
    # the rows the detector trained on, not every embedded row (labelled attacks and validation rows are not)
    assert run_lines(result)[0].startswith("trained ae on 10 rows embedded (4 distinct sentences); scored 6 of 6")
    used = {**result, "stages": {**stages, "train": {"model": "ae", "rows_used": 7}}}
    assert run_lines(used)[0].startswith("trained ae on 7 of 10 rows embedded (4 distinct sentences)")
    assert "2 alerts in 1 incident" in run_lines(result)
    quiet = {**result, "stages": {**stages, "score": {**stages["score"], "alerts": 0, "incidents": 0}}}
    assert "no alerts" in run_lines(quiet)  # not "0 alert(s) in 0 incident(s)"
    one = {**result, "stages": {**stages, "score": {**stages["score"], "alerts": 1, "incidents": 1}}}
    assert "1 alert in 1 incident" in run_lines(one)


def test_a_flood_of_alerts_is_called_out_against_the_thresholds_rate() -> None:
    """Far more alerts than a percentile threshold lets through of normal behaviour (BETH's 100-row head sample:
    every row of the test file alerted with the rarity detector) gets one warning line; an alert rate near the
    expected one, an F1 threshold (no promised rate) or a handful of alerts gets none."""
    from aptray.commands.summary import run_lines, score_lines

    def score(alerts: int, rows: int = 100, expected: float | None = 0.01) -> dict[str, Any]:
        return {"rows_scored": rows, "rows_read": rows, "rows_quarantined": 0, "alerts": alerts, "incidents": 1,
                "files": 1, "expected_alert_rate": expected}

    def warned(lines: list[str]) -> list[str]:
        return [ln for ln in lines if ln.startswith("warning:")]

    run = {"stages": {"embed": {"rows": 100, "distinct_sentences": 30}, "train": {"model": "rarity"},
                      "score": score(100)}, "outputs": {"report": "r.html"}}
    (line,) = warned(run_lines(run))
    assert line == ("warning: 100% of the rows alerted, where the threshold lets through about 1% of normal "
                    "behaviour: the training trace likely does not cover this input's normal behaviour (give more "
                    "of it with --train), or the input is mostly attack")
    (line,) = warned(score_lines(score(300, 1000), "out", []))
    assert line.startswith("warning: 30% of the rows alerted") and "(retrain with more of the normal" in line
    assert not warned(score_lines(score(99, 1000), "out", []))  # 9.9%: under ten times the expected 1%
    assert not warned(score_lines(score(9, 10), "out", []))  # fewer than ten alerts: too few to say
    assert not warned(score_lines(score(100, expected=None), "out", []))  # F1 threshold: no promised rate


def test_top_alerts_that_begin_alike_show_where_they_differ() -> None:
    """Two BETH sentences alike for their first 110 characters were both printed as the same cut line."""
    from aptray.commands.summary import alert_lines

    start = "Process <pid> (systemd-resolve), child of process <pid>, as user 101, opened /run/systemd/netif/links/5"
    top = [{"sentence": f"{start} with flags O_RDONLY|{flag}.", "score": 0.0036, "tier": "high", "alerts": 11}
           for flag in ("O_CLOEXEC", "O_LARGEFILE")]
    top.append({"sentence": "Process <pid> (sshd) " + "x" * 120, "score": 0.001, "tier": "low", "alerts": 1})
    lines = alert_lines(top)
    assert len(set(lines[:2])) == 2 and lines[0].endswith("O_RDONLY|O_CLOEXEC. (x11)")
    assert lines[1].endswith("O_RDONLY|O_LARGEFILE. (x11)") and lines[0].startswith("  0.0036 high   Process <pid>")
    assert lines[2].endswith("x...")  # alone beyond its cut: the start, as before
    assert all(len(ln) < 140 for ln in lines)
    # alerts of one sentence spread over incidents: said, so "(x3)" is not read as one incident of three alerts
    spread = alert_lines([{**top[0], "alerts": 3, "incidents": 3, "incident_id": "inc-1"}])
    assert spread[0].endswith(" (x3, in 3 incidents)")
    # scores of unequal lengths keep the tiers and sentences in one column
    aligned = alert_lines([{**top[0], "score": 0.001306}, {**top[1], "score": 0.00126}])
    assert [ln.index(" high ") for ln in aligned] == [len("  0.001306"), len("  0.001306")]


def test_score_summary_has_the_labelled_line_of_run() -> None:
    """``aptray score`` of a labelled trace says how its scores rank the attacks, in the line ``aptray run`` prints
    (one implementation); an unlabelled trace gets none."""
    from aptray.commands.summary import run_lines, score_lines

    ev = {"scored": 84, "labelled": 84, "malicious": 22, "auc_roc": 0.905, "pr_auc": 0.759}
    result = {"rows_scored": 84, "rows_read": 84, "rows_quarantined": 0, "alerts": 1, "incidents": 1, "files": 1}
    lines = score_lines(result, "out", [], ev)
    assert "labelled: 22 malicious of 84: AUC-ROC 0.905, PR-AUC 0.759" in lines
    run = {"stages": {"embed": {"rows": 84, "distinct_sentences": 9}, "train": {"model": "ae"}, "score": result},
           "evaluation": ev, "outputs": {"report": "r.html"}}
    assert [ln for ln in run_lines(run) if ln.startswith("labelled:")] == [ln for ln in lines
                                                                          if ln.startswith("labelled:")]
    assert not [ln for ln in score_lines(result, "out", [], {"scored": 84, "labelled": 0}) if "labelled" in ln]


def test_score_summary_names_the_files_read_where_more_were_listed() -> None:
    """An ADAPT folder lists five files (four contexts and the ground truth) and reads one: the summary said "from 5
    file(s)"."""
    from aptray.commands.summary import score_lines

    result = {"rows_scored": 69, "rows_read": 69, "rows_quarantined": 0, "alerts": 3, "incidents": 3, "files": 5,
              "files_read": 1, "files_skipped": 0}
    assert score_lines(result, "out", [])[0] == "scored 69 of 69 rows from 1 of 5 file(s) listed, none quarantined"
    same = {**result, "files": 3, "files_read": 3, "files_skipped": 1}
    assert score_lines(same, "out", [])[0] == "scored 69 of 69 rows from 3 file(s), 1 done earlier, none quarantined"
    # one file scored into a folder that already held five (scored from their folder): the counts are the folder's,
    # and the line says so (it said "from 5 of 1 file(s) listed")
    more = {**result, "rows_scored": 769, "rows_read": 769, "files": 1, "files_read": 5, "files_in_output": 5,
            "files_skipped": 1}
    assert score_lines(more, "out", [])[0] == ("scored 769 of 769 rows from 5 file(s) in the output folder (1 listed "
                                               "now, 1 done earlier), none quarantined")
    adapt = {**more, "files_read": 1}
    assert score_lines(adapt, "out", [])[0].startswith("scored 769 of 769 rows from 1 of 5 file(s) in the output")


def test_sizes_in_log_lines_keep_small_inputs_visible() -> None:
    from aptray.io.files import size_text

    assert [size_text(n) for n in (0, 812, 21_504, 2_500_000, 1_234_000_000)] == [
        "0 B", "812 B", "21.5 kB", "2.5 MB", "1.2 GB"]


def test_run_summary_warns_when_an_unlabelled_input_trained_on_itself() -> None:
    """On an unlabelled audit log the model learned the attack as normal and every explanation named the alert's
    own sentence as its nearest benign one, without a word why."""
    from aptray.commands.summary import run_lines

    stages = {"embed": {"rows": 10, "distinct_sentences": 4}, "train": {"model": "ae", "excluded_malicious": 0},
              "score": {"rows_scored": 6, "rows_read": 6, "rows_quarantined": 0, "alerts": 2, "incidents": 1}}
    result = {"stages": stages, "evaluation": {}, "outputs": {"report": "r"}, "trained_on_input": True}
    assert any(ln.startswith("note: INPUT has no malicious labels") for ln in run_lines(result))
    labelled = {**result, "stages": {**stages, "train": {"model": "ae", "excluded_malicious": 3}}}
    separate = {**result, "trained_on_input": False}
    assert not [ln for r in (labelled, separate) for ln in run_lines(r) if ln.startswith("note:")]
