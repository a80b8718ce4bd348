"""The jobs/ dispatch: typed overrides, a missing input is a clear error, a stage runs from its config."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from aptray.errors import ConfigError
from aptray.jobs import main, parse_sets
from tests.conftest import REPO


def test_parse_sets_types_values() -> None:
    assert parse_sets(["embed.actors=2", "input=s3://b/x", "ingest.strict=true"]) == {
        "embed.actors": 2, "input": "s3://b/x", "ingest.strict": True}
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        parse_sets(["novalue"])


def _error_of(stage: str, args: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    """The job's exit code is 2 with one error line and a JSON line (they were SystemExit's bare text, exit 1, or a
    traceback); returns the JSON line's error."""
    code = main(stage, ["--config", str(REPO / "jobs" / "configs" / f"{stage}.yaml"), *args])
    out, err = capsys.readouterr()
    assert code == 2 and len([ln for ln in err.splitlines() if ln.startswith(f"jobs/{stage}.py: error: ")]) == 1
    return str(json.loads(out)["error"])


def test_missing_input_out_or_artifact_and_a_bare_set_are_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert "config is missing input, out" in _error_of("templatize", [], capsys)
    assert "--set takes KEY=VALUE, got 'input'" in _error_of("templatize", ["--set", "input"], capsys)
    # the score config names no source: the artifact's is read (it forced BETH on every trace)
    msg = _error_of("score", ["--set", "input=/x", "--set", "out=/tmp/never-written"], capsys)
    assert "score.artifact is required" in msg and "--set score.artifact=DIR" in msg


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


def test_embed_job_reads_a_raw_trace_and_refuses_gpus_the_cluster_lacks(
    ray_cluster: None, shared_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The shipped embed config asks a GPU per actor: on a CPU-only cluster the job started, it waited for ever
    ("no encoder chunk finished in 120 s", every 2 minutes); and it ignored ingest.source ("pass --source")."""
    import ray

    if ray.cluster_resources().get("GPU", 0):
        pytest.skip("this cluster has a GPU")
    sample = shared_data / "beth" / "head_samples_BethSecure" / "labelled_training_data.csv"
    args = ["--set", f"input={sample}", "--set", "ingest.source=beth", "--set", "embed.model=minilm",
            "--set", f"out={tmp_path / 'e'}", "--set", "embed.dtype=auto"]
    msg = _error_of("embed", args, capsys)
    assert "embed.gpus_per_actor asks 1 GPU(s) but the local Ray cluster aptray started has 0" in msg
    assert "set embed.gpus_per_actor=0" in msg
    cpu = ["--set", "embed.gpus_per_actor=0", "--set", "embed.actors=1", "--set", "embed.cpus_per_actor=0.5"]
    assert main("embed", ["--config", str(REPO / "jobs" / "configs" / "embed.yaml"), *args, *cpu]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["rows"] == 100 and result["lines"]["record"] == 100
