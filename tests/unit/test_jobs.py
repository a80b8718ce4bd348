"""The jobs/ dispatch: typed overrides, a missing input is a clear error, a stage runs from its config."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from aptray.jobs import main, parse_sets
from tests.conftest import REPO


def test_parse_sets_types_values() -> None:
    assert parse_sets(["embed.actors=2", "input=s3://b/x", "ingest.strict=true"]) == {
        "embed.actors": 2, "input": "s3://b/x", "ingest.strict": True}
    with pytest.raises(SystemExit, match="KEY=VALUE"):
        parse_sets(["novalue"])


def test_missing_input_is_a_clear_error() -> None:
    with pytest.raises(SystemExit, match="missing input, out"):
        main("templatize", ["--config", str(REPO / "jobs/configs/templatize.yaml")])


def test_templatize_job_runs_from_its_config(
    ray_cluster: None, shared_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sample = shared_data / "beth" / "head_samples_BethSecure" / "labelled_training_data.csv"
    assert main("templatize", ["--config", str(REPO / "jobs/configs/templatize.yaml"),
                               "--set", f"input={sample}", "--set", f"out={tmp_path / 'o'}"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["rows"] == 100 and result["quarantined"] == 0
    assert (tmp_path / "o" / "manifest.json").is_file()


def test_a_jobs_user_error_is_one_line_and_a_json_line(capsys: pytest.CaptureFixture[str]) -> None:
    """``--set inptu=...`` was a pydantic traceback without "did you mean", exit 1, and no JSON line."""
    code = main("score", ["--config", str(REPO / "jobs" / "configs" / "score.yaml"), "--set", "inptu=/x",
                          "--set", "out=/tmp/never-written"])
    out, err = capsys.readouterr()
    assert code == 2 and json.loads(out) == {"error": "unknown config key inptu: did you mean input?",
                                             "kind": "ConfigError"}
    assert [ln for ln in err.splitlines() if ln.strip()] == [
        "jobs/score.py: error: unknown config key inptu: did you mean input?"]
