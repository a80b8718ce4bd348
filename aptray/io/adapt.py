"""The ADAPT process-context reader: ``Process<Aspect>.csv`` folders -> one canonical row per process.

Layout (DARPA TC Engagement 2, Berrada et al. 2020): a system folder holds ``ProcessEvent.csv``,
``ProcessExec.csv``, ``ProcessParent.csv``, ``ProcessNetflow.csv`` and sometimes ``ProcessAll.csv``. Column 1
(``Object_ID`` or ``UUID``) is the process UUID, every other column a 0/1 attribute. The ``ctx_*`` list of the
file's aspect holds the original names of the attributes set to 1. ``ProcessAll.csv`` prefixes each attribute
with its aspect: ``X0_`` Event, ``X1_`` Exec, ``X3_`` Netflow (checked against the single-aspect files of the
clearscope folders); ``X2_`` is taken to be Parent by position (no file with it survives).

Every other CSV of the folder is ground truth (``uuid,label``): a process is malicious iff its UUID appears in
any of them. Those files are small; they are read on the driver and the UUID set is shipped to the read tasks.
When ``ProcessAll.csv`` is absent, the All context is built by one hash partitioning of the single-aspect rows
on ``record_id`` (:func:`merge_process` per process), never by a dict of the whole trace on the driver.

Data rows are parsed without the csv module when they hold only a UUID and single 0/1 digits (the usual
case): the values are every other byte of the line, so wide files (6,100 columns) stay cheap.
"""

from __future__ import annotations

import csv
import json
import logging
import posixpath
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, BinaryIO

import pyarrow as pa

from aptray.config import Aspect, Source
from aptray.io.engine import RayEngine, per_group
from aptray.io.files import files_dataset, in_blocks, list_input, quarantine_row, read_lines
from aptray.io.fs import InputFile, Selection, open_binary, resolve
from aptray.io.labels import normalize_uuid, parse_uuids
from aptray.io.request import CsvFormat, Request, csv_fields, parse_stream
from aptray.schema import CONTEXT_COLUMNS, EVENT_SCHEMA

if TYPE_CHECKING:
    import pyarrow.fs as pafs
    import ray.data

    from aptray.config import IngestConfig

log = logging.getLogger(__name__)

SOURCE = "adapt"
#: Aspect-column prefixes of ``ProcessAll.csv``.
ALL_PREFIXES: dict[str, Aspect] = {"X0_": Aspect.EVENT, "X1_": Aspect.EXEC, "X2_": Aspect.PARENT,
                                   "X3_": Aspect.NETFLOW}
SINGLE_ASPECTS: tuple[Aspect, ...] = (Aspect.EVENT, Aspect.EXEC, Aspect.PARENT, Aspect.NETFLOW)
_FILE_NAME = re.compile(r"^Process(Event|Exec|Parent|Netflow|All)\.csv(\.gz)?$", re.IGNORECASE)


def file_aspect(name: str) -> Aspect | None:
    """The aspect of a ``Process<Aspect>.csv[.gz]`` file name, or None for any other file."""
    m = _FILE_NAME.match(posixpath.basename(name))
    if not m:
        return None
    return next(a for a in Aspect if a.value.lower() == m.group(1).lower())


def header_mismatch(names: list[str], aspect: Aspect) -> str | None:
    """Why a header's attribute columns cannot be ``aspect``'s, or None when they can (or there are none).

    Each ADAPT context names its columns its own way: ``ProcessAll.csv`` prefixes every one with ``X0_``..``X3_``,
    ``ProcessEvent.csv`` names CDM event types (``EVENT_READ``), the other three executables, parents or network
    peers. Read as another aspect, a file's rows would all become "no recorded activity" (All ignores unprefixed
    columns) or nonsense (an event type read as an executable), so a header with no column of the aspect's kind
    is refused, naming the aspect its columns are.
    """
    if not names:
        return None
    kinds = Counter(_column_kind(n) for n in names)
    if kinds[{Aspect.ALL: "all", Aspect.EVENT: "event"}.get(aspect, "other")]:
        return None
    files, read_as = _KINDS[kinds.most_common(1)[0][0]]
    example = ", ".join(names[:2]) + (", ..." if len(names) > 2 else "")
    return f"its columns ({example}) are those of {files}, not of Process{aspect.value}.csv: read it as {read_as}"


