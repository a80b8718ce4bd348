"""The BETH reader: BETH honeypot CSVs (and the synthetic BETH-format traces) -> the canonical event table.

The header of each file decides its layout; columns are found by name, so every known BETH variant reads
through one parser:

* the 16-column splits (``labelled_training_data.csv`` ...) and the 13-column per-host files
  (``labelled_2021may-*.csv``: no threadId, mountNamespace, stackAddresses);
* the STARAI subset, 16 columns plus ``sequence_index``, ``reconstruction_error``, ``priority``: any column
  the reader does not know goes to ``extras`` only, never to a feature;
* the DNS files (``Timestamp, SourceIP, ... SensorId, sus, evil``): one row per DNS message. ``action`` is
  ``dns-query`` (sent by the sensor host) or ``dns-answer``; ``object_addr`` is the peer's IP (no port: the
  file has none); ``object_path`` is the queried name; class, type, answers, TTLs, codes go to ``args``.

Parsing streams binary lines (never a whole file in memory). ``args`` (a Python-literal list of
``{name, type, value}``) is never evaluated: a regular-expression fast path reads the usual shapes, and
anything else goes through ``ast.literal_eval`` (literals only) under a size cap. It is stored as a JSON
object ``{name: value}``. Bad lines are kept, flagged with ``quarantine_reason`` and their raw text: wrong
column count, non-UTF-8 bytes, unterminated quote, oversized field or line, missing ``processId`` /
``eventName``, non-numeric ids or labels, unparseable ``args``. Blank lines hold no record and are skipped.
"""

from __future__ import annotations

import ast
import csv
import json
import logging
import posixpath
import re
from collections import Counter
from collections.abc import Iterator
from datetime import datetime
from typing import TYPE_CHECKING, Any, BinaryIO

import pyarrow as pa
import pyarrow.compute as pc

from aptray.config import IngestConfig, Source
from aptray.io.files import files_dataset, line_record_id, quarantine_row, safe_table
from aptray.io.fs import Selection
from aptray.io.request import CsvFormat, Request, csv_fields, parse_stream, scalar_field
from aptray.schema import EVENT_SCHEMA, event_table

if TYPE_CHECKING:
    import ray.data

    from aptray.io.fs import InputFile

log = logging.getLogger(__name__)

SUFFIXES: tuple[str, ...] = (".csv", ".csv.gz")
REQUIRED_EVENT: tuple[str, ...] = ("processId", "eventName")
REQUIRED_DNS: tuple[str, ...] = ("SourceIP", "DestinationIP")
#: BETH id column -> event schema column (all integers).
INT_COLUMNS: dict[str, str] = {
    "processId": "pid",
    "threadId": "tid",
    "parentProcessId": "ppid",
    "userId": "uid",
    "returnValue": "return_value",
}
LABEL_COLUMNS: dict[str, str] = {"evil": "malicious", "sus": "sus"}
TEXT_COLUMNS: dict[str, str] = {"processName": "process_name", "hostName": "host", "eventName": "action"}
PATH_ARGS: tuple[str, ...] = ("pathname", "filename", "path")
ADDR_ARGS: tuple[str, ...] = ("addr", "uservaddr", "sockaddr", "umyaddr", "dest_addr", "src_addr")
_EVENT_KNOWN = {"timestamp", "args", *INT_COLUMNS, *LABEL_COLUMNS, *TEXT_COLUMNS}
_DNS_ARGS: dict[str, str] = {
    "DnsQueryType": "type", "DnsAnswer": "answers", "DnsResponseCode": "rcode", "DnsQueryClass": "class",
    "DnsAnswerTTL": "ttl", "NumberOfAnswers": "answer_count", "DnsOpCode": "opcode",
}
_DNS_KNOWN = {"Timestamp", "SourceIP", "DestinationIP", "DnsQuery", "SensorId", *_DNS_ARGS, *LABEL_COLUMNS}

