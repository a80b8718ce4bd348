"""auditd reader: record grouping by serial (out of order, interleaved, split blocks), decoding, quarantine."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from aptray.config import IngestConfig
from aptray.io.auditd import decode_sockaddr, decode_value, parse_fields, syscall_name

DATA = Path(__file__).resolve().parent.parent / "data" / "auditd"
HEADER = re.compile(r"^(?:node=(\S+) )?type=(\S+) msg=audit\((\d+(?:\.\d+)?):(\d+)\):")
DETAIL = {"EXECVE", "PATH", "CWD", "SOCKADDR", "PROCTITLE", "FD_PAIR", "MMAP", "BPRM_FCAPS", "OBJ_PID", "IPC",
          "SOCKETCALL", "MQ_OPEN", "MQ_SENDRECV", "NETFILTER_PKT"}


def test_decoders() -> None:
    assert decode_sockaddr("020011D70A0102030000000000000000") == ("10.1.2.3:4567", None)
    assert decode_sockaddr("0A002BCB000000000000000000000000000000000000000100000000") == ("[::1]:11211", None)
    assert decode_sockaddr("01002F72756E2F73797374656D642F6E6F74696679") == (None, "/run/systemd/notify")
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
    assert bad[1]["quarantine_reason"] == "partial event: EXECVE without SYSCALL" and "orphan" in bad[1]["raw"]
    assert set(good) == {"execve", "connect", "clone"}
    ex = good["execve"]
    assert json.loads(ex["args"]) == ["nc", "-e", "10.1.2.3"]
    assert ex["object_path"] == "/usr/bin/nc" and ex["host"] == "web1" and ex["pid"] == 901
    assert ex["parent_exe"] == "/bin/bash"  # the parent's executable, joined by host|ppid
    assert json.loads(ex["extras"])["cwd"] == "/tmp"
    assert good["connect"]["object_addr"] == "10.1.2.3:4567"
    assert ex["timestamp"] == pytest.approx(1700000000.1)


def _expected(files: list[Path]) -> tuple[int, int, int]:
    """(events, partial events, non-record lines) counted with a regex over the raw lines."""
    groups: dict[str, set[str]] = {}
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
    partial = sum(1 for t in groups.values() if t <= DETAIL)
    return len(groups) - partial, partial, junk


@pytest.mark.parametrize("folder", ["go-libaudit", "laurel", "ait_lds_v2_russellmitchell", "spade_checksum_inputs"])
def test_real_logs_counts(ray_cluster: None, shared_data: Path, folder: str) -> None:
    root = shared_data / "auditd" / folder
    files = sorted(p for p in root.iterdir() if p.suffix in (".log", ".txt"))
    if folder == "spade_checksum_inputs":
        files = files[:1]
    uri = str(files[0]) if len(files) == 1 else str(root)
    rows = _rows(uri)
    events, partial, junk = _expected(files)
    good = [r for r in rows if not r["quarantine_reason"]]
    reasons = [r["quarantine_reason"] for r in rows if r["quarantine_reason"]]
    assert len(good) == events
    assert sum(x.startswith("partial event") for x in reasons) == partial
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