#: Column kinds of the ADAPT contexts (:func:`header_mismatch`): the files that have them, the aspects they are.
_KINDS = {"all": ("ProcessAll.csv (X0_..X3_ prefixes)", "All"), "event": ("ProcessEvent.csv (EVENT_* types)", "Event"),
          "other": ("ProcessExec, ProcessParent or ProcessNetflow.csv", "Exec, Parent or Netflow")}


def _column_kind(name: str) -> str:
    return "all" if name[:3] in ALL_PREFIXES else "event" if name.startswith("EVENT_") else "other"


def record_id(uuid: str) -> str:
    """The stable id of a process row (equal across aspects, so aspects join on it)."""
    return f"{SOURCE}:{uuid}"


class AdaptParser:
    """Streaming parser of one ``Process<Aspect>.csv`` (see :class:`aptray.io.files.Parser`).

    Args:
        malicious: normalised UUIDs of the ground truth (:func:`aptray.io.labels.normalize_uuid`).
        aspect: the aspect of files whose name does not tell it.
    """

    def __init__(self, malicious: frozenset[str], aspect: Aspect | None = None) -> None:
        self.malicious = malicious
        self.aspect = aspect

    def __call__(self, stream: BinaryIO, file: InputFile, cfg: IngestConfig, lines: Counter[str] | None = None
                 ) -> Iterator[pa.Table]:
        aspect = file_aspect(file.rel) or self.aspect
        if aspect is None:
            raise ValueError(f"{file.rel}: not a Process<Aspect>.csv file and no aspect given")
        counts = lines if lines is not None else Counter()
        yield from in_blocks(self._rows(stream, file, cfg, aspect, counts), cfg.block_rows)

    @staticmethod
    def _label_key(uuid: str) -> str | None:
        # Canonical dashed UUIDs (all ADAPT files) only need lower-casing; other styles are normalised.
        return uuid.lower() if len(uuid) == 36 and uuid[8] == "-" else normalize_uuid(uuid)

    def _rows(self, stream: BinaryIO, file: InputFile, cfg: IngestConfig, aspect: Aspect, counts: Counter[str]
              ) -> Iterator[dict[str, Any]]:
        lines = read_lines(stream)
        header, used = _read_header(lines)
        if header is None:
            counts["blank"] += used
            log.warning("%s: empty file", file.rel)
            return
        counts["header"] += used
        mismatch = header_mismatch(header[1:], aspect)
        if mismatch is not None and cfg.check_format:
            from aptray.errors import WrongSourceError

            raise WrongSourceError(f"{file.rel}: {mismatch} (--aspect). Nothing was written for it.")
        columns = _column_map(header[1:], aspect, file.rel)
        present = sorted({col for col, _ in columns if col is not None})
        ncols = len(header)
        nvals = ncols - 1
        commas = b"," * max(nvals - 1, 0)
        seen: set[str] = set()
        for line, raw in lines:
            if not raw.strip():
                counts["blank"] += 1  # a blank line is not a record
                continue
            try:
                ones, uuid, reason = _parse_line(raw, ncols, nvals, commas)
            except Exception as exc:  # one line's content, whatever it is, never stops the read
                ones, uuid, reason = None, None, f"unparseable row: {type(exc).__name__}: {exc}"[:200]
            if reason is None and uuid is not None and len(uuid) > cfg.max_field_chars:
                reason = f"oversized field: UUID of {len(uuid)} characters"
            if reason is None and uuid in seen:
                reason = f"duplicate UUID {uuid}"
            if reason is None and mismatch is not None:
                reason = f"header: {mismatch}"
            if reason is not None or uuid is None or ones is None:
                counts["quarantined"] += 1
                yield quarantine_row(SOURCE, file, line, raw, reason or "unparseable row")
                continue
            counts["record"] += 1
            seen.add(uuid)
            ctx: dict[str, list[str]] = {col: [] for col in present}
            for i in ones:
                col, name = columns[i]
                if col is not None:
                    ctx[col].append(name)
            yield {
                "record_id": record_id(uuid),
                "source": SOURCE,
                "source_file": file.rel,
                "line": line,
                "aspect": aspect.value,
                "malicious": 1 if self._label_key(uuid) in self.malicious else 0,
                **ctx,
            }


