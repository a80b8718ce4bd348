"""The ADAPT reader on real data (counts of ../shared/data/README.md), garbage input, the All join and S3."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from aptray.config import AptrayConfig, Aspect, IngestConfig, Source
from aptray.schema import EVENT_SCHEMA

pytestmark = [pytest.mark.data, pytest.mark.timeout(300)]

# ../shared/data/README.md, table "Rows / attributes / malicious": (folder, aspect, processes, malicious).
README_COUNTS: list[tuple[str, str, int, int]] = [
    ("bovia/5dir", "Event", 2677, 14),
    ("bovia/5dir", "Exec", 2643, 14),
    ("bovia/5dir", "Netflow", 61, 3),
    ("bovia/5dir", "Parent", 2352, 14),
    ("bovia/cadets", "Event", 23225, 18),
    ("bovia/cadets", "Netflow", 12, 1),
    ("bovia/cadets", "Parent", 23069, 18),
    ("bovia/clearscope", "All", 69, 4),
    ("bovia/clearscope", "Event", 69, 4),
    ("bovia/clearscope", "Exec", 69, 4),
    ("bovia/clearscope", "Netflow", 4, 1),
    ("bovia/trace", "Exec", 16193, 28),
    ("bovia/trace", "Netflow", 84, 22),
    ("bovia/trace", "Parent", 9671, 27),
    ("pandex/cadets", "Netflow", 31, 3),
    ("pandex/clearscope", "All", 102, 9),
    ("pandex/clearscope", "Event", 102, 9),
    ("pandex/clearscope", "Exec", 102, 9),
    ("pandex/clearscope", "Netflow", 8, 5),
    ("pandex/trace", "Netflow", 3125, 20),
]
CTX = ["ctx_events", "ctx_execs", "ctx_parents", "ctx_netflows"]


def _adapt_dir(shared_data: Path, folder: str) -> Path:
    path = shared_data / "darpa_tc_adapt" / folder
    if not path.is_dir():
        pytest.skip(f"{path} is absent")
    return path


def _read(uri: Any, aspect: str | None = None, **kw: Any) -> pa.Table:
    import ray

    from aptray.io import adapt

    cfg = IngestConfig(source=Source.ADAPT, aspect=Aspect(aspect) if aspect else None, **kw)
    refs = adapt.read(uri, cfg).to_arrow_refs()
    tables = [t for t in ray.get(refs) if t.num_rows]
    if not tables:
        return EVENT_SCHEMA.empty_table()
    return pa.concat_tables([t.select(EVENT_SCHEMA.names).cast(EVENT_SCHEMA) for t in tables])


def _by_id(table: pa.Table) -> dict[str, tuple[Any, ...]]:
    """record_id -> (attribute set per ctx column (None when null), malicious)."""
    out: dict[str, tuple[Any, ...]] = {}
    for r in table.select(["record_id", *CTX, "malicious"]).to_pylist():
        out[r["record_id"]] = (*(None if r[c] is None else frozenset(r[c]) for c in CTX), r["malicious"])
    return out


@pytest.mark.parametrize(("folder", "aspect", "rows", "malicious"), README_COUNTS,
                         ids=[f"{f}-{a}" for f, a, _, _ in README_COUNTS])
def test_counts_match_readme(shared_data: Path, ray_cluster: None, folder: str, aspect: str, rows: int,
                             malicious: int) -> None:
    table = _read(str(_adapt_dir(shared_data, folder)), aspect)
    assert table.num_rows == rows
    assert pc.sum(table.column("malicious")).as_py() == malicious
    assert table.column("quarantine_reason").null_count == table.num_rows
    assert len(set(table.column("record_id").to_pylist())) == rows
    assert set(table.column("aspect").to_pylist()) == {aspect}
    assert set(table.column("source_file").to_pylist()) == {f"Process{aspect}.csv"}
    if aspect != "All":
        col = f"ctx_{aspect.lower()}s"
        assert table.column(col).null_count == 0
        assert all(table.column(c).null_count == rows for c in CTX if c != col)


def test_original_attribute_names_kept(shared_data: Path, ray_cluster: None) -> None:
    folder = _adapt_dir(shared_data, "bovia/cadets")
    table = _read(str(folder / "ProcessEvent.csv"))
    header, first = ((folder / "ProcessEvent.csv").read_text().splitlines()[i].split(",") for i in (0, 1))
    uuid = first[0]
    expected = [name for name, v in zip(header[1:], first[1:], strict=True) if v == "1"]
    row = table.filter(pc.equal(table.column("record_id"), f"adapt:{uuid}")).to_pylist()
    assert len(row) == 1
    assert row[0]["ctx_events"] == expected and row[0]["line"] == 2
    assert all(n.startswith("EVENT_") for n in expected)


@pytest.mark.parametrize("scenario", ["bovia", "pandex"])
def test_all_built_by_join_equals_process_all(shared_data: Path, ray_cluster: None, tmp_path: Path,
                                              scenario: str) -> None:
    """Without ProcessAll.csv the All context is the union of the single aspects; with it, the same sets.

    Found on the clearscope folders: ProcessAll.csv holds exactly the union of the processes of the
    single-aspect files, its X0_/X1_/X3_ columns are the Event/Exec/Netflow attributes, and a process
    absent from ProcessNetflow.csv has all X3_ columns 0 (an empty list, not a missing aspect).
    """
    src = _adapt_dir(shared_data, f"{scenario}/clearscope")
    for f in src.iterdir():
        if f.name != "ProcessAll.csv":
            shutil.copy(f, tmp_path / f.name)
    built = _read(str(tmp_path))
    from_file = _read(str(src))
    singles = set()
    for aspect in ("Event", "Exec", "Netflow"):
        singles |= set(_read(str(src), aspect).column("record_id").to_pylist())
    assert set(built.column("record_id").to_pylist()) == singles
    assert _by_id(built) == _by_id(from_file)
    assert set(built.column("aspect").to_pylist()) == {"All"}
    assert built.column("ctx_parents").null_count == built.num_rows  # no Parent file in these folders


def test_join_on_cadets_is_the_union(shared_data: Path, ray_cluster: None) -> None:
    folder = str(_adapt_dir(shared_data, "bovia/cadets"))
    built = _by_id(_read(folder))  # no ProcessAll.csv here: Event, Netflow and Parent are joined
    parts = {a: _by_id(_read(folder, a)) for a in ("Event", "Netflow", "Parent")}
    assert set(built) == set().union(*parts.values())
    col = {"Event": 0, "Netflow": 3, "Parent": 2}
    for aspect, rows in parts.items():
        for rid, value in rows.items():
            assert built[rid][col[aspect]] == value[col[aspect]]
    assert sum(v[-1] for v in built.values()) == 18


def _write_garbage(folder: Path) -> tuple[int, dict[int, str]]:
    """A ProcessEvent.csv with good and bad rows; returns (data rows, line -> expected reason prefix)."""
    header = b"Object_ID,EVENT_READ,EVENT_SENDTO,EVENT_WRITE\n"
    lines: list[bytes] = [
        b"aaaaaaaa-0000-0000-0000-000000000001,1,0,1",      # 2 good
        b"aaaaaaaa-0000-0000-0000-000000000002,1,0",        # 3 wrong column count
        b"aaaaaaaa-0000-0000-0000-000000000003,1,2,0",      # 4 value other than 0/1
        b",1,1,1",                                          # 5 missing UUID
        b"aaaaaaaa-0000-0000-0000-00000000000\xff,0,0,1",   # 6 non-UTF-8 in the UUID
        b"aaaaaaaa-0000-0000-0000-000000000004,1,\xe9,1",   # 7 non-UTF-8 in a value
        b"aaaaaaaa-0000-0000-0000-000000000005, 1 ,0,\"1\"",  # 8 good (spaces, quotes)
        b"aaaaaaaa-0000-0000-0000-000000000001,0,0,1",      # 9 duplicate UUID
        b"garbage \x00\x01 line without commas",            # 10 wrong column count
        b"aaaaaaaa-0000-0000-0000-000000000006,1,yes,0",    # 11 value other than 0/1
        b"aaaaaaaa-0000-0000-0000-000000000007,0,0,0,0,0",  # 12 wrong column count
        b"AAAAAAAA-0000-0000-0000-000000000008,0,1,0",      # 13 good, malicious (case differs)
    ]
    (folder / "ProcessEvent.csv").write_bytes(header + b"\n".join(lines) + b"\n\n")
    (folder / "sys_scn_attack.csv").write_text('"uuid","label"\n"aaaaaaaa-0000-0000-0000-000000000008",'
                                               '"AdmSubject::Node"\n')
    reasons = {3: "wrong column count", 4: "value other than 0/1", 5: "missing UUID", 6: "non-UTF-8",
               7: "non-UTF-8", 9: "duplicate UUID", 10: "wrong column count", 11: "value other than 0/1",
               12: "wrong column count"}
    return len(lines), reasons


def test_garbage_loses_no_row(tmp_path: Path, ray_cluster: None) -> None:
    n, reasons = _write_garbage(tmp_path)
    table = _read(str(tmp_path), "Event", block_rows=4)
    bad = table.filter(pc.is_valid(table.column("quarantine_reason")))
    good = table.filter(pc.is_null(table.column("quarantine_reason")))
    assert good.num_rows + bad.num_rows == n
    got = {r["line"]: r["quarantine_reason"] for r in bad.to_pylist()}
    assert sorted(got) == sorted(reasons)
    for line, prefix in reasons.items():
        assert got[line].startswith(prefix), (line, got[line])
    assert all(r for r in bad.column("raw").to_pylist())
    rows = {r["line"]: r for r in good.to_pylist()}
    assert sorted(rows) == [2, 8, 13]
    assert rows[2]["ctx_events"] == ["EVENT_READ", "EVENT_WRITE"]
    assert rows[8]["ctx_events"] == ["EVENT_READ", "EVENT_WRITE"]
    assert [rows[k]["malicious"] for k in (2, 8, 13)] == [0, 0, 1]


def test_garbage_through_the_job(tmp_path: Path, ray_cluster: None) -> None:
    from aptray.io.quarantine import QuarantinedRowError
    from aptray.templating.job import run_templatize

    data = tmp_path / "in"
    data.mkdir()
    n, reasons = _write_garbage(data)
    cfg = AptrayConfig(ingest=IngestConfig(source=Source.ADAPT, aspect=Aspect.EVENT))
    counts = run_templatize("adapt", str(data), str(tmp_path / "out"), cfg)
    assert counts["rows_read"] == n
    assert counts["quarantined"] == len(reasons)
    assert counts["rows"] == n - len(reasons)
    assert counts["malicious"] == 1
    strict = AptrayConfig(ingest=IngestConfig(source=Source.ADAPT, aspect=Aspect.EVENT, strict=True))
    with pytest.raises(Exception) as info:
        run_templatize("adapt", str(data), str(tmp_path / "strict"), strict)
    assert "strict" in str(info.value) or isinstance(info.value, QuarantinedRowError)


def test_one_context_file_keeps_its_folders_ground_truth(shared_data: Path, ray_cluster: None) -> None:
    """Given one Process<Aspect>.csv, alone or as a batch job's group of files (a Selection holding it only, as
    ``aptray score`` reads), the folder's ground-truth CSV still labels its rows."""
    import pyarrow.fs as pafs

    from aptray.io.fs import InputFile, Selection

    folder = _adapt_dir(shared_data, "bovia/trace")
    path = str(folder / "ProcessParent.csv")
    alone = _read(path)
    group = Selection(pafs.LocalFileSystem(), (InputFile(path, "ProcessParent.csv", 0),), path)
    grouped = _read(group, "Parent")
    for table in (alone, grouped):
        assert (table.num_rows, pc.sum(table.column("malicious")).as_py()) == (9671, 27)


