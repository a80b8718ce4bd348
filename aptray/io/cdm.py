"""Reader for DARPA TC CDM records: JSON lines (CDM18 of Engagement 3, CDM20 conversions) and Avro object-container
files (Engagement 5's release format, ``*.bin``, ``*.bin.N``, ``*.bin.N.gz``).

Both union-key styles are accepted (``{"datum":{"com.bbn.tc.schema.avro.cdm18.Event":...}}`` and the short
``{"datum":{"Event":...}}``), Avro-JSON wrappers (``{"long":..}``, ``{"string":..}``, ``{"UUID":..}``) are
unwrapped, and every UUID is normalised (:func:`aptray.io.labels.normalize_uuid`). An Avro file is recognised by
its magic bytes, whatever its name, and decoded with its embedded writer schema (fastavro) into the shape of a JSON
line (a named union branch is a ``(name, value)`` pair), so one record parser serves both; its records count as
its lines.

Events are joined to their subject (process), the subject to its principal and parent, and events to
their predicate object, by UUID with Ray Data hash-shuffle joins and groupbys: no single-machine dict of
the trace, and a record may come anywhere in the stream (a subject after its events is still joined).
Record types that are not understood are counted and logged, never fatal; lines that are not JSON are
quarantined with their raw text, and a damaged stretch of an Avro container leaves one quarantine row that says
where and why (reading resumes at its next sync marker).
"""

from __future__ import annotations

import json
import logging
import math
import posixpath
from collections import Counter
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, BinaryIO

import pyarrow as pa
import pyarrow.compute as pc

from aptray.config import Source
from aptray.io.contexts import EXEC_ACTIONS, PROCESS_KEY, aggregate
from aptray.io.engine import Engine, LocalEngine, T, conform_to, keep, lookup, per_group
from aptray.io.files import in_blocks, read_joined, read_lines
from aptray.io.fs import InputFile, Selection
from aptray.io.labels import normalize_uuid
from aptray.io.request import Request, parse_stream
from aptray.schema import EVENT_SCHEMA

if TYPE_CHECKING:
    import ray.data

    from aptray.config import IngestConfig

log = logging.getLogger(__name__)

SOURCE = "cdm"
#: File endings (also behind a part number: E3's ``x.json.3``, E5's ``x.bin.12.gz``; :func:`aptray.io.fs.has_suffix`).
SUFFIXES = (".json", ".jsonl", ".json.gz", ".jsonl.gz", ".cdm", ".bin", ".bin.gz", ".avro", ".avro.gz")
AVRO_MAGIC = b"Obj\x01"
#: Inputs up to this size join in one Ray task (``ingest.join_in_one_task_bytes`` overrides it): at 301 MB of JSON
#: that task peaked at 1.16 GB and took 16 s against 41 s shuffled (``bench/ingest.py --join``, 2 cores).
JOIN_IN_ONE_TASK_BYTES = 256 << 20

#: Record types understood (short names); others are counted as unknown.
KNOWN_TYPES = frozenset({
    "Event", "Subject", "FileObject", "NetFlowObject", "SrcSinkObject", "UnnamedPipeObject", "MemoryObject",
    "IpcObject", "RegistryKeyObject", "PacketSocketObject", "Principal", "Host", "TimeMarker", "StartMarker",
    "EndMarker", "UnitDependency", "ProvenanceTagNode", "TagRunLengthTuple", "CryptographicHash",
})

#: The intermediate record table (one row per parsed CDM record), before the joins.
REC_SCHEMA = pa.schema([
    pa.field("kind", pa.string()),  # event | subject | entity | quarantine
    pa.field("uuid", pa.string()),
    pa.field("subject", pa.string()),
    pa.field("obj", pa.string()),
    pa.field("parent", pa.string()),
    pa.field("principal", pa.string()),
    pa.field("host", pa.string()),
    pa.field("timestamp", pa.float64()),
    pa.field("tid", pa.int64()),
    pa.field("pid", pa.int64()),
    pa.field("ppid", pa.int64()),
    pa.field("uid", pa.int64()),
    pa.field("action", pa.string()),
    pa.field("object_path", pa.string()),
    pa.field("object_addr", pa.string()),
    pa.field("args", pa.string()),
    pa.field("return_value", pa.int64()),
    pa.field("exe", pa.string()),
    pa.field("process_name", pa.string()),
    pa.field("source_file", pa.string()),
    pa.field("line", pa.int64()),
    pa.field("extras", pa.string()),
    pa.field("quarantine_reason", pa.string()),
    pa.field("raw", pa.string()),
])

