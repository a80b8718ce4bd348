"""Process-context templates: the ``ctx_*`` attribute lists of a process -> one English sentence.

Source-agnostic: it reads only the four context columns of :data:`aptray.schema.EVENT_SCHEMA`
(``ctx_events``, ``ctx_execs``, ``ctx_parents``, ``ctx_netflows``), so ADAPT process contexts and the
per-process aggregations of raw CDM/auditd traces read alike. A null list means the aspect was not observed
(no part in the sentence); an empty list means it was observed and nothing was set.

Two styles (``template.process_style``). Prose, one clause per aspect (the default)::

    The process performed read, send-to and write. It ran /bin/bash. It was started by /usr/sbin/sshd.
    It communicated with 128.55.12.167 on port 80.

Terse, the form of the APT-LLM papers, every attribute named::

    Process has event read and event send-to and event write and exec /bin/bash and parent /usr/sbin/sshd
    and netflow 128.55.12.167 and netflow 80

Every list is de-duplicated and sorted, so the sentence depends only on the set of attributes. A peer the recorder
did not know (ADAPT's ``<UNKNOWN>`` or a blank) reads "an unknown address", and a port outside 1-65535 (ADAPT's
-1 and 0) is not named: ``<UNKNOWN>`` and ``-1`` read "It communicated with an unknown address."
:func:`aspect_clauses` splits a prose sentence back into its aspects' clauses (what ``embed.compose: aspects``
encodes one by one).
"""

from __future__ import annotations

import re
from functools import lru_cache

import pyarrow as pa

from aptray.config import ProcessStyle
from aptray.schema import CONTEXT_COLUMNS
from aptray.templating.base import full_stop

#: At most this many items of one list are named; the rest are counted ("and 12 more").
MAX_ITEMS = 10
#: Event types form a small vocabulary (about 40 in CDM) that tells processes apart: name them all.
MAX_EVENTS = 48

#: Word used for each aspect in "The process showed no recorded <word> activity." and in the terse style
#: ("Process has event read and exec /bin/bash ...").
_ASPECT_WORDS: dict[str, str] = {"ctx_events": "event", "ctx_execs": "exec", "ctx_parents": "parent",
                                 "ctx_netflows": "netflow"}
_PORT = re.compile(r"-?\d{1,5}")
#: The port numbers a netflow is named by; others (ADAPT's -1 and 0, beside unknown or local addresses) are no port.
VALID_PORTS = range(1, 65536)
#: An address the recorder did not know (ADAPT ClearScope's ``<UNKNOWN>``, 5dir's blank), and how it reads.
_UNKNOWN_ADDRESSES = frozenset(("", "<unknown>"))
UNKNOWN_ADDRESS = "an unknown address"
_BLANK = "<unnamed>"
#: The verb phrase that opens each aspect's prose clause ("The process <lead> ..." / "It <lead> ...").
LEADS: dict[str, str] = {"ctx_events": "performed", "ctx_execs": "ran", "ctx_parents": "was started by",
                         "ctx_netflows": "communicated"}
#: Where a prose sentence moves to its next aspect: a clause ends and "It <lead>" opens the next one.
_NEXT_CLAUSE = re.compile(r"(?<=\.) (?=It (?:" + "|".join(re.escape(v) for v in LEADS.values()) + r") )")

Items = tuple[str, ...] | None


def event_name(name: str) -> str:
    """Readable event name: ``EVENT_SENDTO`` -> ``send-to``, ``EVENT_MODIFY_FILE_ATTRIBUTES`` ->
    ``modify-file-attributes``, ``read`` -> ``read``."""
    base = name.strip()
    if base.upper().startswith("EVENT_"):
        base = base[len("EVENT_") :]
    low = base.lower().replace("_", "-").replace(" ", "-")
    return _SPLIT_WORDS.get(low, low)


#: CDM event names written as one word that read better split.
_SPLIT_WORDS: dict[str, str] = {
    "sendto": "send-to",
    "recvfrom": "receive-from",
    "sendmsg": "send-message",
    "recvmsg": "receive-message",
    "loadlibrary": "load-library",
    "startservice": "start-service",
    "mprotect": "memory-protect",
    "mmap": "memory-map",
    "lseek": "seek",
    "fcntl": "file-control",
}


def enumerate_items(items: list[str], max_items: int = MAX_ITEMS) -> str:
    """English enumeration: ``a``, ``a and b``, ``a, b and c``, ``a, b, ... and 7 more``."""
    if len(items) > max_items:
        shown, rest = items[:max_items], len(items) - max_items
        return f"{', '.join(shown)} and {rest} more"
    if len(items) == 1:
        return items[0]
    return f"{', '.join(items[:-1])} and {items[-1]}"


def _names(values: Items) -> list[str]:
    """Sorted, de-duplicated, blank names shown as ``<unnamed>``."""
    return sorted({v.strip() or _BLANK for v in values or ()})


