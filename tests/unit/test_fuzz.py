"""Fuzzing every reader and online parser with Hypothesis, as an attacker or a broken sensor would.

Each example is a stream of real lines from ``../shared/data`` of one format, about 15% of them mutated
(truncated, bytes flipped, invalid UTF-8, NULs, delimiters swapped, quotes unbalanced, 100 KB fields, a 5 MB
line, numbers beyond int64, values of the wrong JSON type, deep nesting, other formats' lines). Whatever the
content, a parser must not raise, and every physical line must be accounted for: the line count of the stream
equals the parser's record + quarantined + blank + header + context lines. The joins (CDM, auditd) run on
every parsed stream too, and the online path (a Serve request's items) must account for every item. CDM's Avro
containers are damaged at the byte level instead (flips, cuts, insertions, huge lengths): every declared record
and the damage itself must be accounted for.

Runs are seeded (``derandomize``) and bounded (examples x lines): at least 10,000 generated lines per format.
The regression cases of the bug reports are fixed tests at the end.
"""

from __future__ import annotations

import io
import json
import os
from collections import Counter
from collections.abc import Callable, Iterator
from functools import cache
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aptray.config import Aspect, IngestConfig, Source, TemplateConfig
from aptray.io import adapt, auditd, beth, cdm
from aptray.io.engine import LocalEngine
from aptray.io.files import LINE_CLASSES, CountingStream
from aptray.io.fs import InputFile

pytestmark = pytest.mark.data