_WRAPPERS = frozenset({"string", "long", "int", "map", "array", "boolean", "bytes", "float", "double", "UUID"})


def _u(value: Any) -> Any:
    """Unwrap an Avro-JSON union branch (``{"long": 5}`` -> 5, ``{"...cdm18.UUID": "..."}`` -> "...") or a named
    branch as fastavro decodes it from an Avro container (``("...cdm20.UUID", b"...")`` -> the bytes)."""
    if isinstance(value, tuple) and len(value) == 2 and isinstance(value[0], str):
        return value[1]
    if isinstance(value, dict) and len(value) == 1:
        key = next(iter(value))
        if key in _WRAPPERS or key.endswith(".UUID"):
            return value[key]
    return value


#: THEIA's nil UUID is a real key (its swapper/0 subject has it) but, as a second object, means none.
_NIL_UUID = "00000000-0000-0000-0000-000000000000"


def _uuid(value: Any) -> str | None:
    v = _u(value)
    return normalize_uuid(v) if isinstance(v, (str, bytes)) else None


_INT64 = 1 << 63


def _int(value: Any) -> int | None:
    """An integer field: None when absent or not a number (free-form property text); a number that is not a
    finite int64 (``Infinity``, ``1e999``, 30 digits) or a list or object raises ValueError (quarantine)."""
    v = _u(value)
    if v is None or isinstance(v, bool):
        return None
    if isinstance(v, (dict, list)):
        raise ValueError(f"expected an integer, got a JSON {'object' if isinstance(v, dict) else 'array'}")
    if isinstance(v, float):
        if not math.isfinite(v) or not v.is_integer():
            raise ValueError(f"expected an integer, got {v!r}")
        v = int(v)
    elif isinstance(v, str):
        try:
            v = int(v)
        except ValueError:
            return None
    if not isinstance(v, int) or not -_INT64 <= v < _INT64:
        raise ValueError(f"integer out of range: {str(v)[:40]}")
    return v


def seconds(ts: Any) -> float | None:
    """A CDM ``timestampNanos`` in seconds; producers that wrote micro- or milliseconds are detected by size."""
    t = _int(ts)
    if not t:
        return None
    for scale in (1e9, 1e6, 1e3):
        if t / scale > 1e8:  # after 1973: the right unit
            return t / scale
    return float(t)


def endpoint(addr: Any, port: Any) -> str | None:
    """``ip:port`` (``[v6]:port``) of a NetFlowObject's remote end, or None when unknown."""
    a, p = _u(addr), _int(port)
    if not a or a in ("NA", "LOCAL"):
        return None
    a = str(a).split(" ")[0]
    host = f"[{a}]" if ":" in a else a
    return f"{host}:{p}" if p is not None else host


def _props(record: dict[str, Any]) -> dict[str, Any]:
    p = _u(record.get("properties"))
    return p if isinstance(p, dict) else {}


