"""The join engine's per-group step (:class:`aptray.io.engine.PerGroup`) on one block, as the one-task joins run it."""

from __future__ import annotations

from typing import Any

import pyarrow as pa

from aptray.io import engine
from aptray.io.engine import PerGroup

OUT = pa.schema([pa.field("key", pa.string()), pa.field("rows", pa.int64()), pa.field("total", pa.int64())])


def _summary(rows: list[dict[str, Any]]) -> dict[str, Any] | list[dict[str, Any]] | None:
    key = rows[0]["key"]
    if key == "k7":
        return None  # a group may give no row
    row = {"key": key, "rows": len(rows), "total": sum(r["v"] for r in rows)}
    return [row, dict(row)] if key == "k3" else row  # or several


def test_row_groups_cut_into_chunks_give_what_one_pass_gives(monkeypatch: Any) -> None:
    sizes = [1, 5, 2, 9, 1, 1, 30, 4, 7, 3, 12, 1]  # groups straddle every chunk boundary
    keys = [f"k{i}" for i, n in enumerate(sizes) for _ in range(n)]
    table = pa.table({"key": keys[::-1], "v": list(range(len(keys)))})  # unsorted: PerGroup sorts by key
    monkeypatch.setattr(engine, "ROWS_PER_CHUNK", 1 << 30)
    whole = PerGroup("key", _summary, OUT, rows=True)(table)
    for chunk in (1, 4, 10):
        monkeypatch.setattr(engine, "ROWS_PER_CHUNK", chunk)
        assert PerGroup("key", _summary, OUT, rows=True)(table).equals(whole)
    by_key = {r["key"]: r for r in whole.to_pylist()}
    assert whole.num_rows == len(sizes) and "k7" not in by_key  # k3 twice, k7 none
    assert by_key["k6"]["rows"] == 30 and sum(r["rows"] for r in whole.to_pylist()) == len(keys) - sizes[7] + sizes[3]
