"""Schema, config, file listing and quarantine split: the pieces every stage stands on."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest
from pydantic import ValidationError

from aptray.config import AptrayConfig, Source, load_config
from aptray.io.fs import list_files, resolve
from aptray.io.quarantine import QuarantinedRowError, QuarantineSplit, count_rows, split
from aptray.schema import EVENT_SCHEMA, conform, event_table
from aptray.templating.mask import mask


def test_event_table_fills_absent_columns_with_nulls() -> None:
    t = event_table([{"record_id": "x:1", "pid": 5}, {"record_id": "x:2", "action": "read"}])
    assert t.schema == EVENT_SCHEMA
    assert t.column("pid").to_pylist() == [5, None]
    assert t.column("action").to_pylist() == [None, "read"]


def test_event_table_rejects_unknown_columns() -> None:
    with pytest.raises(ValueError, match="not in the event schema"):
        event_table([{"record_id": "x", "bogus": 1}])


def test_conform_orders_and_casts() -> None:
    t = pa.table({"pid": pa.array([1], pa.int32()), "record_id": ["a"]})
    out = conform(t)
    assert out.schema == EVENT_SCHEMA
    assert out.column("pid").type == pa.int64()


def test_config_overrides_and_validation(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("embed:\n  actors: 3\ningest:\n  source: adapt\n")
    cfg = load_config(path, {"embed.batch_size": 64, "train.epochs": None})
    assert cfg.embed.actors == 3 and cfg.embed.batch_size == 64
    assert cfg.ingest.source is Source.ADAPT
    assert cfg.train.epochs == AptrayConfig().train.epochs
    path.write_text("embed:\n  actorz: 3\n")
    with pytest.raises(ValidationError, match="actorz"):
        load_config(path)


def test_list_files_dir_glob_and_missing(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "x.csv").write_text("1")
    (tmp_path / "b.csv").write_text("22")
    (tmp_path / "c.txt").write_text("3")
    (tmp_path / ".hidden.csv").write_text("4")
    _, files = list_files(str(tmp_path), (".csv",))
    assert [f.rel for f in files] == ["a/x.csv", "b.csv"]
    assert [f.size for f in files] == [1, 2]
    _, files = list_files(str(tmp_path / "*.csv"))
    assert [f.rel for f in files] == ["b.csv"]
    _, files = list_files(str(tmp_path / "c.txt"), (".csv",))  # a single named file is taken as given
    assert [f.rel for f in files] == ["c.txt"]
    with pytest.raises(FileNotFoundError, match="no input files"):
        list_files(str(tmp_path / "nothing-here"))
    with pytest.raises(ValueError, match="unsupported URI scheme"):
        resolve("gs://bucket/x")
    # a glob that matches folders stands for the files under them (it matched nothing: 'no input files found')
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "y.csv").write_text("5")
    _, files = list_files(str(tmp_path / "[ad]"), (".csv",))
    assert [f.rel for f in files] == ["a/x.csv", "d/y.csv"]


@pytest.mark.parametrize("uri", ["s3:/out/run", "S3://out/run", "s3:out", "gs:/b/x", "gs://b/x"])
def test_a_malformed_uri_is_a_user_error_not_a_local_folder(uri: str, tmp_path: Path) -> None:
    """``--out s3:/out/run`` (one slash) wrote to a local folder named 's3:'; ``S3://`` failed as a crash."""
    from aptray.errors import UriError
    from aptray.io.fs import check_output

    with pytest.raises(UriError, match=r"s3://|URI"):
        check_output(uri)
    with pytest.raises(UriError):
        resolve(uri)
    assert resolve(str(tmp_path / "a:b"))[1].endswith("a:b")  # a local name with a colon is still a local path


def _rows() -> pa.Table:
    return event_table(
        [
            {"record_id": "s:f:2", "source": "s", "source_file": "f", "line": 2, "action": "read"},
            {
                "record_id": "s:f:3", "source": "s", "source_file": "f", "line": 3,
                "quarantine_reason": "bad", "raw": "x,y",
            },
        ]
    )


