"""Ground-truth files of malicious UUIDs, and the one UUID normal form every reader and label file shares.

DARPA TC producers write UUIDs three ways: canonical dashed hex (any case), 16 hex digits (SPADE's
``hexUUIDs``) and 16 raw bytes rendered as a JSON string (Avro's JSON encoding of ``fixed``, THEIA).
:func:`normalize_uuid` maps all of them to lower-case ``8-4-4-4-12`` so that labels and records meet.
"""

from __future__ import annotations

import csv
import io
import logging
import re

from aptray.io.fs import list_files, open_binary

log = logging.getLogger(__name__)

_HEX = re.compile(r"^[0-9a-fA-F]+$")
_UUID_COLUMNS = ("uuid", "object_id", "id", "subject", "process_uuid")


def _canonical(hex32: str) -> str:
    h = hex32.lower()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def normalize_uuid(value: str | bytes | None) -> str | None:
    """Map any of the three CDM UUID styles (or raw bytes) to lower-case canonical ``8-4-4-4-12`` form.

    Args:
        value: dashed hex UUID, 32 or 16 hex digits (16 are zero-padded on the left), 16 raw bytes
            (or a 16-character string of code points below 256 standing for them).

    Returns:
        The canonical UUID, or None for empty input; a value of no known style is returned stripped and
        lower-cased so that it can still serve as a join key.
    """
    if value is None:
        return None
    if isinstance(value, bytes):
        return _canonical(value.hex().rjust(32, "0")) if len(value) <= 16 else value.hex()
    s = value
    if not s:
        return None
    compact = s.replace("-", "")
    if len(compact) in (16, 32) and _HEX.match(compact) and (len(s) == len(compact) or len(s) == 36):
        return _canonical(compact.rjust(32, "0"))
    if len(s) == 16 and all(ord(c) < 256 for c in s):
        return _canonical(s.encode("latin-1").hex())
    return s.strip().lower()


def parse_uuids(text: str) -> set[str]:
    """UUIDs of a label file's text: one per line, or CSV with a uuid column (``uuid``, ``object_id``, ...)."""
    lines = [ln for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    if not lines:
        return set()
    header = [h.strip().lower() for h in next(csv.reader([lines[0]]))]
    column = next((c for c in _UUID_COLUMNS if c in header), None)
    out: set[str] = set()
    if column is not None:
        reader = csv.DictReader(io.StringIO("\n".join(lines[1:])), fieldnames=header)
        for row in reader:
            u = normalize_uuid((row.get(column) or "").strip())
            if u:
                out.add(u)
        return out
    for ln in lines:
        first = next(csv.reader([ln]))[0].strip()
        u = normalize_uuid(first)
        if u:
            out.add(u)
    return out


def load_uuids(path_or_uri: str) -> set[str]:
    """Load the malicious UUIDs of a ground-truth file (or every file of a folder), local or ``s3://``.

    Args:
        path_or_uri: one UUID per line, or a CSV with a ``uuid`` column (``.gz`` is read transparently).

    Returns:
        The set of normalised UUIDs (see :func:`normalize_uuid`).
    """
    fs, files = list_files(path_or_uri)
    out: set[str] = set()
    for f in files:
        with open_binary(fs, f.path) as fh:
            out |= parse_uuids(fh.read().decode("utf-8", errors="replace"))
    log.info("loaded %d malicious UUID(s) from %s", len(out), path_or_uri)
    return out