def parse_record(obj: Any, line_host: str | None) -> tuple[str, dict[str, Any] | None]:
    """Map one decoded CDM JSON line to ``(record type, intermediate row or None)``.

    Raises:
        ValueError: a line that is JSON but not a CDM datum, or a known record without a UUID.
    """
    datum = obj.get("datum") if isinstance(obj, dict) else None
    if isinstance(datum, tuple) and len(datum) == 2 and isinstance(datum[0], str):  # from an Avro container
        full, rec = datum
    elif isinstance(datum, dict) and len(datum) == 1:
        full, rec = next(iter(datum.items()))
    else:
        raise ValueError("not a CDM datum (expected {'datum': {RecordType: {...}}})")
    rtype = full.rsplit(".", 1)[-1]
    if rtype not in KNOWN_TYPES or not isinstance(rec, dict):
        return rtype, None
    if rtype in ("Host", "TimeMarker", "StartMarker", "EndMarker", "UnitDependency", "ProvenanceTagNode",
                 "TagRunLengthTuple", "CryptographicHash"):
        return rtype, None
    uuid = _uuid(rec.get("uuid"))
    if uuid is None:
        raise ValueError(f"{rtype} record without a uuid")
    props = _props(rec)
    base_value = rec.get("baseObject")
    base: dict[str, Any] = base_value if isinstance(base_value, dict) else {}
    host = _uuid(rec.get("hostId")) or _uuid(base.get("hostId")) or line_host or _uuid(props.get("host"))
    if rtype == "Event":
        cmdline = props.get("cmdLine")
        rest = {k: v for k, v in props.items() if k not in ("host", "exec", "ppid", "cmdLine", "return_value", "rc")}
        size = _int(rec.get("size"))
        if size is not None:
            rest["size"] = size
        path2 = _u(rec.get("predicateObject2Path"))
        if path2:
            rest["object2_path"] = path2
        obj2 = _uuid(rec.get("predicateObject2"))
        if obj2 and obj2 != _NIL_UUID:
            rest["object2"] = obj2
        return rtype, {
            "kind": "event", "uuid": uuid, "subject": _uuid(rec.get("subject")),
            "obj": _uuid(rec.get("predicateObject")),
            "host": host, "timestamp": seconds(rec.get("timestampNanos")), "tid": _int(rec.get("threadId")),
            "ppid": _int(props.get("ppid")), "action": _u(rec.get("type")),
            "object_path": _u(rec.get("predicateObjectPath")),
            "args": json.dumps(str(cmdline).split()) if cmdline else None,
            "return_value": _int(props.get("return_value", props.get("rc"))),
            "exe": props.get("exec") or None, "extras": json.dumps(rest, sort_keys=True) if rest else None,
        }
    if rtype == "Subject":
        cmdline = _u(rec.get("cmdLine"))
        exe = props.get("path") or props.get("exe") or (str(cmdline).split()[0] if cmdline else None)
        name = props.get("name") or (posixpath.basename(exe) if exe else None)
        return rtype, {
            "kind": "subject", "uuid": uuid, "parent": _uuid(rec.get("parentSubject")),
            "principal": _uuid(rec.get("localPrincipal")), "host": host, "pid": _int(rec.get("cid")),
            "ppid": _int(props.get("ppid")), "timestamp": seconds(rec.get("startTimestampNanos")),
            "exe": exe or name, "process_name": name,
            "args": json.dumps(str(cmdline).split()) if cmdline else None,
            "extras": json.dumps({"subject_type": _u(rec.get("type"))}),
        }
    if rtype == "Principal":
        return rtype, {"kind": "entity", "uuid": uuid, "uid": _int(rec.get("userId"))}
    if rtype == "NetFlowObject":
        addr = endpoint(rec.get("remoteAddress"), rec.get("remotePort"))
        return rtype, ({"kind": "entity", "uuid": uuid, "object_addr": addr} if addr else None)
    bprops = _u(base.get("properties")) or {}
    path = bprops.get("path") or bprops.get("filename") if isinstance(bprops, dict) else None
    return rtype, ({"kind": "entity", "uuid": uuid, "object_path": path} if path else None)


def parse(stream: BinaryIO, file: InputFile, cfg: IngestConfig, lines: Counter[str] | None = None
          ) -> Iterator[pa.Table]:
    """Parse one CDM stream (JSON lines or an Avro container) into intermediate record tables (:data:`REC_SCHEMA`).

    No record's content can stop the stream: a line that is not JSON, nests too deeply, holds numbers beyond
    int64 or values of the wrong JSON type becomes a quarantine row with the reason.
    """
    counts: Counter[str] = Counter()
    lines = lines if lines is not None else Counter()
    for table in in_blocks(_records(stream, file, cfg, counts, lines), cfg.block_rows, REC_SCHEMA, _bad_record):
        # classes from the built block, so a row the schema refused (now a quarantine row) is counted as one:
        # an event is a record; a subject, object or principal only informs events (context)
        kinds = Counter(table.column("kind").to_pylist())
        lines["record"] += kinds.pop("event", 0)
        lines["quarantined"] += kinds.pop("quarantine", 0)
        lines["context"] += sum(kinds.values())
        yield table
    unknown = {k: v for k, v in counts.items() if k not in KNOWN_TYPES and k != "<quarantined>"}
    if unknown:
        log.warning("%s: skipped unknown CDM record types %s", file.rel, dict(unknown))
    log.info("%s: CDM record counts %s", file.rel, dict(counts))


