"""A Ray Data dataset over input files: one read task per file, streaming blocks, never a whole file in memory.

Each source module provides a *parser*: a function ``(stream, file, cfg) -> Iterator[pa.Table]`` that reads
a binary stream and yields tables in :data:`aptray.schema.EVENT_SCHEMA` of at most ``cfg.block_rows`` rows,
bad rows included (flagged with ``quarantine_reason``). Because the read UDF is a generator, Ray Data
streams its blocks downstream while the file is still being read.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from functools import partial
from typing import TYPE_CHECKING, Any, BinaryIO, Protocol

import pyarrow as pa

from aptray.io.fs import InputFile, Selection, list_files, open_binary
from aptray.schema import EVENT_SCHEMA, event_table

if TYPE_CHECKING:
    import pyarrow.fs as pafs
    import ray.data

    from aptray.config import IngestConfig
    from aptray.io.engine import Engine

log = logging.getLogger(__name__)


#: What became of each physical line of an input: every line is exactly one of these.
#: ``record``: a line in a scored row (an event; for auditd, one of the record lines of an event; with a process
#: context, a line of one of the process's events); ``quarantined``: a line in a quarantined row, with its reason
#: (a quarantined row is always one input line, so this equals the rows quarantined); ``blank``: no content;
#: ``header``: a CSV header line; ``context``: a record that only informs events (CDM subjects, objects,
#: principals, markers, hosts and unknown record types; auditd EOE).
#:
#: A parser counts a line as it reads it; a line that a join quarantines later (auditd: the records of a partial
#: event, a repeated record) is still a ``record`` there: :func:`settle_lines` moves those lines once the
#: quarantined rows are counted. So ``lines`` = ``record`` + ``quarantined`` + ``blank`` + ``header`` + ``context``
#: and ``quarantined`` = rows quarantined; rows scored <= ``record`` (several lines can make one row).
LINE_CLASSES: tuple[str, ...] = ("record", "quarantined", "blank", "header", "context")


class Parser(Protocol):
    """Reads one file's stream and yields event tables (good and quarantined rows).

    ``lines``, when given, receives one count per physical line under a :data:`LINE_CLASSES` key.
    """

    def __call__(self, stream: BinaryIO, file: InputFile, cfg: IngestConfig,
                 lines: Counter[str] | None = None) -> Iterator[pa.Table]: ...


class CountingStream:
    """A binary stream that counts the physical lines read through it (independently of any parser).

    A parser of a binary format sets :attr:`units` to the units it read (an Avro container's records, and one per
    damaged stretch), which then stand for the lines.
    """

    def __init__(self, stream: BinaryIO) -> None:
        self._stream = stream
        self.newlines = 0
        self.last = b""
        self.units: int | None = None
        self.position = 0

    def _seen(self, data: bytes) -> bytes:
        if data:
            self.newlines += data.count(b"\n")
            self.last = data[-1:]
            self.position += len(data)
        return data

    def read(self, size: int = -1) -> bytes:
        """``read`` of the wrapped stream."""
        return self._seen(self._stream.read(size))

    def readline(self, size: int = -1) -> bytes:
        """``readline`` of the wrapped stream."""
        return self._seen(self._stream.readline(size))

    def __iter__(self) -> Iterator[bytes]:
        while line := self.readline():
            yield line

    def peek(self, size: int = 1) -> bytes:
        """The next bytes without reading them (b"" where the wrapped stream cannot peek)."""
        peek = getattr(self._stream, "peek", None)
        return peek(size) if peek is not None else b""

    def tell(self) -> int:
        """Bytes read so far (after decompression; the wrapped stream need not be seekable)."""
        return self.position

    @property
    def lines(self) -> int:
        """Physical lines read so far (a last line without a newline counts), or the :attr:`units` a binary
        format's parser declared."""
        if self.units is not None:
            return self.units
        return self.newlines + (1 if self.last and self.last != b"\n" else 0)


class _ReadFiles:
    """Map-batches UDF: each input row names a file; yields that file's parsed blocks."""

    def __init__(self, fs: pafs.FileSystem, parser: Parser, cfg: IngestConfig) -> None:
        self.fs = fs
        self.parser = parser
        self.cfg = cfg

    def __call__(self, batch: pa.Table) -> Iterator[pa.Table]:
        for row in batch.to_pylist():
            file = InputFile(row["path"], row["rel"], row["size"])
            lines: Counter[str] = Counter()
            with open_binary(self.fs, file.path) as raw:
                stream = CountingStream(raw)
                first = self.cfg.check_format
                for table in self.parser(stream, file, self.cfg, lines):  # type: ignore[arg-type]
                    if not table.num_rows:
                        continue
                    if first:
                        check_first_block(self.fs, file, table, self.cfg)
                        first = False
                    yield table
            record_lines(file, stream.lines, lines, self.cfg.counts_dir, container=stream.units is not None)


