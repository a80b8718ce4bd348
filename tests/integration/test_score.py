"""The batch score job end to end on a real local Ray cluster: accounting, resume, no duplicates, S3."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.dataset as pads
import pytest

from aptray.config import AptrayConfig, Source, load_config
from aptray.io.synthetic import generate

pytestmark = pytest.mark.timeout(900)


def _cfg(**overrides: object) -> AptrayConfig:
    # the module's jobs share one warm encoder actor (the model start is most of a small job's time)
    base = {"ingest.source": "synthetic", "embed.model": "minilm", "embed.cpus_per_actor": 0.5,
            "embed.keep_warm_s": 300, "train.model": "ae", "train.epochs": 3, "train.hidden": [64, 16]}
    base.update(overrides)
    return load_config(None, base)


@pytest.fixture(scope="module")
def artifact(ray_cluster: None, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A small AE trained on benign synthetic events with the real MiniLM model."""
    from aptray.embed.job import run_embed
    from aptray.train import run_train

    root = tmp_path_factory.mktemp("artifact")
    train = generate(root / "synthetic_train.csv", 1500, seed=1, attack_fraction=0.0)["path"]
    cfg = _cfg()
    run_embed(str(train), str(root / "emb"), cfg, source=Source.SYNTHETIC.value)
    run_train(str(root / "emb"), str(root / "model"), cfg)
    return str(root / "model")


def _inputs(root: Path) -> Path:
    """Three synthetic files with attacks, one with injected garbage lines."""
    d = root / "in"
    d.mkdir()
    for i in range(3):
        generate(d / f"synthetic_part{i}.csv", 300, seed=10 + i, attack_fraction=0.05)
    with open(d / "synthetic_part1.csv", "ab") as fh:
        fh.write(b"this,is,not,a,valid,row\n")
        fh.write(b"\xff\xfe broken bytes\n")
    return d


def _data_lines(d: Path) -> int:
    total = 0
    for p in d.glob("*.csv"):
        with open(p, "rb") as fh:
            total += sum(1 for _ in fh) - 1  # header
    return total


def _scores(out: Path) -> list[dict[str, object]]:
    table = pads.dataset(str(out / "scores"), format="parquet").to_table(columns=["record_id", "score", "tier"])
    return sorted(table.to_pylist(), key=lambda r: str(r["record_id"]))


def test_score_accounts_for_every_row_and_resumes(artifact: str, tmp_path: Path) -> None:
    from aptray.score import run_score

    d = _inputs(tmp_path)
    out = tmp_path / "out"
    cfg = _cfg(**{"score.artifact": artifact, "score.group_bytes": 40_000})
    first = run_score(str(d), str(out), cfg)
    assert first["rows_read"] == _data_lines(d)
    assert first["rows_quarantined"] == 2 and sum(first["quarantine_reasons"].values()) == 2  # as the README says
    assert first["rows_read"] == first["rows_scored"] + first["rows_quarantined"]
    lines = first["lines"]  # counted from the input streams, not from the outputs
    assert lines["lines"] == first["rows_read"] + 3 and lines["header"] == 3 and lines["unaccounted"] == 0
    assert lines["record"] + lines["quarantined"] == first["rows_read"]
    assert first["files"] == 3 and first["files_skipped"] == 0
    scores = _scores(out)
    ids = [r["record_id"] for r in scores]
    assert len(ids) == len(set(ids)) == first["rows_scored"]
    assert first["alerts"] > 0

    assert first["attributed_alerts"] == first["alerts"]
    assert {"scores/", "alerts/", "quarantine/"} <= set(first["outputs"])  # alerts and two quarantined rows
    again = run_score(str(d), str(out), cfg)  # everything done: nothing re-scored, nothing duplicated
    assert again["files_skipped"] == 3 and again["attributed_alerts"] == 0  # nor attributed again
    assert {k: again[k] for k in ("rows_read", "rows_scored", "rows_quarantined", "alerts")} == {
        k: first[k] for k in ("rows_read", "rows_scored", "rows_quarantined", "alerts")
    }
    assert _scores(out) == scores
    assert first["files_in_output"] == again["files_in_output"] == 3
    # one of the files given alone, into the same folder: done earlier; the counts are still the folder's three files,
    # and files_in_output says so (the summary said "from 3 of 1 file(s) listed")
    one = run_score(str(sorted(p for p in d.rglob("*") if p.is_file())[0]), str(out), cfg)
    assert (one["files"], one["files_skipped"], one["files_in_output"]) == (1, 1, 3)
    assert one["rows_read"] == first["rows_read"]

    # A crash after writing a group but before its markers: the group folder is an orphan and is redone.
    marker = next((out / "_done").glob("*.json"))
    marker.unlink()
    resumed = run_score(str(d), str(out), cfg)
    assert resumed["files_skipped"] == 2
    assert resumed["rows_scored"] == first["rows_scored"]
    rescored = _scores(out)
    assert [r["record_id"] for r in rescored] == ids
    assert [r["score"] for r in rescored] == pytest.approx([r["score"] for r in scores], rel=1e-4, abs=1e-6)

    # A file scored with another artifact (as a retrained model would have): the output is refused, not mixed.
    from aptray.score import ScoreConflictError

    marker = next((out / "_done").glob("*.json"))
    record = json.loads(marker.read_text())
    assert set(record["artifact_sha256"]) >= {"config.json"}  # every marker names the artifact's files and config
    marker.write_text(json.dumps({**record, "artifact_sha256": {"config.json": "0" * 64}}))
    with pytest.raises(ScoreConflictError, match="made with another detector artifact"):
        run_score(str(d), str(out), cfg)


