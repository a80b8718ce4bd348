"""The benign vocabularies an artifact keeps for attribution (in ``benign.safetensors``, no pickle).

* :class:`BenignValues` (single events): per value field (exe, parent_exe, object_path, object_addr, args,
  return_value), the value benign training events of the same action most often have, the *counterfactual*
  :mod:`aptray.triage.attribute` puts in its place (at most ``train.explain_max_attributes`` actions per field,
  those with the most benign rows); and per part (:data:`NOVELTY`) the (condition, value) pairs benign training
  had, as 64-bit hashes (at most ``train.explain_max_attributes`` per part, those with the most rows), so that an
  alert names its values benign training never had beside their condition ("action: socket (never with
  process_name bash)").
* :class:`AttributeVocabulary` (process contexts): per aspect, the values benign training rows had, most
  frequent first; an alert names its attribute values outside it ("execs: /tmp/x").

Both are built from the benign training rows of the templatize output the embed job read.
"""

from __future__ import annotations

import collections
import hashlib
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from aptray.triage.attribute import CONTEXT_PARTS, EVENT_PARTS, MAX_UNSEEN, VALUE_PARTS, value_text

log = logging.getLogger(__name__)

#: The field each value field's benign value is conditioned on (the actor and the action are tried by removal and
#: keep none).
CONDITION: dict[str, str] = {f: "action" for f in EVENT_PARTS if f in VALUE_PARTS}
#: What each part's novelty is judged beside: a part's value is *unseen* when benign training had its condition's
#: value with the part present but never with this value (None: the program name on its own). The action is judged
#: beside the program, each value beside the action. The user id and the parent's pid are not judged: the same
#: program runs as many users, and pids are masked.
NOVELTY: dict[str, str | None] = {"process_name": None, "action": "process_name", **CONDITION}


def shown(name: str, rows: pa.Table, mask_kinds: Sequence[str] = ()) -> list[str | None]:
    """Per row, what its sentence says of part ``name``, under the template's masking: the arguments as the template
    reads them (:meth:`aptray.templating.event.Arguments.phrase`: the command line the process is running and the
    arguments worth reading; the path they repeat is the object's), a return value where it is negative (the only
    one a sentence names), any other part's value as text; None where the sentence says nothing of it."""
    from aptray.templating.event import describe_args, normalise_action
    from aptray.templating.mask import mask

    values = rows.column(name).to_pylist()
    if name == "args":
        actions = rows.column("action").to_pylist() if "action" in rows.column_names else [None] * len(values)
        text = [describe_args(v, normalise_action(a) if a else "").phrase() if v else None
                for v, a in zip(values, actions, strict=True)]
    elif name == "return_value":
        text = [str(v) if v is not None and v < 0 else None for v in values]
    else:
        text = [None if v is None or v == "" else str(v) for v in values]
    if mask_kinds and any(t is not None for t in text):
        return mask(pa.array(text, pa.string()), list(mask_kinds)).to_pylist()
    return text


def pair_hash(condition: str, value: str) -> int:
    """The signed 64-bit hash of a (condition, value) pair of texts (blake2b; ``condition`` "" for none)."""
    digest = hashlib.blake2b(f"{condition}\x1f{value}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little", signed=True)


def _contains(table: np.ndarray, h: int) -> bool:
    i = int(np.searchsorted(table, h))
    return i < len(table) and int(table[i]) == h


def pack(strings: Sequence[str], key: str = "") -> dict[str, np.ndarray]:
    """Strings as safetensors-ready arrays: their UTF-8 bytes joined (``<key>text``) and end offsets
    (``<key>ends``)."""
    data = [s.encode("utf-8") for s in strings]
    return {f"{key}text": np.frombuffer(b"".join(data), dtype=np.uint8).copy(),
            f"{key}ends": np.cumsum([len(d) for d in data], dtype=np.int64)}


