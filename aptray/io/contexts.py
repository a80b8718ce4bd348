"""Per-process provenance contexts (Event, Exec, Parent, Netflow, All) aggregated from single events.

Raw-trace readers (CDM, auditd) produce one row per event in :data:`aptray.schema.EVENT_SCHEMA` plus a
``process_uuid`` column naming the process that performed it (and one row per process with ``action``
null, carrying what is known of the process itself). :func:`aggregate` groups them by process on an engine
(a Ray Data hash partitioning, or one request's table) and emits one row per process in the same form as the
ADAPT reader: ``aspect`` set, ``record_id`` = the process UUID, and the sorted, distinct attribute names in
``ctx_events``, ``ctx_execs``, ``ctx_parents`` and ``ctx_netflows`` (remote IPs and ports as separate strings).
"""

from __future__ import annotations

import logging
from typing import Any

import pyarrow as pa

from aptray.io.engine import Engine, T, per_group
from aptray.schema import CONTEXT_COLUMNS, EVENT_SCHEMA, event_table

log = logging.getLogger(__name__)

#: The column naming the process of an event row (internal to the raw readers).
PROCESS_KEY = "process_uuid"

#: Actions whose object is the executable the process now runs.
EXEC_ACTIONS = frozenset({"EVENT_EXECUTE", "execve", "execveat"})


def split_endpoint(addr: str) -> tuple[str, str | None]:
    """Split ``ip:port`` or ``[v6]:port`` into ``(ip, port)``; a bare address gives ``(addr, None)``."""
    if addr.startswith("["):
        host, _, rest = addr[1:].partition("]")
        return host, rest[1:] if rest.startswith(":") and rest[1:] else None
    if addr.count(":") == 1:
        host, _, port = addr.partition(":")
        return host, port or None
    return addr, None


def _distinct(values: list[Any]) -> list[str]:
    return sorted({str(v) for v in values if v not in (None, "")})


def process_row(rows: pa.Table, aspect: str) -> dict[str, Any] | None:
    """Aggregate the rows of one process into its context row, or None when the aspect is empty for it.

    Args:
        rows: every row of one process (events and the process's own row), with ``process_uuid``.
        aspect: Event, Exec, Parent, Netflow or All.
    """
    cols = {name: rows.column(name).to_pylist() for name in rows.column_names}
    order = sorted(range(rows.num_rows), key=lambda i: (cols["timestamp"][i] is None, cols["timestamp"][i] or 0.0))
    actions = cols["action"]
    execs = list(cols["exe"])
    execs += [p for a, p in zip(actions, cols["object_path"], strict=True) if a in EXEC_ACTIONS and p]
    netflows: list[str] = []
    for addr in cols["object_addr"]:
        if addr:
            ip, port = split_endpoint(addr)
            netflows.append(ip)
            if port is not None:
                netflows.append(port)
    ctx = {
        "ctx_events": _distinct([a for a in actions]),
        "ctx_execs": _distinct(execs),
        "ctx_parents": _distinct(cols["parent_exe"]),
        "ctx_netflows": _distinct(netflows),
    }
    wanted = list(CONTEXT_COLUMNS.values()) if aspect == "All" else [CONTEXT_COLUMNS[aspect]]
    if not any(ctx[c] for c in wanted):
        return None

    def last(name: str) -> Any:
        values = [cols[name][i] for i in order if cols[name][i] is not None]
        return values[-1] if values else None

    def first(name: str) -> Any:
        values = [cols[name][i] for i in order if cols[name][i] is not None]
        return values[0] if values else None

    labels = [m for m in cols["malicious"] if m is not None]
    lines = [ln for ln in cols["line"] if ln is not None]
    row: dict[str, Any] = {
        "record_id": cols[PROCESS_KEY][0],
        "source": first("source"),
        "source_file": first("source_file"),
        "line": min(lines) if lines else None,
        "host": first("host"),
        "timestamp": first("timestamp"),
        "pid": last("pid"),
        "ppid": last("ppid"),
        "uid": last("uid"),
        "process_name": last("process_name"),
        "exe": last("exe"),
        "parent_exe": last("parent_exe"),
        "aspect": aspect,
        "malicious": max(labels) if labels else None,
    }
    for c in wanted:
        row[c] = ctx[c]
    return row


def _aggregate(rows: pa.Table, aspect: str) -> pa.Table:
    """Per-group UDF: the rows of one process -> its context row (or nothing)."""
    row = process_row(rows, aspect)
    return event_table([row]) if row is not None else EVENT_SCHEMA.empty_table()


class _HasProcess:
    """Block function: keep the rows whose process is known."""

    def __call__(self, batch: pa.Table) -> pa.Table:
        import pyarrow.compute as pc

        return batch.filter(pc.is_valid(batch.column(PROCESS_KEY)))


def aggregate(engine: Engine[T], data: T, aspect: str) -> T:
    """Group event rows by ``process_uuid`` into one context row per process (batch or online).

    Args:
        engine: where to run (a hash shuffle on Ray Data, or one request's table).
        data: rows in the event schema plus ``process_uuid`` (rows with a null process are dropped).
        aspect: Event, Exec, Parent, Netflow or All.

    Returns:
        Rows in :data:`aptray.schema.EVENT_SCHEMA`, one per process that has the aspect.
    """
    return per_group(engine, engine.map(data, _HasProcess()), PROCESS_KEY, _aggregate, EVENT_SCHEMA,
                     aspect=str(aspect))
