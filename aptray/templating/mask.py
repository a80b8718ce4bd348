"""Masking of volatile tokens (pids, UUIDs, addresses, hex, timestamps) so identical behaviour reads the same.

Masking is vectorised over an Arrow string array with regular expressions (pyarrow.compute), applied in a
fixed order: the most specific patterns first so that, for instance, a UUID is not half-eaten as hex.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

#: kind -> (RE2 pattern, placeholder), in the order they are applied.
PATTERNS: dict[str, tuple[str, str]] = {
    "uuid": (r"\b[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\b", "<uuid>"),
    "timestamp": (r"\b\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:Z|[+-]\d{2}:?\d{2})?\b", "<time>"),
    "ip": (r"\b(?:\d{1,3}\.){3}\d{1,3}\b|\b(?:[0-9a-fA-F]{1,4}:){2,7}[0-9a-fA-F]{1,4}\b", "<ip>"),
    "port": (r"(<ip>|\b(?:\d{1,3}\.){3}\d{1,3}):\d{1,5}\b", r"\1:<port>"),
    "hex": (r"\b0x[0-9a-fA-F]+\b|\b[0-9a-fA-F]{16,}\b", "<hex>"),
    # "process 42" in sentences and "/proc/42/..." in paths
    "pid": (r"(\b(?:Process|process|pid|ppid|parent) |/proc/)\d+\b", r"\1<pid>"),
    "number": (r"\b\d{5,}\b", "<num>"),
}
KINDS: tuple[str, ...] = tuple(PATTERNS)


def mask(sentences: pa.Array | pa.ChunkedArray, kinds: list[str] | tuple[str, ...]) -> pa.Array | pa.ChunkedArray:
    """Replace the volatile tokens of ``kinds`` in every sentence by placeholders.

    Args:
        sentences: string array.
        kinds: any of :data:`KINDS`; unknown kinds raise ``ValueError``.
    """
    unknown = set(kinds) - set(PATTERNS)
    if unknown:
        raise ValueError(f"unknown mask kinds {sorted(unknown)}; choose from {list(KINDS)}")
    out = sentences
    for kind, (pattern, repl) in PATTERNS.items():
        if kind in kinds:
            out = pc.replace_substring_regex(out, pattern=pattern, replacement=repl)
    return out
