"""auditd reader: record grouping by serial (out of order, interleaved, split blocks), decoding, quarantine."""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Any

import pytest

from aptray.config import IngestConfig
from aptray.io.auditd import decode_sockaddr, decode_value, little_endian, parse_fields, syscall_name, truncation

DATA = Path(__file__).resolve().parent.parent / "data" / "auditd"
# a header ends in ":" or, as older writers give DAEMON_CONFIG, in a space
HEADER = re.compile(r"^(?:node=(\S+) )?type=(\S+) msg=audit\((\d+(?:\.\d+)?):(\d+)\)(?::|\s+|\s*$)")
DETAIL = {"EXECVE", "PATH", "CWD", "SOCKADDR", "PROCTITLE", "FD_PAIR", "MMAP", "BPRM_FCAPS", "OBJ_PID", "IPC",
          "SOCKETCALL", "MQ_OPEN", "MQ_SENDRECV", "NETFILTER_PKT"}


def test_decoders() -> None:
    assert decode_sockaddr("020011D70A0102030000000000000000") == ("10.1.2.3:4567", None)
    assert decode_sockaddr("0A002BCB000000000000000000000000000000000000000100000000") == ("[::1]:11211", None)
    assert decode_sockaddr("01002F72756E2F73797374656D642F6E6F74696679") == (None, "/run/systemd/notify")
    assert decode_sockaddr("0002D903000000000000000000000000", little=False) == ("0.0.0.0:55555", None)  # ppc64
    assert decode_sockaddr("0002D903000000000000000000000000") == (None, None)  # read little-endian: family 512
    assert [little_endian(a) for a in ("c000003e", "c00000b7", "c0000015", "80000015", "80000016", None, "ppc64",
                                       "x86_64")] == [True, True, True, False, False, True, False, True]
    assert decode_value("exe", "2F7573722F62696E2F6E63") == "/usr/bin/nc"
    assert decode_value("a1", "2D65") == "-e" and decode_value("a0", '"nc"') == "nc"
    assert decode_value("key", "(null)") is None
    assert syscall_name("59", "c000003e") == "execve" and syscall_name("257", "c000003e") == "openat"
    assert syscall_name("59", "c000003e", "execve") == "execve"
    fields = parse_fields("pid=1 uid=0 msg='op=PAM:login exe=\"/usr/sbin/sshd\" addr=10.0.0.9 res=success'")
    assert fields["exe"] == '"/usr/sbin/sshd"' and fields["addr"] == "10.0.0.9" and fields["res"] == "success"


def _rows(uri: str, **kw: Any) -> list[dict[str, Any]]:
    from aptray.io.auditd import read

    return read(uri, IngestConfig(source="auditd", **kw)).take_all()


@pytest.mark.parametrize("name", ["interleaved.log", "interleaved.log.gz"])
def test_interleaved_out_of_order_split_blocks(ray_cluster: None, name: str) -> None:
    rows = _rows(str(DATA / name), block_rows=2)  # records of one serial land in different blocks
    bad = sorted((r for r in rows if r["quarantine_reason"]), key=lambda r: r["line"])
    good = {r["action"]: r for r in rows if not r["quarantine_reason"]}
    assert [r["line"] for r in bad] == [6, 9]
    assert "not an audit record" in bad[0]["quarantine_reason"]
    assert bad[1]["quarantine_reason"].startswith("partial event: EXECVE without SYSCALL (record of event node=web1 "
                                                  "audit(1700000000.300:503), 1 record line(s))")
    assert "orphan" in bad[1]["raw"]
    assert set(good) == {"execve", "connect", "clone"}
    ex = good["execve"]
    assert json.loads(ex["args"]) == ["nc", "-e", "10.1.2.3"]
    assert ex["object_path"] == "/usr/bin/nc" and ex["host"] == "web1" and ex["pid"] == 901
    assert ex["parent_exe"] == "/bin/bash"  # the parent's executable, joined by host|ppid
    assert json.loads(ex["extras"])["cwd"] == "/tmp"
    assert good["connect"]["object_addr"] == "10.1.2.3:4567"
    assert ex["timestamp"] == pytest.approx(1700000000.1)


