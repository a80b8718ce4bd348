"""The five process contexts built from raw CDM and auditd data, checked against counts made here from the JSON."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

from aptray.config import IngestConfig
from aptray.io.contexts import aggregate
from aptray.io.labels import normalize_uuid
from aptray.schema import ASPECTS, CONTEXT_COLUMNS


def _cdm20_contexts(shared_data: Path, tmp_path: Path) -> tuple[Any, Any, dict[str, Any], dict[str, set[str]],
                                                               dict[str, set[str]], str]:
    """The CDM20 sample's records, its five contexts from the in-memory plan, and counts made here from the JSON."""
    import pyarrow as pa

    from aptray.io.cdm import join_records, parse
    from aptray.io.engine import LocalEngine
    from aptray.io.files import files_dataset

    src = shared_data / "cdm" / "cadets_cdm20" / "direct_pipe.cdm.json"
    subject_events: dict[str, set[str]] = defaultdict(set)
    subject_execs: dict[str, set[str]] = defaultdict(set)
    for line in src.read_text().splitlines():
        (key, rec), = json.loads(line)["datum"].items()
        if key == "Event" and rec.get("subject"):
            s = normalize_uuid(rec["subject"]["UUID"])
            assert s is not None
            subject_events[s].add(rec["type"])
            subject_execs[s].add(rec["properties"]["map"]["exec"])
    labels = tmp_path / "labels.txt"
    victim = sorted(subject_events)[0]
    labels.write_text(victim + "\n")
    cfg = IngestConfig(source="cdm", labels=str(labels))
    records = files_dataset(str(src), parse, cfg).materialize()
    local = LocalEngine()  # the plan on one in-memory table (a Serve request, a small input's one task)
    table = pa.concat_tables(records.iter_batches(batch_format="pyarrow", batch_size=None))
    ev, sub, _ = join_records(local, table, frozenset({victim}))
    out = {a: {r["record_id"]: r for r in aggregate(local, local.union(ev, sub), a).to_pylist()} for a in ASPECTS}
    return records, victim, out, subject_events, subject_execs, str(labels)


def test_five_contexts_from_cdm20(ray_cluster: None, shared_data: Path, tmp_path: Path) -> None:
    """The one CDM join plan gives the five contexts, and they agree with counts made here from the JSON."""
    _, victim, out, subject_events, subject_execs, _ = _cdm20_contexts(shared_data, tmp_path)
    assert {r["ctx_events"] and tuple(r["ctx_events"]) for r in out["Event"].values()}
    assert {k: set(r["ctx_events"]) for k, r in out["Event"].items()} == dict(subject_events)
    for k, r in out["Exec"].items():
        assert subject_execs[k] <= set(r["ctx_execs"])
    assert out["Event"][victim]["malicious"] == 1
    assert sum(r["malicious"] for r in out["Event"].values()) == 1
    assert out["Parent"], "parents found through ppid"
    assert set(out["All"]) >= set(out["Event"]) | set(out["Parent"])
    for aspect, rows in out.items():
        for r in rows.values():
            assert r["aspect"] == aspect
            cols = list(CONTEXT_COLUMNS.values()) if aspect == "All" else [CONTEXT_COLUMNS[aspect]]
            assert any(r[c] for c in cols)


@pytest.mark.parametrize("aspect", ["Netflow"])
def test_auditd_netflow_context(ray_cluster: None, aspect: str) -> None:
    from aptray.io.auditd import read

    data = Path(__file__).resolve().parent.parent / "data" / "auditd" / "interleaved.log"
    rows = [r for r in read(str(data), IngestConfig(source="auditd", aspect=aspect)).take_all()
            if not r["quarantine_reason"]]
    assert len(rows) == 1
    assert rows[0]["ctx_netflows"] == ["10.1.2.3", "4567"] and rows[0]["exe"] == "/usr/bin/nc"


@pytest.mark.slow  # about 60-110 s: every keyed step of the plan is a Ray Data shuffle
def test_distributed_cdm_join_equals_the_in_memory_one(ray_cluster: None, shared_data: Path, tmp_path: Path) -> None:
    """The same plan hash-partitioned on Ray Data (as inputs above ``embed.join_partitions`` run) gives exactly the
    in-memory contexts."""
    from aptray.io.cdm import join_records
    from aptray.io.engine import RayEngine

    records, victim, out, _, _, _ = _cdm20_contexts(shared_data, tmp_path)
    engine = RayEngine(2)
    events, subjects, _ = join_records(engine, records, frozenset({victim}))
    distributed = {r["record_id"]: r for r in aggregate(engine, events.union(subjects), "All").take_all()}
    assert distributed == out["All"]
