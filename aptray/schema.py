"""The canonical Arrow event schema that every reader produces and every later stage reads.

One row is either a single event (BETH, auditd, CDM) or a whole process (ADAPT process contexts and the
process-level aggregations of raw traces). Fields that a source does not have are null; templating includes
only the fields present. Labels (``malicious``, ``sus``) are kept apart from the features: no template and
no detector reads them.

Rows that could not be parsed are not dropped: they carry a non-null ``quarantine_reason`` and the raw text
in ``raw``, and are split off into a quarantine dataset by :mod:`aptray.io.quarantine`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pyarrow as pa

#: Feature columns (what templates may read), in order.
FEATURE_FIELDS: tuple[pa.Field, ...] = (
    pa.field("host", pa.string()),
    pa.field("timestamp", pa.float64()),  # seconds; epoch where the source has one, else source-relative
    pa.field("pid", pa.int64()),
    pa.field("ppid", pa.int64()),
    pa.field("tid", pa.int64()),
    pa.field("uid", pa.int64()),
    pa.field("process_name", pa.string()),
    pa.field("exe", pa.string()),
    pa.field("parent_exe", pa.string()),
    pa.field("action", pa.string()),  # event type or syscall name
    pa.field("object_path", pa.string()),
    pa.field("object_addr", pa.string()),  # ip:port
    pa.field("args", pa.string()),  # JSON text of the arguments, never a Python literal
    pa.field("return_value", pa.int64()),
    # Process-level contexts (ADAPT and per-process aggregations): the attribute names set for the process.
    pa.field("aspect", pa.string()),  # Event | Exec | Parent | Netflow | All, null for single events
    pa.field("ctx_events", pa.list_(pa.string())),
    pa.field("ctx_execs", pa.list_(pa.string())),
    pa.field("ctx_parents", pa.list_(pa.string())),
    pa.field("ctx_netflows", pa.list_(pa.string())),
)

#: Label columns: never features.
LABEL_FIELDS: tuple[pa.Field, ...] = (
    pa.field("malicious", pa.int8()),  # 1 attack, 0 benign, null unknown
    pa.field("sus", pa.int8()),  # BETH's "suspicious" flag
)

#: Lineage columns: where the row came from.
LINEAGE_FIELDS: tuple[pa.Field, ...] = (
    pa.field("record_id", pa.string()),  # stable id: "<source>:<file>:<line>" or the source's own UUID
    pa.field("source", pa.string()),  # adapt | beth | cdm | auditd | synthetic
    pa.field("source_file", pa.string()),  # path relative to the input root (equal for local and s3://)
    pa.field("line", pa.int64()),  # 1-based physical line of the record in its file (header is line 1)
)

#: Source-specific extras (JSON object text) and quarantine bookkeeping.
TAIL_FIELDS: tuple[pa.Field, ...] = (
    pa.field("extras", pa.string()),
    pa.field("quarantine_reason", pa.string()),  # null for good rows
    pa.field("raw", pa.string()),  # raw text of a quarantined row (decoded with replacement)
)

EVENT_SCHEMA: pa.Schema = pa.schema([*LINEAGE_FIELDS, *FEATURE_FIELDS, *LABEL_FIELDS, *TAIL_FIELDS])

#: Columns of the quarantine dataset.
QUARANTINE_SCHEMA: pa.Schema = pa.schema(
    [
        pa.field("source", pa.string()),
        pa.field("source_file", pa.string()),
        pa.field("line", pa.int64()),
        pa.field("reason", pa.string()),
        pa.field("raw", pa.string()),
    ]
)

CONTEXT_COLUMNS: dict[str, str] = {
    "Event": "ctx_events",
    "Exec": "ctx_execs",
    "Parent": "ctx_parents",
    "Netflow": "ctx_netflows",
}
ASPECTS: tuple[str, ...] = ("Event", "Exec", "Parent", "Netflow", "All")

#: Largest field we keep; longer values send the row to quarantine ("oversized field").
MAX_FIELD_CHARS = 65_536


def event_table(rows: Sequence[Mapping[str, Any]] | Mapping[str, Sequence[Any]]) -> pa.Table:
    """Build a table in :data:`EVENT_SCHEMA` from row dicts or a column dict; absent columns are null.

    Args:
        rows: a list of row mappings, or a mapping of column name to values.

    Returns:
        A ``pa.Table`` with exactly the canonical columns, in order, cast to their types.
    """
    if isinstance(rows, Mapping):
        columns: Mapping[str, Sequence[Any]] = rows
        n = len(next(iter(columns.values()))) if columns else 0
    else:
        n = len(rows)
        keys = {k for r in rows for k in r}
        columns = {k: [r.get(k) for r in rows] for k in keys}
    unknown = set(columns) - set(EVENT_SCHEMA.names)
    if unknown:
        raise ValueError(f"columns not in the event schema: {sorted(unknown)}")
    arrays = [
        pa.array(columns[f.name], type=f.type) if f.name in columns else pa.nulls(n, type=f.type)
        for f in EVENT_SCHEMA
    ]
    return pa.Table.from_arrays(arrays, schema=EVENT_SCHEMA)


def conform(table: pa.Table) -> pa.Table:
    """Return ``table`` with the canonical columns in order, adding missing ones as nulls and casting.

    Extra columns are an error: source-specific values belong in ``extras``.
    """
    unknown = set(table.column_names) - set(EVENT_SCHEMA.names)
    if unknown:
        raise ValueError(f"columns not in the event schema: {sorted(unknown)}")
    n = table.num_rows
    arrays = [
        table.column(f.name).cast(f.type) if f.name in table.column_names else pa.nulls(n, type=f.type)
        for f in EVENT_SCHEMA
    ]
    return pa.Table.from_arrays(arrays, schema=EVENT_SCHEMA)
