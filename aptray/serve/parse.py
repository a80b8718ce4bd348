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
* ``cdm``: DARPA TC CDM records (JSON objects or JSON text lines, CDM18 or CDM20). Events are joined, within
  the request, to the Subject, object and Principal records the request also carries, as the batch reader
  joins them across the trace (:func:`assemble_cdm`); an event whose subject is not in the request keeps
  what the event itself says (CADETS events name their executable). Records that are not events (subjects,
  objects, principals, markers) are context: they are neither scored nor rejected.
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
import posixpath
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
    EventFormat.CDM: (Source.CDM, "aptray.io.cdm"),
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
        data, line_items = _line_stream(events, out.rejected, json_objects=fmt == EventFormat.CDM)
    if not line_items:
        return out
    stream = io.BytesIO(data)
    file = InputFile(REQUEST_FILE, REQUEST_FILE, len(data))
    tables = [t for t in parse(stream, file, cfg) if t.num_rows]
    table = pa.concat_tables(tables) if tables else EVENT_SCHEMA.empty_table()
    if fmt == EventFormat.AUDITD:
        table = assemble_auditd(table)
    elif fmt == EventFormat.CDM:
        table = assemble_cdm(table)
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


#: Columns the CDM reader's event finisher reads besides the record columns: the event's object (``e_``) and
#: subject (``s_``) after the joins.
_CDM_JOINED = (("e_object_path", pa.string()), ("e_object_addr", pa.string()), ("s_host", pa.string()),
               ("s_pid", pa.int64()), ("s_ppid", pa.int64()), ("s_uid", pa.int64()),
               ("s_process_name", pa.string()), ("s_exe", pa.string()), ("s_pexe", pa.string()))


def _first_values(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Merge records of one UUID: the first record (by line), its gaps filled from the later ones."""
    rows = sorted(rows, key=lambda r: r["line"] or 0)
    out = dict(rows[0])
    for r in rows[1:]:
        for k, v in r.items():
            if out.get(k) is None and v is not None:
                out[k] = v
    return out


def assemble_cdm(records: pa.Table) -> pa.Table:
    """CDM record rows of one request -> event rows, joined within the request as the batch reader joins them.

    Events get their predicate object's path or remote end, their subject's pid, ppid, executable and user
    (the subject's executable filled from its exec events when the Subject record has none), and the
    parent's executable (by ``parentSubject``, else ``host|ppid``). Bad lines stay as quarantined rows.
    """
    from aptray.io.cdm import REC_SCHEMA, _Finish, _quarantined
    from aptray.io.contexts import EXEC_ACTIONS

    entities: dict[str, list[dict[str, Any]]] = {}
    subjects: dict[str, list[dict[str, Any]]] = {}
    events: list[dict[str, Any]] = []
    for rec in records.to_pylist():
        kind = rec["kind"]
        if kind == "entity":
            entities.setdefault(rec["uuid"], []).append(rec)
        elif kind == "subject":
            subjects.setdefault(rec["uuid"], []).append(rec)
        elif kind == "event":
            events.append(rec)
    ents = {u: _first_values(r) for u, r in entities.items()}
    subj = {u: _first_values(r) for u, r in subjects.items()}
    for ev in sorted(events, key=lambda e: e["timestamp"] or 0.0):  # later hints win, as in the batch reader
        s = subj.get(ev["subject"] or "")
        if s is None:
            continue
        exe = ev["object_path"] if ev["action"] in EXEC_ACTIONS and ev["object_path"] else ev["exe"]
        if exe:
            s["_exe_hint"] = exe
        if ev["ppid"] is not None:
            s["_ppid_hint"] = ev["ppid"]
    parents: dict[str, str] = {}
    for u, s in subj.items():
        hint: str | None = s.get("_exe_hint")
        if s["exe"] is None and hint:
            s["exe"] = hint
            if s["process_name"] is None:
                s["process_name"] = posixpath.basename(hint)
        if s["ppid"] is None:
            s["ppid"] = s.get("_ppid_hint")
        if s["exe"]:  # several subjects under one key: the largest value, as the batch reader's dedupe
            for key in (u, f"{s['host'] or ''}|{s['pid']}" if s["pid"] is not None else None):
                if key is not None:
                    parents[key] = max(parents.get(key, s["exe"]), s["exe"])
    joined: list[dict[str, Any]] = []
    for ev in events:
        row = {k: ev[k] for k in REC_SCHEMA.names}
        e = ents.get(ev["obj"] or "", {})
        row["e_object_path"], row["e_object_addr"] = e.get("object_path"), e.get("object_addr")
        s = subj.get(ev["subject"] or "")
        if s is not None:
            principal = ents.get(s["principal"] or "", {})
            key = s["parent"] or (f"{s['host'] or ''}|{s['ppid']}" if s["ppid"] is not None else "")
            row.update(s_host=s["host"], s_pid=s["pid"], s_ppid=s["ppid"], s_uid=principal.get("uid"),
                       s_process_name=s["process_name"], s_exe=s["exe"], s_pexe=parents.get(key))
        joined.append(row)
    schema = REC_SCHEMA
    for name, typ in _CDM_JOINED:
        schema = schema.append(pa.field(name, typ))
    parts: list[pa.Table] = []
    if joined:
        parts.append(_Finish(None)(pa.Table.from_pylist(joined, schema=schema)).drop_columns([PROCESS_KEY]))
    bad = records.filter(pc.equal(records.column("kind"), "quarantine"))
    if bad.num_rows:
        parts.append(_quarantined(bad).drop_columns([PROCESS_KEY]))
    return pa.concat_tables(parts) if parts else EVENT_SCHEMA.empty_table()


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
    events: Sequence[str | dict[str, Any]], rejected: list[tuple[int, str]], json_objects: bool = False
) -> tuple[bytes, dict[int, int]]:
    """Items of raw text lines (or JSON objects, written as one line each) -> the stream bytes and
    ``{line number: item}`` (1-based)."""
    lines: list[str] = []
    line_items: dict[int, int] = {}
    for i, ev in enumerate(events):
        if isinstance(ev, dict):
            if not json_objects:
                rejected.append((i, "expected raw text lines for this format, not a JSON object"))
                continue
            ev = json.dumps(ev, separators=(",", ":"))
        # "\n" only, as the file readers split: str.splitlines() would also cut at \x1c, \x85 or U+2028,
        # which JSON strings (CDM) and audit values may hold
        for part in ev.rstrip("\n").split("\n"):
            lines.append(part.removesuffix("\r"))
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
