"""The raw items of one online request, written as the stream a file of that format would hold.

Online and batch parse identically: a source's ``parse_request`` writes the request's items into an
in-memory stream exactly as they would appear in a file (:meth:`Request.lines`, :meth:`Request.csv`), runs
the source's own streaming parser over it (:func:`parse_stream`, the parser that
:func:`aptray.io.files.files_dataset` runs per file) and then the same assembly plan as the batch reader, on
a :class:`~aptray.io.engine.LocalEngine`. Every parsed row keeps its line number in the stream, which
:attr:`Request.line_items` maps back to the request item it came from.
"""

from __future__ import annotations

import bisect
import csv
import io
import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, BinaryIO

import pyarrow as pa

from aptray.io.fs import InputFile

if TYPE_CHECKING:
    from aptray.config import IngestConfig

#: The name parsed rows carry as their source file (``record_id`` is ``<source>:request:<line>``).
REQUEST_FILE = "request"

Item = str | dict[str, Any]


def scalar_field(value: Any) -> str:
    """A JSON scalar as a CSV field: ``true``/``false`` as ``1``/``0`` (the 0/1 flags BETH and ADAPT files hold;
    Python's ``str`` would write ``True``), anything else as its text."""
    return str(int(value)) if isinstance(value, bool) else str(value)


@dataclass(frozen=True)
class CsvFormat:
    """How a CSV source's request items are written as its file (:meth:`Request.csv`).

    Attributes:
        what: the format's name in reasons (``BETH``).
        is_header: whether a parsed first line is a header of this format.
        default: the columns of headerless lines when the request names none.
        to_field: a JSON value -> its CSV field text (lists and dicts as the format writes them; booleans as 1/0).
        ignore_unknown: whether a JSON object's keys that are not columns are ignored: fields a record may carry
            beyond those the format reads (a newer export's column, a client's note). Else the object is refused,
            naming them: where every column is data (ADAPT's attributes), a key the header lacks is data it
            cannot place. An object with no column among its keys is refused either way.
        absent: the field of a column an object does not have, past the first (the record's own key stays empty,
            for the parser to name it missing): ``"0"`` where an attribute not listed is not set (ADAPT).
    """

    what: str
    is_header: Callable[[list[str]], bool]
    default: Sequence[str] | None = None
    to_field: Callable[[Any], str] = scalar_field
    ignore_unknown: bool = False
    absent: str = ""

    def fields(self, item: dict[str, Any], columns: Sequence[str]) -> list[str]:
        """A JSON object's CSV fields under ``columns``; ValueError (the reason) when it cannot be written."""
        known = set(columns)
        unknown = [key for key in item if key not in known]
        if unknown and (not self.ignore_unknown or len(unknown) == len(item)):
            names = ", ".join(map(json.dumps, unknown[:5])) + (", ..." if len(unknown) > 5 else "")
            raise ValueError(f"no {self.what} column among its keys ({names})" if len(unknown) == len(item)
                             else f"unknown {self.what} column(s): {names}")
        out = []
        for n, column in enumerate(columns):
            value = item.get(column)
            out.append(self.to_field(value) if value is not None else self.absent if n else "")
        return out


@dataclass
class Request:
    """A request's items and what became of them while the stream was written.

    Attributes:
        items: the request's events (text lines or JSON objects).
        header: CSV column names for lines sent without a header line.
        rejected: ``(item index, reason)`` of items that could not be written as a record.
        line_items: stream line number (1-based) -> item index.
    """

    items: Sequence[Item]
    header: Sequence[str] | None = None
    rejected: list[tuple[int, str]] = field(default_factory=list)
    line_items: dict[int, int] = field(default_factory=dict)

    def lines(self, json_objects: bool = False) -> bytes:
        """Items of raw text lines (or JSON objects, one line each) as a stream; an item may hold several lines.

        Lines are split at ``\\n`` only, as the file readers split: ``str.splitlines()`` would also cut at
        ``\\x1c``, ``\\x85`` or U+2028, which JSON strings (CDM) and audit values may hold.
        """
        lines: list[str] = []
        for i, item in enumerate(self.items):
            if isinstance(item, dict):
                if not json_objects:
                    self.rejected.append((i, "expected raw text lines for this format, not a JSON object"))
                    continue
                item = json.dumps(item, separators=(",", ":"))
            if not item.strip():
                self.rejected.append((i, "no event in this item (blank line)"))
                continue
            for part in item.rstrip("\n").split("\n"):
                lines.append(part.removesuffix("\r"))
                self.line_items[len(lines)] = i
        return ("\n".join(lines) + "\n").encode("utf-8") if lines else b""

    def csv(self, fmt: CsvFormat) -> bytes:
        """Items of CSV lines (or JSON objects keyed by column) as a CSV stream, header first.

        The header is the first item when ``fmt.is_header`` accepts it, else :attr:`header`, else ``fmt.default``;
        without any, JSON objects name their own columns (their keys, in first-seen order, a key that starts a
        header first) and other items are rejected. Blank items hold no record and are rejected; an object's fields
        are written by :meth:`CsvFormat.fields`.
        """
        items = list(enumerate(self.items))
        columns = list(self.header) if self.header else (list(fmt.default) if fmt.default else None)
        first = items[0][1] if items else None
        if isinstance(first, str) and (parsed := csv_fields(first)) is not None and fmt.is_header(parsed):
            columns = parsed
            items = items[1:]
        if columns is None and items and all(isinstance(item, dict) for _, item in items):
            # a format without default columns (ADAPT): JSON objects name their own; the record's key column (the
            # one a header starts with: ADAPT's UUID) goes first, wherever an object has it
            columns = sorted(dict.fromkeys(key for _, item in items for key in item),
                             key=lambda c: not fmt.is_header([c]))
        if columns is None:
            self.rejected += [(i, f"no {fmt.what} header: send it as the first line or in 'header'") for i, _ in items]
            return b""
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(columns)
        line = 1
        for i, item in items:
            if isinstance(item, dict):
                try:
                    writer.writerow(fmt.fields(item, columns))
                except ValueError as exc:
                    self.rejected.append((i, str(exc)))
                    continue
            elif "\n" in item or "\r" in item:
                self.rejected.append((i, f"a {fmt.what} event must be one CSV line"))
                continue
            elif not item.strip():
                self.rejected.append((i, "no event in this item (blank line)"))
                continue
            else:
                buf.write(item + "\n")
            line += 1
            self.line_items[line] = i
        return buf.getvalue().encode("utf-8")

    def item_of(self, line: int | None) -> int:
        """The item a stream line came from (-1 for none)."""
        return self.line_items.get(int(line), -1) if line is not None else -1


