"""Splitting bad rows off into a quarantine dataset, so that rows in = rows kept + rows quarantined.

Readers flag a bad row with ``quarantine_reason`` and keep its raw text. :class:`QuarantineSplit` is a
``map_batches`` UDF that writes the flagged rows of each batch to ``<dir>/part-<digest>.parquet`` and passes
the good rows on; the file name is a digest of the rows it holds, so a retried task rewrites the same file
instead of duplicating it.
"""

from __future__ import annotations

import hashlib
import logging
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from aptray.io.fs import join, parquet_rows, resolve
from aptray.schema import QUARANTINE_SCHEMA

if TYPE_CHECKING:
    import pyarrow.fs as pafs

log = logging.getLogger(__name__)


class QuarantinedRowError(ValueError):
    """Raised in strict mode at the first bad row."""


def split(table: pa.Table) -> tuple[pa.Table, pa.Table]:
    """Return ``(good rows, quarantined rows in QUARANTINE_SCHEMA)``."""
    bad_mask = pc.is_valid(table.column("quarantine_reason"))
    good = table.filter(pc.invert(bad_mask))
    bad = table.filter(bad_mask)
    quarantined = pa.table(
        {
            "source": bad.column("source"),
            "source_file": bad.column("source_file"),
            "line": bad.column("line"),
            "reason": bad.column("quarantine_reason"),
            "raw": bad.column("raw"),
        },
        schema=QUARANTINE_SCHEMA,
    )
    return good, quarantined


class QuarantineSplit:
    """``map_batches`` UDF: writes flagged rows to the quarantine directory, returns the good ones.

    Args:
        out: quarantine directory, local or ``s3://``.
        strict: raise :class:`QuarantinedRowError` at the first bad row instead.
    """

    def __init__(self, out: str | None, strict: bool = False) -> None:
        self.out = out
        self.strict = strict
        self._fs: pafs.FileSystem | None = None
        self._dir = ""

    def __call__(self, batch: pa.Table) -> pa.Table:
        good, bad = split(batch)
        if bad.num_rows:
            first = bad.slice(0, 1).to_pylist()[0]
            if self.strict:
                raise QuarantinedRowError(
                    f"{first['source_file']} line {first['line']}: {first['reason']} (strict mode)"
                )
            if self.out is None:
                raise QuarantinedRowError("bad rows found but no quarantine directory was given")
            if self._fs is None:
                self._fs, self._dir = resolve(self.out)
                self._fs.create_dir(self._dir, recursive=True)
            digest = hashlib.sha256()
            for f, line in zip(bad.column("source_file").to_pylist(), bad.column("line").to_pylist(), strict=True):
                digest.update(f"{f}\0{line}\n".encode())
            path = join(self._dir, f"part-{digest.hexdigest()[:24]}.parquet")
            pq.write_table(bad, path, filesystem=self._fs)
            log.warning("quarantined %d row(s), first: %s line %s: %s", bad.num_rows, first["source_file"],
                        first["line"], first["reason"])
        return good


def count_rows(uri: str) -> int:
    """Rows in all Parquet files under ``uri`` (0 when it does not exist), from footers only."""
    import pyarrow.fs as pafs

    fs, path = resolve(uri)
    info = fs.get_file_info(path)
    if info.type == pafs.FileType.NotFound:
        return 0
    total = 0
    for sub in fs.get_file_info(pafs.FileSelector(path, recursive=True)):
        if sub.type == pafs.FileType.File and sub.path.endswith(".parquet"):
            total += parquet_rows(fs, sub.path)
    return total


def reason_kind(reason: str, limit: int = 80) -> str:
    """A reason's kind: its text up to the first ``": "`` outside brackets ("bad line: 'x'" -> "bad line"), the
    whole reason where that would cut a bracket open ("not a CDM datum (expected {'datum': ...})")."""
    depth = 0
    for i, ch in enumerate(reason):
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth = max(0, depth - 1)
        elif ch == ":" and depth == 0 and reason[i + 1 : i + 2] == " ":
            reason = reason[:i]
            break
    return reason if len(reason) <= limit else reason[: limit - 3] + "..."


def quarantine_reasons(uri: str, top: int = 10) -> dict[str, int]:
    """The most frequent kinds of quarantine reason under ``uri`` (:func:`reason_kind`), counted."""
    import pyarrow.dataset as pads
    import pyarrow.fs as pafs

    fs, path = resolve(uri)
    if fs.get_file_info(path).type == pafs.FileType.NotFound:
        return {}
    kinds: dict[str, int] = {}
    for batch in pads.dataset(path, filesystem=fs, format="parquet").to_batches(columns=["reason"]):
        for reason in batch.column("reason").to_pylist():
            kind = reason_kind(str(reason))
            kinds[kind] = kinds.get(kind, 0) + 1
    return dict(sorted(kinds.items(), key=lambda kv: -kv[1])[:top])