def record_lines(file: InputFile, physical: int, lines: Counter[str], counts_dir: str | None,
                 container: bool = False) -> dict[str, Any]:
    """Check that the parser gave every physical line of ``file`` exactly one class; write the counts.

    The count of physical lines comes from the stream (:class:`CountingStream`), not from the parser, so a line
    a parser skipped without counting shows up as a difference (logged as an error, reported as ``unaccounted``).
    ``container``: the file is a binary container whose records stand for its lines (counted again under
    ``container_records``, so a summary can say so). With ``counts_dir`` the counts go to ``<counts_dir>/<digest
    of the file>.json`` (rewritten, never duplicated, when a task is retried).
    """
    classes = {c: int(lines.get(c, 0)) for c in LINE_CLASSES}
    counts: dict[str, Any] = {"file": file.rel, "lines": physical, **classes,
                              "unaccounted": physical - sum(classes.values())}
    if container:
        counts["container_records"] = physical
    if counts["unaccounted"]:
        log.error("%s: %d physical line(s), but the parser accounted for %d: %s", file.rel, physical,
                  sum(classes.values()), classes)
    if counts_dir:
        import hashlib

        from aptray.io.fs import join, resolve

        fs, root = resolve(counts_dir)
        fs.create_dir(root, recursive=True)
        name = hashlib.sha256(file.rel.encode()).hexdigest()[:32]
        with fs.open_output_stream(join(root, f"{name}.json")) as fh:
            fh.write(json.dumps(counts).encode())
    return counts


def size_text(nbytes: int) -> str:
    """A byte count for a log line: ``812 B``, ``5.4 kB``, ``2.5 MB``, ``1.2 GB``."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if nbytes >= scale:
            return f"{nbytes / scale:.1f} {unit}"
    return f"{nbytes} B"


def file_line_counts(counts_dir: str) -> list[dict[str, Any]]:
    """The line counts under ``counts_dir``, one dict per file a reader parsed (``file`` and the counts; none when
    none were written): the files read, e.g. an ADAPT folder's context files, not its ground truth."""
    import pyarrow.fs as pafs_

    from aptray.io.fs import resolve

    fs, root = resolve(counts_dir)
    if fs.get_file_info(root).type == pafs_.FileType.NotFound:
        return []
    out = []
    for info in fs.get_file_info(pafs_.FileSelector(root, recursive=True)):
        if info.path.endswith(".json"):
            with fs.open_input_stream(info.path) as fh:
                out.append(json.loads(fh.read()))
    return out


def line_counts(counts_dir: str) -> dict[str, int]:
    """The sums of the per-file line counts under ``counts_dir`` (zeros when none were written)."""
    return sum_line_counts(file_line_counts(counts_dir))


def sum_line_counts(per_file: list[dict[str, Any]]) -> dict[str, int]:
    """The sums of per-file line counts (``lines``, each of :data:`LINE_CLASSES`, ``unaccounted``, and
    ``container_records`` where some files are binary containers)."""
    totals = {"lines": 0, **dict.fromkeys(LINE_CLASSES, 0), "unaccounted": 0}
    for one in per_file:
        for k in totals:
            totals[k] += int(one.get(k, 0))
    container = sum(int(one.get("container_records", 0)) for one in per_file)
    if container:
        totals["container_records"] = container
    return totals


def settle_lines(lines: dict[str, int], rows_quarantined: int) -> dict[str, int]:
    """The line counts of an input (:func:`line_counts`) once its quarantined rows are counted: the lines a join
    quarantined after the read (auditd: the records of a partial event, a repeated record) move from ``record``
    to ``quarantined``, which then equals ``rows_quarantined`` (a quarantined row is one input line).

    Counts that cannot be settled (fewer quarantined rows than the parsers flagged, or more than the lines they
    read as records: a reader breaking the one-line-per-quarantined-row rule) are logged and returned as they are.
    """
    moved = rows_quarantined - lines.get("quarantined", 0)
    if not moved:
        return dict(lines)
    if not 0 < moved <= lines.get("record", 0):
        log.error("%d quarantined row(s), but the readers flagged %d line(s) and read %d as records: the line "
                  "counts cannot say which lines were quarantined", rows_quarantined, lines.get("quarantined", 0),
                  lines.get("record", 0))
        return dict(lines)
    return {**lines, "record": lines["record"] - moved, "quarantined": rows_quarantined}


