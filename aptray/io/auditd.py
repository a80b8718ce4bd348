"""Reader for raw Linux audit.log: records grouped into events by serial, decoded into canonical events.

Each line is one record, ``[node=N ]type=T msg=audit(SECONDS:SERIAL): k=v ...``. The records of one event
share ``(node, time, serial)``; they may come out of order, interleaved with other events, and split over
files or blocks, so they are brought together with a Ray Data hash groupby on that key, never by adjacency.
An event's SYSCALL gives the action (syscall name), process and result; EXECVE gives the arguments (hex and
split ``aN[i]`` forms decoded), PATH/CWD the object path, SOCKADDR the remote ``ip:port`` (IPv4, IPv6, or a
unix socket path), PROCTITLE the command line. Other record types (USER_LOGIN, SERVICE_START, AVC, ...) become
events whose action is the record type.

Nothing is scored from part of an event: process-detail records without their SYSCALL (a partial event), and
every record of an event one of whose records is truncated (:func:`truncation`) or oversized, are quarantined,
one row per line, with the reason.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import posixpath
import re
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, BinaryIO

import pyarrow as pa
import pyarrow.compute as pc

from aptray.config import Source
from aptray.io.contexts import PROCESS_KEY, aggregate
from aptray.io.engine import Engine, LocalEngine, T, conform_to, keep, lookup, per_group
from aptray.io.files import in_blocks, line_record_id, read_joined, read_lines
from aptray.io.fs import InputFile, Selection
from aptray.io.quarantine import reason_kind
from aptray.io.request import Request, parse_stream
from aptray.io.syscalls import syscall_name
from aptray.schema import EVENT_SCHEMA

if TYPE_CHECKING:
    import ray.data

    from aptray.config import IngestConfig

log = logging.getLogger(__name__)

SOURCE = "auditd"
#: File endings, also behind logrotate's number (``audit.log.1``, ``audit.log.12.gz``; :func:`aptray.io.fs.has_suffix`).
SUFFIXES = (".log", ".txt", ".log.gz", ".txt.gz", ".audit")
#: Inputs up to this size join in one Ray task (``ingest.join_in_one_task_bytes`` overrides it): the task peaks at
#: about 14x its input (4.19 GB at 300 MB, ``bench/ingest.py --join``), so the limit stays small.
JOIN_IN_ONE_TASK_BYTES = 32 << 20
_NS = uuid.UUID("6f1d3c2e-6a55-4f4e-9c0b-2a8f5c3e7d10")

_HEADER = re.compile(  # an empty record may end at its ")" (EOE as some writers give it)
    r"^(?:node=(?P<node>\S+) )?type=(?P<type>\S+) msg=audit\((?P<ts>\d+(?:\.\d+)?):(?P<serial>\d+)\)(?::\s?|\s+|\s*$)"
)
#: The start of a header, for a line cut before its header ends.
_HEADER_START = re.compile(r"^(?:node=\S+ )?type=[A-Z][A-Z0-9_]*(?:\[\d+\])?")
#: The part of a header's ``TIME:SERIAL`` a line cut inside it keeps.
_STAMP_START = re.compile(r"[\d.:]*")
#: A body's fields as :data:`_FIELD` reads them, and any word that is not one.
_TOKEN = re.compile(r"[A-Za-z0-9_\[\]-]+=(?:\"[^\"]*\"|'[^']*'|\S*)|\S+")
_FIELD = re.compile(r"([A-Za-z0-9_\[\]-]+)=(\"[^\"]*\"|'[^']*'|\S*)")
_HEXSTR = re.compile(r"^(?:[0-9A-Fa-f]{2})+$")
#: Fields whose unquoted value is hex-encoded text.
_TEXT_FIELDS = frozenset({"exe", "comm", "name", "cwd", "proctitle", "cmd", "data", "path", "acct", "key", "old",
                          "new", "unit"})
#: Records that belong to a SYSCALL; alone they are a partial event.
_DETAIL_TYPES = frozenset({"EXECVE", "PATH", "CWD", "SOCKADDR", "PROCTITLE", "FD_PAIR", "MMAP", "BPRM_FCAPS",
                           "OBJ_PID", "IPC", "SOCKETCALL", "MQ_OPEN", "MQ_SENDRECV", "NETFILTER_PKT"})
_IGNORED_TYPES = frozenset({"EOE"})

#: The intermediate table: one row per audit record.
REC_SCHEMA = pa.schema([
    pa.field("key", pa.string()), pa.field("node", pa.string()), pa.field("ts", pa.float64()),
    pa.field("type", pa.string()), pa.field("fields", pa.string()), pa.field("source_file", pa.string()),
    pa.field("line", pa.int64()), pa.field("raw", pa.string()), pa.field("quarantine_reason", pa.string()),
])


def decode_value(name: str, value: str) -> str | None:
    """Unquote a field value, decoding hex-encoded text fields; ``(null)`` and ``?`` give None."""
    if value.startswith(('"', "'")) and value.endswith(value[0]) and len(value) >= 2:
        return value[1:-1]
    if value in ("(null)", "?", "(none)", ""):
        return None
    base = name.split("[")[0]
    is_arg = base.startswith("a") and base[1:].isdigit()
    if (base in _TEXT_FIELDS or is_arg) and _HEXSTR.match(value):
        try:
            return bytes.fromhex(value).decode("utf-8", errors="replace")
        except ValueError:
            return value
    return value


def parse_fields(body: str) -> dict[str, str]:
    """``k=v`` pairs of a record body (enriched ``\\x1d`` suffix and nested ``msg='...'`` included)."""
    body = body.replace("\x1d", " ")
    body = re.sub(r"msg='", "", body, count=1)
    out: dict[str, str] = {}
    for k, v in _FIELD.findall(body):
        if v.endswith("'") and not v.startswith("'"):
            v = v[:-1]
        out.setdefault(k, v)
    return out


#: The bit of an audit architecture (``arch=``) that marks a little-endian one (``__AUDIT_ARCH_LE``).
_ARCH_LE = 0x40000000
#: The big-endian architectures among the names ``ausearch -i`` writes for ``arch=``.
_BIG_ENDIAN_NAMES = frozenset({"ppc64", "ppc", "s390x", "s390", "armeb"})


def little_endian(arch: str | None) -> bool:
    """Whether the ``arch=`` of a SYSCALL record is little-endian (x86_64 ``c000003e``, aarch64, ppc64le) rather
    than big-endian (ppc64 ``80000015``, s390x ``80000016``); little where the record has none or it is not hex
    (auditd's interpreted names, such as ``x86_64``, are little-endian but for ``ppc64``, ``ppc``, ``s390x``,
    ``armeb``)."""
    if not arch:
        return True
    try:
        return bool(int(arch, 16) & _ARCH_LE)
    except ValueError:
        return arch.lower() not in _BIG_ENDIAN_NAMES


def decode_sockaddr(saddr: str, little: bool = True) -> tuple[str | None, str | None]:
    """Decode a SOCKADDR ``saddr`` hex into ``(ip:port, unix path)``; IPv4 (family 2) and IPv6 (family 10). The
    family is in the machine's byte order (``little``, see :func:`little_endian`), the port in network order."""
    try:
        b = bytes.fromhex(saddr)
    except ValueError:
        return None, None
    if len(b) < 2:
        return None, None
    family = int.from_bytes(b[:2], "little" if little else "big")
    if family == 2 and len(b) >= 8:
        port = int.from_bytes(b[2:4], "big")
        return f"{ipaddress.IPv4Address(b[4:8])}:{port}", None
    if family == 10 and len(b) >= 24:
        port = int.from_bytes(b[2:4], "big")
        return f"[{ipaddress.IPv6Address(b[8:24])}]:{port}", None
    if family == 1:
        path = b[2:].split(b"\0")[0] or b[3:].split(b"\0")[0]
        return None, path.decode("utf-8", errors="replace") or None
    return None, None