# One ``{'name': ..., 'type': ..., 'value': ...}`` element as BETH (Python repr) writes it.
_ARG_RE = re.compile(
    r"\{'name': '([^'\\]*)', 'type': '([^'\\]*)', 'value': "
    r"(-?\d+|'[^'\\]*'|\"[^\"\\]*\"|'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"|\[[^\]]*\]|None|True|False)\}"
)
_SOCK_RE = re.compile(r"'(\w+)':\s*'([^']*)'")
_HOST_IP_RE = re.compile(r"^ip-(\d+)-(\d+)-(\d+)-(\d+)$")
_JSON = json.JSONEncoder(separators=(",", ":"), default=str)  # one encoder: json.dumps builds one per call


class BadRow(ValueError):
    """A line that cannot become an event; the message is its quarantine reason."""


# --------------------------------------------------------------------------------------------- args
def parse_literal(text: str, max_chars: int) -> Any:
    """Evaluate a Python literal safely (``ast.literal_eval``: literals only, never code) under a size cap."""
    if len(text) > max_chars:
        raise BadRow(f"unparseable args: literal of {len(text)} chars > {max_chars}")
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError, MemoryError, RecursionError, TypeError) as exc:
        raise BadRow(f"unparseable args: {type(exc).__name__}") from None


def _value(token: str, max_chars: int) -> Any:
    first = token[0]
    if first in "'\"":
        return token[1:-1] if "\\" not in token else parse_literal(token, max_chars)
    if first == "[" or token in ("None", "True", "False"):
        return parse_literal(token, max_chars)
    return int(token)


def parse_args(text: str, max_chars: int) -> list[tuple[str, Any]]:
    """BETH ``args`` text -> ``[(name, value), ...]``; raises :class:`BadRow` when it is not such a list."""
    text = text.strip()
    if text in ("", "[]"):
        return []
    if not (text.startswith("[") and text.endswith("]")):
        raise BadRow("unparseable args: not a list")
    out: list[tuple[str, Any]] = []
    pos = 1
    for m in _ARG_RE.finditer(text, 1):
        gap = text[pos : m.start()]
        if gap.strip(", "):
            break  # something the fast path does not know: take the safe slow path
        out.append((m.group(1), _value(m.group(3), max_chars)))
        pos = m.end()
    else:
        if not text[pos:-1].strip(", "):
            return out
    parsed = parse_literal(text, max_chars)
    if not isinstance(parsed, list) or not all(isinstance(d, dict) and "name" in d for d in parsed):
        raise BadRow("unparseable args: not a list of {name, type, value}")
    return [(str(d["name"]), d.get("value")) for d in parsed]


def sockaddr(value: Any) -> tuple[str | None, str | None]:
    """A BETH sockaddr value -> ``(ip:port or None, unix socket path or None)``."""
    if isinstance(value, dict):
        fields = {str(k): str(v) for k, v in value.items()}
    elif isinstance(value, str):
        fields = dict(_SOCK_RE.findall(value))
    else:
        return None, None
    if "sin_addr" in fields:
        port = fields.get("sin_port")
        return (f"{fields['sin_addr']}:{port}" if port else fields["sin_addr"]), None
    if "sin6_addr" in fields:
        port = fields.get("sin6_port")
        return (f"[{fields['sin6_addr']}]:{port}" if port else fields["sin6_addr"]), None
    if fields.get("sun_path"):
        return None, fields["sun_path"]
    return None, None


def _number(text: str) -> Any:
    """Extras values: int, else float, else the text itself."""
    try:
        return int(text)
    except ValueError:
        try:
            return float(text)
        except ValueError:
            return text


# --------------------------------------------------------------------------------------------- rows
class _Layout:
    """Column positions decided by a file's header."""

    def __init__(self, header: list[str]) -> None:
        self.names = header
        self.width = len(header)
        self.index = {name: i for i, name in enumerate(header)}
        if all(c in self.index for c in REQUIRED_EVENT):
            self.kind = "events"
            known = _EVENT_KNOWN
        elif all(c in self.index for c in (*REQUIRED_DNS, "DnsQuery")):
            self.kind = "dns"
            known = _DNS_KNOWN
        else:
            raise BadRow(f"unrecognised BETH header ({self.width} columns)")
        self.extras = [(i, n) for i, n in enumerate(header) if n not in known]


