"""Attribution: which part of an alert's sentence makes it unusual, and which context attributes benign training
never had.

*Parts* are the templating's own fields, not pieces of text cut by pattern: a single event's sentence is
rebuilt by :func:`aptray.templating.base.templatize` with one event field removed (its process name, action,
object, arguments, ...), a process context's with one aspect removed (its event types, executables, parents or
peers), under the artifact's masking. Each distinct variant is embedded once (through the embedding cache in the
score job, the replica's encoder online) and scored by the detector; the part whose removal lowers the score
most is the alert's *top part*, reported with the full score and the score without it. Parts that are absent,
or whose removal leaves the sentence unchanged (a non-negative return value, a masked pid), are not tried.

Windowed detectors (LSTM-AE) score an event with the events before it; attribution is not computed for them.

For process contexts the artifact also keeps the benign attribute vocabulary (:class:`AttributeVocabulary`: the
values of each aspect seen in benign training rows, most frequent first, at most ``train.explain_max_attributes``
per aspect, in ``benign.safetensors``); an alert names its attribute values outside it ("execs: /tmp/x").
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from aptray.config import TemplateConfig

log = logging.getLogger(__name__)

#: The fields of a single event tried one at a time (the pid itself is masked and names nothing).
EVENT_PARTS: tuple[str, ...] = ("process_name", "exe", "parent_exe", "ppid", "uid", "action", "object_path",
                                "object_addr", "args", "return_value")
#: The aspects of a process context, by column, with the part names attribution reports.
CONTEXT_PARTS: dict[str, str] = {"ctx_events": "events", "ctx_execs": "execs", "ctx_parents": "parents",
                                 "ctx_netflows": "netflows"}
#: What templating reads of a row.
_TEMPLATE_INPUT = ("pid", *EVENT_PARTS, "aspect", *CONTEXT_PARTS)
#: Columns attribution adds to alerts.
ATTRIBUTION_FIELDS: tuple[pa.Field, ...] = (
    pa.field("attribution_part", pa.string()),  # the part whose removal lowers the score most
    pa.field("attribution_value", pa.string()),  # its value in the event (cut to VALUE_CHARS)
    pa.field("attribution_score_without", pa.float64()),  # the score of the sentence without it
    pa.field("unseen_attributes", pa.list_(pa.string())),  # "<aspect>: <value>" never seen in benign training
)
VALUE_CHARS = 120
#: Unseen attribute values named per alert at most.
MAX_UNSEEN = 20


def _text(value: Any) -> str:
    text = ", ".join(str(v) for v in value) if isinstance(value, list) else str(value)
    return text if len(text) <= VALUE_CHARS else text[: VALUE_CHARS - 3] + "..."


@dataclass
class Variants:
    """The alerts' sentences with one part removed: per variant, its alert, part, removed value and sentence."""

    row: list[int] = field(default_factory=list)
    part: list[str] = field(default_factory=list)
    value: list[str] = field(default_factory=list)
    sentence: list[str] = field(default_factory=list)

    def distinct(self) -> list[str]:
        """The distinct variant sentences (each is embedded and scored once)."""
        return list(dict.fromkeys(self.sentence))


def variants(rows: pa.Table, template: TemplateConfig) -> Variants:
    """Every alert's sentence rebuilt with each of its present parts removed (vectorised per part).

    Args:
        rows: alerts (or request events) with their event fields / context lists and their ``sentence``.
        template: the artifact's template settings (the masking the detector was trained under).
    """
    from aptray.templating.base import templatize

    out = Variants()
    n = rows.num_rows
    if n == 0:
        return out
    base = rows.select([c for c in _TEMPLATE_INPUT if c in rows.column_names])
    if "aspect" not in base.column_names:
        base = base.append_column("aspect", pa.nulls(n, pa.string()))
    is_process = pc.is_valid(base.column("aspect")).to_numpy(zero_copy_only=False)
    original = rows.column("sentence").to_pylist()
    parts = [(c, c, False) for c in EVENT_PARTS] + [(c, name, True) for c, name in CONTEXT_PARTS.items()]
    for column, name, context in parts:
        if column not in base.column_names:
            continue
        values = base.column(column).to_pylist()
        idx = [i for i in range(n) if bool(is_process[i]) == context and values[i] not in (None, [])]
        if not idx:
            continue
        subset = base.take(pa.array(idx))
        pos = subset.column_names.index(column)
        subset = subset.set_column(pos, subset.field(column), pa.nulls(len(idx), subset.field(column).type))
        rebuilt = templatize(subset, template).column("sentence").to_pylist()
        for i, s in zip(idx, rebuilt, strict=True):
            if s != original[i]:
                out.row.append(i)
                out.part.append(name)
                out.value.append(_text(values[i]))
                out.sentence.append(s)
    return out


