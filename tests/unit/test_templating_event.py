"""Golden sentences of the single-event template, and masking of volatile tokens."""

from __future__ import annotations

import json

import pyarrow as pa
import pytest

from aptray.config import TemplateConfig
from aptray.schema import event_table
from aptray.templating.base import templatize
from aptray.templating.event import describe_args, event_sentences, normalise_action, sentence

GOLDEN = [
    (
        {"pid": 1054, "exe": "/bin/bash", "process_name": "bash", "action": "read", "object_path": "/etc/passwd"},
        "Process 1054 (/bin/bash) read /etc/passwd.",
    ),
    (
        {"pid": 7, "process_name": "nginx", "ppid": 1, "uid": 101, "action": "connect",
         "object_addr": "192.168.1.5:80", "return_value": -111,
         "args": json.dumps({"sockfd": 5, "addr": "{'sin_addr': '192.168.1.5'}", "addrlen": 16})},
        "Process 7 (nginx), child of process 1, as user 101, connected to 192.168.1.5:80 and failed with -111 "
        "(ECONNREFUSED).",
    ),
    (
        {"pid": 381, "ppid": 1, "uid": 100, "process_name": "close", "action": "prctl", "return_value": 0,
         "args": json.dumps({"option": "PR_SET_NAME", "arg2": 94819493392601, "arg3": 94819493392601})},
        "Process 381 (close), child of process 1, as user 100, called prctl with option PR_SET_NAME.",
    ),
    (  # CDM: EVENT_* names, no pid, an exe and a parent exe
        {"exe": "/usr/bin/vim", "parent_exe": "/bin/bash", "action": "EVENT_READ", "object_path": "/home/u/notes"},
        "The process /usr/bin/vim, child of /bin/bash, read /home/u/notes.",
    ),
    (
        {"pid": 12, "process_name": "sh", "exe": "/bin/dash", "action": "EVENT_EXECUTE", "object_path": "/tmp/.x1",
         "args": json.dumps({"argv": ["/tmp/.x1", "-c", "y" * 200]})},
        f'Process 12 (sh, /bin/dash) executed /tmp/.x1 with the command line "/tmp/.x1 -c {"y" * 85}...".',
    ),
    (  # auditd-style syscall name, BETH-style list of {name, value} args, pointer arguments dropped
        {"pid": 5, "action": "SYS_openat", "object_path": "/etc/shadow", "return_value": -13,
         "args": json.dumps([{"name": "flags", "value": "O_RDONLY"}, {"name": "buf", "value": "0x7ffd"}])},
        "Process 5 opened /etc/shadow with flags O_RDONLY and failed with -13 (EACCES).",
    ),
    (
        {"pid": 191, "process_name": "systemd-udevd", "action": "kill", "args": json.dumps({"pid": 7280, "sig": 15})},
        "Process 191 (systemd-udevd) sent a signal to process 7280 with signal 15.",
    ),
    (
        {"host": "ip-10-100-1-95", "action": "dns-query", "object_path": "example.com", "object_addr": "10.0.0.2",
         "args": json.dumps({"type": ["A"], "rcode": 0})},
        "The host sent a DNS query for example.com to 10.0.0.2 with type A, rcode 0.",
    ),
    ({"pid": 3, "action": "sched_process_exit", "return_value": 0}, "Process 3 exited."),
    ({"pid": 9, "action": "close", "return_value": 5}, "Process 9 closed a file descriptor."),
    ({"uid": 0, "action": "EVENT_UNLINK", "object_path": "/var/log/auth.log"},
     "A process, as user 0, deleted /var/log/auth.log."),
    ({}, "A process called an unknown action."),
    # a command line as a plain list (auditd EXECVE/PROCTITLE, CDM cmdLine): an execution's own, else the process's
    ({"pid": 9, "ppid": 1, "uid": 1000, "exe": "/usr/bin/cat", "process_name": "cat", "action": "execve",
      "object_path": "/usr/bin/cat", "args": json.dumps(["cat", "notes.txt"])},
     'Process 9 (/usr/bin/cat), child of process 1, as user 1000, executed /usr/bin/cat with the command line '
     '"cat notes.txt".'),
    ({"pid": 4, "uid": 1000, "exe": "/usr/sbin/sshd", "process_name": "sshd", "action": "select",
      "args": json.dumps(["sshd: burn [priv]"])},
     'Process 4 (/usr/sbin/sshd), running "sshd: burn [priv]", as user 1000, called select.'),
    ({"exe": "/usr/bin/vim", "action": "EVENT_READ", "object_path": "/etc/hosts", "args": json.dumps(["vim", "x"])},
     'The process /usr/bin/vim, running "vim x", read /etc/hosts.'),
    ({"pid": 2, "exe": "/usr/bin/true", "action": "syscall_221", "args": json.dumps([""])},
     "Process 2 (/usr/bin/true) called syscall_221."),
    # auditd's login user, working directory and account, from extras, where known
    ({"source": "auditd",
      "pid": 9, "uid": 0, "exe": "/usr/bin/whoami", "action": "execve", "object_path": "/usr/bin/whoami",
      "args": json.dumps(["whoami"]),
      "extras": json.dumps({"auid": "1000", "cwd": "/home/user/tmp", "key": "x", "success": "yes", "ses": "1"})},
     'Process 9 (/usr/bin/whoami), as user 0, logged in as user 1000, working in /home/user/tmp, executed '
     '/usr/bin/whoami with the command line "whoami".'),
    ({"source": "auditd",
      "pid": 10125, "uid": 0, "exe": "/usr/sbin/cron", "process_name": "cron", "action": "USER_ACCT",
      "extras": json.dumps({"acct": "root", "auid": "4294967295", "op": "PAM:accounting", "res": "success"})},
     "Process 10125 (/usr/sbin/cron), as user 0, called user_acct for the account root."),
    # what was typed as a user name is shown only where it has an account name's form: never a password
    ({"source": "auditd",
      "pid": 7, "uid": 0, "action": "USER_LOGIN", "extras": json.dumps({"acct": "Tr0ub4dor&3", "res": "failed"})},
     "Process 7, as user 0, called user_login for an unrecognised account and failed."),
    ({"source": "auditd",
      "pid": 7, "uid": 0, "action": "USER_AUTH", "extras": json.dumps({"acct": "svc-backup$", "res": "success"})},
     "Process 7, as user 0, called user_auth for the account svc-backup$."),
    # the login user only where it is another than the process's user (su, sudo): the same one says nothing new
    ({"source": "auditd", "pid": 8, "uid": 1000, "exe": "/usr/bin/ls", "action": "execve", "object_path": "/usr/bin/ls",
      "extras": json.dumps({"auid": "1000", "cwd": "/home/user"})},
     "Process 8 (/usr/bin/ls), as user 1000, working in /home/user, executed /usr/bin/ls."),
    ({"source": "auditd", "pid": 7, "uid": 0, "action": "USER_LOGIN", "object_addr": "10.0.0.9",
      "extras": json.dumps({"acct": "?", "auid": "?", "cwd": "", "res": "failed"})},
     "Process 7, as user 0, called user_login on 10.0.0.9 and failed."),
    # another reader's unknown columns stay in extras, out of the sentence, whatever their names
    ({"source": "beth", "pid": 7, "uid": 0, "action": "execve", "object_path": "/bin/ls",
      "extras": json.dumps({"cwd": "/tmp", "auid": "1000", "res": "failed"})},
     "Process 7, as user 0, executed /bin/ls."),
    ({"pid": 7, "action": "read", "extras": json.dumps({"mountNamespace": 4026531840, "eventId": 0})},
     "Process 7 read data."),
    # a value that ends the sentence keeps its own full stop, not a second one
    ({"pid": 3, "action": "newfstatat", "object_path": "."}, "Process 3 checked the status of ."),
    ({"pid": 3, "action": "openat", "object_path": "/home/u/vim73/."}, "Process 3 opened /home/u/vim73/."),
]


