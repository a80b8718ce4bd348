"""The BETH parser without Ray: layouts, args parsing (never eval), quarantine reasons; the synthetic generator."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pyarrow as pa
import pytest

from aptray.config import IngestConfig, Source
from aptray.io.beth import BadRow, parse, parse_args, sockaddr
from aptray.io.fs import InputFile
from aptray.io.synthetic import COLUMNS, default_demo_input, generate

HEADER16 = ",".join(COLUMNS)
GOOD16 = (
    '129.05,382,382,1,101,4026532232,systemd-resolve,ip-10-100-1-217,257,openat,"[1401, 1402]",4,15,'
    "\"[{'name': 'dirfd', 'type': 'int', 'value': -100}, {'name': 'pathname', 'type': 'const char*', "
    "'value': '/etc/passwd'}, {'name': 'flags', 'type': 'int', 'value': 'O_RDONLY'}]\",1,0"
)


def _parse(content: bytes, cfg: IngestConfig | None = None, name: str = "f.csv") -> pa.Table:
    tables = list(parse(io.BytesIO(content), InputFile(name, name, len(content)), cfg or IngestConfig()))
    return pa.concat_tables(tables) if tables else pa.table({})


def test_good_row_fields() -> None:
    row = _parse(f"{HEADER16}\n{GOOD16}\n".encode()).to_pylist()[0]
    assert row["record_id"] == "beth:f.csv:2" and row["line"] == 2 and row["source"] == "beth"
    assert (row["pid"], row["tid"], row["ppid"], row["uid"], row["return_value"]) == (382, 382, 1, 101, 15)
    assert row["action"] == "openat" and row["object_path"] == "/etc/passwd" and row["timestamp"] == 129.05
    assert json.loads(row["args"]) == {"dirfd": -100, "pathname": "/etc/passwd", "flags": "O_RDONLY"}
    assert json.loads(row["extras"]) == {"mountNamespace": 4026532232, "eventId": 257,
                                         "stackAddresses": "[1401, 1402]", "argsNum": 4}
    assert (row["sus"], row["malicious"], row["quarantine_reason"]) == (1, 0, None)


def test_args_fast_path_equals_literal_eval() -> None:
    text = ("[{'name': 'addr', 'type': 'struct sockaddr*', 'value': \"{'sin_port': '22','sin_addr': '10.0.0.1'}\"}, "
            "{'name': 'argv', 'type': 'const char**', 'value': ['ls', 'a]b']}, "
            "{'name': 'x', 'type': 'int', 'value': 'it\\'s'}, {'name': 'f', 'type': 'float', 'value': 0.5}]")
    import ast

    expected = [(d["name"], d["value"]) for d in ast.literal_eval(text)]
    assert parse_args(text, 10_000) == expected
    assert sockaddr(expected[0][1]) == ("10.0.0.1:22", None)
    assert sockaddr("{'sa_family': 'AF_UNIX','sun_path': '/run/x.sock'}") == (None, "/run/x.sock")


@pytest.mark.parametrize("text", [
    "[{'name': __import__('os').system('touch /tmp/aptray-pwned'), 'type': 'x', 'value': 1}]",
    "[{'name': 'a', 'type': 'int', 'value': 1}",
    "not a list",
    "[1, 2]",
])
def test_bad_args_are_rejected_never_run(text: str) -> None:
    with pytest.raises(BadRow, match="unparseable args"):
        parse_args(text, 10_000)
    assert not Path("/tmp/aptray-pwned").exists()


def test_args_size_cap() -> None:
    with pytest.raises(BadRow, match="unparseable args"):
        parse_args("[" + "{'name': 'a', 'type': 'float', 'value': 1.5}, " * 100 + "]", 500)


def garbage_lines(max_chars: int) -> list[tuple[bytes, str | None]]:
    """(line, expected reason prefix or None for good) of every kind of bad line."""
    good = GOOD16.encode()
    fields = next(csv.reader([GOOD16]))

    def line(**over: str) -> bytes:
        f = list(fields)
        for k, v in over.items():
            f[COLUMNS.index(k)] = v
        buf = io.StringIO()
        csv.writer(buf, lineterminator="").writerow(f)
        return buf.getvalue().encode()

    return [
        (good, None),
        (b"1.0,2,3,4,5", "wrong column count"),
        (good.replace(b"systemd-resolve", b"systemd-\xff\xferesolve"), "non-UTF-8 bytes"),
        (line(processId="abc"), "non-numeric processId"),
        (line(userId="1x"), "non-numeric userId"),
        (line(processId=""), "missing required field processId"),
        (line(eventName=""), "missing required field eventName"),
        (line(processName="p" * (max_chars + 1)), "oversized field"),
        (line(args="[{'name': __import__('os').getcwd(), 'type': 'int', 'value': 1}]"), "unparseable args"),
        (good[: good.rindex(b'"')], "unterminated quote"),
        (line(evil="yes"), "non-numeric evil"),
        (good, None),
    ]


def test_every_kind_of_garbage_is_flagged_with_reason_and_line() -> None:
    cfg = IngestConfig(max_field_chars=1000)
    cases = garbage_lines(cfg.max_field_chars)
    content = HEADER16.encode() + b"\n" + b"\n".join(c for c, _ in cases) + b"\n\n"
    table = _parse(content, cfg)
    assert table.num_rows == len(cases)  # the trailing blank line is no record
    for row, (raw, reason) in zip(table.to_pylist(), cases, strict=True):
        if reason is None:
            assert row["quarantine_reason"] is None and row["pid"] == 382
        else:
            assert row["quarantine_reason"].startswith(reason), (row["line"], row["quarantine_reason"])
            assert row["raw"] == raw.decode("utf-8", errors="replace") and row["pid"] is None
    assert table.column("line").to_pylist() == list(range(2, len(cases) + 2))


def test_oversized_line_is_cut_and_flagged() -> None:
    cfg = IngestConfig(max_field_chars=100)
    content = f"{HEADER16}\n".encode() + b"x" * 100_000 + f"\n{GOOD16}\n".encode()
    table = _parse(content, cfg)
    reasons = table.column("quarantine_reason").to_pylist()
    assert reasons[0].startswith("oversized line") and len(table.column("raw")[0].as_py()) <= 100 * 4 + 4096
    assert reasons[1] is not None  # the good row's args exceed the tiny field cap
    assert table.column("line").to_pylist() == [2, 3]


def test_unknown_header_flags_every_line() -> None:
    table = _parse(b"a,b,c\n1,2,3\n4,5,6\n")
    assert table.column("quarantine_reason").to_pylist() == [
        "unrecognised BETH header (3 columns)", "no usable header: unrecognised BETH header (3 columns)",
        "no usable header: unrecognised BETH header (3 columns)"]


def test_dns_layout() -> None:
    content = (
        b"Timestamp,SourceIP,DestinationIP,DnsQuery,DnsAnswer,DnsAnswerTTL,DnsQueryNames,DnsQueryClass,"
        b"DnsQueryType,NumberOfAnswers,DnsResponseCode,DnsOpCode,SensorId,sus,evil\n"
        b"2021-05-16T17:13:14Z,10.100.1.95,10.100.0.2,a.example,,,a.example,['IN'],['A'],0,0,0,ip-10-100-1-95,0,0\n"
        b"2021-05-16T17:13:14Z,10.100.0.2,10.100.1.95,a.example,['52.95.19.240'],['17'],a.example,['IN'],['A'],"
        b"1,0,0,ip-10-100-1-95,1,0\n"
    )
    q, a = _parse(content).to_pylist()
    assert (q["action"], q["object_addr"], q["object_path"], q["host"]) == ("dns-query", "10.100.0.2", "a.example",
                                                                           "ip-10-100-1-95")
    assert (a["action"], a["object_addr"], a["sus"]) == ("dns-answer", "10.100.0.2", 1)
    assert json.loads(a["args"])["answers"] == ["52.95.19.240"] and q["timestamp"] == 1621185194.0
    assert q["pid"] is None and q["quarantine_reason"] is None


def test_synthetic_source_name() -> None:
    content = f"{HEADER16}\n{GOOD16}\n".encode()
    assert _parse(content, name="synthetic_x.csv").column("source").to_pylist() == ["synthetic"]
    cfg = IngestConfig(source=Source.SYNTHETIC)
    assert _parse(content, cfg).column("record_id").to_pylist() == ["synthetic:f.csv:2"]


def test_generator_is_deterministic_and_labelled(tmp_path: Path) -> None:
    a = generate(tmp_path / "a.csv", 3000, seed=7, attack_fraction=0.05)
    b = generate(tmp_path / "synthetic_b.csv", 3000, seed=7, attack_fraction=0.05)
    c = generate(tmp_path / "c.csv", 3000, seed=8, attack_fraction=0.05)
    assert Path(a["path"]).name == "synthetic_a.csv"
    assert Path(a["path"]).read_bytes() == Path(b["path"]).read_bytes() != Path(c["path"]).read_bytes()
    with open(a["path"], newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == a["rows"] == 3000
    evil = sum(r["evil"] == "1" for r in rows)
    assert evil == a["evil"] and 0.02 * 3000 < evil < 0.1 * 3000
    assert all(r["sus"] == "1" for r in rows if r["evil"] == "1") and a["sus"] > evil
    attack_cmds = {r["processName"] for r in rows if r["evil"] == "1"}
    assert "bash" in attack_cmds and attack_cmds & {"wget", "curl"}
    assert any("/etc/shadow" in r["args"] for r in rows if r["evil"] == "1")
    table = _parse(Path(a["path"]).read_bytes(), name="synthetic_a.csv")
    assert table.column("quarantine_reason").null_count == 3000
    assert table.column("malicious").to_pylist().count(1) == evil


def test_default_demo_input(tmp_path: Path) -> None:
    train, test = default_demo_input(tmp_path)
    assert train.name == "synthetic_train.csv" and test.name == "synthetic_test.csv"
    with open(train, newline="") as fh:
        assert all(r["evil"] == "0" for r in csv.DictReader(fh))
    with open(test, newline="") as fh:
        assert any(r["evil"] == "1" for r in csv.DictReader(fh))


def test_generator_records_the_injected_field(tmp_path: Path) -> None:
    from aptray.io.synthetic import INJECTABLE, injected_fields

    out = generate(tmp_path / "t.csv", 3000, seed=7, attack_fraction=0.05)
    with open(out["path"], newline="") as fh:
        rows = list(csv.DictReader(fh))
    injected = injected_fields(3000, seed=7, attack_fraction=0.05)
    assert set(injected) == {i + 2 for i, r in enumerate(rows) if r["evil"] == "1"}  # every attack event, by line
    assert set(injected.values()) == set(INJECTABLE)
    by_line = {i + 2: r for i, r in enumerate(rows)}
    assert all(by_line[n]["eventName"] in ("dup2", "socket", "clone") for n, f in injected.items() if f == "action")
    assert all("/etc/shadow" in by_line[n]["args"] or "/tmp/." in by_line[n]["args"] for n, f in injected.items()
               if f == "object_path")
    assert all("/dev/tcp/" in by_line[n]["args"] or "/tmp/." in by_line[n]["args"] for n, f in injected.items()
               if f == "args")
    # living off the land: every program the attack runs, but its implant's path, runs in benign routines too
    benign = generate(tmp_path / "b.csv", 5000, seed=1, attack_fraction=0.0)
    with open(benign["path"], newline="") as fh:
        names = {r["processName"] for r in csv.DictReader(fh)}
    assert {r["processName"] for r in rows if r["evil"] == "1"} <= names
