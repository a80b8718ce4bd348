"""Attribution: which part of an alert's sentence makes it unusual, and which context attributes benign training
never had.

*Parts* are the templating's own fields, not pieces of text cut by pattern. A single event's sentence is rebuilt
by :func:`aptray.templating.base.templatize` with one event field changed at a time. Who acted and how (the
process name, ppid, uid, action) are *removed*. The event's *values* (:data:`VALUE_PARTS`: the object path or
address, arguments, return value, executables) are tried twice, removed and replaced by their *benign
counterfactual*, the value benign training events of the same action most often have
(:class:`aptray.triage.vocabulary.BenignValues`; only removed where none is known: no benign event of that action
had the field, an artifact without benign values), and score the lower of the two (:data:`RULE` ``"lower"``).
The action and the actor stay what they are, so the question a value answers is "is this value what makes the
event unusual for this action": either its presence (removing it brings the sentence back to normal) or which
value it is (the benign one does). Neither variant alone is enough: deleting a value can make a sentence more
unusual ("connected a socket"), and the action's most frequent benign value can belong to another program and
be unusual beside this actor. The actor and the action are not replaced: a benign action or actor in their place
makes sentences benign training never said either ("bash executed 203.0.113.9:4444"). A process context's
sentence is rebuilt with one aspect removed (its event types, executables, parents or peers). All under the
artifact's masking. Each distinct variant is embedded once (through the embedding cache in the score job, the
replica's encoder online) and scored by the detector. Parts that are absent, or whose variant leaves the sentence
unchanged (a value that already is the benign one, a non-negative return value, a masked pid), are not tried.

Which part is the alert's *top part*: first the alert's parts benign training never had beside their condition
(:meth:`aptray.triage.vocabulary.BenignValues.unseen`: a program never seen, an action the program never
performed, a value the action never had, judged on what the sentence shows under the masking), then, where none of
them was tried, all its parts; among those, the one whose variant lowers the score most, reported with the full
score and the score of its variant (``score_without``). The re-scoring alone compares scores that differ in the
fourth decimal on short log sentences, and a removal that lowers the score (an anonymous actor, a sentence with
fewer words) says less about the event than the value benign training never had beside it; the unseen parts are
also what ``unseen_attributes`` names. ``bench/triage.py --seeds 5``, synthetic trace (each seed its own traces
and model): the share of true-positive alerts that name the injected field is 100 % median, 98.3 % worst, against
80.5 % median, 68.5 % worst with the re-scoring alone (the misses left: two alerts of one seed name their
arguments, also unseen, instead of the implant's path beside them). On that trace the unseen parts are a property of the
attack events (every true-positive alert has one; 120 of 1,462 benign alerts over the 5 seeds do), which is how
the generator builds them; on real traces they are what an analyst reads first, not a detector. :data:`RULE`
``"replace"`` (the counterfactual only, removal where none is known) is the documented alternative of how a value
part is tried.

Windowed detectors (LSTM-AE) score an event with the events before it; attribution is not computed for them.

For process contexts the artifact keeps the benign attribute vocabulary
(:class:`aptray.triage.vocabulary.AttributeVocabulary`); an alert names its attribute values outside it
("execs: /tmp/x"). For single events it keeps the benign (condition, value) pairs of each part; an alert names its
unseen parts ("action: socket (never with process_name bash)").
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from aptray.config import TemplateConfig

if TYPE_CHECKING:
    from aptray.triage.vocabulary import AttributeVocabulary, BenignValues

log = logging.getLogger(__name__)

#: The fields of a single event tried one at a time (the pid itself is masked and names nothing).
EVENT_PARTS: tuple[str, ...] = ("process_name", "exe", "parent_exe", "ppid", "uid", "action", "object_path",
                                "object_addr", "args", "return_value")
#: The aspects of a process context, by column, with the part names attribution reports.
CONTEXT_PARTS: dict[str, str] = {"ctx_events": "events", "ctx_execs": "execs", "ctx_parents": "parents",
                                 "ctx_netflows": "netflows"}
#: What templating reads of a row (``extras`` and ``source``: the auditd login user, working directory and account,
#: never tried).
_TEMPLATE_INPUT = ("pid", *EVENT_PARTS, "extras", "source", "aspect", *CONTEXT_PARTS)
#: Columns attribution adds to alerts.
ATTRIBUTION_FIELDS: tuple[pa.Field, ...] = (
    pa.field("attribution_part", pa.string()),  # the part whose variant lowers the score most
    pa.field("attribution_value", pa.string()),  # its value in the event (cut to VALUE_CHARS)
    pa.field("attribution_score_without", pa.float64()),  # the score of its variant (replaced or removed)
    pa.field("unseen_attributes", pa.list_(pa.string())),  # "<part>: <value>[ (never with ...)]" benign never had
)
VALUE_CHARS = 120
#: The event fields that hold the event's *values* (what it touched, ran or returned), tried by their benign
#: counterfactual; the others (who acted, and how) are tried by removal.
VALUE_PARTS: frozenset[str] = frozenset({"exe", "parent_exe", "object_path", "object_addr", "args", "return_value"})
#: How a value part is tried: "lower" (the lower score of its removal and its benign counterfactual) or "replace"
#: (its benign counterfactual, its removal where none is known).
RULE = "lower"
#: Unseen attribute values named per alert at most.
MAX_UNSEEN = 20


def value_text(value: Any) -> str:
    """A part's value as an alert's sentence names it, cut to :data:`VALUE_CHARS`: list items joined, a JSON
    command line (auditd and BETH ``args``) as its words, a CDM action without ``EVENT_`` in lower case (they read
    ``["apparmor_parser", "-r", ...]`` and ``EVENT_ADD_OBJECT_ATTRIBUTE``)."""
    if isinstance(value, str) and value.startswith("[") and value.endswith("]"):
        try:
            parsed = json.loads(value)
        except ValueError:
            parsed = None
        if isinstance(parsed, list) and all(isinstance(v, str | int | float) for v in parsed):
            value = " ".join(str(v) for v in parsed)
    if isinstance(value, str) and value.startswith("EVENT_") and value.replace("_", "").isalnum():
        from aptray.templating.process import raw_event

        value = raw_event(value)
    text = ", ".join(str(v) for v in value) if isinstance(value, list) else str(value)
    return text if len(text) <= VALUE_CHARS else text[: VALUE_CHARS - 3] + "..."


@dataclass
class Variants:
    """The alerts' sentences with one part replaced or removed: per variant, its alert, part, the part's value in
    the alert and the variant sentence."""

    row: list[int] = field(default_factory=list)
    part: list[str] = field(default_factory=list)
    value: list[str] = field(default_factory=list)
    sentence: list[str] = field(default_factory=list)

    def distinct(self) -> list[str]:
        """The distinct variant sentences (each is embedded and scored once)."""
        return list(dict.fromkeys(self.sentence))


def variants(rows: pa.Table, template: TemplateConfig, benign: BenignValues | None = None, rule: str = RULE
             ) -> Variants:
    """Every alert's sentence rebuilt with each of its present parts changed: a value part replaced by its benign
    counterfactual (removed where none is known; ``rule="lower"``: both), any other part removed (vectorised per
    part).

    Args:
        rows: alerts (or request events) with their event fields / context lists and their ``sentence``.
        template: the artifact's template settings (the masking the detector was trained under).
        benign: the benign values of single-event value fields, if the artifact keeps them (else every part is
            removed).
        rule: :data:`RULE`.
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
        removed = pa.nulls(len(idx), subset.field(column).type)
        tries = [removed]
        if benign is not None and column in VALUE_PARTS:
            replaced = benign.counterfactual(column, subset)
            # where no benign value is known the counterfactual is null: the removal
            tries = [replaced, removed] if rule == "lower" else [pc.if_else(pc.is_valid(replaced), replaced, removed)]
        seen: set[tuple[int, str]] = set()
        for other in tries:
            rebuilt = templatize(subset.set_column(pos, subset.field(column), other), template)
            for i, s in zip(idx, rebuilt.column("sentence").to_pylist(), strict=True):
                if s != original[i] and (i, s) not in seen:
                    seen.add((i, s))
                    out.row.append(i)
                    out.part.append(name)
                    out.value.append(value_text(values[i]))
                    out.sentence.append(s)
    return out


