"""One join plan, two engines: the same pure Arrow functions run per hash partition (Ray Data) or on a request.

A source whose events need records from elsewhere in the trace (CDM: events -> objects, subjects, principals,
parents; auditd: records -> events by serial, then the parent's executable) writes its assembly once, as a
plan over an :class:`Engine`. The plan's steps are pure functions of an Arrow table that are correct for any
table holding *whole key groups*:

* :class:`RayEngine` hash-partitions a Ray dataset on the step's key (``repartition(keys=...)``), so every
  group lies whole in one block, and runs the function once per block: batch reads of any size.
* :class:`LocalEngine` runs the same function on one in-memory table: the online parser of a Serve request,
  and small inputs.

:func:`lookup` (a left outer join whose right side is reduced to one row per key, the largest non-null value
of each column) and :class:`PerGroup` (a function per group of equal key) are built from these two
operations only, so batch and online agree by construction.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import pyarrow as pa
import pyarrow.compute as pc

if TYPE_CHECKING:
    import ray.data

T = TypeVar("T")

TableFn = Callable[[pa.Table], pa.Table]

#: Helper columns of :func:`lookup`: the join key and the side a row came from (0 left, 1 right).
KEY = "_key"
SIDE = "_side"


class Engine(Protocol[T]):
    """Where a plan runs: on Ray datasets (batch) or on Arrow tables (online)."""

    def map(self, data: T, fn: TableFn) -> T:
        """``fn`` on every block (a pure function of a table, row count free)."""
        ...

    def union(self, *parts: T) -> T:
        """All rows of ``parts`` (same schema)."""
        ...

    def grouped(self, data: T, key: str, fn: TableFn) -> T:
        """``fn`` on tables that each hold whole groups of equal ``key`` (any number of groups)."""
        ...

    def materialize(self, data: T) -> T:
        """Compute ``data`` once where several later steps read it."""
        ...


class LocalEngine:
    """The engine of one in-memory table (a Serve request): every step sees the whole table."""

    def map(self, data: pa.Table, fn: TableFn) -> pa.Table:
        """``fn(data)``."""
        return fn(data)

    def union(self, *parts: pa.Table) -> pa.Table:
        """The tables concatenated."""
        return pa.concat_tables(parts)

    def grouped(self, data: pa.Table, key: str, fn: TableFn) -> pa.Table:
        """``fn(data)``: one table holds every group whole."""
        return fn(data)

    def materialize(self, data: pa.Table) -> pa.Table:
        """``data`` (already computed)."""
        return data


@dataclass(frozen=True)
class RayEngine:
    """The engine of Ray datasets: a keyed step is one hash repartition into ``partitions`` blocks.

    Ray Data's ``map_groups`` would make one block per group (an 8 MB auditd input gave 32k one-row blocks,
    28 s to deduplicate 382 keys); here a step's output has ``partitions`` blocks.
    """

    partitions: int

    def map(self, data: ray.data.Dataset, fn: TableFn) -> ray.data.Dataset:
        """``map_batches(fn)`` over whole blocks."""
        return data.map_batches(fn, batch_format="pyarrow", batch_size=None)

    def union(self, *parts: ray.data.Dataset) -> ray.data.Dataset:
        """``Dataset.union``."""
        first, *rest = parts
        return first.union(*rest) if rest else first

    def grouped(self, data: ray.data.Dataset, key: str, fn: TableFn) -> ray.data.Dataset:
        """Hash-partition on ``key`` (every group whole in one block), then ``fn`` once per block."""
        return self.map(data.repartition(self.partitions, keys=[key]), fn)

    def materialize(self, data: ray.data.Dataset) -> ray.data.Dataset:
        """``Dataset.materialize``: later branches read the blocks instead of re-running the plan. Empty blocks are
        dropped (one is kept when all are): a file that gave no rows leaves a block without columns, and a hash
        shuffle whose map task holds only that block gives every partition an empty shard of that schema, which
        Ray 2.60's reduce then fails to concatenate with the real shards (``ArrowInvalid: Schema at index 1 was
        different``; a CDM folder with an empty part file failed its shuffled join)."""
        import ray.data

        done = data.materialize()
        blocks = [(ref, meta.num_rows) for bundle in done.iter_internal_ref_bundles()
                  for ref, meta in zip(bundle.block_refs, bundle.metadata, strict=True)]
        kept = [ref for ref, rows in blocks if rows]
        if not kept or len(kept) == len(blocks):
            return done
        return ray.data.from_arrow_refs(kept)


class _InOneBlock:
    """Block function: a plan run on :class:`LocalEngine` over one block that holds the whole input."""

    def __init__(self, plan: Callable[[LocalEngine, pa.Table], pa.Table]) -> None:
        self.plan = plan

    def __call__(self, block: pa.Table) -> pa.Table:
        return self.plan(LocalEngine(), block)


def in_one_task(data: ray.data.Dataset, plan: Callable[[LocalEngine, pa.Table], pa.Table]) -> ray.data.Dataset:
    """Run ``plan`` on :class:`LocalEngine` in one Ray task over all of ``data`` (small inputs).

    Every keyed step of a plan costs a hash shuffle on :class:`RayEngine`; for an input that fits one task this
    is the same plan, the same functions and the same result with no shuffle at all.
    """
    return data.repartition(1).map_batches(_InOneBlock(plan), batch_format="pyarrow", batch_size=None)


def small_strings(batch: pa.Table) -> pa.Table:
    """Joins and concatenations may hand back ``large_string`` columns: cast them back to ``string``."""
    fields = [pa.field(f.name, pa.string()) if pa.types.is_large_string(f.type) else f for f in batch.schema]
    return batch.cast(pa.schema(fields))


def conform_to(batch: pa.Table, schema: pa.Schema) -> pa.Table:
    """``batch`` with exactly ``schema``'s columns, in order: missing ones null, others cast, extras dropped."""
    n = batch.num_rows
    names = set(batch.column_names)
    return pa.Table.from_arrays(
        [pc.cast(batch.column(f.name), f.type) if f.name in names else pa.nulls(n, f.type) for f in schema],
        schema=schema)