def _expected(files: list[Path]) -> tuple[int, int, int]:
    """(events, record lines of partial events, non-record lines) counted with a regex over the raw lines."""
    groups: dict[str, set[str]] = {}
    texts: dict[str, set[str]] = {}
    junk = 0
    for f in files:
        for line in f.read_text(encoding="utf-8", errors="replace").split("\n"):  # not splitlines: \x1d
            if not line.strip():
                continue
            m = HEADER.match(line)
            if m is None:
                junk += 1
                continue
            if m[2] != "EOE":
                groups.setdefault(f"{m[1] or ''}|{m[3]}:{m[4]}", set()).add(m[2])
                texts.setdefault(f"{m[1] or ''}|{m[3]}:{m[4]}", set()).add(line)  # a repeated line: a duplicate
    partial = [k for k, t in groups.items() if t <= DETAIL]
    return len(groups) - len(partial), sum(len(texts[k]) for k in partial), junk


@pytest.mark.parametrize("folder", ["go-libaudit", "laurel", "ait_lds_v2_russellmitchell", "spade_checksum_inputs"])
def test_real_logs_counts(ray_cluster: None, shared_data: Path, folder: str) -> None:
    root = shared_data / "auditd" / folder
    files = sorted(p for p in root.iterdir() if p.suffix in (".log", ".txt"))
    if folder == "spade_checksum_inputs":
        files = files[:1]
    uri = str(files[0]) if len(files) == 1 else str(root)
    rows = _rows(uri)
    events, partial_lines, junk = _expected(files)
    good = [r for r in rows if not r["quarantine_reason"]]
    reasons = [r["quarantine_reason"] for r in rows if r["quarantine_reason"]]
    assert len(good) == events
    assert sum(x.startswith("partial event") for x in reasons) == partial_lines
    assert sum(x.startswith("not an audit record") for x in reasons) == junk
    syscalls = [r for r in good if r["action"] and r["action"].islower()]
    assert all(r["pid"] is not None for r in syscalls)
    if folder == "laurel":
        shell = [r for r in good if r["args"] and "perl" in r["args"]]
        assert shell, "the perl reverse shell's hex-encoded EXECVE arguments decode"
        assert any(r["object_addr"] and r["object_addr"].startswith("[") for r in good)  # an IPv6 SOCKADDR
    if folder == "ait_lds_v2_russellmitchell":
        assert any(r["action"] == "USER_CMD" or "shadow" in (r["args"] or "") for r in good) or len(good) > 2000


@pytest.mark.slow  # 45 s of Ray Data shuffles; the CDM plan's distributed run stays in (test_contexts)
def test_distributed_join_equals_the_one_task_join(ray_cluster: None, shared_data: Path) -> None:
    """The same plan hash-partitioned across the cluster (large inputs) and in one task (small ones) agree: events
    grouped by serial, parents joined, then (Exec) the process contexts."""
    path = str(shared_data / "auditd" / "spade_unit_tests_2017")
    one = _rows(path, aspect="Exec")
    distributed = _rows(path, aspect="Exec", join_in_one_task_bytes=0)

    def key(r: dict[str, Any]) -> str:
        return json.dumps(r, sort_keys=True, default=str)

    assert len(one) > 10 and sorted(map(key, one)) == sorted(map(key, distributed))


def _sentences(lines: list[str]) -> list[str]:
    """The masked sentences of raw audit.log lines, read as one online request (no Ray)."""
    import pyarrow.compute as pc

    from aptray.config import TemplateConfig
    from aptray.io.auditd import parse_request
    from aptray.io.request import Request
    from aptray.templating.base import templatize

    table = parse_request(Request(lines), IngestConfig(source="auditd"))
    table = table.filter(pc.is_null(table.column("quarantine_reason")))  # as serving does: quarantined rows, no score
    return templatize(table.drop_columns(["quarantine_reason", "raw"]), TemplateConfig()).column("sentence").to_pylist()