def _int(fields: list[str], layout: _Layout, name: str, required: bool = False) -> int | None:
    i = layout.index.get(name)
    text = fields[i].strip() if i is not None else ""
    if not text:
        if required:
            raise BadRow(f"missing required field {name}")
        return None
    try:
        value = int(text)
    except ValueError:
        try:
            as_float = float(text)
        except ValueError:
            as_float = float("nan")
        if not as_float.is_integer():
            raise BadRow(f"non-numeric {name}: {text[:40]!r}") from None
        value = int(as_float)
    if not -(1 << 63) <= value < (1 << 63):
        raise BadRow(f"{name} out of range: {text[:40]!r}")
    return value


def _event_row(fields: list[str], layout: _Layout, cfg: IngestConfig) -> dict[str, Any]:
    idx = layout.index
    row: dict[str, Any] = {col: _int(fields, layout, name, name == "processId") for name, col in INT_COLUMNS.items()}
    for name, col in TEXT_COLUMNS.items():
        i = idx.get(name)
        row[col] = (fields[i].strip() or None) if i is not None else None
    if row["action"] is None:
        raise BadRow("missing required field eventName")
    for name, col in LABEL_COLUMNS.items():
        row[col] = _int(fields, layout, name)
    ts = fields[idx["timestamp"]].strip() if "timestamp" in idx else ""
    try:
        row["timestamp"] = float(ts) if ts else None
    except ValueError:
        raise BadRow(f"non-numeric timestamp: {ts[:40]!r}") from None
    args = parse_args(fields[idx["args"]], cfg.max_field_chars) if "args" in idx else []
    obj_path = obj_addr = None
    for name, value in args:
        if obj_path is None and name in PATH_ARGS and isinstance(value, str) and value:
            obj_path = value
        elif obj_addr is None and name in ADDR_ARGS:
            obj_addr, unix_path = sockaddr(value)
            obj_path = obj_path or unix_path
    row["object_path"], row["object_addr"] = obj_path, obj_addr
    row["args"] = _JSON.encode(dict(args)) if args else None
    if layout.extras:
        row["extras"] = _JSON.encode({n: _number(fields[i]) for i, n in layout.extras})
    return row


def _host_ip(sensor: str) -> str | None:
    m = _HOST_IP_RE.match(sensor)
    return ".".join(m.groups()) if m else None


def _dns_row(fields: list[str], layout: _Layout, cfg: IngestConfig) -> dict[str, Any]:
    idx = layout.index

    def get(name: str) -> str:
        i = idx.get(name)
        return fields[i].strip() if i is not None else ""

    src, dst, sensor = get("SourceIP"), get("DestinationIP"), get("SensorId")
    for name, value in (("SourceIP", src), ("DestinationIP", dst)):
        if not value:
            raise BadRow(f"missing required field {name}")
    row: dict[str, Any] = {col: _int(fields, layout, name) for name, col in LABEL_COLUMNS.items()}
    ts = get("Timestamp")
    try:
        row["timestamp"] = datetime.fromisoformat(ts).timestamp() if ts else None
    except ValueError:
        raise BadRow(f"bad timestamp: {ts[:40]!r}") from None
    args: dict[str, Any] = {}
    for name, key in _DNS_ARGS.items():
        text = get(name)
        if not text:
            continue
        if text.startswith("["):
            args[key] = parse_literal(text, cfg.max_field_chars)
        else:
            args[key] = _int(fields, layout, name) if key in ("answer_count", "rcode", "opcode") else text
    host_ip = _host_ip(sensor)
    if host_ip is not None and host_ip in (src, dst):
        is_query = src == host_ip
    else:  # no sensor address to compare: a message with answers or an error code is an answer
        is_query = not args.get("answers") and not args.get("answer_count") and not args.get("rcode")
    row.update(
        host=sensor or None,
        action="dns-query" if is_query else "dns-answer",
        object_addr=dst if is_query else src,
        object_path=get("DnsQuery") or None,
        args=json.dumps(args, separators=(",", ":")) if args else None,
    )
    extras = {"SourceIP": src, "DestinationIP": dst}
    if get("DnsQueryNames"):
        extras["DnsQueryNames"] = get("DnsQueryNames")
    extras.update({n: _number(fields[i]) for i, n in layout.extras})
    row["extras"] = json.dumps(extras, separators=(",", ":"))
    return row


