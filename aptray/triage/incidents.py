"""Alerts grouped into ranked incidents: one attack's steps read as one item, not as many unrelated alerts.

Alerts are linked when they belong to the same process (host and pid) or to a parent and its child (an alert's
``ppid`` is another alerted process's ``pid`` on the same host: the lineage the source records), and the linked
alerts of one lineage are cut into incidents wherever ``window_s`` seconds pass without an alert. auditd alerts are
also linked by their login session (:func:`session_key`): its ``ses`` number where the kernel set one, else the
terminal they ran on, so a shell's ``su`` and the ``sudo`` typed after it, processes of their own whose common
parent did not alert, read as one incident. Alerts that
carry no pid (process contexts of ADAPT, whose rows are whole processes; CDM events without their subject) are
linked when they have the same sentence on the same host: one behaviour is read once, with its count. Incidents are
ranked by their highest score, then by their alert count.

Each incident has a stable id (a digest of its alerts' record ids), its alerts, the first and last time, the hosts
and processes involved, its top score and tier, and a one-paragraph English summary built from its alerts'
sentences (the most unusual first).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa

from aptray.config import Source

#: Columns of the incidents dataset.
INCIDENT_SCHEMA = pa.schema([
    pa.field("incident_id", pa.string()),
    pa.field("rank", pa.int64()),
    pa.field("alerts", pa.int64()),
    pa.field("top_score", pa.float64()),
    pa.field("top_tier", pa.string()),
    pa.field("first_time", pa.float64()),
    pa.field("last_time", pa.float64()),
    pa.field("hosts", pa.list_(pa.string())),
    pa.field("processes", pa.list_(pa.string())),
    pa.field("record_ids", pa.list_(pa.string())),
    pa.field("summary", pa.string()),
    pa.field("malicious_alerts", pa.int64()),
])

_TIER_ORDER = {"high": 3, "medium": 2, "low": 1}


class _Links:
    """Union-find over alert indices."""

    def __init__(self, n: int) -> None:
        self.parent = list(range(n))

    def find(self, i: int) -> int:
        while self.parent[i] != i:
            self.parent[i] = self.parent[self.parent[i]]
            i = self.parent[i]
        return i

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)


def _column(table: pa.Table, name: str) -> list[Any]:
    return table.column(name).to_pylist() if name in table.column_names else [None] * table.num_rows


#: The ``extras`` keys :func:`session_key` reads, as they appear in its JSON text (most rows: no JSON to parse).
_SESSION_KEYS = ('"ses"', '"tty"', '"terminal"')
#: auditd's "unset" session (``(u32)-1``) and its signed form.
_NO_SESSION = frozenset({"4294967295", "-1"})
#: A terminal device, as SYSCALL records' ``tty`` (``pts1``) and USER records' ``terminal`` (``/dev/pts/1``,
#: ``pts/1``) write it; not ``ssh``, ``cron``, ``?`` or ``(none)``.
_TERMINAL = re.compile(r"(?:/dev/)?(pts|tty[a-zA-Z]*)/?(\d+)")


def session_key(source: Any, extras: Any) -> tuple[str, str] | None:
    """The login session an auditd event belongs to: ``("ses", N)`` where the kernel numbered it, else
    ``("tty", "pts1")`` for the terminal it ran on (a shell the session number does not follow, such as one a web
    server spawned), else None; None for other sources. Read from the event's ``extras`` JSON."""
    if source != Source.AUDITD or not extras or not any(key in extras for key in _SESSION_KEYS):
        return None
    try:
        fields = json.loads(extras)
    except ValueError:
        return None
    if not isinstance(fields, dict):
        return None
    ses = str(fields.get("ses") or "")
    if ses.isdigit() and ses not in _NO_SESSION:
        return ("ses", ses)
    device = _TERMINAL.fullmatch(str(fields.get("tty") or fields.get("terminal") or ""))
    return ("tty", device.group(1) + device.group(2)) if device else None