RECORDS_AND_SENTENCES = [
    (  # a refused ssh login (a line of the shared data): it fails, where the same line with res=success would not
        ["type=USER_LOGIN msg=audit(1493216050.975:21203): pid=10617 uid=0 auid=4294967295 ses=4294967295 "
         "msg='op=login acct=28696E76616C6964207573657229 exe=\"/usr/sbin/sshd\" hostname=? addr=31.207.47.36 "
         "terminal=sshd res=failed'"],
        "Process <pid> (/usr/sbin/sshd), as user 0, called user_login on 31.207.47.36 for the account (invalid user) "
        "and failed."),
    (  # an execution: its EXECVE argv is the command line executed; the login user and working directory known
        ['type=SYSCALL msg=audit(1615114232.375:70): arch=c000003e syscall=59 success=yes exit=0 a0=1 a1=2 a2=3 a3=4 '
         'items=1 ppid=10883 pid=10884 auid=1000 uid=0 gid=0 euid=0 tty=pts1 ses=1 comm="whoami" '
         'exe="/usr/bin/whoami" key=(null)',
         'type=EXECVE msg=audit(1615114232.375:70): argc=2 a0="whoami" a1="-a"',
         'type=CWD msg=audit(1615114232.375:70): cwd="/home/user/tmp"',
         'type=PATH msg=audit(1615114232.375:70): item=0 name="/usr/bin/whoami" inode=1 nametype=NORMAL',
         'type=PROCTITLE msg=audit(1615114232.375:70): proctitle=77686F616D69002D61'],
        'Process <pid> (/usr/bin/whoami), child of process <pid>, as user 0, logged in as user 1000, working in '
        '/home/user/tmp, executed /usr/bin/whoami with the command line "whoami -a".'),
    (  # any other syscall: its PROCTITLE is what the process is running
        ['type=SYSCALL msg=audit(1615114233.000:71): arch=c000003e syscall=23 success=yes exit=1 a0=1 a1=2 a2=3 a3=4 '
         'items=0 ppid=900 pid=901 auid=1000 uid=1000 gid=1000 tty=(none) ses=3 comm="sshd" exe="/usr/sbin/sshd" '
         'key=(null)',
         'type=PROCTITLE msg=audit(1615114233.000:71): proctitle=737368643A206275726E205B707269765D'],
        'Process <pid> (/usr/sbin/sshd), running "sshd: burn [priv]", child of process <pid>, as user 1000, called '
        'select.'),
    (  # a PAM record: the account it is about; auid unset (4294967295) is left out
        ["type=USER_ACCT msg=audit(1642723741.072:375): pid=10125 uid=0 auid=4294967295 ses=4294967295 "
         "msg='op=PAM:accounting acct=\"root\" exe=\"/usr/sbin/cron\" hostname=? addr=? terminal=cron res=success'"],
        "Process <pid> (/usr/sbin/cron), as user 0, called user_acct for the account root."),
    (  # a relative path "." under the working directory is the directory itself
        ['type=SYSCALL msg=audit(1615114234.000:72): arch=c000003e syscall=257 success=yes exit=3 a0=1 a1=2 a2=3 '
         'a3=4 items=1 ppid=1 pid=77 auid=4294967295 uid=0 gid=0 tty=(none) ses=4294967295 comm="ls" '
         'exe="/usr/bin/ls" key=(null)',
         'type=CWD msg=audit(1615114234.000:72): cwd="/srv"',
         'type=PATH msg=audit(1615114234.000:72): item=0 name="." inode=2 nametype=NORMAL'],
        "Process <pid> (/usr/bin/ls), child of process <pid>, as user 0, working in /srv, opened /srv."),
    (  # arm64 (arch=c00000b7) numbers its syscalls its own way: 221 is execve there (it read "called syscall_221")
        ['type=SYSCALL msg=audit(1615114235.000:73): arch=c00000b7 syscall=221 success=yes exit=0 a0=1 a1=2 a2=3 '
         'a3=4 items=1 ppid=1 pid=78 auid=4294967295 uid=0 gid=0 tty=(none) ses=4294967295 comm="id" '
         'exe="/usr/bin/id" key=(null)',
         'type=PATH msg=audit(1615114235.000:73): item=0 name="/usr/bin/id" inode=3 nametype=NORMAL'],
        "Process <pid> (/usr/bin/id), child of process <pid>, as user 0, executed /usr/bin/id."),
    (  # older auditd writes DAEMON_CONFIG with no ":" after its header (go-libaudit's rhel7 sample); it was
        # quarantined as "not an audit record"
        ["type=DAEMON_CONFIG msg=audit(1490239800.477:34) config changed, auid=0 pid=1512 "
         "subj=system_u:system_r:unconfined_service_t:s0 res=success"],
        "Process <pid>, logged in as user 0, called daemon_config."),
]