def _runs(keys: list[Any]) -> list[tuple[int, int]]:
    """``(start, stop)`` of each run of equal consecutive keys."""
    runs: list[tuple[int, int]] = []
    start = 0
    for i in range(1, len(keys) + 1):
        if i == len(keys) or keys[i] != keys[start]:
            runs.append((start, i))
            start = i
    return runs


#: Rows a :class:`PerGroup` of ``rows=True`` turns into Python dicts at a time (whole groups, so a chunk can be more).
ROWS_PER_CHUNK = 16_384


def _chunks(runs: list[tuple[int, int]], rows: int) -> Iterator[list[tuple[int, int]]]:
    """Consecutive runs ``(start, end)`` in chunks of at least ``rows`` rows (the last one less)."""
    chunk: list[tuple[int, int]] = []
    for run in runs:
        chunk.append(run)
        if run[1] - chunk[0][0] >= rows:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


class PerGroup:
    """A block function: ``fn`` per group of equal ``key`` (the block sorted by key and cut into runs).

    Null keys form one group, as in a Ray Data groupby. ``rows=False``: ``fn(table slice, **kwargs) ->
    table``; ``rows=True``: ``fn(list of row dicts) -> a row dict, a list of them, or None``. The outputs make
    one table in ``schema``.
    """

    def __init__(self, key: str, fn: Callable[..., Any], schema: pa.Schema, kwargs: dict[str, Any] | None = None,
                 rows: bool = False) -> None:
        self.key = key
        self.fn = fn
        self.schema = schema
        self.kwargs = dict(kwargs or {})
        self.rows = rows

    def __call__(self, block: pa.Table) -> pa.Table:
        if not block.num_rows:
            return self.schema.empty_table()
        block = block.sort_by([(self.key, "ascending")])
        runs = _runs(block.column(self.key).to_pylist())
        if self.rows:  # Python dicts a chunk of groups at a time: a whole block of them held 23x its bytes
            parts: list[pa.Table] = []
            for chunk in _chunks(runs, ROWS_PER_CHUNK):
                start = chunk[0][0]
                dicts = block.slice(start, chunk[-1][1] - start).to_pylist()
                out: list[dict[str, Any]] = []
                for a, b in chunk:
                    got = self.fn(dicts[a - start:b - start], **self.kwargs)
                    if isinstance(got, list):
                        out.extend(got)
                    elif got is not None:
                        out.append(got)
                parts.append(pa.Table.from_pylist(out, schema=self.schema))
            return pa.concat_tables(parts) if parts else self.schema.empty_table()
        tables = [t for t in (self.fn(block.slice(a, b - a), **self.kwargs) for a, b in runs) if t.num_rows]
        return pa.concat_tables(tables).cast(self.schema) if tables else self.schema.empty_table()


def per_group(engine: Engine[T], data: T, key: str, fn: Callable[..., Any], schema: pa.Schema,
              rows: bool = False, **kwargs: Any) -> T:
    """``fn`` once per group of equal ``key`` (see :class:`PerGroup`), on ``engine``."""
    return engine.grouped(data, key, PerGroup(key, fn, schema, kwargs, rows=rows))


