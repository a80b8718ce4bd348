"""The BETH reader on Ray over the real samples: row and label counts checked independently with ``csv``."""

from __future__ import annotations

import csv
import json
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pytest

from aptray.config import IngestConfig, Source
from aptray.io.sources import read
from aptray.schema import EVENT_SCHEMA
from tests.conftest import upload_dir

pytestmark = [pytest.mark.data, pytest.mark.timeout(300)]


def _collect(uri: str, source: Source = Source.BETH) -> pa.Table:
    import ray

    ds = read(source, uri, IngestConfig(source=source))
    table = pa.concat_tables(ray.get(ds.to_arrow_refs()))
    assert table.schema.equals(EVENT_SCHEMA)
    return table.sort_by("record_id")


def _csv_counts(path: Path) -> dict[str, int]:
    with open(path, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    return {"rows": len(rows), "sus": sum(r["sus"] == "1" for r in rows), "evil": sum(r["evil"] == "1" for r in rows)}


def _counts(table: pa.Table) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    for f, sus, evil in zip(*(table.column(c).to_pylist() for c in ("source_file", "sus", "malicious")), strict=True):
        c = out.setdefault(f, {"rows": 0, "sus": 0, "evil": 0})
        c["rows"] += 1
        c["sus"] += sus or 0
        c["evil"] += evil or 0
    return out


def test_every_head_sample(ray_cluster: None, shared_data: Path) -> None:
    folder = shared_data / "beth" / "head_samples_BethSecure"
    table = _collect(str(folder))
    assert table.column("quarantine_reason").null_count == table.num_rows
    expected = {p.name: _csv_counts(p) for p in sorted(folder.glob("*.csv"))}
    assert len(expected) == 10 and all(c["rows"] == 100 for c in expected.values())
    assert _counts(table) == expected
    assert set(table.column("source").to_pylist()) == {"beth"}
    by_file = {f: table.filter(pa.compute.equal(table.column("source_file"), f)) for f in expected}
    dns = by_file["labelled_2021may-ip-10-100-1-95-dns.csv"]
    assert set(dns.column("action").to_pylist()) == {"dns-query", "dns-answer"}
    host13 = by_file["labelled_2021may-ubuntu.csv"]
    assert host13.column("tid").null_count == 100 and host13.column("pid").null_count == 0
    train = by_file["labelled_training_data.csv"]
    assert train.column("tid").null_count == 0 and train.column("action").null_count == 0


def test_starai_subset_keeps_model_columns_out_of_features(ray_cluster: None, shared_data: Path) -> None:
    path = shared_data / "beth" / "testing_subset_STARAI" / "new_test_results.csv"
    table = _collect(str(path))
    assert _counts(table) == {"new_test_results.csv": _csv_counts(path)}
    assert table.num_rows == 6491 and table.column("quarantine_reason").null_count == 6491
    extras = [json.loads(e) for e in table.column("extras").to_pylist()]
    assert all({"sequence_index", "reconstruction_error", "priority"} <= e.keys() for e in extras)
    with open(path, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    by_line = dict(zip(table.column("line").to_pylist(), extras, strict=True))
    assert all(by_line[i + 2]["priority"] == r["priority"] for i, r in enumerate(rows))
    addrs = Counter(a for a in table.column("object_addr").to_pylist() if a)
    assert sum(addrs.values()) == sum("'sin_addr'" in r["args"] for r in rows)
    unix = sum("'sun_path': '/dev/log'" in r["args"] for r in rows)
    assert unix and table.column("object_path").to_pylist().count("/dev/log") == unix


def test_s3_read_equals_local(ray_cluster: None, shared_data: Path) -> None:
    folder = shared_data / "beth" / "head_samples_BethSecure"
    uri = upload_dir(folder, "beth-samples", "head")
    assert _collect(uri).equals(_collect(str(folder)))


def test_synthetic_source(ray_cluster: None, tmp_path: Path) -> None:
    from aptray.io.synthetic import generate

    stats = generate(tmp_path / "run.csv", 500, seed=1, attack_fraction=0.05)
    table = _collect(str(tmp_path), Source.SYNTHETIC)
    assert set(table.column("source").to_pylist()) == {"synthetic"}
    assert table.num_rows == 500 and table.column("malicious").to_pylist().count(1) == stats["evil"]
