"""Raw events of one HTTP request -> the canonical event table -> sentences, through the batch readers' parsers.

Online and batch parse identically: the request's events are written into an in-memory stream exactly as
they would appear in a file, and the source module's own streaming parser (the one
:func:`aptray.io.files.files_dataset` runs per file) reads it; the rows then go through the same
:func:`aptray.templating.base.templatize` with the artifact's template settings.

* ``beth``: CSV lines (a first line that is a BETH header is used as the header; otherwise
  ``request.header`` or the 16 BETH columns), or JSON objects keyed by BETH column names (lists and dicts,
  such as ``args``, are written back as the Python literals BETH files hold).
* ``auditd``: raw audit.log lines (an item may hold several lines); the records of one event are grouped
  by the parser, and an event is reported at the item of its first record.
* ``sentence``: sentences already templated by the client (no parsing).

Each parsed row is mapped back to the request item it came from by its line number in the stream; rows
the parser quarantines come back as rejected items with the parser's reason.
"""

from __future__ import annotations

import csv
import importlib
import io
import json
import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, BinaryIO

import pyarrow as pa
import pyarrow.compute as pc

from aptray.config import IngestConfig, Source, TemplateConfig
from aptray.io.contexts import PROCESS_KEY
from aptray.io.fs import InputFile
from aptray.schema import EVENT_SCHEMA, event_table
from aptray.serve.schemas import EventFormat

log = logging.getLogger(__name__)

#: The 16 columns of the BETH splits, the default header of headerless CSV lines.
BETH_COLUMNS: tuple[str, ...] = (
    "timestamp", "processId", "threadId", "parentProcessId", "userId", "mountNamespace", "processName",
    "hostName", "eventId", "eventName", "stackAddresses", "argsNum", "returnValue", "args", "sus", "evil",
)
#: The name parsed rows carry as their source file (``record_id`` is ``<source>:request:<line>``).
REQUEST_FILE = "request"

ParserFn = Callable[[BinaryIO, InputFile, IngestConfig], Iterator[pa.Table]]

#: Request format -> (source, module holding ``parse``), for the formats parsed online.
PARSERS: dict[EventFormat, tuple[Source, str]] = {
    EventFormat.BETH: (Source.BETH, "aptray.io.beth"),
    EventFormat.AUDITD: (Source.AUDITD, "aptray.io.auditd"),
}


class UnsupportedFormat(ValueError):
    """A format that cannot be parsed online (its reader has no per-stream parser of canonical events)."""


@dataclass
class Prepared:
    """The sentences of a request's events, each mapped back to its request item.

    Attributes:
        index: per sentence, the position in the request's events of the item it came from.
        record_ids: per sentence, the event's record id.
        sentences: the templated sentences.
        rejected: ``(index, reason)`` of items that could not be parsed.
    """

    index: list[int] = field(default_factory=list)
    record_ids: list[str] = field(default_factory=list)
    sentences: list[str] = field(default_factory=list)
    rejected: list[tuple[int, str]] = field(default_factory=list)


def parser_for(fmt: EventFormat) -> tuple[Source, ParserFn]:
    """The batch reader's streaming parser for a request format.

    Raises:
        UnsupportedFormat: the format has no online parser (its reader or per-stream parser is missing).
    """
    if fmt not in PARSERS:
        raise UnsupportedFormat(
            f"format {fmt.value!r} cannot be scored online: its reader resolves events across the whole trace "
            "(joins), so send its events as sentences"
        )
    source, module_name = PARSERS[fmt]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError:
        raise UnsupportedFormat(f"format {fmt.value!r}: reader {module_name} is not available") from None
    parse = getattr(module, "parse", None)
    if parse is None:
        raise UnsupportedFormat(f"format {fmt.value!r}: {module_name} has no streaming parse function")
    return source, parse


def prepare(
    fmt: EventFormat,
    events: Sequence[str | dict[str, Any]],
    template: TemplateConfig,
    header: Sequence[str] | None = None,
    ingest: IngestConfig | None = None,
) -> Prepared:
    """Parse and templatize a request's events.

    Args:
        fmt: how the events are written.
        events: the request's items.
        template: the artifact's template settings (the mask list the detector was trained under).
        header: CSV columns of headerless BETH lines (default :data:`BETH_COLUMNS`).
        ingest: parser settings (field caps); the source is set from ``fmt``.

    Returns:
        The sentences with their request positions, and the rejected items.

    Raises:
        UnsupportedFormat: ``fmt`` cannot be parsed online.
    """
    if fmt == EventFormat.SENTENCE:
        return _sentences(events)
    source, parse = parser_for(fmt)
    cfg = (ingest or IngestConfig()).model_copy(update={"source": source, "block_rows": max(1, len(events) * 64)})
    out = Prepared()
    if fmt == EventFormat.BETH:
        data, line_items = _beth_stream(events, header, out.rejected)
    else:
        data, line_items = _line_stream(events, out.rejected)
    if not line_items:
        return out
    stream = io.BytesIO(data)
    file = InputFile(REQUEST_FILE, REQUEST_FILE, len(data))
    tables = [t for t in parse(stream, file, cfg) if t.num_rows]
    table = pa.concat_tables(tables) if tables else EVENT_SCHEMA.empty_table()
    if fmt == EventFormat.AUDITD:
        table = assemble_auditd(table)
    items = [line_items.get(int(n), -1) if n is not None else -1 for n in table.column("line").to_pylist()]
    bad = pc.is_valid(table.column("quarantine_reason"))
    for i, reason in zip(items, table.column("quarantine_reason").to_pylist(), strict=True):
        if reason is not None and i >= 0:
            out.rejected.append((i, str(reason)))
    good = table.filter(pc.invert(bad))
    if good.num_rows:
        from aptray.templating.base import templatize

        good_items = [i for i, b in zip(items, bad.to_pylist(), strict=True) if not b]
        done = templatize(good.drop_columns(["quarantine_reason", "raw"]), template)
        out.index = good_items
        out.record_ids = [str(r) for r in done.column("record_id").to_pylist()]
        out.sentences = [str(s) for s in done.column("sentence").to_pylist()]
    if fmt == EventFormat.BETH:  # one line per item: an item that gave no row held no record
        seen = set(items)
        out.rejected += [(i, "no event in this item (blank line)") for i in set(line_items.values()) - seen]
    out.rejected.sort()
    return out