def _read_header(lines: Iterator[tuple[int, bytes]]) -> tuple[list[str] | None, int]:
    """Parse the header (which may span lines inside quotes); returns it and the lines it used."""
    buf = b""
    used = 0
    for _, raw in lines:
        used += 1
        buf = raw if not buf else buf + b"\n" + raw
        if buf.count(b'"') % 2 == 0:
            break
    if not buf.strip():
        return None, used
    text = buf.decode("utf-8", errors="replace").lstrip("\ufeff")
    try:
        return next(csv.reader([text], strict=False)), used
    except csv.Error:
        return [text], used  # one unusable header column: every data line is quarantined (wrong column count)


def _column_map(names: list[str], aspect: Aspect, rel: str) -> list[tuple[str | None, str]]:
    """For each attribute column: (ctx column, original attribute name); None for an unknown All prefix."""
    if aspect is not Aspect.ALL:
        col = CONTEXT_COLUMNS[aspect.value]
        return [(col, name) for name in names]
    out: list[tuple[str | None, str]] = []
    unknown = 0
    for name in names:
        prefix = name[:3]
        if prefix in ALL_PREFIXES:
            out.append((CONTEXT_COLUMNS[ALL_PREFIXES[prefix].value], name[3:]))
        else:
            out.append((None, name))
            unknown += 1
    if unknown:
        log.warning("%s: %d column(s) without a known aspect prefix (X0_..X3_) are ignored", rel, unknown)
    return out


def _parse_line(raw: bytes, ncols: int, nvals: int, commas: bytes) -> tuple[list[int] | None, str | None, str | None]:
    """Return (indices of the attributes set, UUID, quarantine reason or None)."""
    comma = raw.find(b",")
    if comma >= 0 and b'"' not in raw:
        rest = raw[comma + 1 :]
        vals = rest[::2]
        # Fast path: "uuid,0,1,0,..." — the values are every other byte.
        if len(rest) == 2 * nvals - 1 and rest[1::2] == commas and not vals.translate(None, b"01"):
            try:
                uuid = raw[:comma].decode("utf-8").strip()
            except UnicodeDecodeError:
                return None, None, "non-UTF-8 bytes"
            if not uuid:
                return None, None, "missing UUID"
            ones: list[int] = []
            i = vals.find(b"1")
            while i >= 0:
                ones.append(i)
                i = vals.find(b"1", i + 1)
            return ones, uuid, None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return None, None, "non-UTF-8 bytes"
    try:
        fields = next(csv.reader([text], strict=True))
    except csv.Error as exc:
        return None, None, f"malformed CSV: {exc}"
    if len(fields) != ncols:
        return None, None, f"wrong column count: expected {ncols}, got {len(fields)}"
    uuid = fields[0].strip()
    if not uuid:
        return None, None, "missing UUID"
    ones = []
    for i, value in enumerate(fields[1:]):
        v = value.strip()
        if v == "1":
            ones.append(i)
        elif v != "0":
            return None, None, f"value other than 0/1 in column {i + 2}: {v[:40]!r}"
    return ones, uuid, None


def load_malicious(fs: pafs.FileSystem, files: list[InputFile]) -> frozenset[str]:
    """Normalised UUIDs listed in the ground-truth CSVs (small files, read on the driver)."""
    uuids: set[str] = set()
    for f in files:
        with open_binary(fs, f.path) as stream:
            uuids |= parse_uuids(stream.read().decode("utf-8", errors="replace"))
    log.info("ground truth: %d UUID(s) from %d file(s)", len(uuids), len(files))
    return frozenset(uuids)


def merge_process(parts: list[dict[str, Any]], present: dict[str, list[str]]) -> dict[str, Any]:
    """Per-group function: the single-aspect rows of one process -> its All row (a quarantined row passes).

    Args:
        parts: every row with one ``record_id`` (quarantined rows have ids of their own, so come alone).
        present: folder (relative to the input root) -> the ``ctx_*`` columns whose aspect file was read
            there. An aspect whose file was read but does not list the process gets an empty list (as in
            ``ProcessAll.csv``); aspects without a file stay null.
    """
    if parts[0]["quarantine_reason"] is not None or parts[0]["aspect"] == Aspect.ALL.value:
        return parts[0]  # a quarantined row, or a ProcessAll.csv row of a folder that has one
    parts = sorted(parts, key=lambda r: r["source_file"])
    folder = posixpath.dirname(parts[0]["source_file"])
    merged: dict[str, Any] = {
        "record_id": parts[0]["record_id"],
        "source": SOURCE,
        "source_file": ";".join(r["source_file"] for r in parts),
        "line": parts[0]["line"],
        "aspect": Aspect.ALL.value,
        "malicious": max(r["malicious"] or 0 for r in parts),
        "extras": json.dumps({"lines": {r["source_file"]: r["line"] for r in parts}}, sort_keys=True),
    }
    for col in CONTEXT_COLUMNS.values():
        values = [v for r in parts if (v := r[col]) is not None]
        if values:
            merged[col] = list(dict.fromkeys(x for v in values for x in v))
        elif col in present.get(folder, ()):
            merged[col] = []
    return merged