def check_lines(lines: dict[str, int], what: str) -> None:
    """Raise :class:`~aptray.errors.LineAccountingError` when ``lines`` (from :func:`line_counts`) does not add up.

    ``lines`` = ``record`` + ``quarantined`` + ``blank`` + ``header`` + ``context``, where ``lines`` is the count
    of physical lines read from the input (by the stream, not the parser). Jobs call this after their outputs
    and manifest are written, so a reader bug stops the job loudly, with everything it did keep on disk.
    """
    from aptray.errors import LineAccountingError

    if lines.get("unaccounted"):
        classes = {c: lines.get(c, 0) for c in LINE_CLASSES}
        raise LineAccountingError(
            f"{what}: {lines.get('lines', 0)} lines were read but the readers accounted for "
            f"{sum(classes.values())} ({classes}); the outputs are written, but this is a reader bug: please "
            "report it with the input's format")


def files_dataset(
    uri: str | Selection,
    parser: Parser,
    cfg: IngestConfig,
    *,
    suffixes: tuple[str, ...] | None = None,
    files: list[InputFile] | None = None,
    fs: pafs.FileSystem | None = None,
) -> ray.data.Dataset:
    """A dataset of every file under ``uri`` parsed by ``parser``, one Ray task per file.

    Args:
        uri: file, directory, glob, local or ``s3://``.
        parser: the source's parser.
        cfg: ingest settings (block size, strictness, field limits).
        suffixes: file endings to keep when ``uri`` is a directory or glob.
        files, fs: an already listed selection (skips listing ``uri``).
    """
    import ray.data

    if files is None or fs is None:
        fs, files = list_input(uri, suffixes, cfg)
    items = [{"path": f.path, "rel": f.rel, "size": f.size} for f in files]
    where = getattr(uri, "root", uri)  # a Selection names its root
    log.info("reading %d file(s), %s from %s", len(files), size_text(sum(f.size for f in files)), where)
    return ray.data.from_items(items, override_num_blocks=max(1, len(items))).map_batches(
        _ReadFiles(fs, parser, cfg),  # type: ignore[arg-type]
        batch_size=1,
        batch_format="pyarrow",
        udf_modifying_row_count=True,
    )


class JoinPlan(Protocol):
    """A source's assembly plan (:func:`aptray.io.cdm.assemble`, :func:`aptray.io.auditd.assemble_events`)."""

    def __call__(self, engine: Engine[Any], records: Any, cfg: IngestConfig,
                 labels: frozenset[str] | None) -> Any: ...


def read_joined(uri: str | Selection, parser: Parser, plan: JoinPlan, cfg: IngestConfig,
                suffixes: tuple[str, ...], partitions: Callable[[int], int], one_task_bytes: int
                ) -> ray.data.Dataset:
    """A reader whose records are joined: parse every file, then run ``plan`` on the records.

    Inputs up to ``cfg.join_in_one_task_bytes`` (else the source's ``one_task_bytes``) run the plan in one Ray task
    (no shuffles); larger ones on a :class:`~aptray.io.engine.RayEngine` of ``partitions(input bytes)`` hash
    partitions.
    """
    from aptray.io.engine import RayEngine, in_one_task
    from aptray.io.labels import load_uuids

    fs, files = list_input(uri, suffixes, cfg)
    labels = frozenset(load_uuids(cfg.labels)) if cfg.labels else None
    records = files_dataset(uri, parser, cfg, files=files, fs=fs)
    size = sum(f.size for f in files)
    limit = cfg.join_in_one_task_bytes if cfg.join_in_one_task_bytes is not None else one_task_bytes
    if size <= limit:
        return in_one_task(records, partial(plan, cfg=cfg, labels=labels))
    return plan(RayEngine(partitions(size)), records, cfg=cfg, labels=labels)  # type: ignore[no-any-return]


def list_input(uri: str | Selection, suffixes: tuple[str, ...] | None, cfg: IngestConfig
               ) -> tuple[pafs.FileSystem, list[InputFile]]:
    """:func:`aptray.io.fs.list_files` for a reader of ``cfg.source``: when no file has the source's endings but
    the input holds other files, the error says what they look like (a wrong ``--source``).

    Raises:
        WrongSourceError: files are there, none of this source's kind.
        FileNotFoundError: nothing is there.
    """
    try:
        return list_files(uri, suffixes)
    except FileNotFoundError:
        if suffixes is None:
            raise
        _, others = list_files(uri)  # raises FileNotFoundError itself when the input is empty
    from aptray.errors import WrongSourceError
    from aptray.io.fs import resolve
    from aptray.io.sources import head_lines, sniff, source_spec

    fs = uri.fs if isinstance(uri, Selection) else resolve(uri)[0]
    seen = [f"{f.rel} looks like {' or '.join(f'{source_spec(x).title} (--source {x.value})' for x in found)}"
            for f in others[:5] if (found := sniff(head_lines(fs, f.path)))]
    spec = source_spec(cfg.source)
    raise WrongSourceError(f"no {spec.title} files (ending in {', '.join(suffixes)}) at {uri}; it holds "
                           f"{len(others)} other file(s)" + (f": {'; '.join(seen)}" if seen else ""))


