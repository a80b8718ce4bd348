"""CDM reader: UUID styles, record names, joins by UUID (late subject), gz, corrupt lines, real CDM18/CDM20."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from aptray.config import IngestConfig
from aptray.io.cdm import parse_record, seconds
from aptray.io.labels import normalize_uuid, parse_uuids

DATA = Path(__file__).resolve().parent.parent / "data" / "cdm"
CANON = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def test_uuid_styles_normalise_to_one_form() -> None:
    assert normalize_uuid("A75339EC-D9A7-4864-A0A2-991EB8C1168C") == "a75339ec-d9a7-4864-a0a2-991eb8c1168c"
    assert normalize_uuid("636fdc7a709429a9") == "00000000-0000-0000-636f-dc7a709429a9"
    raw = "\u00c0\u00a8z\u0006RT\u0000\u00e4sX\u0000\u0000\u0000\u0000\u0000p"
    assert normalize_uuid(raw) == "c0a87a06-5254-00e4-7358-000000000070"
    assert normalize_uuid(bytes.fromhex("c0a87a06525400e47358000000000070")) == normalize_uuid(raw)
    assert normalize_uuid("") is None


def test_label_files_one_per_line_and_csv() -> None:
    plain = "A75339EC-D9A7-4864-A0A2-991EB8C1168C\n636fdc7a709429a9\n"
    assert parse_uuids(plain) == {"a75339ec-d9a7-4864-a0a2-991eb8c1168c", "00000000-0000-0000-636f-dc7a709429a9"}
    csv_text = "uuid,label\nA75339EC-D9A7-4864-A0A2-991EB8C1168C,subject\n"
    assert parse_uuids(csv_text) == {"a75339ec-d9a7-4864-a0a2-991eb8c1168c"}


def test_short_and_full_record_names_parse_alike() -> None:
    body = {"uuid": "4fba7bdc-11b2-11e8-afe7-44a8421f8dc6", "type": "EVENT_READ", "subject": {"UUID": "x" * 16},
            "timestampNanos": 1518632667921553570, "properties": {"map": {"exec": "bash"}}}
    short = parse_record({"datum": {"Event": body}}, None)
    full = parse_record({"datum": {"com.bbn.tc.schema.avro.cdm20.Event": body}}, None)
    assert short == full and short[0] == "Event"
    assert short[1] is not None and short[1]["exe"] == "bash" and short[1]["action"] == "EVENT_READ"
    assert parse_record({"datum": {"SomethingNew": {"uuid": "1"}}}, None) == ("SomethingNew", None)
    with pytest.raises(ValueError):
        parse_record({"nodatum": 1}, None)


def test_timestamp_units() -> None:
    assert seconds(1523627150493000000) == pytest.approx(1523627150.493)
    assert seconds(1515799688913542) == pytest.approx(1515799688.913542)  # THEIA writes microseconds
    assert seconds({"long": 0}) is None


def _rows(uri: str, **kw: Any) -> list[dict[str, Any]]:
    from aptray.io.cdm import read

    return read(uri, IngestConfig(source="cdm", **kw)).take_all()


@pytest.mark.parametrize("name", ["late_subject.json", "late_subject.json.gz"])
def test_late_subject_is_joined_and_corrupt_line_quarantined(ray_cluster: None, name: str) -> None:
    rows = _rows(str(DATA / name))
    good = [r for r in rows if r["quarantine_reason"] is None]
    bad = [r for r in rows if r["quarantine_reason"] is not None]
    assert len(bad) == 1 and bad[0]["line"] == 4 and "invalid JSON" in bad[0]["quarantine_reason"]
    assert '"broken' in bad[0]["raw"]
    assert len(good) == 3  # the unknown record type is counted, not fatal, not a row
    by_action = {r["action"]: r for r in good}
    read_ev = by_action["EVENT_READ"]
    # the subject and the file come after the events in the stream and are still joined
    assert read_ev["pid"] == 4242 and read_ev["ppid"] == 100 and read_ev["uid"] == 1001
    assert read_ev["exe"] == "/usr/bin/wget" and read_ev["parent_exe"] == "/bin/bash"
    assert read_ev["object_path"] == "/etc/passwd"
    assert by_action["EVENT_CONNECT"]["object_addr"] == "203.0.113.9:443"
    assert read_ev["record_id"] == "11111111-0000-0000-0000-000000000001"
    assert read_ev["timestamp"] == pytest.approx(1523627150.493)


def test_labels_mark_events(ray_cluster: None, tmp_path: Path) -> None:
    labels = tmp_path / "labels.csv"
    labels.write_text("uuid,label\n11111111-0000-0000-0000-000000000002,event\n")
    rows = [r for r in _rows(str(DATA / "late_subject.json"), labels=str(labels)) if r["quarantine_reason"] is None]
    assert {r["action"]: r["malicious"] for r in rows} == {"EVENT_READ": 0, "EVENT_CONNECT": 1, "EVENT_EXECUTE": 0}


def _independent(files: list[Path]) -> tuple[set[str], dict[str, int]]:
    """Event UUIDs (normalised here by hand) and lines per file, straight from the JSON."""
    uuids: set[str] = set()
    subjects_present: dict[str, int] = {}
    for f in files:
        for line in f.read_text(encoding="utf-8").split("\n"):  # not splitlines(): raw UUIDs hold \x1c etc.
            if not line.strip():
                continue
            datum = json.loads(line)["datum"]
            (key, rec), = datum.items()
            if key.rsplit(".", 1)[-1] != "Event":
                continue
            u = rec["uuid"]
            if len(u) == 16 and not re.fullmatch(r"[0-9a-fA-F]{16}", u):
                h = u.encode("latin-1").hex()
            else:
                h = u.replace("-", "").lower().rjust(32, "0")
            uuids.add(f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}")
        subjects_present[f.name] = 1
    return uuids, subjects_present


def test_real_cdm18_cdm20_all_uuid_and_name_styles(ray_cluster: None, shared_data: Path) -> None:
    cdm = shared_data / "cdm"
    picks = [cdm / "official_e3_doc_snippets" / "fivedirections_e3_official-3_6lines.jsonl",  # full names, dashed
             cdm / "official_e3_doc_snippets" / "cadets_e3_official-2_6lines.jsonl",
             cdm / "spade_trace_cdm18" / "accept.bin.json",  # 16 hex digits
             cdm / "spade_trace_cdm18" / "udp-server.bin.json",
             cdm / "theia_cdm18" / "trace.json",  # raw 16-byte strings
             cdm / "cadets_cdm18" / "cp.cdm.json",  # short names, CDM18
             cdm / "cadets_cdm20" / "listdir.cdm.json"]  # short names, CDM20
    import shutil
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        for p in picks:
            shutil.copy(p, Path(tmp) / f"{p.parent.name}__{p.name}")
        rows = _rows(tmp)
    expected, _ = _independent(picks)
    assert not [r for r in rows if r["quarantine_reason"]]
    got = [r["record_id"] for r in rows]
    assert len(got) == len(expected) and set(got) == expected
    assert all(CANON.match(u) for u in got)
    assert all(r["action"].startswith("EVENT_") and r["source"] == "cdm" for r in rows)
    by_file: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        by_file.setdefault(r["source_file"].split("__")[0], []).append(r)
    # every producer's events found their subject: pid and an executable for (nearly) all of them
    for producer in ("spade_trace_cdm18", "cadets_cdm18", "cadets_cdm20"):
        evs = by_file[producer]
        assert sum(r["pid"] is not None for r in evs) / len(evs) > 0.95, producer
        assert sum(r["exe"] is not None for r in evs) / len(evs) > 0.95, producer
    theia = by_file["theia_cdm18"]
    assert sum(r["pid"] is not None for r in theia) / len(theia) > 0.9
    assert any(r["object_path"] for r in theia) and any(r["parent_exe"] for r in theia + by_file["spade_trace_cdm18"])
    assert any(r["object_addr"] for r in by_file["spade_trace_cdm18"])
