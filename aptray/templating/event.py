"""The single-event sentence template: one canonical event row -> one English sentence, for every source.

BETH, auditd and CDM rows share it, so actions are normalised first (``EVENT_READ`` -> ``read``,
``SYS_openat`` -> ``openat``) and common syscalls and CDM event types read as verbs ("opened",
"connected to", "executed"); anything else reads "called <action>". Only fields present are mentioned:

    Process 7 (nginx), child of process 1, as user 101, connected to 192.168.1.5:80 and failed with -111
    (ECONNREFUSED).

A command line given as a plain list (auditd EXECVE or PROCTITLE, CDM ``cmdLine``) is the process's own: an
execution reads it as what was executed, any other action as what the process is running; the auditd login user
(``auid``, unless unset or the process's user itself), working directory (``cwd``) and account name (``acct``)
come from ``extras``, nothing else of it::

    Process 9 (/usr/bin/cat), child of process 1, as user 0, logged in as user 1000, working in /tmp,
    executed /usr/bin/cat with the command line "cat notes.txt".
    Process 4 (/usr/sbin/sshd), running "sshd: alice [priv]", as user 0, called user_login for the account alice.

What is left out on purpose: host and timestamp (where and when, not what), the thread id, labels, and
non-negative return values (mostly file descriptors and byte counts, which would only multiply sentences).
Arguments are shown briefly: symbolic values (flags, options, argv) and a few meaningful integers (signal,
capability), never descriptors, pointers, inodes or sizes; at most :data:`MAX_ARGS` of them, each cut to
:data:`MAX_ARG_CHARS`. A value that ends the sentence with a full stop of its own (the path ``.``, a cut
``...``) gets no second one. The function is pure and works per batch; masking of volatile tokens happens after
it, in :mod:`aptray.templating.mask`.
"""

from __future__ import annotations

import errno
import json
import posixpath
import re
from typing import Any, NamedTuple

import pyarrow as pa

from aptray.config import Source
from aptray.templating.base import full_stop

MAX_ARGS = 3
MAX_ARG_CHARS = 60
MAX_ARGV_CHARS = 100

_READ = ("read {obj}", "read data")
_WRITE = ("wrote to {obj}", "wrote data")
_OPEN = ("opened {obj}", "opened a file")
_EXEC = ("executed {obj}", "executed a program")
#: Actions that start a program: a command line given with them is the program's.
EXEC = frozenset(("execve", "execveat", "execute", "exec"))
_STAT = ("checked the status of {obj}", "checked the status of a file")
_CLONE = ("created a child process {obj}", "created a child process")
_UNLINK = ("deleted {obj}", "deleted a file")
_RENAME = ("renamed {obj}", "renamed a file")
_CHMOD = ("changed the permissions of {obj}", "changed file permissions")
_CHOWN = ("changed the owner of {obj}", "changed a file owner")
_SEND = ("sent data to {obj}", "sent data")
_RECV = ("received data from {obj}", "received data")
_ACCEPT = ("accepted a connection from {obj}", "accepted a connection")
_EXIT = ("exited", "exited")
_SETUID = ("changed its user id", "changed its user id")
_SETGID = ("changed its group id", "changed its group id")
_DUP = ("duplicated a file descriptor", "duplicated a file descriptor")
_MMAP = ("mapped {obj} into memory", "mapped memory")
_KILL = ("sent a signal to {obj}", "sent a signal")
_MKDIR = ("created the directory {obj}", "created a directory")
_LINK = ("linked {obj}", "created a link")

