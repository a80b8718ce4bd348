"""Templating entry point: a batch of canonical events -> the same rows plus ``sentence`` and its hash.

Two template families, both pure and vectorised per batch:

* single events (BETH, auditd, CDM): :mod:`aptray.templating.event`;
* process contexts (ADAPT and the per-process aggregations): :mod:`aptray.templating.process`.

A row with a non-null ``aspect`` is a process context; any other row is a single event.
:data:`TEMPLATE_VERSION` changes whenever any sentence for the same input would change; it is written
with every output, and detectors refuse embeddings made under another version.
"""

from __future__ import annotations

import hashlib

import pyarrow as pa
import pyarrow.compute as pc

from aptray.config import TemplateConfig
from aptray.templating.mask import mask

TEMPLATE_VERSION = "2"

#: Columns a templatize output adds to the event schema.
SENTENCE_FIELDS: tuple[pa.Field, ...] = (
    pa.field("sentence", pa.string()),
    pa.field("sentence_hash", pa.string()),
    pa.field("template_version", pa.string()),
)


def full_stop(text: str) -> str:
    """``text`` ended by a full stop, unless it already ends with one (a value that ends the sentence: the path
    ``.``, a cut ``...``), which would read doubled."""
    return text if text.endswith(".") else f"{text}."


def sentence_hash(sentences: pa.Array | pa.ChunkedArray | list[str]) -> pa.Array:
    """The content address of each sentence: the first 32 hex digits of its SHA-256 (UTF-8)."""
    values = sentences.to_pylist() if not isinstance(sentences, list) else sentences
    return pa.array([hashlib.sha256(s.encode("utf-8")).hexdigest()[:32] for s in values], type=pa.string())


def templatize(table: pa.Table, cfg: TemplateConfig | None = None) -> pa.Table:
    """Append ``sentence``, ``sentence_hash`` and ``template_version`` to a batch of canonical events.

    Args:
        table: rows in :data:`aptray.schema.EVENT_SCHEMA` (good rows only).
        cfg: masking settings.
    """
    from aptray.templating.event import event_sentences
    from aptray.templating.process import process_sentences

    cfg = cfg or TemplateConfig()
    n = table.num_rows
    is_process = pc.is_valid(table.column("aspect"))
    if n == 0:
        sentences = pa.array([], type=pa.string())
    elif pc.all(is_process).as_py():
        sentences = process_sentences(table, cfg.process_style)
    elif not pc.any(is_process).as_py():
        sentences = event_sentences(table)
    else:
        proc = process_sentences(table.filter(is_process), cfg.process_style).to_pylist()
        ev = event_sentences(table.filter(pc.invert(is_process))).to_pylist()
        pi, ei = iter(proc), iter(ev)
        sentences = pa.array([next(pi) if p else next(ei) for p in is_process.to_pylist()], type=pa.string())
    if cfg.mask:
        sentences = mask(sentences, cfg.mask)
    sentences = pa.array(sentences.to_pylist() if isinstance(sentences, pa.ChunkedArray) else sentences)
    return (
        table.append_column(SENTENCE_FIELDS[0], sentences)
        .append_column(SENTENCE_FIELDS[1], sentence_hash(sentences))
        .append_column(SENTENCE_FIELDS[2], pa.array([TEMPLATE_VERSION] * n, type=pa.string()))
    )