@dataclass(frozen=True)
class _Folder:
    """One ADAPT system folder of an input: the files to read for the aspect, and its ground-truth files."""

    chosen: tuple[InputFile, ...]
    truth: tuple[InputFile, ...]
    aspect: Aspect


def _plan(files: list[InputFile], aspect: Aspect | None, uri: object) -> list[_Folder]:
    """Group listed files by folder and pick, per folder, the aspect's file(s) and the ground truth."""
    by_folder: dict[str, list[InputFile]] = {}
    for f in files:
        by_folder.setdefault(posixpath.dirname(f.rel), []).append(f)
    wanted = aspect or Aspect.ALL
    plans: list[_Folder] = []
    for _, members in sorted(by_folder.items()):
        by_aspect = {a: f for f in members if (a := file_aspect(f.rel)) is not None}
        if wanted in by_aspect:
            chosen = [by_aspect[wanted]]
        elif wanted is Aspect.ALL:
            chosen = [by_aspect[a] for a in SINGLE_ASPECTS if a in by_aspect]
        else:
            chosen = []
        truth = [f for f in members if file_aspect(f.rel) is None and f.rel.lower().endswith((".csv", ".csv.gz"))]
        if chosen:
            plans.append(_Folder(tuple(chosen), tuple(truth), wanted))
    if not plans:
        raise FileNotFoundError(f"no Process{wanted.value}.csv in {uri!r}")
    return plans


def _plans(uri: str | Selection, aspect: Aspect | None, cfg: IngestConfig) -> tuple[pafs.FileSystem, list[_Folder]]:
    """What to read: a Selection as listed; one file (its folder's other CSVs as ground truth); or every
    system folder of a folder tree."""
    import pyarrow.fs as pafs

    if isinstance(uri, Selection):  # a batch job's group: its folders' ground truth may lie outside the group
        if len(uri.files) == 1 and resolve(uri.root)[1] == uri.files[0].path:  # one file given as the input
            return uri.fs, [_file_plan(uri.fs, uri.files[0], aspect, uri.root)]
        return uri.fs, [p if p.truth else replace(p, truth=_folder_truth(uri.fs, p.chosen[0].path))
                        for p in _plan(list(uri.files), aspect, uri.root)]
    fs, path = resolve(uri)
    info = fs.get_file_info(path)
    if info.type == pafs.FileType.NotFound:
        raise FileNotFoundError(f"no ADAPT input at {uri!r}")
    if info.type == pafs.FileType.File:
        return fs, [_file_plan(fs, InputFile(info.path, posixpath.basename(info.path), info.size or 0), aspect, uri)]
    _, files = list_input(uri, SUFFIXES, cfg)
    return fs, _plan(files, aspect, uri)


def _file_plan(fs: pafs.FileSystem, file: InputFile, aspect: Aspect | None, uri: str) -> _Folder:
    """One context file given as the input, read directly or as a job's group: its name's aspect, else the one
    asked for (a file named otherwise, ``host1_events.csv --aspect Event``), else All; its folder's other CSVs are
    the ground truth."""
    named = file_aspect(file.path)
    if aspect is not None and named is not None and named is not aspect:
        raise ValueError(f"{uri!r} is a Process{named.value} file but aspect {aspect.value} was asked")
    return _Folder((file,), _folder_truth(fs, file.path), named or aspect or Aspect.ALL)


