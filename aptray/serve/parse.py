"""Raw events of one HTTP request -> the canonical event table -> sentences, through the batch readers' parsers.

Online and batch parse identically: each source's ``parse_request`` (:data:`aptray.io.sources.SOURCES`)
writes the request's events into an in-memory stream exactly as they would appear in a file, runs the
reader's own streaming parser and the same assembly plan the batch reader runs on Ray Data (CDM and auditd
joins, process contexts), here on the request alone; the rows then go through the same
:func:`aptray.templating.base.templatize` with the artifact's template settings.

* ``beth``: CSV lines (a first line that is a BETH header is used as the header; otherwise
  ``request.header`` or the 16 BETH columns), or JSON objects keyed by BETH column names.
* ``auditd``: raw audit.log lines (an item may hold several lines); the records of one event are grouped
  by their serial, and an event is reported at the item of its first record.
* ``cdm``: DARPA TC CDM records (JSON objects or JSON text lines, CDM18 or CDM20), joined within the request
  to the Subject, object and Principal records it also carries; records that are not events are context:
  neither scored nor rejected.
* ``adapt``: CSV lines of a ``Process<Aspect>.csv`` (header first, or in ``request.header``), read as the
  artifact's aspect.
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
from aptray.io.request import REQUEST_FILE, Request
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
        rows: the templated event rows, one per sentence (None for sentences sent as such): what attribution
            re-templates (:mod:`aptray.triage.attribute`).
    """

    index: list[int] = field(default_factory=list)
    record_ids: list[str] = field(default_factory=list)
    sentences: list[str] = field(default_factory=list)
    rejected: list[tuple[int, str]] = field(default_factory=list)
    window_keys: list[str] = field(default_factory=list)
    lines: list[int] = field(default_factory=list)
    items: int = 0
    rows: pa.Table | None = None

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
    return _parsed(source, events, template, header, ingest)


def _parsed(source: Source, events: Sequence[str | dict[str, Any]], template: TemplateConfig,
            header: Sequence[str] | None, ingest: IngestConfig | None) -> Prepared:
    spec = source_spec(source)
    cfg = (ingest or IngestConfig()).model_copy(update={"source": spec.source})
    request = Request(events, header)
    table = spec.parse_request(request, cfg)
    out = Prepared(rejected=list(request.rejected), items=len(events))
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
        out.rows = done
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