def test_a_file_named_otherwise_reads_as_the_aspect_asked_and_no_other(shared_data: Path, ray_cluster: None,
                                                                        tmp_path: Path) -> None:
    """A context file whose name does not tell its aspect reads as the aspect asked for, through a job as directly
    (the job's one-file group failed with "no ProcessEvent.csv", after ``aptray run`` had trained on it), with its
    folder's ground truth. Asked as another aspect, the read stops naming the aspect its header is (before,
    ProcessEvent columns read as All became "no recorded activity" for every process); with ``check_format`` off
    every line is quarantined with that reason, none lost."""
    from aptray.errors import WrongSourceError, user_error
    from aptray.templating.job import run_templatize

    folder = _adapt_dir(shared_data, "bovia/clearscope")
    path = tmp_path / "host1_events.csv"
    shutil.copy(folder / "ProcessEvent.csv", path)
    shutil.copy(folder / "clearscope_bovia_lobiwapp.csv", tmp_path)
    cfg = AptrayConfig(ingest=IngestConfig(source=Source.ADAPT, aspect=Aspect.EVENT))
    counts = run_templatize("adapt", str(path), str(tmp_path / "event"), cfg)
    assert (counts["rows"], counts["malicious"], counts["quarantined"]) == (69, 4, 0)
    cfg.ingest.aspect = Aspect.ALL
    with pytest.raises(Exception) as info:
        run_templatize("adapt", str(path), str(tmp_path / "all"), cfg)
    err = user_error(info.value)
    assert isinstance(err, WrongSourceError), info.value
    assert str(err).startswith("host1_events.csv: its columns (EVENT_READ, EVENT_OPEN, ...) are those of "
                               "ProcessEvent.csv (EVENT_* types), not of ProcessAll.csv: read it as Event")
    table = _read(str(path), "All", check_format=False)
    assert table.num_rows == 69 and table.column("quarantine_reason").null_count == 0
    assert table.column("quarantine_reason")[0].as_py().startswith("header: its columns (EVENT_READ")