@pytest.mark.parametrize(("lines", "expected"), RECORDS_AND_SENTENCES)
def test_raw_records_read_as_sentences(lines: list[str], expected: str) -> None:
    assert _sentences(lines) == [expected]


def test_real_records_read_as_sentences(shared_data: Path) -> None:
    """Real logs: the fields a reviewer missed (account, login user, working directory) and the command line."""
    ait = (shared_data / "auditd" / "ait_lds_v2_russellmitchell" / "intranet_server_audit.log").read_text()
    assert _sentences(ait.splitlines()[:1]) == [
        "Process <pid> (/usr/sbin/cron), as user 0, called user_acct for the account root."]
    laurel = (shared_data / "auditd" / "laurel" / "record-execve.txt").read_text().split("\n")
    assert _sentences(laurel) == [
        "Process <pid> (/usr/bin/whoami), child of process <pid>, as user 0, logged in as user 1000, working in "
        '/home/user/tmp, executed /usr/bin/whoami with the command line "whoami".']


def _read_local(files: dict[str, bytes]) -> tuple[Any, dict[str, int], int]:
    """Parse ``{name: content}`` as one input without Ray (the one-task plan on one table): the output rows,
    the line counts the read tasks would write (summed) and the physical lines."""
    import io
    from collections import Counter

    import pyarrow as pa

    from aptray.io.auditd import REC_SCHEMA, assemble_events, parse
    from aptray.io.engine import LocalEngine
    from aptray.io.files import CountingStream, record_lines, sum_line_counts
    from aptray.io.fs import InputFile

    cfg = IngestConfig(source="auditd")
    tables, per_file = [], []
    for name, data in files.items():
        lines: Counter[str] = Counter()
        stream = CountingStream(io.BytesIO(data))  # type: ignore[arg-type]
        tables += list(parse(stream, InputFile(name, name, len(data)), cfg, lines))  # type: ignore[arg-type]
        per_file.append(record_lines(InputFile(name, name, len(data)), stream.lines, lines, None))
    records = pa.concat_tables(tables) if tables else REC_SCHEMA.empty_table()
    counts = sum_line_counts(per_file)
    return assemble_events(LocalEngine(), records, cfg, None), counts, counts["lines"]


def _fates(out: Any, files: dict[str, bytes]) -> tuple[dict[tuple[str, int], str], set[tuple[str, int]]]:
    """Each line's quarantine reason, and the lines of the scored events (every record line of the serial of a
    scored row that is not itself quarantined), found from the raw lines by a regex."""
    serial_of: dict[tuple[str, int], str] = {}
    for name, data in files.items():
        for n, line in enumerate(data.decode().split("\n"), start=1):
            m = HEADER.match(line)
            if m and m[2] != "EOE":
                serial_of[(name, n)] = f"{m[1]}|{m[3]}:{m[4]}"
    rows = out.to_pylist()
    quarantined = {(r["source_file"], r["line"]): r["quarantine_reason"] for r in rows if r["quarantine_reason"]}
    scored_serials = {serial_of[(r["source_file"], r["line"])] for r in rows if not r["quarantine_reason"]}
    scored = {at for at, serial in serial_of.items() if serial in scored_serials and at not in quarantined}
    return quarantined, scored