def _bad_record(row: dict[str, Any], reason: str) -> dict[str, Any]:
    raw = row.get("_raw")
    return {"kind": "quarantine", "quarantine_reason": reason, "source_file": row.get("source_file"),
            "line": row.get("line"), "raw": _raw_text(raw)}


def _raw_text(raw: Any, limit: int | None = None) -> str | None:
    """A JSON line as text (its first ``limit`` bytes), or an Avro record as JSON (raw bytes as hex, union branches
    as [name, value])."""
    if isinstance(raw, bytes):
        return raw[:limit].decode("utf-8", errors="replace")
    if isinstance(raw, dict):
        return json.dumps(raw, default=lambda b: b.hex() if isinstance(b, bytes) else str(b))
    return raw


#: One decoded unit of a file: its number, the decoded datum (None when it failed), its raw form (a JSON line's
#: bytes, an Avro record) for a quarantine row, the failure.
Datum = tuple[int, Any, Any, str | None]


def _datums(stream: BinaryIO, cfg: IngestConfig, lines: Counter[str]) -> Iterator[Datum]:
    """The file's datums, from JSON lines or, when it starts with Avro's magic bytes, from an Avro container."""
    peek = getattr(stream, "peek", None)
    if peek is not None and peek(len(AVRO_MAGIC))[: len(AVRO_MAGIC)] == AVRO_MAGIC:
        yield from _avro_datums(stream)
        return
    for n, raw in read_lines(stream):
        if not raw.strip():
            lines["blank"] += 1
            continue
        try:
            if len(raw) > cfg.max_field_chars * 4:
                raise ValueError(f"oversized line ({len(raw)} bytes)")
            yield n, json.loads(raw), raw, None
        except RecursionError:
            yield n, None, raw, "invalid JSON: nested too deeply"
        except ValueError as exc:  # json.JSONDecodeError is a ValueError
            yield n, None, raw, f"invalid JSON: {exc}" if isinstance(exc, json.JSONDecodeError) else str(exc)


def _avro_datums(stream: BinaryIO) -> Iterator[Datum]:
    """An Avro container's records (as fastavro decodes them with ``return_record_name``), numbered from 1.

    The records become the stream's line count (:attr:`CountingStream.units`). A stretch that fails to decode (a
    corrupt block, a cut file) gives one quarantine unit saying where, why and how many bytes it skipped; reading
    resumes at the next block, found by the container's sync marker (fastavro does not resync by itself), so one
    damaged block does not cost the rest of a multi-GB file.
    """
    import fastavro

    from aptray.io.files import CountingStream

    def open_reader(source: _Replay) -> Any:  # fastavro needs only read() and tell() of its stream
        return fastavro.block_reader(source, return_record_name=True,  # type: ignore[arg-type]
                                     handle_unicode_errors="replace")

    n = 0
    source = _Replay(b"", stream, record=True)
    try:
        reader = open_reader(source)
    except Exception as exc:  # any decoding failure of untrusted bytes becomes a quarantine row
        n += 1
        yield n, None, None, f"unreadable Avro container header: {type(exc).__name__}: {str(exc)[:200]}"
        reader = None
    header, source.recorded = bytes(source.recorded or b""), None
    while reader is not None:
        try:
            for block in reader:
                for record in block:  # the JSON line's shape, named union branches as (name, value)
                    n += 1
                    yield n, record, record, None
            break
        except Exception as exc:  # a damaged stretch: one quarantine row, then the next sync marker
            skipped, after = _skip_to(stream, header[-_SYNC:])
            n += 1
            where = (f"reading resumed at the next block, {skipped:,} bytes on" if after is not None else
                     f"no block follows: the last {skipped:,} bytes of the file are not read" if skipped else
                     "the file ends there (cut short?)")
            yield n, None, None, (f"unreadable Avro block after record {n - 1:,}: {type(exc).__name__}: "
                                  f"{str(exc)[:200]}; {where}")
            reader = open_reader(_Replay(header + after, stream)) if after is not None else None
    if isinstance(stream, CountingStream):
        stream.units = n


