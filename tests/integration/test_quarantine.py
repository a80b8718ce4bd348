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