def test_split_and_quarantine_writer(tmp_path: Path) -> None:
    good, bad = split(_rows())
    assert good.column("record_id").to_pylist() == ["s:f:2"]
    assert bad.to_pylist() == [{"source": "s", "source_file": "f", "line": 3, "reason": "bad", "raw": "x,y"}]
    qdir = tmp_path / "q"
    out = QuarantineSplit(str(qdir))(_rows())
    assert out.num_rows == 1
    QuarantineSplit(str(qdir))(_rows())  # a retried batch rewrites the same file
    assert count_rows(str(qdir)) == 1
    with pytest.raises(QuarantinedRowError, match="line 3: bad"):
        QuarantineSplit(str(qdir), strict=True)(_rows())


def test_mask_makes_volatile_tokens_equal() -> None:
    a = pa.array(["Process 1054 (bash) read 0x7ffd1234 from 10.0.0.5:4444 id 123e4567-e89b-12d3-a456-426614174000"])
    b = pa.array(["Process 99 (bash) read 0xdeadbeef from 10.9.8.7:80 id 00000000-0000-0000-0000-000000000001"])
    kinds = ["uuid", "ip", "port", "hex", "pid"]
    assert mask(a, kinds).to_pylist() == mask(b, kinds).to_pylist()
    assert mask(a, kinds).to_pylist()[0] == "Process <pid> (bash) read <hex> from <ip>:<port> id <uuid>"
    with pytest.raises(ValueError, match="unknown mask kinds"):
        mask(a, ["colour"])


def test_rays_cluster_error_messages_stay_off_stdout(capsys: pytest.CaptureFixture[str],
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """Ray's driver prints the cluster's error messages (``(raylet) Task ... failed``) to stdout whatever
    ``log_to_driver`` says; ``aptray serve`` wrote one after its JSON line at every stop. Quiet: not printed;
    verbose: on stderr; a worker's own stdout lines (verbose runs) are left as they were."""
    from ray._private import worker

    from aptray.runtime import keep_errors_off_stdout

    keep_errors_off_stdout()
    keep_errors_off_stdout()  # once only: not wrapped twice
    message = {"lines": ["Task ServeController.graceful_shutdown failed."], "pid": "raylet", "is_err": False}
    monkeypatch.delenv("APTRAY_VERBOSE", raising=False)
    worker.print_to_stdstream(dict(message), ignore_prefix=False)
    assert capsys.readouterr() == ("", "")
    monkeypatch.setenv("APTRAY_VERBOSE", "1")
    worker.print_to_stdstream(dict(message), ignore_prefix=False)
    out, err = capsys.readouterr()
    assert out == "" and "graceful_shutdown failed" in err
    worker.print_to_stdstream({"lines": ["a worker's print"], "pid": 1234, "is_err": False, "ip": "127.0.0.1",
                               "task_name": "t", "actor_name": ""}, ignore_prefix=False)
    assert "a worker's print" in capsys.readouterr().out


def test_s3_clients_never_log_signed_headers(monkeypatch: pytest.MonkeyPatch) -> None:
    """botocore's DEBUG records hold the access key id and signatures (they reached the terminal with -v), and
    aiobotocore printed "Found credentials in environment variables." on every S3 command."""
    import logging

    from aptray.logs import configure, set_verbose

    try:
        for loud, level in ((True, logging.INFO), (False, logging.WARNING)):
            set_verbose(loud)
            configure()
            for name in ("botocore", "aiobotocore"):
                assert logging.getLogger(name).getEffectiveLevel() == level, (loud, name)
    finally:
        set_verbose(False)
        configure()


def test_a_run_reads_x_and_x_slash_as_one_input() -> None:
    """``aptray run s3://raw/x/`` after ``aptray run s3://raw/x`` was refused: 'differs in input'."""
    from aptray.config import AptrayConfig
    from aptray.pipeline import _settings

    cfg = AptrayConfig()
    assert _settings(cfg, "s3://raw/x/", "s3://raw/x/") == _settings(cfg, "s3://raw/x", "s3://raw/x")


def test_a_reason_kind_never_cuts_a_bracket_open() -> None:
    """The quarantine summary cut reasons at their first ': ', leaving "not a CDM datum (expected {'datum'"."""
    from aptray.io.quarantine import reason_kind

    assert reason_kind("wrong column count: 3, expected 16") == "wrong column count"
    cdm = "not a CDM datum (expected {'datum': ...})"
    assert reason_kind(f"{cdm}: got x") == cdm
    assert reason_kind("x" * 100).endswith("...") and len(reason_kind("x" * 100)) == 80