CRAFTED = "\n".join([
    'type=SYSCALL msg=audit(1615114232.375:70): arch=c000003e syscall=59 success=yes exit=0 a0=1 a1=2 a2=3 a3=4 '
    'items=1 ppid=10883 pid=10884 auid=1000 uid=0 gid=0 euid=0 tty=pts1 ses=1 comm="whoami" exe="/usr/bin/whoami" '
    'key=(null)',                                                                                           # 1
    'type=EXECVE msg=audit(1615114232.375:70): argc=2 a0="whoami" a1="-a"',                                # 2
    'type=PATH msg=audit(1615114233.000:71): item=0 name="/etc/shadow" inode=1 nametype=NORMAL',           # 3
    "",                                                                                                     # 4
    'type=CWD msg=audit(1615114233.000:71): cwd="/root"',                                                  # 5
    'type=EXECVE msg=audit(1615114232.375:70): argc=2 a0="whoami" a1="-a"',                                # 6 again
    "a line that is no audit record",                                                                      # 7
    'type=CWD msg=audit(1615114232.375:70): cwd="/home/user"',                                             # 8
    'type=EOE msg=audit(1615114232.375:70): ',                                                             # 9
]) + "\n"


def test_every_line_ends_in_one_row_and_the_counts_say_which() -> None:
    """An event of four record lines is one scored row; a partial event's two lines, a repeated line and a line
    that is no record are four quarantined rows, one per line; a blank line and EOE are no row. The line counts,
    settled with the quarantined rows, say the same."""
    from aptray.commands.summary import templatize_lines
    from aptray.io.files import settle_lines

    files = {"a.log": CRAFTED.encode()}
    out, lines, physical = _read_local(files)
    quarantined, scored = _fates(out, files)
    assert scored == {("a.log", n) for n in (1, 2, 8)} and out.num_rows - len(quarantined) == 1
    assert sorted(quarantined) == [("a.log", n) for n in (3, 5, 6, 7)]
    assert quarantined[("a.log", 3)] == quarantined[("a.log", 5)] == (
        "partial event: CWD+PATH without SYSCALL (record of event audit(1615114233.000:71), 2 record line(s))")
    assert quarantined[("a.log", 6)] == "duplicate record: same as a.log line 2"
    assert quarantined[("a.log", 7)].startswith("not an audit record")
    # the parser read 6 lines as records and flagged 1; the join quarantined 3 of the records
    assert (lines["record"], lines["quarantined"], lines["blank"], lines["context"], physical) == (6, 1, 1, 1, 9)
    settled = settle_lines(lines, len(quarantined))
    assert settled == {**lines, "record": 3, "quarantined": 4}
    assert settled["record"] == len(scored) and settled["quarantined"] == len(quarantined)
    assert sum(settled[k] for k in ("record", "quarantined", "blank", "header", "context")) == physical
    counts = {"rows": 1, "quarantined": 4, "distinct_sentences": 1, "lines": settled}
    assert templatize_lines(counts, "out")[1] == (
        "lines read: 9: 3 in the 1 templatized rows, 4 quarantined (a row each), 1 blank, "
        "1 context records (no row of their own)")


