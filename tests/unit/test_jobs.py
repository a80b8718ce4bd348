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
