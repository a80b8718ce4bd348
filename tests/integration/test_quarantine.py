"""The quarantine invariant on Ray: rows in = rows kept + rows quarantined, each bad line with its reason."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
import pytest

from aptray.config import AptrayConfig, IngestConfig
from aptray.templating.job import run_templatize
from tests.unit.test_beth import HEADER16, garbage_lines

pytestmark = pytest.mark.timeout(300)


def _write(tmp_path: Path, max_chars: int, copies: int = 3) -> tuple[Path, dict[int, str]]:
    """A BETH file of good and bad lines; returns it and {line number: expected reason prefix}."""
    lines, bad = [HEADER16.encode()], {}
    for _ in range(copies):
        for raw, reason in garbage_lines(max_chars):
            lines.append(raw)
            if reason is not None:
                bad[len(lines)] = reason
    path = tmp_path / "in" / "garbage.csv"
    path.parent.mkdir()
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path, bad


def test_garbage_loses_no_row(ray_cluster: None, tmp_path: Path) -> None:
    cfg = AptrayConfig(ingest=IngestConfig(max_field_chars=1000))
    path, bad = _write(tmp_path, cfg.ingest.max_field_chars)
    records = path.read_bytes().count(b"\n") - 1
    counts = run_templatize("beth", str(path), str(tmp_path / "out"), cfg)
    assert counts["rows"] + counts["quarantined"] == records == counts["rows_read"]
    assert counts["lines"]["record"] + counts["lines"]["quarantined"] == records  # counted while reading
    assert counts["lines"]["lines"] == records + 1 == counts["lines"]["header"] + records
    assert sum(counts["quarantine_reasons"].values()) == len(bad)
    assert counts["quarantined"] == len(bad) and counts["rows"] == records - len(bad)
    quarantine = pq.read_table(tmp_path / "out" / "quarantine").sort_by("line").to_pylist()
    assert [q["line"] for q in quarantine] == sorted(bad)
    for q in quarantine:
        assert q["reason"].startswith(bad[q["line"]]), q
        assert q["source_file"] == "garbage.csv" and q["source"] == "beth" and q["raw"]
    kept = pq.read_table(tmp_path / "out" / "sentences")
    assert kept.num_rows == counts["rows"] and kept.column("sentence").null_count == 0
    assert not set(kept.column("line").to_pylist()) & set(bad)


def test_strict_mode_stops(ray_cluster: None, tmp_path: Path) -> None:
    cfg = AptrayConfig(ingest=IngestConfig(max_field_chars=1000, strict=True))
    path, bad = _write(tmp_path, cfg.ingest.max_field_chars, copies=1)
    with pytest.raises(Exception, match="strict mode") as info:
        run_templatize("beth", str(path), str(tmp_path / "out"), cfg)
    assert f"line {min(bad)}" in str(info.value)


@pytest.mark.parametrize(("source", "name", "content", "lines"), [
    ("beth", "empty.csv", b"", {"lines": 0}),
    ("beth", "header.csv", HEADER16.encode() + b"\n", {"lines": 1, "header": 1}),
    ("cdm", "empty.cdm.json", b"\n\n", {"lines": 2, "blank": 2}),
    ("auditd", "empty.log", b"", {"lines": 0}),
], ids=["beth-empty", "beth-header-only", "cdm-blank", "auditd-empty"])
def test_inputs_that_keep_no_row_complete_typed(ray_cluster: None, tmp_path: Path, source: str, name: str,
                                                content: bytes, lines: dict[str, int]) -> None:
    from aptray.templating.job import SENTENCES_SCHEMA

    path = tmp_path / "in" / name
    path.parent.mkdir()
    path.write_bytes(content)
    counts = run_templatize(source, str(path.parent), str(tmp_path / "out"), AptrayConfig())
    assert (counts["rows"], counts["quarantined"], counts["rows_read"]) == (0, 0, 0)
    expected = {"lines": 0, "record": 0, "quarantined": 0, "blank": 0, "header": 0, "context": 0, "unaccounted": 0}
    assert counts["lines"] == {**expected, **lines}
    kept = pq.read_table(tmp_path / "out" / "sentences")
    assert kept.num_rows == 0 and kept.schema.remove_metadata().equals(SENTENCES_SCHEMA)