def read(uri: str | Selection, cfg: IngestConfig) -> ray.data.Dataset:
    """Read ADAPT system folders (or one ``Process<Aspect>.csv``), local or ``s3://``.

    Args:
        uri: a system folder, a folder above several (each with its own ground truth), one
            ``Process<Aspect>.csv[.gz]`` file, or an already listed :class:`~aptray.io.fs.Selection`.
        cfg: ingest settings; ``cfg.aspect`` picks the file (None means All); ``cfg.labels`` names a
            ground-truth file to use instead of the folders' other CSVs.

    Returns:
        One row per process in :data:`aptray.schema.EVENT_SCHEMA`; bad rows are kept, flagged by
        ``quarantine_reason``.

    Raises:
        FileNotFoundError: no folder has a file for the aspect asked for.
    """
    cfg = cfg.model_copy(update={"source": Source.ADAPT})
    fs, plans = _plans(uri, cfg.aspect, cfg)
    if cfg.labels:
        lfs, lpath = resolve(cfg.labels)
        malicious = load_malicious(lfs, [InputFile(lpath, posixpath.basename(lpath), 0)])
    else:
        malicious = load_malicious(fs, [t for p in plans for t in p.truth])
    chosen = [f for p in plans for f in p.chosen]
    joins = [p for p in plans if len(p.chosen) > 1]
    parser = AdaptParser(malicious, None if joins else plans[0].aspect)
    ds = files_dataset(uri, parser, cfg, files=chosen, fs=fs)
    if not joins:
        return ds
    present = {posixpath.dirname(p.chosen[0].rel): [CONTEXT_COLUMNS[a.value] for f in p.chosen
                                                     if (a := file_aspect(f.rel)) is not None] for p in joins}
    log.info("no ProcessAll.csv in %d folder(s): joining the single aspects on the process UUID", len(joins))
    engine = RayEngine(max(1, min(256, -(-sum(f.size for f in chosen) // _MERGE_BYTES))))
    return per_group(engine, ds, "record_id", merge_process, EVENT_SCHEMA, rows=True, present=present)


#: Input bytes per merge partition (processes of one partition are merged in one block call).
_MERGE_BYTES = 32 << 20

#: The file endings an ADAPT input lists (process contexts and ground truth).
SUFFIXES: tuple[str, ...] = (".csv", ".csv.gz")


def is_header(fields: list[str]) -> bool:
    """Whether a parsed CSV line is an ADAPT header (first column ``Object_ID`` or ``UUID``)."""
    return bool(fields) and fields[0].strip().lstrip("\ufeff").lower() in ("object_id", "uuid")


#: ADAPT items online: JSON objects may list only the attributes set (an attribute not listed is 0); every column is
#: an attribute, so a key outside a header the request gives is refused.
CSV_FORMAT = CsvFormat("ADAPT", is_header, absent="0")


def parse_request(request: Request, cfg: IngestConfig) -> pa.Table:
    """The process rows of one online request: CSV lines of a ``Process<Aspect>.csv``, header first (or in
    ``request.header``). The aspect is ``cfg.aspect`` (the artifact's); ``ProcessAll`` lines carry their
    ``X0_``..``X3_`` prefixes as in the file. JSON objects keyed by column may list only the attributes that are
    set. Labels are unknown online."""
    aspect = cfg.aspect or Aspect.ALL
    data = request.csv(CSV_FORMAT)
    # a header of another aspect rejects the request's lines with the reason (never a 5xx)
    table = parse_stream(AdaptParser(frozenset(), aspect), data, cfg.model_copy(update={"check_format": False}))
    if table.num_rows:  # no ground truth online: unknown, not benign
        i = table.schema.get_field_index("malicious")
        table = table.set_column(i, table.schema.field(i), pa.nulls(table.num_rows, pa.int8()))
    return table


def _folder_truth(fs: pafs.FileSystem, context_file: str) -> tuple[InputFile, ...]:
    """The ground truth beside one context file: the other CSVs of its folder that name no aspect."""
    return tuple(f for f in _list_folder(fs, posixpath.dirname(context_file))
                 if file_aspect(f.rel) is None and f.path != context_file and f.rel.lower().endswith(SUFFIXES))


def _list_folder(fs: pafs.FileSystem, path: str) -> list[InputFile]:
    """The plain files directly in ``path``, sorted, hidden files left out."""
    import pyarrow.fs as pafs

    infos = fs.get_file_info(pafs.FileSelector(path, recursive=False))
    files = [InputFile(i.path, posixpath.basename(i.path), i.size or 0) for i in infos
             if i.type == pafs.FileType.File and not posixpath.basename(i.path).startswith(".")]
    return sorted(files, key=lambda f: f.rel)


__all__ = ["AdaptParser", "file_aspect", "load_malicious", "merge_process", "parse_request", "read", "record_id"]


def looks_like(lines: list[str]) -> bool:
    """Whether the first non-blank line of a file is an ADAPT header (``Object_ID``/``UUID`` first)."""
    fields = csv_fields(lines[0]) if lines else None
    return fields is not None and is_header(fields)