def check_first_block(fs: pafs.FileSystem, file: InputFile, table: pa.Table, cfg: IngestConfig) -> None:
    """Stop the read when a file's first block is quarantined entirely and the file looks like another source.

    That is a wrong ``--source`` (an audit.log read as BETH): quarantining every line would only hide it. A file
    of no known format (a README in a log folder) is quarantined as usual, with a warning.

    Raises:
        WrongSourceError: naming the file, the share of its lines that failed and the source its first lines
            look like (nothing of that file is written; the input is untouched).
    """
    reasons = table.column("quarantine_reason")
    if reasons.null_count:  # at least one good row
        return
    import pyarrow.compute as pc

    from aptray.errors import WrongSourceError
    from aptray.io.sources import head_lines, sniff, source_spec

    spec = source_spec(cfg.source)
    lines = pc.max(table.column("line")).as_py() if "line" in table.column_names else table.num_rows
    what = f"100% of the first {lines:,} lines of {file.rel} are not {spec.title}"
    likely = [s for s in sniff(head_lines(fs, file.path)) if s is not spec.format]
    if not likely:
        log.warning("%s (first reason: %s); no known format matches them, so they are quarantined", what,
                    str(reasons[0].as_py())[:120])
        return
    names = " or ".join(f"{source_spec(s).title} (--source {s.value})" for s in likely)
    raise WrongSourceError(f"{what}; is it {names}? Nothing was written for it.")


def read_lines(stream: BinaryIO) -> Iterator[tuple[int, bytes]]:
    """Yield ``(line_number, line_bytes_without_newline)``, 1-based, streaming."""
    for n, raw in enumerate(stream, start=1):
        yield n, raw.rstrip(b"\r\n")


BadRow = Callable[[dict[str, Any], str], dict[str, Any]]


def in_blocks(
    rows: Iterable[dict[str, Any]], block_rows: int, schema: pa.Schema | None = None, on_bad: BadRow | None = None
) -> Iterator[pa.Table]:
    """Group row dicts into tables of at most ``block_rows`` rows (:data:`EVENT_SCHEMA` unless ``schema``).

    A row whose values do not fit the schema (a number beyond int64, a list where text belongs) would fail the
    whole block: the block is then built row by row and each such row is replaced by ``on_bad(row, reason)``
    (a quarantine row), so one record never costs the others.
    """

    def table(buf: list[dict[str, Any]]) -> pa.Table:
        return event_table(buf) if schema is None else pa.Table.from_pylist(buf, schema=schema)

    def safe(buf: list[dict[str, Any]]) -> pa.Table:
        return safe_table(buf, table, on_bad)

    buf: list[dict[str, Any]] = []
    for row in rows:
        buf.append(row)
        if len(buf) >= block_rows:
            yield safe(buf)
            buf = []
    if buf:
        yield safe(buf)


def safe_table(rows: list[dict[str, Any]], build: Callable[[list[dict[str, Any]]], pa.Table],
               on_bad: BadRow | None) -> pa.Table:
    """``build(rows)``; when a row's values do not fit the schema, the rows are built one by one and each such row
    is replaced by ``on_bad(row, reason)`` (without ``on_bad`` the error is raised)."""
    try:
        return build(rows)
    except (pa.ArrowException, OverflowError, TypeError, ValueError):
        if on_bad is None:
            raise
    fixed = []
    for row in rows:
        try:
            build([row])
            fixed.append(row)
        except (pa.ArrowException, OverflowError, TypeError, ValueError) as exc:
            fixed.append(on_bad(row, f"a value does not fit the canonical schema: {str(exc)[:200]}"))
    return build(fixed)


def line_record_id(source: str, file: str, line: int) -> str:
    """The id of a record known by its line (``<source>:<file>:<line>``): BETH and auditd events, quarantined lines."""
    return f"{source}:{file}:{line}"


def quarantine_row(source: str, file: InputFile, line: int, raw: bytes | str, reason: str) -> dict[str, Any]:
    """A row dict for a line that could not be parsed: lineage, reason and the raw text, nothing else."""
    text = raw.decode("utf-8", errors="replace") if isinstance(raw, bytes) else raw
    return {
        "record_id": line_record_id(source, file.rel, line),
        "source": source,
        "source_file": file.rel,
        "line": line,
        "quarantine_reason": reason,
        "raw": text,
    }


def empty() -> pa.Table:
    """An empty table in the event schema."""
    return EVENT_SCHEMA.empty_table()


ParserFactory = Callable[..., Parser]