# --------------------------------------------------------------------------------------------- stream
def _lines(stream: BinaryIO, cap: int) -> Iterator[tuple[int, bytes, bool]]:
    """``(line_number, line, oversized)``; a line longer than ``cap`` bytes is cut and the rest skipped."""
    n = 0
    while True:
        raw = stream.readline(cap + 1)
        if not raw:
            return
        n += 1
        if len(raw) > cap and not raw.endswith(b"\n"):
            while True:  # drain the rest of the physical line without keeping it
                more = stream.readline(1 << 20)
                if not more or more.endswith(b"\n"):
                    break
            yield n, raw[:cap], True
        else:
            yield n, raw.rstrip(b"\r\n"), False


def _split(text: str, width: int, max_chars: int) -> list[str]:
    if text.count('"') % 2:
        raise BadRow("unterminated quote")
    try:
        fields = next(csv.reader((text,), strict=True))
    except csv.Error as exc:
        raise BadRow(f"malformed CSV: {exc}") from None
    if len(fields) != width:
        raise BadRow(f"wrong column count: {len(fields)}, expected {width}")
    for f in fields:
        if len(f) > max_chars:
            raise BadRow(f"oversized field: {len(f)} chars > {max_chars}")
    return fields


def source_of(file: InputFile, cfg: IngestConfig) -> str:
    """``synthetic`` for the generator's files (or when asked for that source), else ``beth``."""
    if cfg.source == Source.SYNTHETIC or posixpath.basename(file.rel).startswith("synthetic_"):
        return Source.SYNTHETIC.value
    return Source.BETH.value


def _columns(rows: list[dict[str, Any]]) -> pa.Table:
    # column by column: much cheaper than appending every row to 27 lists; good rows' raw text is dropped
    table = event_table({name: [r.get(name) for r in rows] for name in EVENT_SCHEMA.names})
    i = table.schema.get_field_index("raw")
    raw = pc.if_else(pc.is_valid(table.column("quarantine_reason")), table.column("raw"), pa.scalar(None, pa.string()))
    return table.set_column(i, table.schema.field(i), raw)


def _table(rows: list[dict[str, Any]], on_bad: Any = None) -> pa.Table:
    return safe_table(rows, _columns, on_bad)