def test_missing_aspect_file(shared_data: Path, ray_cluster: None) -> None:
    from aptray.io import adapt

    with pytest.raises(FileNotFoundError):
        adapt.read(str(_adapt_dir(shared_data, "bovia/cadets")), IngestConfig(source=Source.ADAPT,
                                                                               aspect=Aspect.EXEC))


def _templated(table: pa.Table) -> list[tuple[Any, ...]]:
    from aptray.templating.base import templatize

    good = table.filter(pc.is_null(table.column("quarantine_reason"))).drop_columns(["quarantine_reason", "raw"])
    out = templatize(good)
    cols = ["record_id", "sentence", "malicious", "source_file", "line", *CTX]
    return sorted(tuple(tuple(v) if isinstance(v, list) else v for v in r.values())
                  for r in out.select(cols).to_pylist())


@pytest.mark.parametrize("aspect", ["Event", pytest.param("All", marks=pytest.mark.slow)])
def test_s3_read_equals_local(shared_data: Path, s3_server: str, ray_cluster: None, aspect: str) -> None:
    from tests.conftest import upload_dir

    folder = _adapt_dir(shared_data, "bovia/cadets")
    uri = upload_dir(folder, "adapt-test", "bovia/cadets")
    local = _templated(_read(str(folder), aspect))
    remote = _templated(_read(uri, aspect))
    assert len(local) == 23225
    assert remote == local