#: normalised action -> (phrase with an object, phrase without one).
VERBS: dict[str, tuple[str, str]] = {
    **dict.fromkeys(("read", "pread64", "readv", "preadv"), _READ),
    **dict.fromkeys(("write", "pwrite64", "writev", "pwritev"), _WRITE),
    **dict.fromkeys(("open", "openat", "openat2", "security_file_open"), _OPEN),
    "creat": ("created {obj}", "created a file"),
    "create_object": ("created {obj}", "created an object"),
    "close": ("closed {obj}", "closed a file descriptor"),
    **dict.fromkeys(EXEC, _EXEC),
    "security_bprm_check": ("was checked before executing {obj}", "was checked before executing a program"),
    "loadlibrary": ("loaded the library {obj}", "loaded a library"),
    "connect": ("connected to {obj}", "connected a socket"),
    **dict.fromkeys(("accept", "accept4"), _ACCEPT),
    "bind": ("bound a socket to {obj}", "bound a socket"),
    "listen": ("listened on {obj}", "listened on a socket"),
    **dict.fromkeys(("sendto", "sendmsg", "send", "sendmmsg"), _SEND),
    **dict.fromkeys(("recvfrom", "recvmsg", "recv", "recvmmsg"), _RECV),
    "getsockname": ("looked up its socket address {obj}", "looked up its socket address"),
    "socket": ("created a socket {obj}", "created a socket"),
    **dict.fromkeys(("unlink", "unlinkat", "security_inode_unlink"), _UNLINK),
    **dict.fromkeys(("rename", "renameat", "renameat2"), _RENAME),
    **dict.fromkeys(("chmod", "fchmod", "fchmodat"), _CHMOD),
    **dict.fromkeys(("chown", "fchown", "fchownat", "lchown"), _CHOWN),
    "modify_file_attributes": ("changed the attributes of {obj}", "changed file attributes"),
    **dict.fromkeys(("mkdir", "mkdirat"), _MKDIR),
    "rmdir": ("removed the directory {obj}", "removed a directory"),
    **dict.fromkeys(("link", "linkat", "symlink", "symlinkat"), _LINK),
    **dict.fromkeys(("truncate", "ftruncate"), ("truncated {obj}", "truncated a file")),
    **dict.fromkeys(("stat", "fstat", "lstat", "newfstatat", "statx"), _STAT),
    **dict.fromkeys(("access", "faccessat", "faccessat2"), ("checked access to {obj}", "checked file access")),
    **dict.fromkeys(("getdents", "getdents64"), ("listed the directory {obj}", "listed a directory")),
    **dict.fromkeys(("clone", "clone3", "fork", "vfork"), _CLONE),
    **dict.fromkeys(("exit", "exit_group", "sched_process_exit"), _EXIT),
    **dict.fromkeys(("kill", "tkill", "tgkill", "signal"), _KILL),
    **dict.fromkeys(("mmap", "mmap2"), _MMAP),
    "mprotect": ("changed the memory protection of {obj}", "changed memory protection"),
    **dict.fromkeys(("dup", "dup2", "dup3"), _DUP),
    **dict.fromkeys(("setuid", "setreuid", "setresuid", "setfsuid"), _SETUID),
    **dict.fromkeys(("setgid", "setregid", "setresgid", "setfsgid"), _SETGID),
    "change_principal": ("changed its user", "changed its user"),
    "cap_capable": ("checked a capability", "checked a capability"),
    "ptrace": ("traced {obj}", "traced another process"),
    **dict.fromkeys(("init_module", "finit_module", "load_module"), ("loaded a kernel module",) * 2),
    "update": ("updated {obj}", "updated an object"),
    "dns-query": ("sent a DNS query for {obj}", "sent a DNS query"),
    "dns-answer": ("received a DNS answer for {obj}", "received a DNS answer"),
}
#: Actions whose natural object is a network address rather than a path.
NETWORK = frozenset(
    ("connect", "accept", "accept4", "bind", "listen", "sendto", "sendmsg", "send", "sendmmsg", "recvfrom",
     "recvmsg", "recv", "recvmmsg", "getsockname")
)
#: How a second object is attached when the verb already took the first one.
OTHER_PREP: dict[str, str] = {"dns-query": "to", "dns-answer": "from"}
#: Arguments never shown: descriptors, pointers, sizes, ids that only make sentences unique.
SKIP_ARGS = frozenset(
    ("fd", "sockfd", "dirfd", "olddirfd", "newdirfd", "oldfd", "newfd", "dev", "inode", "addrlen", "count",
     "statbuf", "buf", "stack", "parent_tid", "child_tid", "tls", "dirp", "size", "len", "offset", "pos",
     "envp", "pathname", "filename", "path", "addr", "uservaddr", "sockaddr", "dest_addr", "src_addr",
     "answer_count", "ttl", "opcode", "arg2", "arg3", "arg4", "arg5")
)
#: How some argument names read.
DISPLAY: dict[str, str] = {"sig": "signal", "cap": "capability", "argv": "the command line",
                           "arguments": "the command line"}
#: List arguments that are a command line (quoted, space-joined); other lists are comma-joined.
ARGV_ARGS = frozenset(("argv", "arguments", "cmdline", "command"))
#: Integer arguments worth a word (the rest are mostly descriptors and addresses).
INT_ARGS = frozenset(("sig", "signal", "cap", "protocol", "rcode", "resource", "how", "ruid", "euid", "suid",
                      "rgid", "egid", "sgid", "uid", "gid"))