def truncation(body: str) -> str | None:
    """Why a record's body (the text after its header) was cut short, or None where it reads whole.

    A record is a list of ``key=value`` fields: a body that is empty, holds a quoted value without its closing
    quote (``exe="/usr/bi``, ``msg='op=PAM:login ... res=succ``) or ends in a word without ``=`` (``arch=c000003e
    sysc``) was cut (the last line of a log copied while auditd wrote it, a line split by a transport). A cut
    inside an unquoted value (``syscall=5`` of ``syscall=59``) or between fields cannot be told from a whole
    record. Free-text words inside a record (AVC's ``avc:  denied  { read } for``) are fine; a laurel-enriched
    ``SADDR={ ... }`` ends in ``}``.
    """
    tokens = _TOKEN.findall(body.replace("\x1d", " "))
    if not tokens:
        return "nothing after the header"
    for token in tokens:
        name, eq, value = token.partition("=")
        if eq and value[:1] in ('"', "'") and (len(value) < 2 or value[-1] != value[0]):
            return f"unterminated quoted value {name}={value[:40]}"
    if "=" not in tokens[-1] and tokens[-1] != "}":
        return f"it ends in {tokens[-1][:40]!r}, a field without its value"
    return None


def _cut_header(text: str) -> bool:
    """Whether a line that is no record is a record header cut short (``type=SYSCALL msg=audit(1615114232.3``)."""
    m = _HEADER_START.match(text)
    if m is None:
        return False
    rest = text[m.end():].rstrip()
    head = " msg=audit("
    return head.startswith(rest) or (rest.startswith(head) and _STAMP_START.fullmatch(rest[len(head):]) is not None)


