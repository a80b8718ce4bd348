"""Composed embeddings: a process sentence's aspect clauses encoded one by one, their vectors side by side.

A ProcessAll sentence names a process's events, executables, parents and network peers at once. Encoded whole,
the long event list outweighs the one executable or parent that sets an attack apart, and a sentence model
truncates what is past its window. With ``embed.compose: aspects`` each clause of a prose process sentence
(:func:`aptray.templating.process.aspect_clauses`) goes through the model on its own and lands in its aspect's
slot of the vector: events, executables, parents, network peers, then a fifth slot for a sentence that is no
prose process sentence (read whole). A slot without a clause is zeros. The vector is ``len(SLOTS)`` times the
model's dimension.

Composition happens inside :class:`aptray.embed.encoder.SentenceEncoder`, so the embed job, batch scoring, the
Serve replica and the triage passes compose alike; the model's :class:`~aptray.embed.registry.ModelSpec`
carries it (``-aspects`` in its revision keys the embedding cache and the warm actors apart from plain vectors).

Measured by ``aptray experiment --compose none,aspects`` on the ADAPT ProcessAll contexts (MiniLM, 5 seeds,
test AUC-ROC / PR-AUC chosen on validation, whole -> composed): bovia/trace 0.987 / 0.345 -> 0.988 / 0.702,
bovia/5dir 0.931 / 0.092 -> 0.947 / 0.181, bovia/cadets 0.999 / 0.811 -> 0.999 / 0.853, pandex/clearscope 0.756 /
0.486 -> 0.850 / 0.687.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from aptray.config import Aspect, Compose, ProcessStyle

#: The slots of a composed vector, in order: the four aspect columns, then the whole of any other sentence.
SLOTS: tuple[str, ...] = ("ctx_events", "ctx_execs", "ctx_parents", "ctx_netflows", "other")
_OTHER = len(SLOTS) - 1


def effective(compose: Compose, aspect: Aspect | str | None, style: ProcessStyle | str) -> Compose:
    """What ``embed.compose`` means for sentences of ``aspect`` templated in ``style``: ``auto`` composes
    ProcessAll prose sentences and leaves everything else whole.

    Raises:
        ValueError: ``aspects`` asked for terse sentences (they have no clauses to split).
    """
    style = ProcessStyle(style)
    if compose is Compose.AUTO:
        all_prose = aspect is not None and Aspect(aspect) is Aspect.ALL and style is ProcessStyle.PROSE
        return Compose.ASPECTS if all_prose else Compose.NONE
    if compose.by_aspect and style is not ProcessStyle.PROSE:
        raise ValueError("embed.compose aspects splits prose process sentences; template.process_style "
                         f"{style.value} has no clauses to split (use embed.compose none)")
    return compose


def slot_texts(sentence: str) -> list[tuple[int, str]]:
    """``(slot, text)`` pairs of a sentence: its aspect clauses, or the whole sentence in the last slot."""
    from aptray.templating.process import aspect_clauses

    clauses = aspect_clauses(sentence)
    if clauses is None:
        return [(_OTHER, sentence)]
    return [(SLOTS.index(column), text) for column, text in clauses.items()]


def compose(sentences: list[str], encode: Callable[[list[str]], np.ndarray], dim: int,
            left_out: str | None = None) -> np.ndarray:
    """Composed vectors of ``sentences``: each distinct clause encoded once by ``encode`` (distinct texts in,
    ``(n, dim)`` float32 out), placed in its slot; the clauses of aspect ``left_out`` (``netflows``...) not at all
    (their slot stays zeros: ``embed.compose: aspects-no-netflows``).

    Returns:
        float32 array of shape ``(len(sentences), len(SLOTS) * dim)``.
    """
    skip = SLOTS.index(f"ctx_{left_out}") if left_out else None
    placed = [[(slot, text) for slot, text in slot_texts(s) if slot != skip] for s in sentences]
    texts = list(dict.fromkeys(text for pairs in placed for _, text in pairs))
    vectors = encode(texts) if texts else np.zeros((0, dim), dtype=np.float32)
    row_of = {text: i for i, text in enumerate(texts)}
    out = np.zeros((len(sentences), len(SLOTS), dim), dtype=np.float32)
    for i, pairs in enumerate(placed):
        for slot, text in pairs:
            out[i, slot] = vectors[row_of[text]]
    return out.reshape(len(sentences), len(SLOTS) * dim)