def test_alerts_carry_sentences_above_threshold(artifact: str, tmp_path: Path) -> None:
    from aptray.artifacts import load_detector
    from aptray.score import run_score

    d = _inputs(tmp_path)
    out = tmp_path / "out"
    run_score(str(d), str(out), _cfg(**{"score.artifact": artifact}))
    alerts = pads.dataset(str(out / "alerts"), format="parquet").to_table().to_pylist()
    threshold = load_detector(artifact).threshold_
    assert alerts and all(a["score"] >= threshold and a["sentence"] for a in alerts)
    # every alert is in exactly one ranked incident, and carries its id
    import pyarrow.parquet as pq

    incidents = pq.read_table(out / "incidents" / "incidents.parquet").to_pylist()
    assert sum(i["alerts"] for i in incidents) == len(alerts) > len(incidents) >= 1
    assert [i["rank"] for i in incidents] == list(range(1, len(incidents) + 1))
    assert [i["top_score"] for i in incidents] == sorted((i["top_score"] for i in incidents), reverse=True)
    members = {r: i["incident_id"] for i in incidents for r in i["record_ids"]}
    assert {a["record_id"]: a["incident_id"] for a in alerts} == members
    for i in incidents:  # one lineage per incident: its alerts share a host
        assert len(i["hosts"]) == 1 and i["summary"].startswith(f"{i['alerts']} alert")
    # each alert names its nearest benign training sentences, most similar first
    assert load_detector(artifact).meta_["explanations"]["nearest_benign"] > 0  # type: ignore[attr-defined]
    for a in alerts:
        assert len(a["nearest_benign"]) == 3 and all(isinstance(t, str) and t for t in a["nearest_benign"])
        sims = a["nearest_similarity"]
        assert sims == sorted(sims, reverse=True) and -1.0 <= sims[-1] <= sims[0] <= 1.0 + 1e-6
    # each alert names its top part: the field of its event whose change lowers its score most (a value field
    # replaced by its most frequent benign value for the event's action, kept in the artifact; the actor and action
    # removed; the variants re-embedded and re-scored; the online test checks the scores against an in-process pass;
    # bench/triage.py measures how often it is the injected field)
    from aptray.triage.attribute import EVENT_PARTS

    kept = load_detector(artifact).meta_["explanations"]["benign_values"]  # type: ignore[attr-defined]
    assert {"object_path", "object_addr", "args"} <= set(kept) and not {"process_name", "action"} & set(kept)

    for a in alerts:
        assert a["attribution_part"] in EVENT_PARTS and a["attribution_value"]
        assert isinstance(a["attribution_score_without"], float)
        # the parts benign training never had beside their condition are named, and the top part is one of them
        unseen = {t.split(":", 1)[0] for t in a["unseen_attributes"]}
        assert unseen <= set(EVENT_PARTS) and (not unseen or a["attribution_part"] in unseen)
        assert a["args"] is None or isinstance(a["args"], str)  # the fields the pass re-templates are kept
    report = (out / "report.md").read_text()  # the top incidents, each alert with its nearest benign sentence
    assert report.startswith("# aptray score report") and incidents[0]["summary"] in report
    import html

    first = max((a for a in alerts if a["incident_id"] == incidents[0]["incident_id"]), key=lambda a: a["score"])
    assert html.escape(first["nearest_benign"][0]) in (out / "report.html").read_text()
    assert f"{first['attribution_part']} = {first['attribution_value']}" in report
    manifest = (out / "manifest.json").read_text()
    assert "synthetic_part0.csv" in manifest and "template_version" in manifest