#: Bytes of an Avro container's sync marker, which ends its header and every block.
_SYNC = 16


class _Replay:
    """A stream for fastavro: ``head`` (a container's header, then bytes already read past a sync marker), then
    ``rest``; what it reads is kept in ``recorded`` while that is not None (to capture the header)."""

    def __init__(self, head: bytes, rest: BinaryIO, record: bool = False) -> None:
        self.head, self.rest, self.position = head, rest, 0
        self.recorded: bytearray | None = bytearray() if record else None

    def read(self, size: int = -1) -> bytes:
        """Up to ``size`` bytes (all that is left when negative)."""
        take = len(self.head) if size < 0 else min(size, len(self.head))
        out, self.head = self.head[:take], self.head[take:]
        if size < 0 or len(out) < size:
            out += self.rest.read(-1 if size < 0 else size - len(out))
        self.position += len(out)
        if self.recorded is not None:
            self.recorded += out
        return out

    def tell(self) -> int:
        """Bytes read so far."""
        return self.position


def _skip_to(stream: BinaryIO, sync: bytes, chunk: int = 1 << 20) -> tuple[int, bytes | None]:
    """Read ``stream`` up to the next ``sync`` marker: the bytes skipped, and those read past the marker (None
    when the stream ends first)."""
    skipped, carry = 0, b""
    while data := stream.read(chunk):
        window = carry + data
        i = window.find(sync) if sync else -1
        if i >= 0:
            return skipped + i + len(sync), window[i + len(sync):]
        keep = max(len(sync) - 1, 0)
        skipped += len(window) - keep
        carry = window[-keep:] if keep else b""
    return skipped + len(carry), None


def _records(stream: BinaryIO, file: InputFile, cfg: IngestConfig, counts: Counter[str],
             lines: Counter[str]) -> Iterator[dict[str, Any]]:
    for n, obj, raw, error in _datums(stream, cfg, lines):
        row: dict[str, Any] | None
        if error is not None:
            row = _quarantine(raw, error, cfg, counts)
        else:
            try:
                rtype, row = parse_record(obj, _uuid(obj.get("hostId")) if isinstance(obj, dict) else None)
                counts[rtype] += 1
                if row is None:
                    lines["context"] += 1  # a marker, host or unknown record type: no row (rows are counted per block)
            except (ValueError, TypeError, AttributeError, KeyError, OverflowError) as exc:
                row = _quarantine(raw, str(exc) or type(exc).__name__, cfg, counts)  # a record of the wrong shape
        if row is None:
            continue
        row["source_file"] = file.rel
        row["line"] = n
        if row["kind"] != "quarantine":
            row["_raw"] = raw  # kept until the block is built, for a row the schema refuses (in_blocks)
        yield row


def _quarantine(raw: Any, reason: str, cfg: IngestConfig, counts: Counter[str]) -> dict[str, Any]:
    counts["<quarantined>"] += 1
    text = _raw_text(raw, cfg.max_field_chars)  # a 100 MB line is cut before it is decoded
    return {"kind": "quarantine", "quarantine_reason": reason, "raw": text[: cfg.max_field_chars] if text else None}


# ---- assembly: one plan for batch (Ray Data) and online (a request) -------------------------------------

