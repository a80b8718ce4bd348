"""Reading an embed output (``EMB/embeddings/*.parquet`` + ``EMB/manifest.json``) into training arrays.

Also holds the train/validation split (stratified, seeded; validation is part of the training input, never
a test set). Windowed detectors (LSTM-AE) get the windows of :mod:`aptray.windows` over the rows, which come
ordered by ``source_file`` and ``line``.

Logs repeat: a trace of millions of events holds a few thousand distinct sentences. :func:`load_distinct` reads
an embed output in streamed batches and keeps one embedding per distinct sentence with its row counts per label
(benign, malicious, unlabelled), so memory follows the distinct sentences, not the rows, and
:func:`split_counts` splits those counts into training and validation as a row-level split would.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
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


def check_embeddings(uri: str) -> None:
    """Refuse a folder that is not an embed output before any work.

    Raises:
        FileNotFoundError: no ``embeddings/*.parquet`` under ``uri``, naming the command that makes them.
    """
    from aptray.io.fs import list_files

    try:
        list_files(join(uri, "embeddings"), (".parquet",))
    except FileNotFoundError:
        raise FileNotFoundError(f"{uri} is not an embed output (no embeddings/*.parquet in it): run aptray embed "
                                "and train on its --out folder") from None


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


#: Label classes of :attr:`DistinctData.counts`' columns.
BENIGN, MALICIOUS, UNLABELLED = 0, 1, 2


@dataclass
class DistinctData:
    """One row per distinct sentence of an embed output: its embedding and its row counts per label."""

    X: np.ndarray  # (distinct, dim), the embed output's dtype
    counts: np.ndarray  # (distinct, 3) int64: rows labelled benign, malicious, unlabelled
    manifest: dict[str, Any] = field(default_factory=dict)
    sentences: list[str] | None = None  # each distinct sentence's text (embed outputs that carry it)

    def __len__(self) -> int:
        return len(self.X)

    @property
    def rows(self) -> int:
        """The rows the distinct sentences stand for."""
        return int(self.counts.sum())


def load_distinct(uri: str, batch_rows: int = 8192) -> DistinctData:
    """Stream ``uri/embeddings`` (local or ``s3://``) into its distinct sentences and their row counts.

    Rows are grouped by ``sentence_hash`` (the embedding is a function of the sentence); only one embedding per
    distinct sentence is kept, so memory is bounded by the distinct sentences whatever the row count.
    """
    import pyarrow.dataset as pads

    from aptray.embed.cache import HASH

    fs, path = resolve(join(uri, "embeddings"))
    ds = pads.dataset(path, filesystem=fs, format="parquet")
    names = set(ds.schema.names)
    if HASH not in names:
        raise ValueError(f"{uri}/embeddings has no {HASH} column: re-run aptray embed")
    cols = [HASH, "embedding", *(c for c in ("malicious", "sentence") if c in names)]
    known = pa.array([], pa.string())  # the distinct hashes so far, in order of first appearance
    blocks: list[np.ndarray] = []
    texts: list[str] = []
    counts = np.zeros((0, 3), dtype=np.int64)
    for batch in _batches(fs, ds.files, cols, batch_rows):
        if batch.num_rows == 0:
            continue
        hashes = pc.cast(batch.column(HASH), pa.string())
        uniq = pc.unique(hashes)
        new = uniq.filter(pc.invert(pc.is_in(uniq, value_set=known)))
        if len(new):
            first = pc.index_in(new, value_set=hashes)  # each new hash's first row in the batch
            blocks.append(embedding_matrix(batch.column("embedding").take(first)))
            if "sentence" in cols:
                texts += [t or "" for t in batch.column("sentence").take(first).to_pylist()]
            known = pa.concat_arrays([known, new])
        ids = pc.index_in(hashes, value_set=known).to_numpy(zero_copy_only=False).astype(np.int64)
        if "malicious" in cols:
            mal = pc.cast(batch.column("malicious"), pa.float64()).to_numpy(zero_copy_only=False)
            label = np.where(np.isnan(mal), UNLABELLED, np.where(mal > 0, MALICIOUS, BENIGN))
        else:
            label = np.full(batch.num_rows, UNLABELLED)
        grown = np.zeros((len(known), 3), dtype=np.int64)
        grown[: len(counts)] = counts
        np.add.at(grown, (ids, label.astype(np.int64)), 1)
        counts = grown
    dim = blocks[0].shape[1] if blocks else 0
    X = np.concatenate(blocks) if blocks else np.zeros((0, dim), dtype=np.float32)
    log.info("read %d rows as %d distinct sentences (dim %d) from %s", int(counts.sum()), len(X), dim, uri)
    return DistinctData(X, counts, read_manifest(uri), texts if "sentence" in cols else None)


def _batches(fs: Any, files: list[str], columns: list[str], batch_rows: int) -> Iterator[pa.RecordBatch]:
    """The files' batches one file at a time (a dataset scan's read-ahead made peak memory grow with the file
    count: 751 MB for 16 files against 494 MB this way)."""
    import pyarrow.parquet as pq

    for path in sorted(files):
        with fs.open_input_file(path) as fh:
            yield from pq.ParquetFile(fh).iter_batches(batch_size=batch_rows, columns=columns)


def split_counts(counts: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Split each distinct sentence's row counts into training and validation counts (seeded).

    Each row goes to validation with probability ``fraction`` independently (a binomial draw per sentence and
    label), the distinct-row form of :func:`split_train_val`; at least one malicious row goes to validation
    when there are two or more (for the F1 threshold).
    """
    rng = np.random.default_rng(seed)
    val = rng.binomial(counts, fraction).astype(np.int64)
    mal = counts[:, MALICIOUS]
    if mal.sum() >= 2 and val[:, MALICIOUS].sum() == 0:
        val[int(np.flatnonzero(mal)[0]), MALICIOUS] = 1
    return counts - val, val


def labelled_entries(X: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The labelled (benign or malicious) counts as entries ``(X, y, weight)``: a sentence seen with both labels
    gives one entry per label."""
    rows, labels = np.nonzero(counts[:, [BENIGN, MALICIOUS]])
    return X[rows], labels.astype(np.float64), counts[rows, labels].astype(np.float64)