#: The auditd login uid of a process no one logged in to (``auid`` unset: (uid_t)-1).
UNSET_AUID = frozenset((4294967295, -1))
#: auditd ``res`` values of a user-space record that failed (a refused login, a denied account).
_FAILED_RESULTS = frozenset(("failed", "fail", "no", "0"))
#: An account name as useradd accepts it (letters, digits, ``._-``, a trailing ``$`` for machine accounts).
_ACCOUNT = re.compile(r"[a-z_][a-z0-9._-]{0,31}\$?")
#: Values auditd writes for an unknown name.
_UNKNOWN_TEXT = frozenset(("", "?", "(null)", "(none)", "(unknown)"))


def normalise_action(action: str) -> str:
    """``EVENT_READ`` -> ``read``, ``SYS_openat`` -> ``openat``, ``Connect`` -> ``connect``."""
    a = action.strip().lower()
    for prefix in ("event_", "sys_", "__x64_sys_"):
        if a.startswith(prefix):
            return a[len(prefix) :]
    return a


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _is_pointer(text: str) -> bool:
    return text[:2].lower() == "0x" or text in ("(nil)", "NULL")


def _arg_items(args: str | None) -> list[tuple[str, Any]]:
    if not args:
        return []
    try:
        parsed = json.loads(args)
    except ValueError:
        return [("args", args)]
    if isinstance(parsed, dict):
        return list(parsed.items())
    if isinstance(parsed, list):  # [{name, value}, ...] or a plain list of values
        if all(isinstance(d, dict) and "name" in d for d in parsed):
            return [(str(d["name"]), d.get("value")) for d in parsed]
        return [("arguments", parsed)]
    return [("args", parsed)]


class Arguments(NamedTuple):
    """What a sentence says of an event's arguments (:func:`describe_args`)."""

    #: The arguments worth reading, as the verb's "with ..." part words them ("" for none).
    text: str
    #: The target pid of a signal (``kill``), named as the verb's object.
    target: int | None
    #: The process's own command line, quoted, where the event is no execution (the subject's "running ...").
    running: str | None

    def phrase(self) -> str | None:
        """Everything the sentence says of the arguments, in its own words (None: nothing)."""
        return ", ".join(p for p in (self.running and f"running {self.running}", self.text) if p) or None


def describe_args(args: str | None, action: str) -> Arguments:
    """The arguments worth reading, the target pid of a signal (for ``kill``) and, on any action but an execution,
    the command line the process is running."""
    parts: list[str] = []
    target: int | None = None
    running: str | None = None
    for name, value in _arg_items(args):
        if name in SKIP_ARGS or value is None or value == "":
            continue
        if name == "pid" and action in ("kill", "tkill", "tgkill", "ptrace") and isinstance(value, int):
            target = value
            continue
        if isinstance(value, bool):
            text = str(value).lower()
        elif isinstance(value, int):
            if name not in INT_ARGS:
                continue
            text = str(value)
        elif isinstance(value, list):
            items = [str(v) for v in value if v is not None]
            if not "".join(items).strip():  # nothing to read: not even a quoted blank
                continue
            if name in ARGV_ARGS:
                text = f'"{_cut(" ".join(items), MAX_ARGV_CHARS)}"'
                if action not in EXEC:  # not what the event did: what its process runs
                    running = running or text
                    continue
            else:
                text = _cut(",".join(items), MAX_ARG_CHARS)
        elif isinstance(value, str):
            if _is_pointer(value):
                continue
            text = _cut(value, MAX_ARG_CHARS)
        else:
            continue
        parts.append(f"{DISPLAY.get(name, name)} {text}")
        if len(parts) == MAX_ARGS:
            break
    return Arguments(", ".join(parts), target, running)


def _known(value: Any) -> str | None:
    """A text value of ``extras``, None where absent, not text or one of auditd's words for unknown."""
    text = value.strip() if isinstance(value, str) else ""
    return None if text in _UNKNOWN_TEXT else text


def _account(value: Any) -> str | None:
    """The account an ``acct`` names, as the sentence words it: "the account root", or "an unrecognised account".
    What a user types at a login prompt lands in ``acct``, a password typed one line too early included; a name of
    the POSIX form (or sshd's ``(invalid user)``) is shown, any other text never reaches a sentence, alert or log."""
    name = _known(value)
    if name is None:
        return None
    return f"the account {name}" if _ACCOUNT.fullmatch(name) or name == "(invalid user)" else "an unrecognised account"


def _login_user(value: Any) -> int | None:
    """The auditd login uid (``auid``), None where absent, unset or not a number."""
    try:
        auid = int(str(value), 10)
    except ValueError:
        return None
    return None if auid in UNSET_AUID else auid


#: The ``extras`` keys a :class:`Session` reads, as they appear in its JSON text.
_SESSION_KEYS = ('"auid"', '"cwd"', '"acct"', '"res"')