def assemble_auditd(records: pa.Table) -> pa.Table:
    """auditd record rows of one request -> event rows, as the batch reader's groupby and parent join do.

    Records are grouped by ``(node, time, serial)`` and assembled by :func:`aptray.io.auditd.assemble`;
    a process's parent executable is taken from the request's own events whose pid is its ppid (the batch
    reader looks across the whole trace). Bad lines stay as quarantined rows.
    """
    from aptray.io.auditd import SOURCE, assemble

    groups: dict[str, list[dict[str, Any]]] = {}
    rows: list[dict[str, Any]] = []
    for rec in records.to_pylist():
        if rec["quarantine_reason"] is not None:
            rows.append({"record_id": f"{SOURCE}:{rec['source_file']}:{rec['line']}", "source": SOURCE,
                         "source_file": rec["source_file"], "line": rec["line"],
                         "quarantine_reason": rec["quarantine_reason"], "raw": rec["raw"]})
        else:
            groups.setdefault(rec["key"], []).append(rec)
    events = [assemble(g) for g in groups.values()]
    exe_by_pid = {(e.get("host") or "", e["pid"]): e["exe"] for e in events
                  if e.get("pid") is not None and e.get("exe") and e.get("quarantine_reason") is None}
    for e in events:
        e.pop(PROCESS_KEY, None)
        if e.get("parent_exe") is None and e.get("ppid") is not None:
            e["parent_exe"] = exe_by_pid.get((e.get("host") or "", e["ppid"]))
    return event_table(rows + events) if rows or events else EVENT_SCHEMA.empty_table()


def _sentences(events: Sequence[str | dict[str, Any]]) -> Prepared:
    out = Prepared()
    for i, ev in enumerate(events):
        if isinstance(ev, str) and ev.strip():
            out.index.append(i)
            out.record_ids.append(f"sentence:{REQUEST_FILE}:{i + 1}")
            out.sentences.append(ev)
        else:
            out.rejected.append((i, "a sentence must be a non-empty string"))
    return out


def _line_stream(
    events: Sequence[str | dict[str, Any]], rejected: list[tuple[int, str]]
) -> tuple[bytes, dict[int, int]]:
    """Items of raw text lines -> the stream bytes and ``{line number: item}`` (1-based)."""
    lines: list[str] = []
    line_items: dict[int, int] = {}
    for i, ev in enumerate(events):
        if isinstance(ev, dict):
            rejected.append((i, "expected raw text lines for this format, not a JSON object"))
            continue
        for part in ev.splitlines() or [""]:
            lines.append(part)
            line_items[len(lines)] = i
    return ("\n".join(lines) + "\n").encode("utf-8"), line_items


def _is_beth_header(line: str) -> bool:
    try:
        names = next(csv.reader([line.lstrip("\ufeff")]))
    except (csv.Error, StopIteration):
        return False
    return ("processId" in names and "eventName" in names) or ("SourceIP" in names and "DnsQuery" in names)


def _literal(value: Any) -> str:
    """A JSON value as BETH writes it in a CSV field (Python literals for lists and dicts)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(int(value))
    if isinstance(value, (list, dict)):
        return repr(value)
    return str(value)


def _beth_stream(
    events: Sequence[str | dict[str, Any]], header: Sequence[str] | None, rejected: list[tuple[int, str]]
) -> tuple[bytes, dict[int, int]]:
    """BETH items -> CSV stream bytes (header first) and ``{line number: item}``."""
    items = list(enumerate(events))
    columns = list(header) if header else list(BETH_COLUMNS)
    first = items[0][1] if items else None
    if isinstance(first, str) and _is_beth_header(first):
        columns = next(csv.reader([first.lstrip("\ufeff")]))
        items = items[1:]
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(columns)
    known = set(columns)
    line_items: dict[int, int] = {}
    line = 1
    for i, ev in items:
        if isinstance(ev, dict):
            unknown = sorted(set(ev) - known)
            if unknown:
                rejected.append((i, f"unknown BETH column(s): {', '.join(map(json.dumps, unknown[:5]))}"))
                continue
            writer.writerow([_literal(ev.get(c)) for c in columns])
        else:
            if "\n" in ev or "\r" in ev:
                rejected.append((i, "a BETH event must be one CSV line"))
                continue
            buf.write(ev + "\n")
        line += 1
        line_items[line] = i
    return buf.getvalue().encode("utf-8"), line_items