@pytest.mark.parametrize(("row", "expected"), GOLDEN)
def test_golden_sentences(row: dict[str, object], expected: str) -> None:
    assert event_sentences(event_table([row])).to_pylist() == [expected]


def test_batch_keeps_row_order_and_missing_columns() -> None:
    table = pa.table({"pid": [1, 2], "action": ["EVENT_WRITE", "unlink"], "object_path": ["/a", None]})
    assert event_sentences(table).to_pylist() == ["Process 1 wrote to /a.", "Process 2 deleted a file."]


def test_normalise_action() -> None:
    assert [normalise_action(a) for a in ("EVENT_RECVFROM", "SYS_openat", "Connect")] == [
        "recvfrom", "openat", "connect"]


def test_sentence_defaults_are_all_optional() -> None:
    assert sentence(pid=4, action="getdents64") == "Process 4 listed a directory."


def test_default_masking_makes_pid_and_hex_variants_equal() -> None:
    rows = [
        {"pid": pid, "ppid": ppid, "process_name": "systemd", "uid": 0, "action": "security_file_open",
         "object_path": f"/proc/{pid + 3}/cgroup", "args": json.dumps({"flags": "O_RDONLY", "tag": tag})}
        for pid, ppid, tag in ((384, 1, "0x7F4211993FB0"), (9001, 77, "0xDEADBEEF"))
    ]
    out = templatize(event_table(rows), TemplateConfig())
    first, second = out.column("sentence").to_pylist()
    assert first == second
    assert first == ("Process <pid> (systemd), child of process <pid>, as user 0, opened /proc/<pid>/cgroup with "
                     "flags O_RDONLY.")
    assert len(set(out.column("sentence_hash").to_pylist())) == 1
    unmasked = templatize(event_table(rows), TemplateConfig(mask=[])).column("sentence").to_pylist()
    assert unmasked[0] != unmasked[1]


def test_full_stop_is_never_doubled() -> None:
    from aptray.templating.base import full_stop

    assert [full_stop(t) for t in ("read data", "opened .", "flags A|...")] == ["read data.", "opened .",
                                                                               "flags A|..."]


def test_what_a_sentence_says_of_the_arguments() -> None:
    """Attribution judges the arguments by the words the sentence gives them: the command line where it is put."""
    argv = json.dumps(["cat", "notes.txt"])
    assert describe_args(argv, "execve").phrase() == 'the command line "cat notes.txt"'
    assert describe_args(argv, "read").phrase() == 'running "cat notes.txt"'
    assert describe_args(json.dumps({"flags": "O_RDONLY", "fd": 3}), "openat").phrase() == "flags O_RDONLY"
    assert describe_args(json.dumps({"fd": 3}), "close").phrase() is None