#: Lines per example and examples per format: 20 x 300 = 6,000 generated lines per format in the suite
#: (``APTRAY_FUZZ_EXAMPLES`` raises it for a longer hunt).
LINES, EXAMPLES = 300, int(os.environ.get("APTRAY_FUZZ_EXAMPLES", "20"))
FUZZ = settings(max_examples=EXAMPLES, derandomize=True, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

SAMPLES: dict[Source, list[str]] = {
    Source.BETH: ["beth/head_samples_BethSecure/labelled_training_data.csv",
                  "beth/head_samples_BethSecure/labelled_2021may-ip-10-100-1-95-dns.csv"],
    Source.ADAPT: ["darpa_tc_adapt/bovia/5dir/ProcessEvent.csv"],
    Source.CDM: ["cdm/cadets_cdm20/direct_pipe.cdm.json", "cdm/theia_cdm18/trace.json"],
    Source.AUDITD: ["auditd/ait_lds_v2_russellmitchell/intranet_server_audit.log",
                    "auditd/go-libaudit/testdata__normal.log"],
}


def _data_dir() -> Path:
    from tests.conftest import shared_data_dir

    path = shared_data_dir()
    if not path.is_dir():
        pytest.skip(f"real data folder {path} is absent (set APTRAY_SHARED_DATA)")
    return path


@cache
def _lines(source: Source) -> tuple[bytes, ...]:
    out: list[bytes] = []
    for rel in SAMPLES[source]:
        out += (_data_dir() / rel).read_bytes().split(b"\n")[:2000]
    return tuple(line for line in out if line)


def _mutations(source: Source) -> list[Callable[[bytes, Any], bytes]]:
    """Ways to break one line (the second argument draws what each needs)."""
    others = [s for s in SAMPLES if s is not source]

    def truncate(line: bytes, draw: Any) -> bytes:
        return line[: draw(st.integers(0, max(len(line) - 1, 0)))]

    def flip(line: bytes, draw: Any) -> bytes:
        if not line:
            return b"\xff"
        i = draw(st.integers(0, len(line) - 1))
        return line[:i] + bytes([line[i] ^ draw(st.integers(1, 255))]) + line[i + 1:]

    def invalid_utf8(line: bytes, draw: Any) -> bytes:
        i = draw(st.integers(0, len(line)))
        return line[:i] + draw(st.sampled_from([b"\xc3\x28", b"\xff\xfe", b"\xed\xa0\x80", b"\x80"])) + line[i:]

    def nul(line: bytes, draw: Any) -> bytes:
        i = draw(st.integers(0, len(line)))
        return line[:i] + b"\x00" * draw(st.integers(1, 4)) + line[i:]

    def delimiters(line: bytes, draw: Any) -> bytes:
        a, b = draw(st.sampled_from([(b",", b";"), (b",", b"\t"), (b" ", b"\t"), (b":", b","), (b"=", b" ")]))
        return line.replace(a, b)

    def quotes(line: bytes, draw: Any) -> bytes:
        i = draw(st.integers(0, len(line)))
        return line[:i] + draw(st.sampled_from([b'"', b"'", b'"\\', b"{", b"["])) + line[i:]

    def huge_field(line: bytes, draw: Any) -> bytes:
        i = draw(st.integers(0, len(line)))
        return line[:i] + b"A" * draw(st.sampled_from([100_000, 300_000])) + line[i:]

    def huge_line(line: bytes, draw: Any) -> bytes:
        return line + b"x" * (5 << 20)

    def numbers(line: bytes, draw: Any) -> bytes:
        bad = draw(st.sampled_from([b"Infinity", b"-Infinity", b"NaN", b"1e999", b"9" * 30, b"-" + b"9" * 25,
                                    b"18446744073709551616", b"0x" + b"f" * 20, b"1.5"]))
        digits = [i for i, c in enumerate(line) if 48 <= c <= 57]
        if not digits:
            return line + bad
        i = draw(st.sampled_from(digits))
        j = i
        while j < len(line) and 48 <= line[j] <= 57:
            j += 1
        return line[:i] + bad + line[j:]

    def json_types(line: bytes, draw: Any) -> bytes:
        try:
            obj = json.loads(line)
        except ValueError:
            return line
        value = draw(st.sampled_from([[], {}, [1, 2], {"a": {"b": 1}}, None, True, 1.5, "x", 10**20]))

        def walk(o: Any) -> bool:
            if isinstance(o, dict) and o:
                key = draw(st.sampled_from(sorted(o)))
                if isinstance(o[key], (dict, list)) and draw(st.booleans()):
                    return walk(o[key])
                o[key] = value
                return True
            return False

        walk(obj)
        return json.dumps(obj).encode()

    def nesting(line: bytes, draw: Any) -> bytes:
        depth = draw(st.sampled_from([64, 5000, 200_000]))
        return b'{"datum": {"Event": ' + b"[" * depth + b"]" * depth + b"}}"

    def other_format(line: bytes, draw: Any) -> bytes:
        return draw(st.sampled_from(_lines(draw(st.sampled_from(others)))))

    return [truncate, flip, invalid_utf8, nul, delimiters, quotes, huge_field, huge_line, numbers, json_types,
            nesting, other_format]


def _stream(source: Source, draw: Any) -> list[bytes]:
    """A stream of real lines of ``source`` (header first where it has one), ~15% mutated, some blank."""
    pool = _lines(source)
    mutations = _mutations(source)
    start = draw(st.integers(0, len(pool) - 1))
    out: list[bytes] = [pool[0]] if source in (Source.BETH, Source.ADAPT) else []
    for k in range(LINES):
        line = pool[(start + k) % len(pool)]
        roll = draw(st.integers(0, 99))
        if roll < 15:
            line = draw(st.sampled_from(mutations))(line, draw)
        elif roll < 17:
            line = draw(st.sampled_from([b"", b"   ", b"\r"]))
        out.append(line)
    return out


def _parse(parser: Any, data: bytes, cfg: IngestConfig) -> tuple[list[pa.Table], Counter[str], int]:
    lines: Counter[str] = Counter()
    stream = CountingStream(io.BytesIO(data))  # type: ignore[arg-type]
    tables = list(parser(stream, InputFile("fuzz", "fuzz", len(data)), cfg, lines))
    return tables, lines, stream.lines


def _accounted(lines: Counter[str], physical: int) -> None:
    assert set(lines) <= set(LINE_CLASSES), lines
    assert sum(lines.values()) == physical, (dict(lines), physical)


def _fuzz_reader(source: Source, parser: Any, check: Callable[[list[pa.Table], Counter[str], IngestConfig], None],
                 aspect: Aspect | None = None) -> Callable[..., None]:
    @FUZZ
    @given(st.data())
    def run(data: Any) -> None:
        cfg = IngestConfig(source=source, aspect=aspect, block_rows=64)
        body = b"\n".join(_stream(source, data.draw)) + data.draw(st.sampled_from([b"", b"\n", b"\r\n"]))
        tables, lines, physical = _parse(parser, body, cfg)
        _accounted(lines, physical)
        check(tables, lines, cfg)

    return run  # type: ignore[no-any-return]


def _one_row_per_record(tables: list[pa.Table], lines: Counter[str], cfg: IngestConfig) -> None:
    rows = sum(t.num_rows for t in tables)
    assert rows == lines["record"] + lines["quarantined"]
    bad = sum(t.column("quarantine_reason").null_count != t.num_rows for t in tables)
    assert bad >= 0


def _joins(assemble: Any, schema: pa.Schema) -> Callable[[list[pa.Table], Counter[str], IngestConfig], None]:
    def check(tables: list[pa.Table], lines: Counter[str], cfg: IngestConfig) -> None:
        records = pa.concat_tables(tables) if tables else schema.empty_table()
        kinds = Counter(records.column("kind").to_pylist()) if "kind" in records.column_names else Counter()
        rows = records.num_rows - sum(n for k, n in kinds.items() if k not in ("event", "quarantine"))
        assert rows == lines["record"] + lines["quarantined"]  # CDM: subjects and objects are context lines
        out = assemble(LocalEngine(), records, cfg, None)  # the join: must not fail on what the parser let by
        quarantined = out.num_rows - out.column("quarantine_reason").null_count
        # a quarantined row is one line: those the join adds come from the records (settle_lines moves them)
        assert 0 <= quarantined - lines["quarantined"] <= lines["record"]

    return check


def test_beth_reader_never_fails_and_counts_every_line() -> None:
    _fuzz_reader(Source.BETH, beth.parse, _one_row_per_record)()


def test_adapt_reader_never_fails_and_counts_every_line() -> None:
    _fuzz_reader(Source.ADAPT, adapt.AdaptParser(frozenset(), Aspect.EVENT), _one_row_per_record, Aspect.EVENT)()


def test_cdm_reader_and_join_never_fail_and_count_every_line() -> None:
    _fuzz_reader(Source.CDM, cdm.parse, _joins(cdm.assemble, cdm.REC_SCHEMA))()


def test_auditd_reader_and_join_never_fail_and_count_every_line() -> None:
    _fuzz_reader(Source.AUDITD, auditd.parse, _joins(auditd.assemble_events, auditd.REC_SCHEMA))()


@cache
def _avro_container() -> bytes:
    """The real THEIA CDM20 container's first 400 records, re-written in blocks of about 20 records."""
    import fastavro

    with (_data_dir() / "cdm" / "theia_cdm20_avro" / "ripe-unit-tests.bin").open("rb") as fh:
        reader = fastavro.reader(fh, return_record_name=True, handle_unicode_errors="replace")
        schema, records = reader.writer_schema, [r for _, r in zip(range(400), reader, strict=False)]
    out = io.BytesIO()
    fastavro.writer(out, fastavro.parse_schema(schema), records, sync_interval=2000)
    return out.getvalue()


def test_cdm_avro_reader_and_join_never_fail_and_count_every_record() -> None:
    """A damaged Avro container (bytes flipped, a cut, bytes inserted or removed, a length made huge) is read up
    to the damage and quarantines the rest as one unit: never a raise, every declared record accounted for."""
    container = _avro_container()
    check = _joins(cdm.assemble, cdm.REC_SCHEMA)

    @FUZZ
    @given(st.data())
    def run(data: Any) -> None:
        body = bytearray(container)
        for _ in range(data.draw(st.integers(1, 4))):
            i = data.draw(st.integers(0, len(body) - 1))
            kind = data.draw(st.sampled_from(["flip", "cut", "insert", "delete", "huge"]))
            if kind == "flip":
                body[i] ^= data.draw(st.integers(1, 255))
            elif kind == "cut":
                del body[i:]
                break
            elif kind == "insert":
                body[i:i] = data.draw(st.binary(min_size=1, max_size=16))
            elif kind == "delete":
                del body[i : i + data.draw(st.integers(1, 64))]
            else:  # a zig-zag varint of about 2**62: a length no stream holds
                body[i:i] = b"\xfe\xff\xff\xff\xff\xff\xff\xff\x7f"
        cfg = IngestConfig(source=Source.CDM, block_rows=64)
        lines: Counter[str] = Counter()
        stream = CountingStream(io.BufferedReader(io.BytesIO(bytes(body))))  # peekable, as files are read
        tables = list(cdm.parse(stream, InputFile("fuzz.bin", "fuzz.bin", len(body)), cfg, lines))  # type: ignore[arg-type]
        _accounted(lines, stream.lines)
        check(tables, lines, cfg)

    run()


# ---- online parsers: a request's items -----------------------------------------------------------------


def _items(source: Source, draw: Any) -> list[str | dict[str, Any]]:
    lines = _stream(source, draw)[: draw(st.integers(1, 80))]
    items: list[str | dict[str, Any]] = [ln.decode("utf-8", errors="replace") for ln in lines]
    junk = st.one_of(st.text(max_size=200), st.dictionaries(st.text(max_size=12), st.one_of(
        st.integers(), st.floats(allow_nan=True), st.text(max_size=30), st.none(), st.lists(st.integers())),
        max_size=6))
    for _ in range(draw(st.integers(0, 5))):
        items.insert(draw(st.integers(0, len(items))), draw(junk))
    return items


@pytest.mark.parametrize("source", [Source.BETH, Source.ADAPT, Source.CDM, Source.AUDITD], ids=str)
def test_online_parsers_never_fail_and_account_for_every_item(source: Source) -> None:
    from aptray.serve.parse import prepare
    from aptray.serve.schemas import EventFormat

    ingest = IngestConfig(aspect=Aspect.EVENT if source is Source.ADAPT else None)

    @FUZZ
    @given(st.data())
    def run(data: Any) -> None:
        items = _items(source, data.draw)
        out = prepare(EventFormat(source.value), items, TemplateConfig(), ingest=ingest)
        counts = out.counts()
        assert counts["items"] == len(items) == counts["scored"] + counts["rejected"] + counts["context"]
        assert all(0 <= i < len(items) for i in out.index) and len(out.sentences) == len(out.index)
        assert all(0 <= i < len(items) and reason for i, reason in out.rejected)

    run()


# ---- regression cases of the reports -----------------------------------------------------------------


def _cdm_head() -> list[str]:
    return (_data_dir() / "cdm/cadets_cdm20/direct_pipe.cdm.json").read_text().split("\n")[:50]


@pytest.mark.parametrize("value", ["Infinity", "1e999", "9" * 30, "[1]", '{"a": 1}'])
def test_a_cdm_number_beyond_int64_is_quarantined_not_fatal(value: str) -> None:
    head = _cdm_head()
    event = json.loads(next(line for line in head if '"Event"' in line))
    event["datum"]["Event"]["threadId"] = "__V__"
    bad = json.dumps(event).replace('"__V__"', value)
    tables, lines, physical = _parse(cdm.parse, "\n".join([*head, bad]).encode(), IngestConfig(source=Source.CDM))
    _accounted(lines, physical)
    assert lines["quarantined"] == 1
    records = pa.concat_tables(tables)
    reasons = [r for r in records.column("quarantine_reason").to_pylist() if r]
    assert len(reasons) == 1 and ("integer" in reasons[0] or "JSON" in reasons[0])
    assert cdm.assemble(LocalEngine(), records, IngestConfig(source=Source.CDM), None).num_rows > 0


def test_deeply_nested_json_is_quarantined() -> None:
    nested = '{"datum": ' + "[" * 100_000 + "]" * 100_000 + "}"
    tables, lines, physical = _parse(cdm.parse, "\n".join([*_cdm_head(), nested]).encode(), IngestConfig())
    _accounted(lines, physical)
    reasons = [r for t in tables for r in t.column("quarantine_reason").to_pylist() if r]
    assert reasons == ["invalid JSON: nested too deeply"]


def test_corrupted_auditd_record_type_is_quarantined_and_duplicates_counted() -> None:
    good = (_data_dir() / "auditd/ait_lds_v2_russellmitchell/intranet_server_audit.log").read_text().split("\n")[:6]
    import re

    corrupt = re.sub(r"type=\S+", "type=CRED_AC\x00\x00\x00Q", good[0], count=1)
    lines_in = [*good, good[1], corrupt]
    tables, lines, physical = _parse(auditd.parse, "\n".join(lines_in).encode(), IngestConfig())
    _accounted(lines, physical)
    records = pa.concat_tables(tables)
    reasons = [r for r in records.column("quarantine_reason").to_pylist() if r]
    assert reasons == ["invalid record type 'CRED_AC\\x00\\x00\\x00Q'"]
    out = auditd.assemble_events(LocalEngine(), records, IngestConfig(), None)
    dup = [r for r in out.column("quarantine_reason").to_pylist() if r and r.startswith("duplicate record")]
    assert len(dup) == 1  # the repeated line is counted as a duplicate, not merged silently


def test_blank_items_online_are_rejected_not_dropped() -> None:
    from aptray.serve.parse import prepare
    from aptray.serve.schemas import EventFormat

    for fmt in (EventFormat.CDM, EventFormat.AUDITD, EventFormat.BETH):
        out = prepare(fmt, [""], TemplateConfig())
        assert out.rejected == [(0, "no event in this item (blank line)")], fmt


def _iter_lines(data: bytes) -> Iterator[bytes]:
    yield from io.BytesIO(data)


def test_counting_stream_counts_physical_lines() -> None:
    for data, n in ((b"", 0), (b"a", 1), (b"a\n", 1), (b"a\nb", 2), (b"\n\n", 2), (b"a\r\nb\r\n", 2)):
        stream = CountingStream(io.BytesIO(data))  # type: ignore[arg-type]
        assert list(stream) == list(_iter_lines(data)) and stream.lines == n