class Unmergeable(ValueError):
    """Requests whose streams cannot be joined into one (their CSV headers differ)."""


@dataclass
class Requests(Request):
    """Several requests written as one CSV stream, for a format whose records are single CSV lines that do not
    depend on each other (:attr:`aptray.io.sources.SourceSpec.merges`): one parse serves the requests a replica
    holds at once.

    Each part writes its own stream exactly as it would alone (:meth:`Request.csv`); the merged stream is the
    shared header followed by every part's body. Items are numbered across the parts (:meth:`part_of` maps one
    back), and :meth:`part_line` maps a line of the merged stream to the line it has in its part's own stream, so
    a row can get the ids it gets when its request is parsed alone.

    Attributes:
        parts: the requests, in order.
        starts: per part, the number of its first item across the parts.
        shifts: per part, the merged stream's body lines before its own body (set when the stream is written).
    """

    parts: Sequence[Request] = ()
    starts: list[int] = field(default_factory=list)
    shifts: list[int] = field(default_factory=list)

    @classmethod
    def of(cls, parts: Sequence[Request]) -> Requests:
        """The parts as one request (their items concatenated)."""
        starts = [0]
        for part in parts[:-1]:
            starts.append(starts[-1] + len(part.items))
        return cls(items=[item for part in parts for item in part.items], parts=parts, starts=starts)

    def lines(self, json_objects: bool = False) -> bytes:
        """Not for merged requests: line formats join records within a stream (CDM, auditd)."""
        raise TypeError("merged requests are written as CSV only")

    def csv(self, fmt: CsvFormat) -> bytes:
        """The shared header, then every part's CSV body; :class:`Unmergeable` when the parts' headers differ."""
        head: bytes | None = None
        bodies: list[bytes] = []
        self.shifts, shift = [], 0
        for part in self.parts:
            first, _, body = part.csv(fmt).partition(b"\n")
            if first:
                if head is None:
                    head = first
                elif first != head:
                    raise Unmergeable("the requests' CSV headers differ")
            self.shifts.append(shift)
            bodies.append(body)
            shift += body.count(b"\n")
        self.rejected = [(start + i, reason) for part, start in zip(self.parts, self.starts, strict=True)
                         for i, reason in part.rejected]
        return head + b"\n" + b"".join(bodies) if head is not None else b""

    def part_line(self, line: int) -> tuple[int, int]:
        """(part, its line in the part's own stream) of a line of the merged stream."""
        k = bisect.bisect_right(self.shifts, line - 2) - 1  # line 1 is the header
        return k, line - self.shifts[k]

    def part_of(self, item: int) -> tuple[int, int]:
        """(part, its item index in the part) of an item numbered across the parts."""
        k = bisect.bisect_right(self.starts, item) - 1
        return k, item - self.starts[k]

    def item_of(self, line: int | None) -> int:
        """The item (numbered across the parts) a line of the merged stream came from (-1 for none)."""
        if line is None or not self.parts:
            return -1
        k, local = self.part_line(int(line))
        i = self.parts[k].item_of(local) if k >= 0 else -1
        return self.starts[k] + i if i >= 0 else -1


def csv_fields(line: str) -> list[str] | None:
    """The fields of one CSV line (a leading BOM dropped), or None when it is not CSV."""
    try:
        return next(csv.reader([line.lstrip("\ufeff")]))
    except (csv.Error, StopIteration):
        return None


Parse = Callable[[BinaryIO, InputFile, "IngestConfig"], Iterator[pa.Table]]


def parse_stream(parse: Parse, data: bytes, cfg: IngestConfig, schema: pa.Schema | None = None) -> pa.Table:
    """Run a source's streaming file parser over a request's stream; one table (``schema`` when empty).

    Args:
        parse: the parser :func:`aptray.io.files.files_dataset` runs per file.
        data: the stream (:meth:`Request.lines` or :meth:`Request.csv`).
        cfg: ingest settings (field caps); the request is parsed as one block.
        schema: the parser's output schema (default :data:`aptray.schema.EVENT_SCHEMA`).
    """
    from aptray.schema import EVENT_SCHEMA

    cfg = cfg.model_copy(update={"block_rows": 1 << 30})
    file = InputFile(REQUEST_FILE, REQUEST_FILE, len(data))
    tables = [t for t in parse(io.BytesIO(data), file, cfg) if t.num_rows] if data else []
    if tables:
        return pa.concat_tables(tables)
    return (schema or EVENT_SCHEMA).empty_table()