def _netflow_part(values: tuple[str, ...]) -> str:
    ports: set[int] = set()
    addresses: set[str] = set()
    unknown = False
    for v in values:
        s = v.strip()
        if _PORT.fullmatch(s):
            if int(s) in VALID_PORTS:
                ports.add(int(s))
        elif s.lower() in _UNKNOWN_ADDRESSES:
            unknown = True
        else:
            addresses.add(s)
    port_text = ""
    if ports:
        ordered = [str(p) for p in sorted(ports)]
        port_text = f"on port {ordered[0]}" if len(ordered) == 1 else f"on ports {enumerate_items(ordered)}"
    named = sorted(addresses)
    if unknown or not (named or ports):  # invalid ports alone: a flow to an unknown peer
        named.append(UNKNOWN_ADDRESS)
    lead = LEADS["ctx_netflows"]
    if named:
        text = f"It {lead} with {enumerate_items(named)}"
        return f"{text} {port_text}." if port_text else full_stop(text)
    return f"It {lead} {port_text}."


@lru_cache(maxsize=65_536)
def context_sentence(events: Items, execs: Items, parents: Items, netflows: Items, aspect: str | None = None,
                     style: ProcessStyle = ProcessStyle.PROSE) -> str:
    """The sentence for one process context; ``None`` lists are aspects that were not observed.

    Args:
        events: event type names (``EVENT_READ`` or ``read``).
        execs: executables the process ran.
        parents: executables of its parents.
        netflows: IP addresses (or host names) and ports it contacted, mixed.
        aspect: the row's aspect, only used to word a row where no aspect was observed at all.
        style: prose or terse (see the module docstring).
    """
    if style is ProcessStyle.TERSE:
        return _terse(events, execs, parents, netflows)
    parts: list[str] = []
    if events:
        names = enumerate_items(sorted({event_name(e) for e in events}), MAX_EVENTS)
        parts.append(full_stop(f"The process {LEADS['ctx_events']} {names}"))
    if execs:
        parts.append(full_stop(f"It {LEADS['ctx_execs']} {enumerate_items(_names(execs))}"))
    if parents:
        parts.append(full_stop(f"It {LEADS['ctx_parents']} {enumerate_items(_names(parents))}"))
    if netflows:
        parts.append(_netflow_part(netflows))
    if parts:
        if not events:
            parts[0] = parts[0].replace("It ", "The process ", 1)
        return " ".join(parts)
    observed = [w for w, v in zip(_ASPECT_WORDS.values(), (events, execs, parents, netflows), strict=True)
                if v is not None]
    if not observed and aspect and aspect != "All":
        observed = [aspect.lower()]
    if not observed:
        return "The process showed no recorded activity."
    return f"The process showed no recorded {enumerate_items(observed)} activity."


def raw_event(name: str) -> str:
    """``EVENT_CHECK_FILE_ATTRIBUTES`` -> ``check_file_attributes`` (the papers' spelling)."""
    base = name.strip()
    return (base[len("EVENT_") :] if base.upper().startswith("EVENT_") else base).lower()


def _terse(events: Items, execs: Items, parents: Items, netflows: Items) -> str:
    """The APT-LLM papers' form: every attribute named as ``<aspect word> <value>``, joined by "and"."""
    named: list[str] = []
    lists = (events, execs, parents, netflows)
    for column, values in zip(_ASPECT_WORDS, lists, strict=True):
        if not values:
            continue
        shown = sorted({raw_event(v) for v in values}) if column == "ctx_events" else _names(values)
        named += [f"{_ASPECT_WORDS[column]} {v}" for v in shown]
    return "Process has " + " and ".join(named) if named else "Process has no recorded attribute"


def aspect_clauses(sentence: str) -> dict[str, str] | None:
    """The clauses of a prose process sentence by aspect column, each worded to stand alone, or None when the
    sentence is not a prose process sentence with at least one aspect clause.

    ``"The process performed read. It ran /bin/sh."`` -> ``{"ctx_events": "The process performed read.",
    "ctx_execs": "The process ran /bin/sh."}``. A value that itself holds ". It ran " splits where the template
    would have: the text lands in a clause either way, and batch and online split alike.
    """
    if not sentence.startswith("The process "):
        return None
    out: dict[str, str] = {}
    for piece in _NEXT_CLAUSE.split(sentence):
        body = piece.removeprefix("The process ").removeprefix("It ")
        column = next((c for c, lead in LEADS.items() if body.startswith(lead + " ")), None)
        if column is None:
            return None
        out[column] = f"{out[column]} The process {body}" if column in out else f"The process {body}"
    return out


def process_sentences(table: pa.Table, style: ProcessStyle = ProcessStyle.PROSE) -> pa.Array:
    """One sentence per row of a batch of process contexts (pure; no Ray).

    Args:
        table: rows with the ``ctx_*`` list columns (missing columns count as not observed) and,
            optionally, ``aspect``.
        style: prose or terse (see the module docstring).

    Returns:
        A string array with one sentence per row.
    """
    n = table.num_rows
    columns = []
    for name in CONTEXT_COLUMNS.values():
        if name in table.column_names:
            columns.append([tuple(v) if v is not None else None for v in table.column(name).to_pylist()])
        else:
            columns.append([None] * n)
    aspects = table.column("aspect").to_pylist() if "aspect" in table.column_names else [None] * n
    sentences = [
        context_sentence(ev, ex, pa_, nf, asp, style)
        for ev, ex, pa_, nf, asp in zip(*columns, aspects, strict=True)
    ]
    return pa.array(sentences, type=pa.string())