def choose(plan: Variants, variant_scores: dict[str, float], n: int
           ) -> tuple[list[str | None], list[str | None], list[float | None]]:
    """Per alert, the part whose removal lowers its score most: (part, value, score without it); None for an
    alert with no part to remove. Ties keep the part tried first."""
    best: list[int | None] = [None] * n
    for j, (i, s) in enumerate(zip(plan.row, plan.sentence, strict=True)):
        k = best[i]
        if k is None or variant_scores[s] < variant_scores[plan.sentence[k]]:
            best[i] = j
    part: list[str | None] = [None] * n
    value: list[str | None] = [None] * n
    without: list[float | None] = [None] * n
    for i, k in enumerate(best):
        if k is not None:
            part[i], value[i] = plan.part[k], plan.value[k]
            without[i] = round(float(variant_scores[plan.sentence[k]]), 6)
    return part, value, without


def attribute(rows: pa.Table, embed: Callable[[list[str]], np.ndarray],
              score: Callable[[np.ndarray], np.ndarray], template: TemplateConfig,
              vocabulary: AttributeVocabulary | None = None) -> pa.Table:
    """The :data:`ATTRIBUTION_FIELDS` columns for ``rows`` (alerts with their event fields and sentence).

    Args:
        rows: the alerts.
        embed: sentences -> embeddings, as the detector's input was embedded (distinct sentences only are passed).
        score: embeddings -> detector scores (higher = more anomalous).
        template: the artifact's template settings.
        vocabulary: the benign attribute vocabulary (process contexts), if the artifact keeps one.
    """
    plan = variants(rows, template)
    distinct = plan.distinct()
    variant_scores: dict[str, float] = {}
    if distinct:
        s = np.asarray(score(np.asarray(embed(distinct), dtype=np.float32)), dtype=np.float64)
        variant_scores = dict(zip(distinct, s.tolist(), strict=True))
    part, value, without = choose(plan, variant_scores, rows.num_rows)
    unseen = vocabulary.unseen(rows) if vocabulary is not None else [None] * rows.num_rows
    arrays = [pa.array(part, pa.string()), pa.array(value, pa.string()), pa.array(without, pa.float64()),
              pa.array(unseen, pa.list_(pa.string()))]
    return pa.Table.from_arrays(arrays, schema=pa.schema(list(ATTRIBUTION_FIELDS)))


# ------------------------------------------------------------------------------------------- vocabulary
def pack(strings: Sequence[str]) -> dict[str, np.ndarray]:
    """Strings as safetensors-ready arrays: their UTF-8 bytes joined (``text``) and end offsets (``ends``)."""
    data = [s.encode("utf-8") for s in strings]
    return {"text": np.frombuffer(b"".join(data), dtype=np.uint8).copy(),
            "ends": np.cumsum([len(d) for d in data], dtype=np.int64)}


def unpack(text: np.ndarray, ends: np.ndarray) -> list[str]:
    """The inverse of :func:`pack`."""
    raw, stops = text.tobytes(), ends.tolist()
    return [raw[a:b].decode("utf-8") for a, b in zip([0, *stops[:-1]], stops, strict=True)]