def unseen_of(rows: pa.Table, vocabulary: AttributeVocabulary | None, benign: BenignValues | None
              ) -> tuple[list[set[str]], list[list[str] | None]]:
    """Per row, what benign training never had: the parts whose value is unseen (single events beside their
    condition, :meth:`BenignValues.unseen`; process contexts, an aspect with a value outside the vocabulary;
    attribution tries them first) and the texts an alert names
    (``unseen_attributes``: a process context's values outside the benign vocabulary, a single event's unseen
    parts; None where the artifact keeps neither)."""
    n = rows.num_rows
    parts: list[set[str]] = [set() for _ in range(n)]
    texts: list[list[str] | None] = [None] * n
    if vocabulary is not None:
        texts = vocabulary.unseen(rows)
        for i, named in enumerate(texts):  # a process context's unseen aspects ("events: EVENT_BIND") come first
            parts[i] = {t.split(": ", 1)[0] for t in named or ()}  # too (the top part was an ordinary parent set)
    if benign is not None and benign.seen:
        aspect = rows.column("aspect").to_pylist() if "aspect" in rows.column_names else [None] * n
        for i, found in enumerate(benign.unseen(rows)):
            if aspect[i] is None:
                parts[i] = {p for p, _ in found}
                texts[i] = [t for _, t in found]
    return parts, texts