def unpack(arrays: dict[str, np.ndarray], key: str = "") -> list[str]:
    """The strings :func:`pack` stored under ``key`` in ``arrays``."""
    raw, stops = arrays[f"{key}text"].tobytes(), arrays[f"{key}ends"].tolist()
    return [raw[a:b].decode("utf-8") for a, b in zip([0, *stops][:-1], stops, strict=True)]


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
            out.update(pack(vals, f"{prefix}{name}."))
            out[f"{prefix}{name}.counts"] = np.asarray(self.counts[name], np.int64)
            out[f"{prefix}{name}.truncated"] = np.asarray([int(name in self.truncated)], np.int8)
        return out

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray], prefix: str = "vocab.") -> AttributeVocabulary | None:
        """The inverse of :meth:`to_arrays` (None when ``arrays`` hold no vocabulary)."""
        names = sorted({k[len(prefix):].rsplit(".", 1)[0] for k in arrays if k.startswith(prefix)})
        if not names:
            return None
        values = {n: unpack(arrays, f"{prefix}{n}.") for n in names}
        counts = {n: np.asarray(arrays[f"{prefix}{n}.counts"]) for n in names}
        truncated = [n for n in names if int(arrays[f"{prefix}{n}.truncated"][0])]
        return cls(values, counts, truncated)

    def describe(self) -> dict[str, Any]:
        """Sizes for the artifact's ``config.json``: values per aspect and the aspects cut at the limit."""
        return {"values": {k: len(v) for k, v in self.values.items()}, "truncated": list(self.truncated)}