def lineages(table: pa.Table) -> list[int]:
    """Per alert, the index of its lineage's first alert: same host and pid, or parent and child, or (auditd) the
    same login session on the same host (:func:`session_key`); alerts without a pid (process contexts, CDM events
    without their subject) when they say the same on the same host."""
    hosts, pids, ppids = _column(table, "host"), _column(table, "pid"), _column(table, "ppid")
    sentences = _column(table, "sentence")
    links = _Links(table.num_rows)
    by_process: dict[tuple[Any, int], int] = {}
    by_sentence: dict[tuple[Any, str], int] = {}
    by_session: dict[tuple[Any, tuple[str, str]], int] = {}
    for i, (source, extras) in enumerate(zip(_column(table, "source"), _column(table, "extras"), strict=True)):
        if (key := session_key(source, extras)) is not None:
            links.union(by_session.setdefault((hosts[i], key), i), i)
    for i, (h, p) in enumerate(zip(hosts, pids, strict=True)):
        if p is None:
            if sentences[i]:  # one behaviour, read once (15 attack processes of one sentence were 15 incidents)
                links.union(by_sentence.setdefault((h, sentences[i]), i), i)
            continue
        first = by_process.setdefault((h, p), i)
        links.union(first, i)
    for i, (h, pp) in enumerate(zip(hosts, ppids, strict=True)):
        if pp is not None and (h, pp) in by_process:
            links.union(by_process[(h, pp)], i)
    return [links.find(i) for i in range(table.num_rows)]


def _process_name(name: Any, exe: Any, pid: Any) -> str | None:
    label = name or exe
    if label is None and pid is None:
        return None
    return f"{label or 'process'} ({pid})" if pid is not None else str(label)


def summarize(sentences: Sequence[str], scores: Sequence[float], hosts: Sequence[str], processes: Sequence[str],
              first: float | None, last: float | None, max_sentences: int = 3) -> str:
    """The incident's paragraph: where and when, how many alerts, then its most unusual distinct sentences."""
    order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")
    distinct: list[str] = []
    for i in order:
        if sentences[i] and sentences[i] not in distinct:
            distinct.append(sentences[i])
    where = f" on {', '.join(hosts)}" if hosts else ""
    when = ""
    if first is not None and last is not None:
        span = last - first
        when = (f" at {time_text(first)}" if span < 0.5 else
                f" between {time_text(first)} and {time_text(last)} ({span:.0f} s)")
    who = ""
    if processes:
        shown = ", ".join(processes[:5]) + (f" and {len(processes) - 5} more" if len(processes) > 5 else "")
        who = f" from {len(processes)} process{'es' if len(processes) != 1 else ''}: {shown}"
    n = len(sentences)
    text = f"{n} alert{'s' if n != 1 else ''}{where}{when}{who}."
    if distinct:
        text += f" Most unusual: {distinct[0]}"
        rest = distinct[1:max_sentences]
        if rest:
            text += " Also: " + " / ".join(rest)
        more = len(distinct) - max_sentences
        if more > 0:
            text += f" And {more} other distinct behaviour{'s' if more != 1 else ''}."
    return text


def alerts_in_incidents(alerts: int, incidents: int) -> str:
    """``115 alerts in 17 incidents``, ``1 alert in 1 incident``, or ``no alerts`` (where nothing crossed the
    threshold, a count of incidents says nothing): the summaries' and the score log's words."""
    if not alerts:
        return "no alerts"
    return f"{alerts:,} alert{'' if alerts == 1 else 's'} in {incidents:,} incident{'' if incidents == 1 else 's'}"