class _TagLeft:
    """Left rows of a lookup: the join key (a spread-out private value where it is null) and side 0."""

    def __init__(self, key: str, spread: Sequence[str]) -> None:
        self.key = key
        self.spread = tuple(spread)

    def __call__(self, batch: pa.Table) -> pa.Table:
        key = pc.cast(batch.column(self.key), pa.string())
        if key.null_count:
            # a row that matches nothing still needs a key; its own lineage spreads such rows over the partitions
            parts = [pc.cast(batch.column(c), pa.string()) for c in self.spread]
            own = pc.binary_join_element_wise(pa.array(["\x00"] * batch.num_rows, pa.string()), *parts, "\x1f")
            key = pc.coalesce(key, own)
        return batch.append_column(KEY, key).append_column(SIDE, pa.array([0] * batch.num_rows, pa.int8()))


class _TagRight:
    """Right rows of a lookup, in the left schema: only the key and the taken columns are set; side 1."""

    def __init__(self, key: str, take: dict[str, str], schema: pa.Schema) -> None:
        self.key = key
        self.take = dict(take)
        self.schema = schema

    def __call__(self, batch: pa.Table) -> pa.Table:
        batch = batch.filter(pc.is_valid(batch.column(self.key)))
        n = batch.num_rows
        cols = {out: batch.column(src) for out, src in self.take.items()}
        arrays = [pc.cast(cols[f.name], f.type) if f.name in cols else pa.nulls(n, f.type) for f in self.schema]
        arrays += [pc.cast(batch.column(self.key), pa.string()), pa.array([1] * n, pa.int8())]
        return pa.Table.from_arrays(arrays, schema=self.schema.append(pa.field(KEY, pa.string())).append(
            pa.field(SIDE, pa.int8())))


class _LookupBlock:
    """The lookup of one block holding whole key groups: right rows reduced per key, joined to the left rows."""

    def __init__(self, take: Sequence[str], schema: pa.Schema) -> None:
        self.take = list(take)
        self.schema = schema

    def __call__(self, block: pa.Table) -> pa.Table:
        side = block.column(SIDE)
        left = block.filter(pc.equal(side, 0))
        right = block.filter(pc.equal(side, 1))
        if not right.num_rows or not left.num_rows:
            return conform_to(left, self.schema)
        found = right.group_by(KEY, use_threads=False).aggregate([(c, "max") for c in self.take])
        # index_in + take rather than Table.join: Arrow's join refuses list columns (the ctx_* lists) on the left
        positions = pc.index_in(left.column(KEY), value_set=found.column(KEY))
        for c in self.take:
            i = left.schema.get_field_index(c)
            left = left.set_column(i, left.schema.field(i), pc.cast(found.column(f"{c}_max").take(positions),
                                                                    left.schema.field(i).type))
        return conform_to(left, self.schema)


def lookup(engine: Engine[T], left: T, right: T, schema: pa.Schema, *, on: str, right_on: str,
           take: dict[str, str], spread: Sequence[str] = ("source_file", "line")) -> T:
    """Left outer join: each ``left`` row gets ``take`` columns from the ``right`` rows whose ``right_on``
    equals its ``on`` (right rows reduced to one per key: the largest non-null value of each column).

    Args:
        engine: where to run.
        left: rows in ``schema``, which already holds the ``take`` output columns (their values are replaced).
        right: rows holding ``right_on`` and the ``take`` source columns.
        schema: the schema of ``left`` and of the result.
        on, right_on: the key columns.
        take: output column (in ``schema``) -> right column.
        spread: left columns that make a unique value for rows whose key is null (they match nothing; the value
            only spreads them over the partitions).

    Returns:
        The left rows (any order) in ``schema``.
    """
    tagged = engine.union(engine.map(left, _TagLeft(on, spread)), engine.map(right, _TagRight(right_on, take, schema)))
    return engine.grouped(tagged, KEY, _LookupBlock(list(take), schema))


def keep(engine: Engine[T], data: T, mask: Callable[[pa.Table], pa.Array]) -> T:
    """The rows where ``mask(block)`` is true."""
    return engine.map(data, _Filter(mask))


class _Filter:
    def __init__(self, mask: Callable[[pa.Table], pa.Array]) -> None:
        self.mask = mask

    def __call__(self, batch: pa.Table) -> pa.Table:
        return batch.filter(pc.fill_null(self.mask(batch), False))