#: Record rows during the joins: the record columns plus what the joins attach (object ``e_``, principal
#: ``p_``, parent ``pexe``, subject ``s_``).
JOIN_SCHEMA = pa.schema([
    *REC_SCHEMA,
    pa.field("e_object_path", pa.string()), pa.field("e_object_addr", pa.string()), pa.field("p_uid", pa.int64()),
    pa.field("parent_key", pa.string()), pa.field("pexe", pa.string()), pa.field("s_host", pa.string()),
    pa.field("s_pid", pa.int64()), pa.field("s_ppid", pa.int64()), pa.field("s_uid", pa.int64()),
    pa.field("s_process_name", pa.string()), pa.field("s_exe", pa.string()), pa.field("s_pexe", pa.string()),
])
_OUT_SCHEMA = EVENT_SCHEMA.append(pa.field(PROCESS_KEY, pa.string()))


def _widen(batch: pa.Table) -> pa.Table:
    return conform_to(batch, JOIN_SCHEMA)


def _is_kind(kind: str) -> Callable[[pa.Table], pa.Array]:
    def mask(batch: pa.Table) -> pa.Array:
        return pc.equal(batch.column("kind"), kind)

    return mask


def _resolve_subject(group: pa.Table) -> pa.Table:
    """Per-group UDF over one subject UUID: its record(s) plus exe/ppid hints from its events -> one row."""
    rows = group.to_pylist()
    subjects = sorted((r for r in rows if r["kind"] == "subject"), key=lambda r: r["line"] or 0)
    if not subjects:
        return group.schema.empty_table()
    out = dict(subjects[0])
    for s in subjects[1:]:
        for k, v in s.items():
            if out.get(k) is None and v is not None:
                out[k] = v
    hints = sorted((r for r in rows if r["kind"] == "hint"), key=lambda r: r["timestamp"] or 0.0)
    if out.get("exe") is None:
        execs = [h["exe"] for h in hints if h["exe"]]
        out["exe"] = execs[-1] if execs else None
        if out.get("process_name") is None and out["exe"]:
            out["process_name"] = posixpath.basename(out["exe"])
    if out.get("ppid") is None:
        ppids = [h["ppid"] for h in hints if h["ppid"] is not None]
        out["ppid"] = ppids[-1] if ppids else None
    return pa.Table.from_pylist([out], schema=group.schema)


def _hints(batch: pa.Table) -> pa.Table:
    """Event rows -> exe/ppid hints keyed by their subject (the executed path for EVENT_EXECUTE)."""
    is_exec = pc.is_in(batch.column("action"), pa.array(sorted(EXEC_ACTIONS)))
    exe = pc.if_else(pc.and_(pc.fill_null(is_exec, False), pc.is_valid(batch.column("object_path"))),
                     batch.column("object_path"), batch.column("exe"))
    hint = conform_to(pa.table({"kind": pa.array(["hint"] * batch.num_rows, pa.string()),
                                "uuid": batch.column("subject"), "exe": exe, "ppid": batch.column("ppid"),
                                "timestamp": batch.column("timestamp"), "source_file": batch.column("source_file"),
                                "line": batch.column("line")}), JOIN_SCHEMA)
    keep_rows = pc.and_(pc.is_valid(hint.column("uuid")),
                        pc.or_(pc.is_valid(hint.column("exe")), pc.is_valid(hint.column("ppid"))))
    return hint.filter(keep_rows)


def _pid_key(batch: pa.Table, pid: str) -> pa.ChunkedArray:
    return pc.binary_join_element_wise(pc.fill_null(batch.column("host"), ""),
                                       pc.cast(batch.column(pid), pa.string()), "|")


def _parent_keys(batch: pa.Table) -> pa.Table:
    """Each subject is findable as a parent by its UUID and by ``host|pid``."""
    by_pid = _pid_key(batch, "pid")
    exe = batch.column("exe")
    return pa.concat_tables([
        pa.table({"pkey": batch.column("uuid"), "pexe": exe}),
        pa.table({"pkey": by_pid, "pexe": exe}).filter(pc.is_valid(by_pid)),
    ])


def _with_parent_key(batch: pa.Table) -> pa.Table:
    key = pc.coalesce(batch.column("parent"), _pid_key(batch, "ppid"))
    i = batch.schema.get_field_index("parent_key")
    return batch.set_column(i, batch.schema.field(i), key)


