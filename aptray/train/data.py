"""Reading an embed output (``EMB/embeddings/*.parquet`` + ``EMB/manifest.json``) into training arrays.

Also holds the train/validation split (stratified, seeded; validation is part of the training input, never
a test set). Windowed detectors (LSTM-AE) get the windows of :mod:`aptray.windows` over the rows, which come
ordered by ``source_file`` and ``line``.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from aptray.embed.cache import embedding_matrix
from aptray.io.fs import join, resolve
from aptray.windows import WINDOW_COLUMNS, window_index, window_keys, window_labels

log = logging.getLogger(__name__)

@dataclass
class EmbeddingData:
    """Rows of an embed output, ordered by ``source_file`` then ``line``."""

    X: np.ndarray
    y: np.ndarray  # float: 1 malicious, 0 benign, nan unknown
    record_id: list[str]
    window_keys: list[str]  # the process of each row (aptray.windows.window_keys)
    manifest: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.X)


def read_manifest(uri: str) -> dict[str, Any]:
    """``EMB/manifest.json`` (empty when absent)."""
    fs, path = resolve(join(uri, "manifest.json"))
    try:
        with fs.open_input_stream(path) as fh:
            data = json.loads(fh.read())
    except FileNotFoundError:
        log.warning("%s has no manifest.json: embedder and template version will not be recorded", uri)
        return {}
    return data if isinstance(data, dict) else {}


def load_embeddings(uri: str) -> EmbeddingData:
    """Read every ``*.parquet`` under ``uri/embeddings`` (local or ``s3://``)."""
    import pyarrow.dataset as pads

    fs, path = resolve(join(uri, "embeddings"))
    ds = pads.dataset(path, filesystem=fs, format="parquet")
    names = set(ds.schema.names)
    cols = [c for c in ("record_id", "embedding", "malicious", "line", *WINDOW_COLUMNS) if c in names]
    table = ds.to_table(columns=cols)
    sort = [(c, "ascending") for c in ("source_file", "line", "record_id") if c in names]
    if sort:
        table = table.sort_by(sort)
    X = embedding_matrix(table.column("embedding"))
    if "malicious" in names:
        y = pc.cast(table.column("malicious"), pa.float64()).to_numpy(zero_copy_only=False)
        y = np.where(np.isnan(y), np.nan, y)
    else:
        y = np.full(len(X), np.nan)
    rid = table.column("record_id").to_pylist() if "record_id" in names else [str(i) for i in range(len(X))]
    manifest = read_manifest(uri)
    log.info("read %d embeddings of dim %d from %s", len(X), X.shape[1] if X.ndim == 2 else 0, uri)
    return EmbeddingData(X, np.asarray(y, dtype=np.float64), rid, window_keys(table), manifest)


def windowed(data: EmbeddingData, window: int) -> tuple[np.ndarray, np.ndarray]:
    """The rows as windows of their process (rows are in event order) and the windows' labels."""
    idx = window_index(data.window_keys, range(len(data)), window)
    return data.X[idx], window_labels(data.y, idx)


def split_train_val(y: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices of a seeded split, stratified on the label (1 / 0 / unknown), ``fraction`` to validation."""
    rng = np.random.default_rng(seed)
    strata = np.where(np.isnan(y), -1, y).astype(int)
    val: list[np.ndarray] = []
    for s in np.unique(strata):
        members = rng.permutation(np.flatnonzero(strata == s))
        n_val = round(len(members) * fraction)
        if s == 1 and len(members) >= 2:
            n_val = max(n_val, 1)  # keep a malicious row for the F1 threshold
        val.append(members[:n_val])
    val_idx = np.sort(np.concatenate(val)) if val else np.zeros(0, dtype=np.int64)
    train_idx = np.setdiff1d(np.arange(len(y)), val_idx)
    return train_idx, val_idx