@dataclass
class AttributeVocabulary:
    """Per aspect (part name), the attribute values of benign training rows, most frequent first, with their row
    counts; ``truncated`` names the aspects cut at the limit (their rarest benign values are not kept, so an
    "unseen" value there is one outside the kept ones)."""

    values: dict[str, list[str]]
    counts: dict[str, np.ndarray]
    truncated: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._sets = {k: set(v) for k, v in self.values.items()}

    @classmethod
    def build(cls, rows: pa.Table, limit: int) -> AttributeVocabulary | None:
        """The vocabulary of benign process-context ``rows`` (``ctx_*`` list columns), at most ``limit`` values per
        aspect; None when the rows hold no context attribute."""
        values: dict[str, list[str]] = {}
        counts: dict[str, np.ndarray] = {}
        truncated = []
        for column, name in CONTEXT_PARTS.items():
            if column not in rows.column_names:
                continue
            flat = pc.utf8_trim_whitespace(pc.list_flatten(rows.column(column)))
            if not len(flat):
                continue
            vc = pc.value_counts(flat)
            vals, cnt = vc.field("values").to_pylist(), vc.field("counts").to_numpy().astype(np.int64)
            order = np.argsort(-cnt, kind="stable")
            if len(order) > limit:
                truncated.append(name)
                order = order[:limit]
            values[name] = [vals[i] for i in order]
            counts[name] = cnt[order]
        return cls(values, counts, truncated) if values else None

    def unseen(self, rows: pa.Table) -> list[list[str] | None]:
        """Per row, its context values of the aspects this vocabulary knows that benign training never had
        (``"execs: /tmp/x"``, at most :data:`MAX_UNSEEN`); None for a single event."""
        out: list[list[str] | None] = [None] * rows.num_rows
        aspect = rows.column("aspect").to_pylist() if "aspect" in rows.column_names else [None] * rows.num_rows
        for column, name in CONTEXT_PARTS.items():
            if column not in rows.column_names or name not in self._sets:
                continue
            known = self._sets[name]
            for i, items in enumerate(rows.column(column).to_pylist()):
                if aspect[i] is None:
                    continue
                found = [f"{name}: {v}" for v in sorted({(x or "").strip() for x in items or ()}) if v not in known]
                out[i] = [*(out[i] or []), *found][:MAX_UNSEEN]
        return out

    def to_arrays(self, prefix: str = "vocab.") -> dict[str, np.ndarray]:
        """Arrays for safetensors (``<prefix><aspect>.text`` / ``.ends`` / ``.counts``; ``.truncated`` a 0/1 flag)."""
        out: dict[str, np.ndarray] = {}
        for name, vals in self.values.items():
            for k, v in pack(vals).items():
                out[f"{prefix}{name}.{k}"] = v
            out[f"{prefix}{name}.counts"] = np.asarray(self.counts[name], np.int64)
            out[f"{prefix}{name}.truncated"] = np.asarray([int(name in self.truncated)], np.int8)
        return out

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray], prefix: str = "vocab.") -> AttributeVocabulary | None:
        """The inverse of :meth:`to_arrays` (None when ``arrays`` hold no vocabulary)."""
        names = sorted({k[len(prefix):].rsplit(".", 1)[0] for k in arrays if k.startswith(prefix)})
        if not names:
            return None
        values = {n: unpack(arrays[f"{prefix}{n}.text"], arrays[f"{prefix}{n}.ends"]) for n in names}
        counts = {n: np.asarray(arrays[f"{prefix}{n}.counts"]) for n in names}
        truncated = [n for n in names if int(arrays[f"{prefix}{n}.truncated"][0])]
        return cls(values, counts, truncated)

    def describe(self) -> dict[str, Any]:
        """Sizes for the artifact's ``config.json``: values per aspect and the aspects cut at the limit."""
        return {"values": {k: len(v) for k, v in self.values.items()}, "truncated": list(self.truncated)}


def benign_vocabulary(embeddings_uri: str, manifest: dict[str, Any], sentences: set[str], limit: int
                      ) -> AttributeVocabulary | None:
    """The benign attribute vocabulary of the training rows of an embed output of process contexts.

    The context lists are read from the templatize output the embed job read (``<embeddings_uri>/sentences``
    when it templated a raw trace itself, else ``<input>/sentences``), keeping benign or unlabelled rows whose
    sentence is one of the training ``sentences``. None for single events, a limit of 0, or no such output.
    """
    import pyarrow.dataset as pads
    import pyarrow.fs as pafs

    from aptray.io.fs import join, resolve

    if not limit or not manifest.get("aspect"):
        return None
    for uri in (join(embeddings_uri, "sentences"), join(str(manifest.get("input") or ""), "sentences")):
        fs, path = resolve(uri)
        if fs.get_file_info(path).type == pafs.FileType.Directory:
            break
    else:
        log.info("no templatize output beside %s: no benign attribute vocabulary", embeddings_uri)
        return None
    ds = pads.dataset(path, filesystem=fs, format="parquet")
    columns = [c for c in ("sentence", "malicious", *CONTEXT_PARTS) if c in ds.schema.names]
    if "sentence" not in columns:
        return None
    table = ds.to_table(columns=columns)
    keep = pc.is_in(table.column("sentence"), value_set=pa.array(sorted(sentences), pa.string()))
    if "malicious" in columns:
        keep = pc.and_(keep, pc.invert(pc.fill_null(pc.equal(table.column("malicious"), 1), False)))
    return AttributeVocabulary.build(table.filter(keep), limit)