def parse(stream: BinaryIO, file: InputFile, cfg: IngestConfig, lines: Counter[str] | None = None
          ) -> Iterator[pa.Table]:
    """Parse one BETH CSV stream into :data:`EVENT_SCHEMA` tables of at most ``cfg.block_rows`` rows.

    No line can stop the stream: whatever a line holds, it becomes a row or a quarantine row with the reason.
    """
    lines = lines if lines is not None else Counter()
    source = source_of(file, cfg)

    def bad_row(row: dict[str, Any], reason: str) -> dict[str, Any]:
        lines["record"] -= 1
        lines["quarantined"] += 1
        return quarantine_row(source, file, row["line"], row.get("raw") or "", reason)

    cap = cfg.max_field_chars * 4 + 4096  # a line can hold 16 fields; longer means garbage
    rows: list[dict[str, Any]] = []
    layout: _Layout | None = None
    header_error: str | None = None
    bad = blank = 0

    for line, raw, oversized in _lines(stream, cap):
        try:
            if oversized:
                raise BadRow(f"oversized line: more than {cap} bytes")
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise BadRow(f"non-UTF-8 bytes at offset {exc.start}") from None
            if not text.strip():
                blank += 1
                lines["blank"] += 1
                continue
            if layout is None and header_error is None:
                try:
                    layout = _Layout(next(csv.reader((text.lstrip("\ufeff"),))))
                except (BadRow, csv.Error) as exc:
                    header_error = str(exc)
                    raise BadRow(header_error) from None
                lines["header"] += 1
                continue
            if layout is None:
                raise BadRow(f"no usable header: {header_error}")
            fields = _split(text, layout.width, cfg.max_field_chars)
            row = (_event_row if layout.kind == "events" else _dns_row)(fields, layout, cfg)
            row.update(record_id=line_record_id(source, file.rel, line), source=source, source_file=file.rel, line=line,
                       raw=text)  # raw is kept only for a row the schema refuses (safe_table), then dropped
            rows.append(row)
            lines["record"] += 1
        except Exception as exc:  # one line's content, whatever it is, never stops the read
            bad += 1
            lines["quarantined"] += 1
            reason = str(exc) if isinstance(exc, BadRow) else f"unparseable row: {type(exc).__name__}: {exc}"[:200]
            rows.append(quarantine_row(source, file, line, raw, reason))
        if len(rows) >= cfg.block_rows:
            yield _table(rows, bad_row)
            rows = []
    if rows:
        yield _table(rows, bad_row)
    if bad or blank:
        log.info("%s: %d bad line(s) flagged, %d blank line(s) skipped", file.rel, bad, blank)


def read(uri: str | Selection, cfg: IngestConfig) -> ray.data.Dataset:
    """Read BETH (or synthetic BETH-format) CSVs under ``uri`` (file, folder, glob; local or ``s3://``).

    Args:
        uri: where the CSVs are (or an already listed :class:`~aptray.io.fs.Selection`); in a folder or glob
            only ``.csv`` and ``.csv.gz`` files are read.
        cfg: ingest settings (block size, field cap); strictness is applied downstream by the job.

    Returns:
        A lazy dataset in :data:`aptray.schema.EVENT_SCHEMA`, bad rows flagged with ``quarantine_reason``.
    """
    return files_dataset(uri, parse, cfg, suffixes=SUFFIXES)


#: The 16 columns of the BETH splits, the default header of headerless CSV lines online.
COLUMNS: tuple[str, ...] = (
    "timestamp", "processId", "threadId", "parentProcessId", "userId", "mountNamespace", "processName",
    "hostName", "eventId", "eventName", "stackAddresses", "argsNum", "returnValue", "args", "sus", "evil",
)


def is_header(fields: list[str]) -> bool:
    """Whether a parsed CSV line is a BETH header (event or DNS files)."""
    return ("processId" in fields and "eventName" in fields) or ("SourceIP" in fields and "DnsQuery" in fields)


def literal(value: Any) -> str:
    """A JSON value as BETH writes it in a CSV field (Python literals for lists and dicts)."""
    return repr(value) if isinstance(value, (list, dict)) else scalar_field(value)


#: BETH items online: headerless lines have the 16 columns; keys beyond the columns are ignored.
CSV_FORMAT = CsvFormat("BETH", is_header, COLUMNS, literal, ignore_unknown=True)


def parse_request(request: Request, cfg: IngestConfig) -> pa.Table:
    """The events of one online request: BETH CSV lines (a first line that is a BETH header is used as the
    header; otherwise ``request.header`` or :data:`COLUMNS`), or JSON objects keyed by BETH column names (lists
    and dicts, such as ``args``, are written back as the Python literals BETH files hold; keys that are not BETH
    columns are ignored, as a newer export's columns or a client's own notes may be)."""
    return parse_stream(parse, request.csv(CSV_FORMAT), cfg)


def looks_like(lines: list[str]) -> bool:
    """Whether the first non-blank line of a file is a BETH header."""
    fields = csv_fields(lines[0]) if lines else None
    return fields is not None and is_header(fields)