def test_templatize_job_done_when(shared_data: Path, ray_cluster: None, tmp_path: Path) -> None:
    """The issue's "Done when": bovia/cadets, aspect Event -> 23,225 rows and 18 malicious."""
    from aptray.templating.job import run_templatize

    folder = _adapt_dir(shared_data, "bovia/cadets")
    cfg = AptrayConfig(ingest=IngestConfig(source=Source.ADAPT, aspect=Aspect.EVENT))
    counts = run_templatize("adapt", str(folder), str(tmp_path / "x"), cfg)
    assert counts["rows"] == 23225
    assert counts["malicious"] == 18
    assert counts["quarantined"] == 0
    assert 1 < counts["distinct_sentences"] < counts["rows"]


def test_one_context_file_is_its_named_aspect(shared_data: Path, ray_cluster: None, tmp_path: Path) -> None:
    """``ProcessParent.csv`` given alone without an aspect is read as Parent (not as a one-aspect All), so its
    sentences embed as plain Parent sentences, and a folder without an aspect is still All."""
    import json

    import pyarrow.dataset as pads

    from aptray.templating.job import effective_aspect, run_templatize

    path = _adapt_dir(shared_data, "bovia/5dir") / "ProcessParent.csv"
    cfg = AptrayConfig(ingest=IngestConfig(source=Source.ADAPT))
    counts = run_templatize("adapt", str(path), str(tmp_path / "t"), cfg)
    assert (counts["rows"], counts["malicious"]) == (2352, 14)
    assert json.loads((tmp_path / "t" / "manifest.json").read_text())["aspect"] == "Parent"
    rows = pads.dataset(str(tmp_path / "t" / "sentences"), format="parquet").to_table(columns=["aspect"])
    assert set(rows.column("aspect").to_pylist()) == {"Parent"}
    assert effective_aspect(Source.ADAPT, None, str(path.parent)) is Aspect.ALL
    assert effective_aspect(Source.ADAPT, Aspect.EXEC, str(path)) is Aspect.EXEC  # an aspect asked for wins
    assert effective_aspect(Source.BETH, None, str(path)) is None  # event sources have no aspect
    # the score job: an ADAPT file given without an aspect (as aptray run passes it) reads as its name says
    from aptray.config import load_config
    from aptray.score import input_format

    given = load_config(None, {"ingest.source": "adapt", "ingest.aspect": None})
    assert input_format(given, {}, str(path)) == (Source.ADAPT, Aspect.PARENT)
    assert input_format(given, {}, str(path.parent)) == (Source.ADAPT, Aspect.ALL)