def test_score_reads_and_writes_s3(artifact: str, tmp_path: Path, s3_server: str,
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    from aptray.score import run_score
    from tests.conftest import make_bucket, upload_dir

    d = _inputs(tmp_path)
    uri = upload_dir(d, "score-in")
    local_out = tmp_path / "local"
    cfg = _cfg(**{"score.artifact": artifact})
    local = run_score(str(d), str(local_out), cfg)
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)  # an s3:// job writes nothing locally (a bucket path once became a local folder)
    from aptray.errors import MissingBucketError

    with pytest.raises(MissingBucketError, match="s3 bucket 'score-out' of s3://score-out/run1 does not exist"):
        run_score(uri, "s3://score-out/run1", cfg)  # a misspelt bucket is refused, not created
    assert "score-out" not in {b["Name"] for b in make_bucket("score-in").list_buckets()["Buckets"]}
    make_bucket("score-out")
    remote = run_score(uri, "s3://score-out/run1", cfg)
    assert list(cwd.iterdir()) == []
    assert {k: remote[k] for k in ("rows_read", "rows_scored", "rows_quarantined", "alerts")} == {
        k: local[k] for k in ("rows_read", "rows_scored", "rows_quarantined", "alerts")
    }
    mirror = tmp_path / "mirror"
    import boto3

    s3 = boto3.client("s3")
    for obj in s3.list_objects_v2(Bucket="score-out", Prefix="run1/scores/")["Contents"]:
        if not obj["Key"].endswith(".parquet"):
            continue
        target = mirror / obj["Key"]
        target.parent.mkdir(parents=True, exist_ok=True)
        s3.download_file("score-out", obj["Key"], str(target))
    remote_scores, local_scores = _scores(mirror / "run1"), _scores(local_out)
    assert [r["record_id"] for r in remote_scores] == [r["record_id"] for r in local_scores]
    assert [r["score"] for r in remote_scores] == pytest.approx([r["score"] for r in local_scores], rel=1e-4)


def test_score_of_inputs_that_keep_no_row(artifact: str, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """An empty file and a header-only CSV complete: typed empty scores, their lines counted, a JSON line, exit 0."""
    import json
    import sys

    from aptray.cli import main
    from aptray.score import run_score, scores_schema

    d = tmp_path / "in"
    d.mkdir()
    (d / "synthetic_empty.csv").write_bytes(b"")
    header = (Path(generate(tmp_path / "g.csv", 2, seed=1)["path"]).read_text().splitlines()[0] + "\n").encode()
    (d / "synthetic_header.csv").write_bytes(header + b"\n\n")
    out = run_score(str(d), str(tmp_path / "out"), _cfg(**{"score.artifact": artifact}))
    assert (out["rows_read"], out["rows_scored"], out["alerts"]) == (0, 0, 0)
    assert out["lines"] == {"lines": 3, "record": 0, "quarantined": 0, "blank": 2, "header": 1, "context": 0,
                            "unaccounted": 0}
    assert pads.dataset(str(tmp_path / "out" / "scores"), format="parquet").schema.remove_metadata().equals(
        scores_schema())
    # the summary names what the folder holds: no alerts/ or quarantine/ here (it named both whatever was written)
    assert "scores/" in out["outputs"] and not {"alerts/", "quarantine/"} & set(out["outputs"])
    assert all((tmp_path / "out" / name).exists() for name in out["outputs"])
    config = tmp_path / "cfg.yaml"
    config.write_text("embed:\n  cpus_per_actor: 0.5\n  actors: 1\n")
    monkeypatch.setattr(sys, "argv", ["aptray", "score", str(d / "synthetic_header.csv"), "--artifact", artifact,
                                      "--out", str(tmp_path / "cli"), "--config", str(config)])
    with pytest.raises(SystemExit) as exit_info:
        main()
    assert not exit_info.value.code
    printed = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("{")]
    assert json.loads(printed[-1])["rows_scored"] == 0 and json.loads(printed[-1])["lines"]["header"] == 1