def time_text(t: float) -> str:
    """A timestamp as an analyst reads it: UTC date and time for epoch seconds (after 2001), else the trace's own
    clock in seconds (BETH counts from boot)."""
    import datetime as dt

    if t >= 1e9:
        return dt.datetime.fromtimestamp(t, dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    return f"t={t:.0f} s"


def group_incidents(alerts: pa.Table, window_s: float = 3600.0) -> tuple[pa.Table, pa.Array]:
    """Group ``alerts`` (the score job's alert columns) into ranked incidents.

    Args:
        alerts: alert rows (``record_id``, ``score``; ``host``, ``pid``, ``ppid``, ``timestamp``, ``sentence``,
            ``tier``, ``process_name``, ``exe``, ``malicious`` where the source has them).
        window_s: a lineage's alerts further apart than this start a new incident.

    Returns:
        The incidents (:data:`INCIDENT_SCHEMA`, best first) and each alert's ``incident_id``, aligned with
        ``alerts``.
    """
    n = alerts.num_rows
    if n == 0:
        return INCIDENT_SCHEMA.empty_table(), pa.array([], pa.string())
    root = lineages(alerts)
    times = _column(alerts, "timestamp")
    members: dict[int, list[int]] = defaultdict(list)
    for i, first in enumerate(root):
        members[first].append(i)
    groups: list[list[int]] = []
    for idx in members.values():
        timed = sorted(idx, key=lambda i: (times[i] is None, times[i] or 0.0, i))
        current: list[int] = []
        for i in timed:
            if current and times[i] is not None and times[current[-1]] is not None \
                    and times[i] - times[current[-1]] > window_s:
                groups.append(current)
                current = []
            current.append(i)
        groups.append(current)
    ids, scores = _column(alerts, "record_id"), [float(s) for s in _column(alerts, "score")]
    tiers, sentences = _column(alerts, "tier"), [s or "" for s in _column(alerts, "sentence")]
    hosts, pids = _column(alerts, "host"), _column(alerts, "pid")
    names, exes, labels = _column(alerts, "process_name"), _column(alerts, "exe"), _column(alerts, "malicious")
    rows: list[dict[str, Any]] = []
    incident_of = [""] * n
    for g in groups:
        rids = [str(ids[i]) for i in g]
        iid = "inc-" + hashlib.sha256("\n".join(sorted(rids)).encode()).hexdigest()[:16]
        for i in g:
            incident_of[i] = iid
        ts = [times[i] for i in g if times[i] is not None]
        g_hosts = sorted({str(hosts[i]) for i in g if hosts[i] is not None})
        labels_by_pid: dict[Any, Any] = {}  # one label per process: its name wherever any of its alerts has one
        for i in g:
            if labels_by_pid.get(pids[i]) is None:
                labels_by_pid[pids[i]] = names[i] or exes[i]
        procs = sorted({p for pid, name in labels_by_pid.items() if (p := _process_name(name, None, pid)) is not None})
        g_scores = [scores[i] for i in g]
        top = max(g, key=lambda i: scores[i])
        top_tier = max((tiers[i] for i in g if tiers[i]), key=lambda t: _TIER_ORDER.get(t, 0), default=None)
        rows.append({
            "incident_id": iid, "alerts": len(g), "top_score": scores[top], "top_tier": top_tier,
            "first_time": min(ts) if ts else None, "last_time": max(ts) if ts else None, "hosts": g_hosts,
            "processes": procs, "record_ids": rids,
            "summary": summarize([sentences[i] for i in g], g_scores, g_hosts, procs,
                                 min(ts) if ts else None, max(ts) if ts else None),
            "malicious_alerts": sum(1 for i in g if labels[i] == 1),
        })
    rows.sort(key=lambda r: (-r["top_score"], -r["alerts"], r["incident_id"]))
    for rank, row in enumerate(rows, 1):
        row["rank"] = rank
    return pa.Table.from_pylist(rows, schema=INCIDENT_SCHEMA), pa.array(incident_of, pa.string())


def items_to_full_recall(incidents: pa.Table, alerts_malicious: int) -> dict[str, Any]:
    """How many items an analyst reads, best first, to reach every malicious alert: incidents vs single alerts.

    Args:
        incidents: :func:`group_incidents`'s table (ranked), with ``malicious_alerts``.
        alerts_malicious: malicious alerts in all.

    Returns:
        ``incidents_read`` (None if some malicious alert is in no incident) and ``malicious_alerts``.
    """
    seen, read = 0, 0
    for m in incidents.column("malicious_alerts").to_pylist():
        if seen >= alerts_malicious:
            break
        read += 1
        seen += int(m or 0)
    return {"incidents_read": read if seen >= alerts_malicious else None, "malicious_alerts": alerts_malicious}
