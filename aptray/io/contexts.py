"""Per-process provenance contexts (Event, Exec, Parent, Netflow, All) aggregated from single events.

Raw-trace readers (CDM, auditd) produce one row per event in :data:`aptray.schema.EVENT_SCHEMA` plus a
``process_uuid`` column naming the process that performed it (and one row per process with ``action``
null, carrying what is known of the process itself). :func:`aggregate` groups them by process with a Ray
Data hash shuffle and emits one row per process in the same form as the ADAPT reader: ``aspect`` set,
``record_id`` = the process UUID, and the sorted, distinct attribute names in ``ctx_events``,
``ctx_execs``, ``ctx_parents`` and ``ctx_netflows`` (remote IPs and ports as separate strings).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from aptray.schema import CONTEXT_COLUMNS, EVENT_SCHEMA, event_table

if TYPE_CHECKING:
    import ray.data

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


def small_strings(batch: pa.Table) -> pa.Table:
    """Joins hand back ``large_string`` columns: cast them back so that kernels and unions line up."""
    fields = [pa.field(f.name, pa.string()) if pa.types.is_large_string(f.type) else f for f in batch.schema]
    return batch.cast(pa.schema(fields))


def join_left(left: ray.data.Dataset, right: ray.data.Dataset, parts: int, on: str, right_on: str) -> ray.data.Dataset:
    """Left outer hash join of ``left.on`` with ``right.right_on``, string columns kept ``string``."""
    return left.join(right, "left_outer", parts, on=(on,), right_on=(right_on,)).map_batches(
        small_strings, batch_format="pyarrow", batch_size=None)


def dedupe(ds: ray.data.Dataset, key: str, columns: list[str], parts: int) -> ray.data.Dataset:
    """One row per ``key`` (a vectorised hash aggregate): for each column the largest non-null value."""
    from ray.data.aggregate import Max

    aggs: list[Any] = [Max(c, ignore_nulls=True, alias_name=c) for c in columns]
    return ds.groupby(key, num_partitions=parts).aggregate(*aggs).map_batches(
        small_strings, batch_format="pyarrow", batch_size=None)


class _HasProcess:
    """``map_batches`` UDF: keep the rows whose process is known."""

    def __call__(self, batch: pa.Table) -> pa.Table:
        import pyarrow.compute as pc

        return batch.filter(pc.is_valid(batch.column(PROCESS_KEY)))


def _runs(keys: list[Any]) -> list[tuple[int, int]]:
    """``(start, stop)`` of each run of equal consecutive keys."""
    runs: list[tuple[int, int]] = []
    start = 0
    for i in range(1, len(keys) + 1):
        if i == len(keys) or keys[i] != keys[start]:
            runs.append((start, i))
            start = i
    return runs


class _PerGroup:
    """``map_batches`` UDF on a hash-partitioned block: ``fn`` per group of equal ``key``.

    Every group lies whole in one block after :meth:`ray.data.Dataset.repartition` with ``keys``; the block
    is sorted by key and cut into runs, and the outputs make one table. Null keys form one group, as in a
    Ray Data groupby. ``rows=False``: ``fn(table slice, **kwargs) -> table``; ``rows=True``:
    ``fn(list of row dicts) -> row dict or None``.
    """

    def __init__(self, key: str, fn: Callable[..., Any], schema: pa.Schema, kwargs: dict[str, Any],
                 rows: bool = False) -> None:
        self.key = key
        self.fn = fn
        self.schema = schema
        self.kwargs = kwargs
        self.rows = rows

    def __call__(self, block: pa.Table) -> pa.Table:
        if not block.num_rows:
            return self.schema.empty_table()
        block = block.sort_by([(self.key, "ascending")])
        runs = _runs(block.column(self.key).to_pylist())
        if self.rows:
            dicts = block.to_pylist()
            out = [self.fn(dicts[a:b], **self.kwargs) for a, b in runs]
            return pa.Table.from_pylist([r for r in out if r is not None], schema=self.schema)
        tables = [t for t in (self.fn(block.slice(a, b - a), **self.kwargs) for a, b in runs) if t.num_rows]
        return pa.concat_tables(tables).cast(self.schema) if tables else self.schema.empty_table()


def map_key_groups(ds: ray.data.Dataset, key: str, num_partitions: int, fn: Callable[..., pa.Table],
                   schema: pa.Schema, **kwargs: Any) -> ray.data.Dataset:
    """``groupby(key).map_groups(fn)`` as one hash shuffle plus one call per block.

    Ray Data's ``map_groups`` makes one output block per group, so every later stage pays per-group
    overhead (an 8 MB auditd input: 32k one-row blocks, 28 s to deduplicate 382 keys and 96 s for one
    join). Here the output has ``num_partitions`` blocks.

    Args:
        ds: the rows.
        key: the grouping column.
        num_partitions: shuffle partitions.
        fn: one group (a table) -> output rows in ``schema`` (any number); extra ``kwargs`` are passed on.
        schema: the output schema.
    """
    return _grouped(ds, num_partitions, _PerGroup(key, fn, schema, kwargs))


def map_key_group_rows(ds: ray.data.Dataset, key: str, num_partitions: int,
                       fn: Callable[[list[dict[str, Any]]], dict[str, Any] | None],
                       schema: pa.Schema) -> ray.data.Dataset:
    """:func:`map_key_groups` for a function of row dicts (one output row or None per group)."""
    return _grouped(ds, num_partitions, _PerGroup(key, fn, schema, {}, rows=True))


def _grouped(ds: ray.data.Dataset, num_partitions: int, udf: _PerGroup) -> ray.data.Dataset:
    """Hash-partition ``ds`` on the UDF's key, then one UDF call per block."""
    return ds.repartition(num_partitions, keys=[udf.key]).map_batches(
        udf, batch_format="pyarrow", batch_size=None)  # type: ignore[arg-type]


def aggregate(ds: ray.data.Dataset, aspect: str, num_partitions: int) -> ray.data.Dataset:
    """Group event rows by ``process_uuid`` (hash shuffle) into one context row per process.

    Args:
        ds: rows in the event schema plus ``process_uuid`` (rows with a null process are dropped).
        aspect: Event, Exec, Parent, Netflow or All.
        num_partitions: shuffle partitions.

    Returns:
        A dataset in :data:`aptray.schema.EVENT_SCHEMA`, one row per process that has the aspect.
    """
    keep = ds.map_batches(_HasProcess(), batch_format="pyarrow", batch_size=None)  # type: ignore[arg-type]
    return map_key_groups(keep, PROCESS_KEY, num_partitions, _aggregate, EVENT_SCHEMA, aspect=aspect)