@dataclass
class BenignValues:
    """Single events' benign values: per value field, per action, the field's most frequent value in benign
    training events of that action, JSON-encoded (ties: the smallest encoding), the counterfactual; and per part of
    :data:`NOVELTY`, the hashes (:func:`pair_hash`) of the (condition, value) pairs benign training had (``seen``,
    sorted) and of the conditions it had with the part present (``known``, sorted); ``truncated`` names the parts
    whose rarest pairs were cut at the limit (an "unseen" value there is one outside the kept pairs)."""

    given: dict[str, dict[str, str]]
    seen: dict[str, np.ndarray] = field(default_factory=dict)
    known: dict[str, np.ndarray] = field(default_factory=dict)
    truncated: list[str] = field(default_factory=list)
    mask: list[str] = field(default_factory=list)  # the masking the pairs' texts are under

    @classmethod
    def build(cls, rows: pa.Table, limit: int, mask_kinds: Sequence[str] = ()) -> BenignValues | None:
        """The benign values of single-event ``rows`` (canonical event columns): at most ``limit`` conditions per
        value field (those with the most rows) and ``limit`` (condition, value) pairs per part (:func:`shown`
        under ``mask_kinds``, the artifact's masking); None when the rows hold no part to judge."""
        given: dict[str, dict[str, str]] = {}
        for name, cond in CONDITION.items():
            if name not in rows.column_names or cond not in rows.column_names:
                continue
            pairs = rows.select([cond, name]).filter(pc.and_(pc.is_valid(rows.column(cond)),
                                                             pc.is_valid(rows.column(name))))
            if not pairs.num_rows:
                continue
            counted = pairs.group_by([cond, name]).aggregate([([], "count_all")]).to_pylist()
            best: dict[str, tuple[int, str]] = {}
            total: dict[str, int] = {}
            for row in counted:
                key, n, value = str(row[cond]), int(row["count_all"]), json.dumps(row[name])
                total[key] = total.get(key, 0) + n
                if key not in best or (-n, value) < (-best[key][0], best[key][1]):
                    best[key] = (n, value)
            keep = sorted(total, key=lambda k: (-total[k], k))[:limit]
            given[name] = {k: best[k][1] for k in sorted(keep)}
        seen: dict[str, np.ndarray] = {}
        known: dict[str, np.ndarray] = {}
        truncated: list[str] = []
        for part, judged_by in NOVELTY.items():
            if part not in rows.column_names or (judged_by is not None and judged_by not in rows.column_names):
                continue
            keys = [part] if judged_by is None else [judged_by, part]
            grouped = rows.select(keys).group_by(keys).aggregate([([], "count_all")])  # texts of distinct rows only
            conds: list[str | None] = ([""] * grouped.num_rows if judged_by is None
                                       else shown(judged_by, grouped, mask_kinds))
            tally: collections.Counter[tuple[str | None, str | None]] = collections.Counter()
            for pair, n in zip(zip(conds, shown(part, grouped, mask_kinds), strict=True),
                               grouped.column("count_all").to_pylist(), strict=True):
                tally[pair] += n
            counted = sorted(((n, c, v) for (c, v), n in tally.items() if c is not None and v is not None),
                             key=lambda t: (-t[0], t[1], t[2]))
            if not counted:
                continue
            if len(counted) > limit:
                truncated.append(part)
            seen[part] = np.unique(np.asarray([pair_hash(c, v) for _, c, v in counted[:limit]], np.int64))
            known[part] = np.unique(np.asarray([pair_hash(c, "") for c in {c for _, c, _ in counted}], np.int64))
        return cls(given, seen, known, truncated, list(mask_kinds)) if given or seen else None

    def counterfactual(self, name: str, rows: pa.Table) -> pa.Array:
        """Per row, the benign value of field ``name`` given the row's condition, typed as the column; null where
        none is known (the part is then removed)."""
        known = self.given.get(name, {})
        cond = rows.column(CONDITION[name]).to_pylist() if CONDITION[name] in rows.column_names else []
        found = [known.get(str(c)) if c is not None else None for c in cond] or [None] * rows.num_rows
        return pa.array([json.loads(v) if v is not None else None for v in found], rows.schema.field(name).type)

    def unseen(self, rows: pa.Table) -> list[list[tuple[str, str]]]:
        """Per single-event row, its parts whose value (as its sentence shows it, :func:`shown`) benign training
        never had beside the part's condition, though it had the condition with the part shown, as (part,
        ``"<part>: <value> (never with <condition> <its value>)"``), in :data:`NOVELTY` order, at most
        :data:`MAX_UNSEEN`."""
        out: list[list[tuple[str, str]]] = [[] for _ in range(rows.num_rows)]
        texts: dict[str, list[str | None]] = {}  # each column's shown texts, once (the action judges six parts)

        def text_of(column: str) -> list[str | None]:
            if column not in texts:
                texts[column] = shown(column, rows, self.mask)
            return texts[column]

        for name, cond in NOVELTY.items():
            if name not in self.seen or name not in rows.column_names:
                continue
            if cond is not None and cond not in rows.column_names:
                continue
            conds = [""] * rows.num_rows if cond is None else text_of(cond)
            for i, (c, v) in enumerate(zip(conds, text_of(name), strict=True)):
                if c is None or v is None or len(out[i]) >= MAX_UNSEEN:
                    continue
                if _contains(self.known[name], pair_hash(c, "")) and not _contains(self.seen[name], pair_hash(c, v)):
                    beside = "" if cond is None else f" (never with {cond} {value_text(c)})"
                    out[i].append((name, f"{name}: {value_text(v)}{beside}"))
        return out

    def to_arrays(self, prefix: str = "values.") -> dict[str, np.ndarray]:
        """Arrays for safetensors (``<prefix><field>.keys.text`` / ``.keys.ends`` / ``.json.text`` / ``.json.ends``;
        ``novelty.<part>.seen`` / ``.known`` / ``.truncated``)."""
        out: dict[str, np.ndarray] = {}
        for name, table in self.given.items():
            out.update(pack(list(table), f"{prefix}{name}.keys."))
            out.update(pack(list(table.values()), f"{prefix}{name}.json."))
        for name, hashes in self.seen.items():
            out[f"novelty.{name}.seen"] = np.asarray(hashes, np.int64)
            out[f"novelty.{name}.known"] = np.asarray(self.known[name], np.int64)
            out[f"novelty.{name}.truncated"] = np.asarray([int(name in self.truncated)], np.int8)
        if self.seen:
            out.update(pack(self.mask, "novelty_mask."))
        return out

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray], prefix: str = "values.") -> BenignValues | None:
        """The inverse of :meth:`to_arrays` (None when ``arrays`` hold no benign values; an artifact written before
        novelty was kept loads with none)."""
        names = sorted({k[len(prefix):].split(".", 1)[0] for k in arrays if k.startswith(prefix)})
        parts = sorted({k[len("novelty."):].rsplit(".", 1)[0] for k in arrays if k.startswith("novelty.")})
        if not names and not parts:
            return None
        given = {n: dict(zip(unpack(arrays, f"{prefix}{n}.keys."), unpack(arrays, f"{prefix}{n}.json."),
                             strict=True)) for n in names}
        return cls(given, {n: np.asarray(arrays[f"novelty.{n}.seen"]) for n in parts},
                   {n: np.asarray(arrays[f"novelty.{n}.known"]) for n in parts},
                   [n for n in parts if int(arrays[f"novelty.{n}.truncated"][0])],
                   unpack(arrays, "novelty_mask.") if parts else [])

    def describe(self) -> dict[str, int]:
        """Conditions kept per value field, for the artifact's ``config.json``."""
        return {k: len(v) for k, v in self.given.items()}

    def describe_novelty(self) -> dict[str, Any]:
        """Benign pairs kept per part and the parts cut at the limit, for the artifact's ``config.json``."""
        return {"pairs": {k: len(v) for k, v in self.seen.items()}, "truncated": list(self.truncated)}


