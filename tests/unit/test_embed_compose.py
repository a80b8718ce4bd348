"""Composed embeddings (aptray.embed.compose): each aspect clause of a process sentence in its own slot."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from aptray.config import Aspect, Compose, ProcessStyle
from aptray.embed.compose import SLOTS, compose, effective

DIM = 3


def _fake_encoder(log: list[list[str]]) -> Callable[[list[str]], np.ndarray]:
    """A deterministic stand-in for the model that records what it was asked to encode."""

    def encode(texts: list[str]) -> np.ndarray:
        log.append(list(texts))
        return np.array([[len(t), sum(map(ord, t)) % 97, 1.0] for t in texts], dtype=np.float32)

    return encode


def test_auto_composes_prose_process_all_only() -> None:
    assert effective(Compose.AUTO, Aspect.ALL, ProcessStyle.PROSE) is Compose.ASPECTS
    assert effective(Compose.AUTO, "All", "prose") is Compose.ASPECTS
    for aspect in (Aspect.EVENT, Aspect.EXEC, None):
        assert effective(Compose.AUTO, aspect, ProcessStyle.PROSE) is Compose.NONE
    assert effective(Compose.AUTO, Aspect.ALL, ProcessStyle.TERSE) is Compose.NONE
    assert effective(Compose.NONE, Aspect.ALL, ProcessStyle.PROSE) is Compose.NONE
    assert effective(Compose.ASPECTS, Aspect.EXEC, ProcessStyle.PROSE) is Compose.ASPECTS  # asked for: honoured
    with pytest.raises(ValueError, match="terse"):
        effective(Compose.ASPECTS, Aspect.ALL, ProcessStyle.TERSE)


def test_each_clause_lands_in_its_slot_and_distinct_clauses_are_encoded_once() -> None:
    log: list[list[str]] = []
    encode = _fake_encoder(log)
    sentences = [
        "The process performed read. It ran /bin/sh. It communicated on port 80.",
        "The process ran /bin/sh. It was started by sshd.",
        "Process 7 (bash) read /etc/passwd.",
        "The process showed no recorded activity.",
    ]
    out = compose(sentences, encode, DIM)
    assert out.shape == (4, len(SLOTS) * DIM) and out.dtype == np.float32
    (texts,) = log
    assert texts.count("The process ran /bin/sh.") == 1  # shared by two sentences, encoded once
    slots = out.reshape(4, len(SLOTS), DIM)
    ref = dict(zip(texts, encode(texts), strict=True))
    assert np.array_equal(slots[0, 0], ref["The process performed read."])
    assert np.array_equal(slots[0, 1], ref["The process ran /bin/sh."])
    assert np.array_equal(slots[0, 3], ref["The process communicated on port 80."])
    assert not slots[0, 2].any() and not slots[0, 4].any()  # no parent clause; a process sentence
    assert np.array_equal(slots[1, 1], slots[0, 1])
    assert np.array_equal(slots[1, 2], ref["The process was started by sshd."])
    for row in (2, 3):  # not a prose process sentence with clauses: whole, in the last slot
        assert not slots[row, :4].any() and np.array_equal(slots[row, 4], ref[sentences[row]])


def test_composed_spec_is_keyed_apart_and_recorded() -> None:
    from aptray.embed.registry import resolve, resolve_recorded

    plain = resolve("minilm")
    composed = resolve("minilm", compose=Compose.ASPECTS)
    assert composed.dim == len(SLOTS) * plain.dim and composed.model_dim == plain.dim == plain.model_dim
    assert composed.revision == f"{plain.revision}-aspects" and composed.record()["compose"] == "aspects"
    assert composed.composed(Compose.NONE) == plain
    assert resolve_recorded(composed.record()) == composed  # scoring and serving compose as training did
    assert resolve_recorded(plain.record()) == plain
    with pytest.raises(ValueError, match="auto"):
        plain.composed(Compose.AUTO)


def test_an_aspect_left_out_is_never_encoded_and_keyed_apart() -> None:
    """``aspects-no-netflows``: the representation an experiment may choose on validation (the Netflow clause of
    bovia/5dir's ProcessAll is mostly client ports); its slot stays zeros, its clauses never reach the model, and
    its spec is keyed, recorded and resolved apart from ``aspects`` (scoring and serving compose as training)."""
    from aptray.embed.registry import resolve, resolve_recorded

    log: list[list[str]] = []
    sentence = "The process performed read. It ran /bin/sh. It communicated on port 80."
    full = compose([sentence], _fake_encoder([]), DIM).reshape(len(SLOTS), DIM)
    out = compose([sentence], _fake_encoder(log), DIM, Compose.ASPECTS_NO_NETFLOWS.left_out).reshape(len(SLOTS), DIM)
    assert not out[3].any() and np.array_equal(out[:3], full[:3])
    assert "The process communicated on port 80." not in log[0]
    assert Compose.ASPECTS_NO_EVENTS.left_out == "events" and Compose.ASPECTS.left_out is None
    assert all(c.by_aspect for c in (Compose.ASPECTS, Compose.ASPECTS_NO_PARENTS)) and not Compose.NONE.by_aspect
    plain = resolve("minilm")
    no_net = resolve("minilm", compose=Compose.ASPECTS_NO_NETFLOWS)
    assert no_net.revision == f"{plain.revision}-aspects-no-netflows" and no_net.dim == len(SLOTS) * plain.dim
    assert resolve_recorded(no_net.record()) == no_net
    assert no_net.composed(Compose.ASPECTS) == resolve("minilm", compose=Compose.ASPECTS)  # composed to composed
    assert no_net.composed(Compose.NONE) == plain
    with pytest.raises(ValueError, match="terse"):
        effective(Compose.ASPECTS_NO_EVENTS, Aspect.ALL, ProcessStyle.TERSE)


def test_observed_aspects_name_the_clauses_the_sentences_hold() -> None:
    """An experiment skips ``aspects-no-<aspect>`` where no sentence has that aspect (bovia/trace has no events):
    its vectors would repeat ``aspects``' and double the folder's training time."""
    from aptray.evaluate.experiment import observed_aspects

    sentences = ["The process ran /bin/sh. It was started by /sbin/init.", "The process ran /bin/ls.",
                 "Process 4 called read."]
    assert observed_aspects(sentences) == {"ctx_execs", "ctx_parents"}
    assert observed_aspects([]) == set()