def test_settle_lines_refuses_counts_that_do_not_add_up(caplog: pytest.LogCaptureFixture,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    from aptray.io import files
    from aptray.io.files import settle_lines

    # a library's logging.config.dictConfig earlier in the worker (disable_existing_loggers) may have disabled it
    monkeypatch.setattr(files.log, "disabled", False)

    lines = {"lines": 10, "record": 8, "quarantined": 2, "blank": 0, "header": 0, "context": 0, "unaccounted": 0}
    assert settle_lines(lines, 2) == lines  # nothing quarantined after the read
    with caplog.at_level(logging.WARNING, logger="aptray.io.files"):
        assert settle_lines(lines, 11) == lines and settle_lines(lines, 1) == lines  # more than the records, fewer
    assert caplog.text.count("cannot say which lines were quarantined") == 2


def test_real_logs_every_line_ends_in_one_row(shared_data: Path) -> None:
    """go-libaudit's fixtures (partial events, repeated records, lines that are no record) and SPADE's unit tests
    (each program's log and its extracted copy: every record of the copy repeats one of the log)."""
    for folder in ("go-libaudit", "spade_unit_tests_2017"):
        root = shared_data / "auditd" / folder
        files = {p.name: p.read_bytes() for p in sorted(root.iterdir()) if p.suffix in (".log", ".txt")}
        out, lines, physical = _read_local(files)
        quarantined, scored = _fates(out, files)
        from aptray.io.files import settle_lines

        settled = settle_lines(lines, len(quarantined))
        assert settled["quarantined"] == len(quarantined) > 0 and settled["record"] == len(scored), folder
        assert settled["record"] + settled["quarantined"] + settled["blank"] + settled["context"] == physical


def test_truncation() -> None:
    assert truncation(" arch=c000003e sysc") == "it ends in 'sysc', a field without its value"
    assert truncation(' item=0 name="/usr/bi') == 'unterminated quoted value name="/usr/bi'
    assert truncation(" pid=1 msg='op=login acct=\"root\" res=succ") == (
        "unterminated quoted value msg='op=login")
    assert truncation("") == truncation("   ") == "nothing after the header"
    whole = [  # real bodies: AVC's free text, a laurel-enriched SADDR, an old-format login, a value-less field
        ' avc:  denied  { read } for  pid=13010 comm="pickup" name="maildrop" dev=dm-0 ino=1 '
        "scontext=system_u:system_r:postfix_pickup_t:s0 tcontext=system_u:object_r:postfix_spool_t:s0 tclass=dir",
        " saddr=100000000000000000000000\x1dSADDR={ fam=netlink nlnk-fam=16 nlnk-pid=0 }",
        " login pid=13015 uid=0 old auid=4294967295 new auid=0",
        " op=PAM:login acct=root exe=/usr/sbin/sshd hostname=? addr=? terminal=ssh res=success",
        " pid=1 uid=0 auid=4294967295 ses=4294967295 msg='unit=cron comm=\"systemd\" res=success'",
    ]
    assert [truncation(b) for b in whole] == [None] * len(whole)


CUT = "\n".join([
    'type=SYSCALL msg=audit(1615114232.375:70): arch=c000003e syscall=59 success=yes exit=0 a0=1 a1=2 a2=3 a3=4 '
    'items=1 ppid=10883 pid=10884 auid=1000 uid=0 gid=0 euid=0 tty=pts1 ses=1 comm="whoami" exe="/usr/bin/whoami" '
    'key=(null)',                                                                                           # 1
    'type=EXECVE msg=audit(1615114232.375:70): argc=2 a0="whoami" a1="-a"',                                # 2
    'type=PATH msg=audit(1615114232.375:70): item=0 name="/usr/bin/who',                                   # 3 cut
    "type=SYSCALL msg=audit(1615114232.375:71): arch=c000003e sysc",                                       # 4 cut
    "type=PROCTITLE msg=audit(1615114232.375:71): proctitle=77686F616D69",                                 # 5
    'type=SYSCALL msg=audit(1615114233.000:72): arch=c000003e syscall=23 success=yes exit=1 a0=1 a1=2 a2=3 a3=4 '
    'items=0 ppid=900 pid=901 auid=1000 uid=1000 gid=1000 tty=(none) ses=3 comm="sshd" exe="/usr/sbin/sshd" '
    'key=(null)',                                                                                           # 6
    "type=USER_LOGIN msg=audit(1615114234.000:73): pid=1 uid=0 auid=4294967295 ses=4294967295 msg='op=login "
    'acct="root" exe="/usr/sbin/sshd" hostname=? addr=10.0.0.9 terminal=sshd res=succ',                   # 7 cut
    "type=SYSCALL msg=audit(1615114240.1",                                                                 # 8 cut
    "type=SYSCALL msg=audit(1615114241.000:74)",                                                           # 9 cut
    "type=EOE msg=audit(1615114233.000:72)",                                                               # 10
])


def test_truncated_records_quarantine_their_whole_event() -> None:
    """A cut record is quarantined with the reason, and so is every other record of its event (no event is scored
    from some of its records as if they were all); the whole event beside them is scored; a cut log's last line
    (no newline) too. Every line still ends in one row."""
    files = {"cut.log": CUT.encode()}
    out, lines, physical = _read_local(files)
    quarantined, scored = _fates(out, files)
    assert scored == {("cut.log", 6)}
    event = {n: f"audit(1615114232.375:{70 + (n > 3)})" for n in range(1, 6)}
    assert {n: reason for (_, n), reason in quarantined.items()} == {
        1: f"incomplete event: truncated record at cut.log line 3 (record of event {event[1]}, 3 record line(s))",
        2: f"incomplete event: truncated record at cut.log line 3 (record of event {event[2]}, 3 record line(s))",
        3: 'truncated record: unterminated quoted value name="/usr/bin/who '
           f"(record of event {event[3]}, 3 record line(s))",
        4: f"truncated record: it ends in 'sysc', a field without its value (record of event {event[4]}, "
           "2 record line(s))",
        5: f"incomplete event: truncated record at cut.log line 4 (record of event {event[5]}, 2 record line(s))",
        7: "truncated record: unterminated quoted value msg='op=login (record of event audit(1615114234.000:73), "
           "1 record line(s))",
        8: "truncated record: the line ends inside its header",
        9: "truncated record: nothing after the header (record of event audit(1615114241.000:74), 1 record line(s))",
    }
    assert (lines["lines"], lines["context"]) == (physical, 1) == (10, 1)  # an EOE written without its ": "


def test_a_request_cut_mid_record_is_not_read_as_a_whole_event() -> None:
    """Online: the whoami execution whose last line, its EXECVE, is cut inside an argument gives no sentence (it
    read 'executed /usr/bin/whoami with the command line "whoami "-"' before)."""
    lines = RECORDS_AND_SENTENCES[1][0]
    assert len(_sentences(lines)) == 1
    assert _sentences([lines[0], *lines[2:], lines[1][:-2]]) == []


def test_syscall_numbers_per_architecture() -> None:
    """Spot checks against the kernel's tables (syscall_64.tbl, syscall_32.tbl, asm-generic/unistd.h, the powerpc,
    s390 and arm syscall.tbl)."""
    arm64 = {"execve": 221, "openat": 56, "close": 57, "read": 63, "write": 64, "clone": 220, "connect": 203,
             "socket": 198, "bind": 200, "accept": 202, "sendto": 206, "recvfrom": 207, "exit_group": 94,
             "kill": 129, "unlinkat": 35, "mkdirat": 34, "renameat2": 276, "fchmodat": 53, "fchownat": 54,
             "ptrace": 117, "setuid": 146, "mmap": 222, "mprotect": 226, "clone3": 435}
    assert {name: syscall_name(str(n), "c00000b7") for name, n in arm64.items()} == {n: n for n in arm64}
    i386 = {"execve": 11, "open": 5, "socketcall": 102, "openat": 295, "connect": 362, "exit_group": 252}
    assert {name: syscall_name(str(n), "40000003") for name, n in i386.items()} == {n: n for n in i386}
    x86_64 = {"execve": 59, "openat": 257, "inotify_init": 253, "inotify_rm_watch": 255, "finit_module": 313,
              "preadv2": 327, "pidfd_open": 434}
    assert {name: syscall_name(str(n), "c000003e") for name, n in x86_64.items()} == {n: n for n in x86_64}
    assert syscall_name("221", "aarch64") == syscall_name("221", "C00000B7") == "execve"  # ausearch -i, upper case
    assert syscall_name("59", None) == "execve"  # no arch: x86_64
    ppc64 = {"execve": 11, "socket": 326, "bind": 327, "connect": 328, "openat": 286, "newfstatat": 291,
             "semtimedop": 392, "clone3": 435}
    for arch in ("80000015", "c0000015", "ppc64", "ppc64le"):  # big- and little-endian: one table
        assert {name: syscall_name(str(n), arch) for name, n in ppc64.items()} == {n: n for n in ppc64}
    ppc = {"execve": 11, "socket": 326, "bind": 327, "fstatat64": 291, "mmap2": 192, "clock_gettime64": 403}
    for arch in ("14", "ppc"):
        assert {name: syscall_name(str(n), arch) for name, n in ppc.items()} == {n: n for n in ppc}
    assert syscall_name("192", "80000015") == "syscall_192"  # mmap2 is 32-bit only
    s390x = {"execve": 11, "socket": 359, "bind": 361, "connect": 362, "openat": 288, "newfstatat": 293,
             "getuid": 199, "select": 142}
    for arch in ("80000016", "s390x"):
        assert {name: syscall_name(str(n), arch) for name, n in s390x.items()} == {n: n for n in s390x}
    arm = {"execve": 11, "socket": 281, "bind": 282, "connect": 283, "openat": 322, "fstatat64": 327,
           "getuid32": 199, "clock_gettime64": 403, "pidfd_open": 434}
    for arch in ("40000028", "arm", "armeb"):
        assert {name: syscall_name(str(n), arch) for name, n in arm.items()} == {n: n for n in arm}
    assert syscall_name("102", "40000028") == "syscall_102"  # socketcall is OABI only
    assert syscall_name("327", "80000008") == "syscall_327"  # mips: no table here
    assert syscall_name("260", "c00000b7") == "wait4" and syscall_name("250", "c00000b7") == "syscall_250"


def test_arm64_records_read_as_their_syscalls(shared_data: Path) -> None:
    """laurel's arm64 trace (arch=c00000b7): execve 221 and clone 220 read as what they did (they read "called
    syscall_221 on /bin/true" before)."""
    lines = (shared_data / "auditd" / "laurel" / "fork-sleep-exec.txt").read_text().split("\n")
    assert _sentences([line for line in lines if line.strip()]) == [
        "Process <pid> (/home/user/bin/uncaring-parent), child of process <pid>, as user 1000, working in /home/user, "
        'executed /home/user/bin/uncaring-parent with the command line "/home/user/bin/uncaring-parent".',
        "Process <pid> (/home/user/bin/uncaring-parent), child of process <pid> (/home/user/bin/uncaring-parent), as "
        "user 1000, created a child process.",
        "Process <pid> (/usr/bin/true), child of process <pid>, as user 1000, working in /home/user, executed "
        "/bin/true.",
    ]


def test_ppc64_bind_reads_as_bind(shared_data: Path) -> None:
    """laurel's big-endian ppc64 record (arch=80000015 syscall=327, nc binding a port) is a bind: it read "called
    syscall_327", and its SOCKADDR (the family in the machine's big-endian order, 0002) gave no address."""
    from aptray.io.auditd import parse_request
    from aptray.io.request import Request

    lines = (shared_data / "auditd" / "laurel" / "record-bind-ipv4-bigendian.txt").read_text().split("\n")
    assert any("arch=80000015 syscall=327 " in line for line in lines)
    table = parse_request(Request([line for line in lines if line.strip()]), IngestConfig(source="auditd"))
    assert table.column("action").to_pylist() == ["bind"]
    assert table.column("exe").to_pylist() == ["/usr/bin/nc.openbsd"]
    assert table.column("object_addr").to_pylist() == ["0.0.0.0:55555"]  # nc -l -p 55555


@pytest.mark.parametrize(("cwd", "name", "path"), [
    ("/a/b", ".", "/a/b"),
    ("/a/b", "../x", "/a/x"),
    ("/a/b/", "./c/../d//e", "/a/b/d/e"),
    ("/", "..", "/"),
    ("/a/b", "/usr/./bin/../lib/x", "/usr/./bin/../lib/x"),  # an absolute name is kept as the kernel gave it
    ("/home/user/src/laurel", "./src/testdata/double-fork/test-script.sh",  # laurel's shell-proc-trace.txt
     "/home/user/src/laurel/src/testdata/double-fork/test-script.sh"),
])
def test_relative_names_join_the_working_directory_lexically(cwd: str, name: str, path: str) -> None:
    from aptray.io.auditd import parse_request
    from aptray.io.request import Request

    lines = ['type=SYSCALL msg=audit(1615114236.000:75): arch=c000003e syscall=2 success=yes exit=3 a0=1 a1=2 '
             'a2=3 a3=4 items=1 ppid=1 pid=79 uid=0 gid=0 comm="cat" exe="/usr/bin/cat" key=(null)',
             f'type=CWD msg=audit(1615114236.000:75): cwd="{cwd}"',
             f'type=PATH msg=audit(1615114236.000:75): item=0 name="{name}" inode=4 nametype=NORMAL']
    table = parse_request(Request(lines), IngestConfig(source="auditd"))
    assert table.column("object_path").to_pylist() == [path]