class _Finish:
    """Block function: joined event or subject rows -> :data:`EVENT_SCHEMA` plus ``process_uuid``."""

    def __init__(self, labels: frozenset[str] | None, subjects: bool = False) -> None:
        self.labels = labels
        self.subjects = subjects

    def __call__(self, batch: pa.Table) -> pa.Table:
        if self.subjects:
            proc = batch.column("uuid")
            cols: dict[str, Any] = {
                "record_id": proc, "host": batch.column("host"), "timestamp": batch.column("timestamp"),
                "pid": batch.column("pid"), "ppid": batch.column("ppid"), "uid": batch.column("p_uid"),
                "process_name": batch.column("process_name"), "exe": batch.column("exe"),
                "parent_exe": batch.column("pexe"), "args": batch.column("args"),
            }
        else:
            proc = batch.column("subject")
            cols = {
                "record_id": batch.column("uuid"),
                "host": pc.coalesce(batch.column("host"), batch.column("s_host")),
                "timestamp": batch.column("timestamp"), "tid": batch.column("tid"),
                "pid": batch.column("s_pid"), "ppid": pc.coalesce(batch.column("s_ppid"), batch.column("ppid")),
                "uid": batch.column("s_uid"),
                # the executable at the time of the event (CADETS' "exec") before the subject's latest one
                "process_name": pc.coalesce(batch.column("exe"), batch.column("s_process_name"),
                                            batch.column("s_exe")),
                "exe": pc.coalesce(batch.column("exe"), batch.column("s_exe")),
                "parent_exe": batch.column("s_pexe"), "action": batch.column("action"),
                "object_path": pc.coalesce(batch.column("object_path"), batch.column("e_object_path")),
                "object_addr": batch.column("e_object_addr"), "args": batch.column("args"),
                "return_value": batch.column("return_value"), "extras": batch.column("extras"),
            }
        n = batch.num_rows
        cols["source"] = pa.array([SOURCE] * n, pa.string())
        cols["source_file"] = batch.column("source_file")
        cols["line"] = batch.column("line")
        if self.labels is not None:
            lab = pa.array(sorted(self.labels), pa.string())
            hit = pc.or_(pc.fill_null(pc.is_in(cols["record_id"], lab), False),
                         pc.fill_null(pc.is_in(proc, lab), False))
            cols["malicious"] = pc.cast(hit, pa.int8())
        arrays = [pc.cast(cols[f.name], f.type) if f.name in cols else pa.nulls(n, f.type) for f in EVENT_SCHEMA]
        return pa.Table.from_arrays([*arrays, pc.cast(proc, pa.string())], schema=_OUT_SCHEMA)


def _quarantined(batch: pa.Table) -> pa.Table:
    """Quarantined record rows -> event rows holding only lineage, reason and raw text."""
    n = batch.num_rows
    cols = {"record_id": pc.binary_join_element_wise(pa.array([SOURCE] * n, pa.string()), batch.column("source_file"),
                                                     pc.cast(batch.column("line"), pa.string()), ":"),
            "source": pa.array([SOURCE] * n, pa.string()), "source_file": batch.column("source_file"),
            "line": batch.column("line"), "quarantine_reason": batch.column("quarantine_reason"),
            "raw": batch.column("raw")}
    return conform_to(pa.table(cols), EVENT_SCHEMA)


def partitions_for(total_bytes: int) -> int:
    """Shuffle partitions for an input of ``total_bytes``: one per 128 MB, 2 to 256."""
    return max(2, min(256, math.ceil(total_bytes / (128 << 20))))


