"""Raw events of one HTTP request -> the canonical event table -> sentences, through the batch readers' parsers.

Online and batch parse identically: each source's ``parse_request`` (:data:`aptray.io.sources.SOURCES`)
writes the request's events into an in-memory stream exactly as they would appear in a file, runs the
reader's own streaming parser and the same assembly plan the batch reader runs on Ray Data (CDM and auditd
joins, process contexts), here on the request alone; the rows then go through the same
:func:`aptray.templating.base.templatize` with the artifact's template settings.

* ``beth``: CSV lines (a first line that is a BETH header is used as the header; otherwise
  ``request.header`` or the 16 BETH columns), or JSON objects keyed by BETH column names (other keys are
  ignored).
* ``auditd``: raw audit.log lines (an item may hold several lines); the records of one event are grouped
  by their serial, and an event is reported at the item of its first record.
* ``cdm``: DARPA TC CDM records (JSON objects or JSON text lines, CDM18 or CDM20), joined within the request
  to the Subject, object and Principal records it also carries; records that are not events are context:
  neither scored nor rejected.
* ``adapt``: CSV lines of a ``Process<Aspect>.csv`` (header first, or in ``request.header``), read as the
  artifact's aspect, or JSON objects keyed by column (the attributes not listed are 0); lines under another
  aspect's header (``ProcessEvent.csv`` lines sent to a ProcessAll model) are rejected, the reason naming the
  aspect they are (:func:`aptray.io.adapt.header_mismatch`).
* ``sentence``: sentences already templated by the client (no parsing).

Each parsed row is mapped back to the request item it came from by its line number in the stream; rows
the parser quarantines come back as rejected items with the parser's reason.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from aptray.config import IngestConfig, Source, TemplateConfig
from aptray.io.files import line_record_id
from aptray.io.request import REQUEST_FILE, Request, Requests
from aptray.io.sources import source_spec
from aptray.serve.schemas import EventFormat

log = logging.getLogger(__name__)


def format_source(fmt: EventFormat) -> Source | None:
    """The source a request format is parsed as (None for sentences)."""
    return None if fmt is EventFormat.SENTENCE else Source(fmt.value)


@dataclass
class Prepared:
    """The sentences of a request's events, each mapped back to its request item.

    Attributes:
        index: per sentence, the position in the request's events of the item it came from.
        record_ids: per sentence, the event's record id.
        sentences: the templated sentences.
        rejected: ``(index, reason)`` of items that could not be parsed.
        window_keys: per sentence, the process its event belongs to (:func:`aptray.windows.window_keys`).
        lines: per sentence, its event's line in the request stream (the event order within a process).
        table: the templated event rows (None for sentences sent as such): what attribution re-templates
            (:mod:`aptray.triage.attribute`); when requests were parsed together, the rows of all of them.
        table_rows: per sentence, its row in ``table`` (None: row i is sentence i).
    """

    index: list[int] = field(default_factory=list)
    record_ids: list[str] = field(default_factory=list)
    sentences: list[str] = field(default_factory=list)
    rejected: list[tuple[int, str]] = field(default_factory=list)
    window_keys: list[str] = field(default_factory=list)
    lines: list[int] = field(default_factory=list)
    items: int = 0
    table: pa.Table | None = None
    table_rows: list[int] | None = None

    def rows(self, sentences: Sequence[int]) -> pa.Table | None:
        """The templated event rows of the given sentences (None for sentences sent as such), with the record ids
        and lines of this request's own stream."""
        if self.table is None:
            return None
        if self.table_rows is None:
            return self.table.take(pa.array(sentences, pa.int64()))
        t = self.table.take(pa.array([self.table_rows[i] for i in sentences], pa.int64()))
        for name, values in (("line", self.lines), ("record_id", self.record_ids)):
            c = t.schema.get_field_index(name)
            t = t.set_column(c, t.schema.field(c), pa.array([values[i] for i in sentences], t.schema.field(c).type))
        return t

    def named(self, request_id: str) -> None:
        """Name the request in the record ids of events known by their line: ``<source>:<request id>:<line>``
        instead of ``<source>:request:<line>``, unique across requests as a file's name makes them across files
        (sources' own ids, CDM and ADAPT UUIDs, stay)."""
        mid = f":{REQUEST_FILE}:"
        for n, rid in enumerate(self.record_ids):
            src, sep, line = rid.partition(mid)
            if sep and ":" not in src and line.isdigit():
                self.record_ids[n] = line_record_id(src, request_id, int(line))

    def counts(self) -> dict[str, int]:
        """What became of the request's items: scored (an item of several events counts once), rejected, or
        context (records that only inform others: CDM subjects and objects, an event's later auditd records)."""
        scored = len(set(self.index))
        rejected = len({i for i, _ in self.rejected} - set(self.index))
        return {"items": self.items, "scored": scored, "rejected": rejected,
                "context": self.items - scored - rejected}


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
        header: CSV columns of headerless BETH or ADAPT lines.
        ingest: parser settings (field caps, and the artifact's aspect); the source is set from ``fmt``.

    Returns:
        The sentences with their request positions, and the rejected items.
    """
    source = format_source(fmt)
    if source is None:
        return _sentences(events)
    return _parsed(source, Request(events, header), template, ingest)


@dataclass(frozen=True)
class Job:
    """One request's :func:`prepare` arguments (:func:`prepare_many`)."""

    fmt: EventFormat
    events: Sequence[str | dict[str, Any]]
    template: TemplateConfig
    header: tuple[str, ...] | None = None
    ingest: IngestConfig | None = None

    def run(self) -> Prepared:
        """This request prepared on its own."""
        return prepare(self.fmt, self.events, self.template, self.header, self.ingest)


def prepare_many(jobs: Sequence[Job]) -> list[Prepared | Exception]:
    """:func:`prepare` of every job, with one parse and one templating for the jobs that can share them.

    Jobs of a source whose records are independent lines (:attr:`aptray.io.sources.SourceSpec.merges`: BETH) with
    the same format, header and settings objects are parsed as one stream (:class:`aptray.io.request.Requests`)
    and split again: each gets what :func:`prepare` gives it alone (item indexes, record ids and lines as in its
    own stream). A per-request parse costs about as much for one event as for thirty, so a loaded replica
    parses the requests it holds at once together. When a merged parse fails, each job is prepared alone.

    Returns:
        Per job, its :class:`Prepared`, or the exception its own :func:`prepare` raised.
    """
    out: list[Prepared | Exception | None] = [None] * len(jobs)
    groups: dict[tuple[Any, ...], list[int]] = {}
    for i, job in enumerate(jobs):
        source = format_source(job.fmt)
        if source is not None and source_spec(source).merges:
            groups.setdefault((job.fmt, id(job.template), id(job.ingest), job.header), []).append(i)
        else:
            out[i] = _alone(job)
    for idx in groups.values():
        merged: list[Prepared] | None = None
        if len(idx) > 1:
            try:
                merged = _merged([jobs[i] for i in idx])
            except Exception:  # a merge that does not apply (different headers) or a bad request: each alone
                log.debug("requests prepared one by one", exc_info=True)
        for n, i in enumerate(idx):
            out[i] = merged[n] if merged is not None else _alone(jobs[i])
    return [p for p in out if p is not None]


def _alone(job: Job) -> Prepared | Exception:
    try:
        return job.run()
    except Exception as exc:  # the caller answers this request, and only it, with the error
        return exc


def _merged(jobs: list[Job]) -> list[Prepared]:
    """The jobs (one format, header and settings) parsed as one stream, split back per job."""
    first = jobs[0]
    source = format_source(first.fmt)
    assert source is not None
    request = Requests.of([Request(job.events, job.header) for job in jobs])
    whole = _parsed(source, request, first.template, first.ingest)
    parts = [Prepared(items=len(job.events)) for job in jobs]
    for i, reason in whole.rejected:
        k, j = request.part_of(i)
        parts[k].rejected.append((j, reason))
    taken: list[list[int]] = [[] for _ in jobs]
    sources = whole.table.column("source").to_pylist() if whole.table is not None else []
    for r, (i, line) in enumerate(zip(whole.index, whole.lines, strict=True)):
        if i < 0:
            raise ValueError(f"row of line {line} maps to no request item")
        k, j = request.part_of(i)
        _, local = request.part_line(line)
        part = parts[k]
        part.index.append(j)
        part.sentences.append(whole.sentences[r])
        part.window_keys.append(whole.window_keys[r])
        part.lines.append(local)
        rid = whole.record_ids[r]
        part.record_ids.append(line_record_id(sources[r], REQUEST_FILE, local)
                               if rid == line_record_id(sources[r], REQUEST_FILE, line) else rid)
        taken[k].append(r)
    for part, rows in zip(parts, taken, strict=True):
        part.rejected.sort()
        if rows:
            part.table, part.table_rows = whole.table, rows
    return parts


def _parsed(source: Source, request: Request, template: TemplateConfig, ingest: IngestConfig | None) -> Prepared:
    spec = source_spec(source)
    cfg = (ingest or IngestConfig()).model_copy(update={"source": spec.source})
    table = spec.parse_request(request, cfg)
    out = Prepared(rejected=list(request.rejected), items=len(request.items))
    items = [request.item_of(n) for n in table.column("line").to_pylist()]
    bad = pc.is_valid(table.column("quarantine_reason"))
    for i, reason in zip(items, table.column("quarantine_reason").to_pylist(), strict=True):
        if reason is not None and i >= 0:
            out.rejected.append((i, str(reason)))
    good = table.filter(pc.invert(bad))
    if good.num_rows:
        from aptray.templating.base import templatize
        from aptray.windows import window_keys

        good_items = [i for i, b in zip(items, bad.to_pylist(), strict=True) if not b]
        done = templatize(good.drop_columns(["quarantine_reason", "raw"]), template)
        out.index = good_items
        out.record_ids = [str(r) for r in done.column("record_id").to_pylist()]
        out.sentences = [str(s) for s in done.column("sentence").to_pylist()]
        out.window_keys = window_keys(done)
        out.lines = [int(n or 0) for n in done.column("line").to_pylist()]
        out.table = done
    out.rejected.sort()
    return out


def _sentences(events: Sequence[str | dict[str, Any]]) -> Prepared:
    out = Prepared(items=len(events))
    for i, ev in enumerate(events):
        if isinstance(ev, str) and ev.strip():
            out.index.append(i)
            out.record_ids.append(f"sentence:{REQUEST_FILE}:{i + 1}")
            out.sentences.append(ev)
        else:
            out.rejected.append((i, "a sentence must be a non-empty string"))
    return out