class Session(NamedTuple):
    """What an event's auditd ``extras`` add to its sentence (:func:`session`)."""

    #: The login uid (``auid``), None where absent or unset.
    login: int | None = None
    #: The working directory (``cwd``).
    cwd: str | None = None
    #: The account a user-space record (USER_LOGIN, USER_ACCT...) names (``acct``), worded ("the account root").
    account: str | None = None
    #: A user-space record's result was a failure (``res=failed``): a refused login reads as one.
    failed: bool = False


def session(extras: str | None) -> Session:
    """The :class:`Session` of an event's ``extras`` (auditd ``auid``, ``cwd``, ``acct``, ``res``)."""
    if not extras or not any(key in extras for key in _SESSION_KEYS):  # most rows: no JSON to parse
        return Session()
    try:
        parsed = json.loads(extras)
    except ValueError:
        return Session()
    if not isinstance(parsed, dict):
        return Session()
    res = parsed.get("res")
    return Session(_login_user(parsed.get("auid")), _known(parsed.get("cwd")), _account(parsed.get("acct")),
                   isinstance(res, str) and res.strip().lower() in _FAILED_RESULTS)


def _subject(pid: int | None, name: str | None, exe: str | None, action: str) -> str:
    if exe and (not name or posixpath.basename(exe) == name or exe == name):
        label: str | None = exe
    elif exe:
        label = f"{name}, {exe}"
    else:
        label = name
    if pid is not None:
        return f"Process {pid} ({label})" if label else f"Process {pid}"
    if label:
        return f"The process {label}"
    return "The host" if action.startswith("dns-") else "A process"


def sentence(
    pid: int | None = None,
    ppid: int | None = None,
    uid: int | None = None,
    process_name: str | None = None,
    exe: str | None = None,
    parent_exe: str | None = None,
    action: str | None = None,
    object_path: str | None = None,
    object_addr: str | None = None,
    args: str | None = None,
    return_value: int | None = None,
    extras: str | None = None,
    source: str | None = None,
) -> str:
    """One event's sentence; every argument may be None (see the module docstring for the form). ``extras`` is
    read for auditd events only (``source``, the one whose ``extras`` hold sentence fields: login user, directory,
    account, result): another reader keeps its unknown columns there, never features."""
    act = normalise_action(action) if action else ""
    head = _subject(pid, process_name, exe, act)
    described = describe_args(args, act)
    login, cwd, account, failed = session(extras) if source == Source.AUDITD else Session()
    clauses = []
    if described.running:
        clauses.append(f"running {described.running}")
    if ppid is not None:
        clauses.append(f"child of process {ppid}" + (f" ({parent_exe})" if parent_exe else ""))
    elif parent_exe:
        clauses.append(f"child of {parent_exe}")
    if uid is not None:
        clauses.append(f"as user {uid}")
    if login is not None and login != uid:  # a login of another user (su, sudo); the same one adds nothing
        clauses.append(f"logged in as user {login}")
    if cwd:
        clauses.append(f"working in {cwd}")
    if clauses:
        head = f"{head}, {', '.join(clauses)},"

    first, second = (object_addr, object_path) if act in NETWORK else (object_path, object_addr)
    if not first:
        first, second = second, None
    if not first and described.target is not None:
        first = f"process {described.target}"
    with_obj, alone = VERBS.get(act, ("", ""))
    if with_obj:
        verb = with_obj.format(obj=first) if first and "{obj}" in with_obj else alone
        if first and "{obj}" not in with_obj:
            second = second or first  # the verb takes no object: still say what it touched
    else:
        verb = f"called {act or 'an unknown action'}" + (f" on {first}" if first else "")
    if second:
        verb += f" {OTHER_PREP.get(act, 'at')} {second}"
    if account:
        verb += f" for {account}"
    if described.text:
        verb += f" with {described.text}"
    if return_value is not None and return_value < 0:
        code = errno.errorcode.get(-return_value)
        verb += f" and failed with {return_value}" + (f" ({code})" if code else "")
    elif failed:
        verb += " and failed"
    return full_stop(f"{head} {verb}")


_COLUMNS = ("pid", "ppid", "uid", "process_name", "exe", "parent_exe", "action", "object_path", "object_addr",
            "args", "return_value", "extras", "source")


def event_sentences(table: pa.Table) -> pa.Array:
    """The sentence of every row of a batch of canonical single events (columns absent count as null).

    Args:
        table: rows in (a subset of) :data:`aptray.schema.EVENT_SCHEMA`.

    Returns:
        A string array, one sentence per row, unmasked.
    """
    n = table.num_rows
    columns = [table.column(c).to_pylist() if c in table.column_names else [None] * n for c in _COLUMNS]
    return pa.array([sentence(*values) for values in zip(*columns, strict=True)], type=pa.string())