def join_records(engine: Engine[T], records: T, labels: frozenset[str] | None) -> tuple[T, T, T]:
    """The CDM join, for a whole trace (:class:`~aptray.io.engine.RayEngine`) or one request (``LocalEngine``).

    Events are joined to their predicate object (path of a file, remote end of a flow), subjects merged and
    filled with exe/ppid hints from their events, then joined to their principal (uid) and parent (by
    ``parentSubject``, else ``host|ppid``), and events to their subject. A record may come anywhere in the
    stream (a subject after its events is still joined).

    Args:
        engine: where to run.
        records: rows in :data:`REC_SCHEMA` (what :func:`parse` yields).
        labels: normalised malicious UUIDs (events or subjects), or None when unknown.

    Returns:
        The event rows and the subject rows (both :data:`EVENT_SCHEMA` plus ``process_uuid``) and the
        quarantined lines (:data:`EVENT_SCHEMA`).
    """
    recs = engine.materialize(engine.map(records, _widen))
    events = keep(engine, recs, _is_kind("event"))
    subjects = keep(engine, recs, _is_kind("subject"))
    ents = keep(engine, recs, _is_kind("entity"))
    quarantined = engine.map(keep(engine, recs, _is_kind("quarantine")), _quarantined)
    ev = engine.materialize(lookup(engine, events, ents, JOIN_SCHEMA, on="obj", right_on="uuid",
                                   take={"e_object_path": "object_path", "e_object_addr": "object_addr"}))
    subj = per_group(engine, engine.union(subjects, engine.map(ev, _hints)), "uuid", _resolve_subject, JOIN_SCHEMA)
    subj = lookup(engine, subj, ents, JOIN_SCHEMA, on="principal", right_on="uuid", take={"p_uid": "uid"})
    subj = engine.materialize(engine.map(subj, _with_parent_key))
    subj = engine.materialize(lookup(engine, subj, engine.map(subj, _parent_keys), JOIN_SCHEMA, on="parent_key",
                                     right_on="pkey", take={"pexe": "pexe"}))
    ev = lookup(engine, ev, subj, JOIN_SCHEMA, on="subject", right_on="uuid",
                take={"s_host": "host", "s_pid": "pid", "s_ppid": "ppid", "s_uid": "p_uid",
                      "s_process_name": "process_name", "s_exe": "exe", "s_pexe": "pexe"})
    return engine.map(ev, _Finish(labels)), engine.map(subj, _Finish(labels, subjects=True)), quarantined


def _drop_process(batch: pa.Table) -> pa.Table:
    return batch.drop_columns([PROCESS_KEY])


def assemble(engine: Engine[T], records: T, cfg: IngestConfig, labels: frozenset[str] | None) -> T:
    """Records -> canonical rows: one per event (``cfg.aspect`` None) or one context row per process."""
    events, subjects, quarantined = join_records(engine, records, labels)
    if cfg.aspect is None:
        return engine.union(engine.map(events, _drop_process), quarantined)
    return engine.union(aggregate(engine, engine.union(events, subjects), cfg.aspect), quarantined)


def read(uri: str | Selection, cfg: IngestConfig) -> ray.data.Dataset:
    """Read CDM JSON lines or Avro containers (file, folder, glob; ``.gz``; local or ``s3://``) into the canonical
    event table.

    Args:
        uri: the input, or an already listed :class:`~aptray.io.fs.Selection`.
        cfg: ``cfg.aspect`` None gives one row per event; an aspect gives one context row per process.

    Returns:
        A dataset in :data:`aptray.schema.EVENT_SCHEMA`; quarantined lines are included, flagged.
    """
    cfg = cfg.model_copy(update={"source": Source.CDM})
    return read_joined(uri, parse, assemble, cfg, SUFFIXES, partitions_for, JOIN_IN_ONE_TASK_BYTES)


def parse_request(request: Request, cfg: IngestConfig) -> pa.Table:
    """The rows of one online request of CDM records (JSON objects or JSON text lines), joined within it.

    Non-event records (subjects, objects, principals, markers) are context: they give no row.
    """
    return assemble(LocalEngine(), parse_stream(parse, request.lines(json_objects=True), cfg, REC_SCHEMA), cfg,
                    None)


def looks_like(lines: list[str]) -> bool:
    """Whether the first non-blank lines of a file are CDM records (JSON objects holding a ``datum``, or an Avro
    container whose schema is CDM's)."""
    if not lines:
        return False
    if lines[0].startswith(AVRO_MAGIC.decode()):
        return any("com.bbn.tc.schema.avro" in line for line in lines)
    try:
        first = json.loads(lines[0])
    except (ValueError, RecursionError):
        return False
    return isinstance(first, dict) and isinstance(first.get("datum"), dict)