#: A record type as auditd writes it (``SYSCALL``, ``USER_LOGIN``, ``UNKNOWN[1334]``).
_RECORD_TYPE = re.compile(r"^[A-Z][A-Z0-9_]*(?:\[\d+\])?$")


def parse(stream: BinaryIO, file: InputFile, cfg: IngestConfig, lines: Counter[str] | None = None
          ) -> Iterator[pa.Table]:
    """Parse one audit.log stream into one row per record (:data:`REC_SCHEMA`); bad lines flagged."""
    lines = lines if lines is not None else Counter()
    yield from in_blocks(_records(stream, file, cfg, lines), cfg.block_rows, REC_SCHEMA)


def _records(stream: BinaryIO, file: InputFile, cfg: IngestConfig, lines: Counter[str]) -> Iterator[dict[str, Any]]:
    for n, raw in read_lines(stream):
        if not raw.strip():
            lines["blank"] += 1
            continue
        text = raw.decode("utf-8", errors="replace")
        m = _HEADER.match(text)
        row: dict[str, Any] = {"source_file": file.rel, "line": n, "raw": text[: cfg.max_field_chars]}
        if m is None:
            row["quarantine_reason"] = ("truncated record: the line ends inside its header" if _cut_header(text)
                                        else "not an audit record (no type= msg=audit(TIME:SERIAL))")
        elif not _RECORD_TYPE.match(m["type"]):
            row["quarantine_reason"] = f"invalid record type {m['type'][:40]!r}"
        elif m["type"] in _IGNORED_TYPES:
            lines["context"] += 1
            continue
        else:
            # a damaged record keeps its event's key: the join quarantines the whole event, not the line alone
            row.update(key=f"{m['node'] or ''}|{m['ts']}:{m['serial']}", node=m["node"], ts=float(m["ts"]),
                       type=m["type"])
            if len(text) > cfg.max_field_chars:
                row["quarantine_reason"] = f"oversized record ({len(text)} chars)"
            elif (cut := truncation(text[m.end():])) is not None:
                row["quarantine_reason"] = f"truncated record: {cut}"
            else:
                row["fields"] = json.dumps(parse_fields(text[m.end():]))
        lines["quarantined" if row.get("quarantine_reason") else "record"] += 1
        yield row


#: Most EXECVE arguments read (a corrupted argc must not loop for ever).
MAX_ARGS = 4096


def _execve_args(fields: dict[str, str]) -> list[str]:
    argc = min(_int(fields.get("argc")) or 0, MAX_ARGS)
    args: list[str] = []
    for i in range(argc):
        if f"a{i}" in fields:
            args.append(decode_value(f"a{i}", fields[f"a{i}"]) or "")
        else:  # a long argument split as aN_len=.. aN[0]=.. aN[1]=..
            parts, j = [], 0
            while f"a{i}[{j}]" in fields:
                parts.append(fields[f"a{i}[{j}]"])
                j += 1
            joined = "".join(p.strip('"') for p in parts)
            args.append(decode_value(f"a{i}", joined) or "" if not parts or not parts[0].startswith('"') else joined)
    return args


def _int(value: str | None) -> int | None:
    """An integer field (decimal or 0x hex); None when absent, not a number or beyond int64."""
    if value is None or len(value) > 24:
        return None
    try:
        n = int(value, 0) if value.startswith(("0x", "-0x")) else int(value)
        return n if -(1 << 63) <= n < (1 << 63) else None
    except ValueError:
        return None