def choose(plan: Variants, variant_scores: dict[str, float], n: int, unseen: list[set[str]] | None = None
           ) -> tuple[list[str | None], list[str | None], list[float | None]]:
    """Per alert, its top part: among its parts whose value benign training never had beside their condition
    (``unseen``, from :func:`unseen_of`) if any of them was tried, else among all, the one whose variant lowers
    its score most: (part, value, the variant's score); None for an alert with no part to try. Ties keep the part
    tried first."""
    best: list[int | None] = [None] * n

    def rank(j: int) -> tuple[bool, float]:
        i = plan.row[j]
        return (unseen is None or plan.part[j] not in unseen[i], variant_scores[plan.sentence[j]])

    for j, i in enumerate(plan.row):
        k = best[i]
        if k is None or rank(j) < rank(k):
            best[i] = j
    part: list[str | None] = [None] * n
    value: list[str | None] = [None] * n
    without: list[float | None] = [None] * n
    for i, k in enumerate(best):
        if k is not None:
            part[i], value[i] = plan.part[k], plan.value[k]
            without[i] = float(f"{float(variant_scores[plan.sentence[k]]):.6g}")  # 6 significant digits (AE: ~1e-3)
    return part, value, without


def attribute(rows: pa.Table, embed: Callable[[list[str]], np.ndarray],
              score: Callable[[np.ndarray], np.ndarray], template: TemplateConfig,
              vocabulary: AttributeVocabulary | None = None, benign: BenignValues | None = None) -> pa.Table:
    """The :data:`ATTRIBUTION_FIELDS` columns for ``rows`` (alerts with their event fields and sentence).

    Args:
        rows: the alerts.
        embed: sentences -> embeddings, as the detector's input was embedded (distinct sentences only are passed).
        score: embeddings -> detector scores (higher = more anomalous).
        template: the artifact's template settings.
        vocabulary: the benign attribute vocabulary (process contexts), if the artifact keeps one.
        benign: the benign values and pairs of event fields (single events), if the artifact keeps them.
    """
    plan = variants(rows, template, benign)
    distinct = plan.distinct()
    variant_scores: dict[str, float] = {}
    if distinct:
        s = np.asarray(score(np.asarray(embed(distinct), dtype=np.float32)), dtype=np.float64)
        variant_scores = dict(zip(distinct, s.tolist(), strict=True))
    novel, unseen = unseen_of(rows, vocabulary, benign)
    part, value, without = choose(plan, variant_scores, rows.num_rows, novel)
    arrays = [pa.array(part, pa.string()), pa.array(value, pa.string()), pa.array(without, pa.float64()),
              pa.array(unseen, pa.list_(pa.string()))]
    return pa.Table.from_arrays(arrays, schema=pa.schema(list(ATTRIBUTION_FIELDS)))
