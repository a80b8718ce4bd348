"""Windows of consecutive events of one process: the input of windowed detectors (LSTM-AE).

One definition serves training, batch scoring and the online endpoint. A row's process is its
``(source_file, host, pid)`` (:func:`window_keys`); its window is the ``window`` events of that process ending
at it, in event order (the line in the file; in a request, the line in the request), the first events padded
with the process's first event (:func:`window_index`). Windows never span files, so a process is windowed the
same way whichever file group of a score job holds its file; online, a window holds only the events of the
same request.
"""

from __future__ import annotations

import json
from collections.abc import Hashable, Sequence
from typing import Any

import numpy as np
import pyarrow as pa

#: The columns that name a row's process (absent ones count as null).
WINDOW_COLUMNS: tuple[str, ...] = ("source_file", "host", "pid")


def window_keys(table: pa.Table) -> list[str]:
    """Per row, the process it belongs to, as one string (``["file", "host", pid]`` in JSON)."""
    n = table.num_rows
    cols = [table.column(c).to_pylist() if c in table.column_names else [None] * n for c in WINDOW_COLUMNS]
    return [json.dumps(list(k), separators=(",", ":")) for k in zip(*cols, strict=True)] if n else []


def window_index(keys: Sequence[Hashable], order: Sequence[Any], window: int) -> np.ndarray:
    """Row indices of each row's window: the ``window`` rows of its process ending at it in ``order``.

    Args:
        keys: per row, its process (:func:`window_keys`).
        order: per row, its position in event order (line); ties keep the input order.
        window: events per window.

    Returns:
        ``(rows, window)`` int64 indices; rows before a process's ``window``-th event repeat its first event.
    """
    n = len(keys)
    idx = np.empty((n, window), dtype=np.int64)
    if n == 0:
        return idx
    members: dict[Hashable, list[int]] = {}
    for i in sorted(range(n), key=lambda i: order[i]):
        members.setdefault(keys[i], []).append(i)
    offsets = np.arange(window - 1, -1, -1)[None, :]
    for rows in members.values():
        arr = np.asarray(rows, dtype=np.int64)
        pos = np.arange(len(arr))[:, None] - offsets
        idx[arr] = arr[np.clip(pos, 0, None)]
    return idx


def window_labels(y: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """A window's label: 1 if any of its events is malicious, else 0; nan if all are unknown."""
    w = np.asarray(y, dtype=np.float64)[idx]
    known = ~np.isnan(w)
    out = np.where(known.any(1), np.where(known, w, -1.0).max(1), np.nan)
    return np.asarray(out, dtype=np.float64)