def _quarantined(records: list[dict[str, Any]], reason: Callable[[dict[str, Any]], str]) -> list[dict[str, Any]]:
    """A quarantined row per record line (its own line number and raw text), so that a quarantined row is always
    one input line, as in every other reader, and the line counts can say where each line went."""
    return [{"record_id": line_record_id(SOURCE, r["source_file"], r["line"]), "source": SOURCE,
             "source_file": r["source_file"], "line": r["line"], "raw": r["raw"], "quarantine_reason": reason(r)}
            for r in records]


def _partial(types: set[str]) -> str | None:
    """Why records of these types make no event (process details without their SYSCALL), or None."""
    if "SYSCALL" in types or any(t not in _DETAIL_TYPES for t in types):
        return None
    return f"partial event: {'+'.join(sorted(types))} without SYSCALL"


def assemble_group(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows of the records of one serial: the event (:func:`assemble`) and a quarantined row per exact
    duplicate record (a line repeated by the sensor; counted, never merged into the event silently).

    An event that cannot be assembled (one of its records truncated or oversized, a partial event, or one whose
    assembly fails) is quarantined line by line: each of its records becomes a quarantined row with the reason and
    the event it belonged to, so every input line ends in exactly one row, a scored event's or a quarantined one,
    and no event is scored from some of its records as if they were all. No record can stop the read.
    """
    records = sorted(records, key=lambda r: (r["source_file"], r["line"]))
    first_line: dict[str, tuple[str, int]] = {}
    unique, repeated = [], []
    for r in records:
        if r["raw"] in first_line:
            repeated.append(r)
        else:
            first_line[r["raw"]] = (r["source_file"], r["line"])
            unique.append(r)
    rows = _quarantined(repeated, lambda r: "duplicate record: same as {} line {}".format(*first_line[r["raw"]]))
    event = _event_name(unique[0])
    damaged = next((r for r in unique if r.get("quarantine_reason")), None)
    reason = (f"incomplete event: {reason_kind(str(damaged['quarantine_reason']))} at {damaged['source_file']} "
              f"line {damaged['line']}" if damaged is not None else _partial({r["type"] for r in unique}))
    if reason is None:
        try:
            return [assemble(unique), *rows]
        except (ValueError, TypeError, KeyError, IndexError, OverflowError) as exc:
            reason = f"unparseable event: {type(exc).__name__}: {str(exc)[:120]}"
    part, cause = f" (record of event {event}, {len(unique)} record line(s))", reason
    return [*_quarantined(unique, lambda r: (r.get("quarantine_reason") or cause) + part), *rows]


def _event_name(record: dict[str, Any]) -> str:
    """An event's name as its records write it: ``[node=N ]audit(TIME:SERIAL)``."""
    node, _, stamp = str(record["key"]).partition("|")
    return f"{'node=' + node + ' ' if node else ''}audit({stamp})"


def assemble(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Build one event row from the records of one serial (any order), which hold a SYSCALL or another main
    record (:func:`assemble_group` quarantines the others)."""
    records = sorted(records, key=lambda r: (r["source_file"], r["line"]))
    first = records[0]
    by_type: dict[str, list[dict[str, str]]] = {}
    for r in records:
        by_type.setdefault(r["type"], []).append(json.loads(r["fields"]))
    row: dict[str, Any] = {"record_id": line_record_id(SOURCE, first["source_file"], first["line"]), "source": SOURCE,
                           "source_file": first["source_file"], "line": first["line"], "host": first["node"],
                           "timestamp": first["ts"]}
    main_type = "SYSCALL" if "SYSCALL" in by_type else next((t for t in by_type if t not in _DETAIL_TYPES), None)
    if main_type is None:
        raise ValueError(f"no main record among {'+'.join(sorted(by_type))}")
    main = by_type[main_type][0]
    extras: dict[str, Any] = {"types": sorted(by_type)}

    def text(name: str, fields: dict[str, str] = main) -> str | None:
        return decode_value(name, fields[name]) if name in fields else None

    row["pid"], row["ppid"] = _int(main.get("pid")), _int(main.get("ppid"))
    row["uid"] = _int(main.get("uid"))
    row["exe"] = text("exe")
    row["process_name"] = text("comm") or (row["exe"].rsplit("/", 1)[-1] if row["exe"] else None)
    if main_type == "SYSCALL":
        row["action"] = syscall_name(main.get("syscall"), main.get("arch"), main.get("SYSCALL"))
        row["return_value"] = _int(main.get("exit"))
        extras.update({k: main[k] for k in ("success", "auid", "key", "tty", "ses") if k in main})
    else:
        row["action"] = main_type
        row["return_value"] = None
        extras.update({k: decode_value(k, main[k]) for k in ("op", "res", "acct", "auid", "ses", "hostname",
                                                              "terminal", "unit") if k in main})
        addr = text("addr")
        if addr:
            row["object_addr"] = addr
    args: list[str] | None = None
    if "EXECVE" in by_type:
        merged: dict[str, str] = {}
        for f in by_type["EXECVE"]:
            merged.update(f)
        args = _execve_args(merged)
    if "PROCTITLE" in by_type:
        title = text("proctitle", by_type["PROCTITLE"][0])
        if title:
            extras["proctitle"] = title.replace("\0", " ")
            if args is None:
                args = [a for a in title.split("\0")]
    if main_type != "SYSCALL" and "cmd" in main:
        args = [text("cmd") or ""]
    if args is not None:
        row["args"] = json.dumps(args)
    cwd = text("cwd", by_type["CWD"][0]) if "CWD" in by_type else None
    if cwd:
        extras["cwd"] = cwd
    paths = sorted(by_type.get("PATH", []), key=lambda f: _int(f.get("item")) or 0)
    chosen = next((p for p in paths if p.get("nametype") not in ("PARENT",)), paths[0] if paths else None)
    if chosen is not None:
        name = text("name", chosen)
        if name and cwd and not name.startswith("/"):  # lexically: "." and ".." resolved, the disk never read
            name = posixpath.normpath(posixpath.join(cwd, name))
        row["object_path"] = name
    for sock in by_type.get("SOCKADDR", []):
        addr, unix = decode_sockaddr(sock.get("saddr", ""), little_endian(main.get("arch")))
        if addr:
            row["object_addr"] = addr
        elif unix and not row.get("object_path"):
            row["object_path"] = unix
    row["extras"] = json.dumps(extras, sort_keys=True)
    if row["pid"] is not None:
        row[PROCESS_KEY] = str(uuid.uuid5(_NS, f"{row['host'] or ''}|{row['pid']}|{row['ppid']}"))
    return row


_OUT_SCHEMA = EVENT_SCHEMA.append(pa.field(PROCESS_KEY, pa.string()))
#: Event rows during the parent join: the parent executable and the key it is looked up by.
JOIN_SCHEMA = _OUT_SCHEMA.append(pa.field("pexe", pa.string())).append(pa.field("ppid_key", pa.string()))


def _bad_lines(batch: pa.Table) -> pa.Table:
    """The lines that are no record of an event (no header, an invalid type), quarantined as they are."""
    bad = batch.filter(pc.is_null(batch.column("key")))
    n = bad.num_rows
    ids = pc.binary_join_element_wise(pa.array([SOURCE] * n, pa.string()), bad.column("source_file"),
                                      pc.cast(bad.column("line"), pa.string()), ":")
    return conform_to(pa.table({"record_id": ids, "source": pa.array([SOURCE] * n, pa.string()),
                                "source_file": bad.column("source_file"), "line": bad.column("line"),
                                "raw": bad.column("raw"), "quarantine_reason": bad.column("quarantine_reason")}),
                      _OUT_SCHEMA)


def _has_key(batch: pa.Table) -> pa.Array:
    return pc.is_valid(batch.column("key"))


def _is_good(batch: pa.Table) -> pa.Array:
    return pc.is_null(batch.column("quarantine_reason"))


def _is_bad(batch: pa.Table) -> pa.Array:
    return pc.is_valid(batch.column("quarantine_reason"))


def _pid_key(batch: pa.Table, pid: str) -> pa.ChunkedArray:
    return pc.binary_join_element_wise(pc.fill_null(batch.column("host"), ""), pc.cast(batch.column(pid), pa.string()),
                                       "|")


def _exe_by_pid(batch: pa.Table) -> pa.Table:
    t = pa.table({"pkey": _pid_key(batch, "pid"), "pexe": batch.column("exe")})
    return t.filter(pc.and_(pc.is_valid(t.column("pkey")), pc.is_valid(t.column("pexe"))))


def _with_ppid_key(batch: pa.Table) -> pa.Table:
    i = batch.schema.get_field_index("ppid_key")
    return batch.set_column(i, batch.schema.field(i), _pid_key(batch, "ppid"))


class _Finish:
    """Block function: parent executable in place, labels marked, helper columns dropped."""

    def __init__(self, labels: frozenset[str] | None) -> None:
        self.labels = labels

    def __call__(self, batch: pa.Table) -> pa.Table:
        i = batch.schema.get_field_index("parent_exe")
        batch = batch.set_column(i, "parent_exe", pc.coalesce(batch.column("parent_exe"), batch.column("pexe")))
        if self.labels is not None:
            lab = pa.array(sorted(self.labels), pa.string())
            hit = pc.or_(pc.fill_null(pc.is_in(batch.column("record_id"), lab), False),
                         pc.fill_null(pc.is_in(batch.column(PROCESS_KEY), lab), False))
            j = batch.schema.get_field_index("malicious")
            batch = batch.set_column(j, "malicious", pc.cast(hit, pa.int8()))
        return conform_to(batch, _OUT_SCHEMA)


def _drop_process(batch: pa.Table) -> pa.Table:
    return batch.drop_columns([PROCESS_KEY])


def assemble_events(engine: Engine[T], records: T, cfg: IngestConfig, labels: frozenset[str] | None) -> T:
    """The auditd join, for a whole trace (Ray Data) or one request: records -> canonical rows.

    The records of one ``(node, time, serial)`` make one event (:func:`assemble`, any order, any file), each
    event gets its parent's executable (the executable of an event of ``host|ppid``: the largest, where
    several), and with ``cfg.aspect`` the events of each process make its context row. Bad lines, and the records
    of partial and damaged events, stay as quarantined rows (one per line).
    """
    bad = engine.map(records, _bad_lines)
    events = engine.materialize(per_group(engine, keep(engine, records, _has_key), "key", assemble_group,
                                          JOIN_SCHEMA, rows=True))
    events = lookup(engine, engine.map(events, _with_ppid_key), engine.map(events, _exe_by_pid), JOIN_SCHEMA,
                    on="ppid_key", right_on="pkey", take={"pexe": "pexe"})
    events = engine.map(events, _Finish(labels))
    if cfg.aspect is None:
        return engine.map(engine.union(events, bad), _drop_process)
    events = engine.materialize(events)
    partial = keep(engine, events, _is_bad)
    ctx = aggregate(engine, keep(engine, events, _is_good), str(cfg.aspect.value))
    return engine.union(ctx, engine.map(engine.union(partial, bad), _drop_process))


def read(uri: str | Selection, cfg: IngestConfig) -> ray.data.Dataset:
    """Read audit.log files (file, folder, glob; ``.gz``; local or ``s3://``) into the canonical event table.

    Args:
        uri: the input, or an already listed :class:`~aptray.io.fs.Selection`.
        cfg: ``cfg.aspect`` None gives one row per event; an aspect gives one context row per process
            (a process is ``host|pid|ppid``, its UUID a name-based UUID of that).

    Returns:
        A dataset in :data:`aptray.schema.EVENT_SCHEMA`; quarantined lines and partial events flagged.
    """
    from aptray.io.cdm import partitions_for

    cfg = cfg.model_copy(update={"source": Source.AUDITD})
    return read_joined(uri, parse, assemble_events, cfg, SUFFIXES, lambda size: partitions_for(size * 2),
                       JOIN_IN_ONE_TASK_BYTES)


def parse_request(request: Request, cfg: IngestConfig) -> pa.Table:
    """The events of one online request of raw audit.log lines (an item may hold several lines).

    The records of one event are grouped by their serial, as the batch reader groups them across the trace;
    an event is reported at the item of its first record.
    """
    records = parse_stream(parse, request.lines(), cfg, REC_SCHEMA)
    return assemble_events(LocalEngine(), records, cfg, None)


def looks_like(lines: list[str]) -> bool:
    """Whether the first non-blank lines of a file are audit records (``type=T msg=audit(TIME:SERIAL):``)."""
    return bool(lines) and all(_HEADER.match(line) is not None for line in lines[:3])