def _benign_rows(embeddings_uri: str, manifest: dict[str, Any], sentences: set[str], columns: Sequence[str]
                 ) -> pa.Table | None:
    """The benign or unlabelled rows whose sentence is one of the training ``sentences``, from the templatize
    output the embed job read (``<embeddings_uri>/sentences`` when it templated a raw trace itself, else
    ``<input>/sentences``); None when there is none."""
    import pyarrow.dataset as pads
    import pyarrow.fs as pafs

    from aptray.io.fs import join, resolve

    for uri in (join(embeddings_uri, "sentences"), join(str(manifest.get("input") or ""), "sentences")):
        fs, path = resolve(uri)
        if fs.get_file_info(path).type == pafs.FileType.Directory:
            break
    else:
        log.info("no templatize output beside %s: no benign vocabulary", embeddings_uri)
        return None
    ds = pads.dataset(path, filesystem=fs, format="parquet")
    names = [c for c in ("sentence", "malicious", *columns) if c in ds.schema.names]
    if "sentence" not in names:
        return None
    table = ds.to_table(columns=names)
    keep = pc.is_in(table.column("sentence"), value_set=pa.array(sorted(sentences), pa.string()))
    if "malicious" in names:
        keep = pc.and_(keep, pc.invert(pc.fill_null(pc.equal(table.column("malicious"), 1), False)))
    return table.filter(keep)


def benign_vocabulary(embeddings_uri: str, manifest: dict[str, Any], sentences: set[str], limit: int
                      ) -> AttributeVocabulary | None:
    """The benign attribute vocabulary of the training rows of an embed output of process contexts (see
    :func:`_benign_rows`); None for single events, a limit of 0, or no templatize output."""
    if not limit or not manifest.get("aspect"):
        return None
    rows = _benign_rows(embeddings_uri, manifest, sentences, list(CONTEXT_PARTS))
    return AttributeVocabulary.build(rows, limit) if rows is not None else None


def benign_values(embeddings_uri: str, manifest: dict[str, Any], sentences: set[str], limit: int
                  ) -> BenignValues | None:
    """The benign values of the training rows of an embed output of single events (see :func:`_benign_rows`);
    None for process contexts, a limit of 0, or no templatize output."""
    if not limit or manifest.get("aspect"):
        return None
    rows = _benign_rows(embeddings_uri, manifest, sentences, list(EVENT_PARTS))
    kinds = (manifest.get("template") or {}).get("mask") or ()
    return BenignValues.build(rows, limit, kinds) if rows is not None else None
