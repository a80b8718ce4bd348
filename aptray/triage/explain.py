"""Explanations: the benign behaviour an alert is closest to.

An artifact trained on an embed output that carries sentences keeps its most frequent distinct benign training
sentences with their embeddings and row counts (:class:`BenignReference`, at most ``train.explain_max_sentences``;
stored as ``benign.safetensors`` beside the model, sha256 recorded, no pickle). For each alert the score job and
the online endpoint name the ``k`` nearest of them by cosine similarity: "this event is unusual; the closest normal
behaviour is ...". The search runs on alerts only. The same file holds what attribution compares with
(:mod:`aptray.triage.vocabulary`): the benign values of single-event fields (:class:`BenignValues`) or the benign
attribute vocabulary of process contexts (:class:`AttributeVocabulary`), where the training rows had one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from aptray.triage.vocabulary import AttributeVocabulary, BenignValues, pack, unpack

#: The artifact file of the benign reference.
BENIGN_FILE = "benign.safetensors"


@dataclass
class BenignReference:
    """Distinct benign training sentences, their embeddings (unit length) and row counts, most frequent first."""

    sentences: list[str]
    embeddings: np.ndarray  # (n, dim) float16
    counts: np.ndarray  # (n,) int64
    vocabulary: AttributeVocabulary | None = None  # process contexts: the benign attribute values
    values: BenignValues | None = None  # single events: each field's benign value, for attribution

    @classmethod
    def build(cls, sentences: list[str], X: np.ndarray, counts: np.ndarray, limit: int,
              vocabulary: AttributeVocabulary | None = None, values: BenignValues | None = None
              ) -> BenignReference:
        """The ``limit`` most frequent of distinct benign ``sentences`` (embeddings ``X``, row ``counts``)."""
        order = np.argsort(-np.asarray(counts), kind="stable")[:limit]
        emb = np.asarray(X, dtype=np.float32)[order]
        emb /= np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)
        return cls([sentences[i] for i in order], emb.astype(np.float16), np.asarray(counts, np.int64)[order],
                   vocabulary, values)

    def to_arrays(self) -> dict[str, np.ndarray]:
        """Plain arrays for safetensors: the sentences as UTF-8 bytes and their end offsets, the vocabulary's."""
        out = {"embeddings": np.ascontiguousarray(self.embeddings), "counts": self.counts, **pack(self.sentences)}
        if self.vocabulary is not None:
            out.update(self.vocabulary.to_arrays())
        if self.values is not None:
            out.update(self.values.to_arrays())
        return out

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> BenignReference:
        """The inverse of :meth:`to_arrays`."""
        return cls(unpack(arrays), arrays["embeddings"], arrays["counts"],
                   AttributeVocabulary.from_arrays(arrays), BenignValues.from_arrays(arrays))

    def describe(self) -> dict[str, Any]:
        """What the artifact records of it (``config.json`` ``explanations``)."""
        out: dict[str, Any] = {"nearest_benign": len(self.sentences)}
        if self.vocabulary is not None:
            out["unseen_attributes"] = self.vocabulary.describe()
        if self.values is not None:
            out["benign_values"] = self.values.describe()
            if self.values.seen:
                out["novelty"] = self.values.describe_novelty()
        return out

    def nearest(self, X: np.ndarray, k: int = 3) -> tuple[np.ndarray, np.ndarray]:
        """Per row of ``X``: the indices of the ``k`` most similar benign sentences and their cosine similarity,
        most similar first."""
        from aptray.detectors.baselines import k_best

        x = np.asarray(X, dtype=np.float32)
        x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
        ref = self.embeddings.astype(np.float32)
        sim, idx = k_best(x, len(ref), k, lambda b: (b @ ref.T).astype(np.float64), largest=True)
        return idx, sim

    def explain(self, X: np.ndarray, k: int = 3) -> tuple[list[list[str]], list[list[float]]]:
        """Per row of ``X``: its ``k`` nearest benign sentences and their similarities (rounded)."""
        if len(X) == 0 or len(self.sentences) == 0:
            return [[] for _ in range(len(X))], [[] for _ in range(len(X))]
        idx, sim = self.nearest(X, k)
        return ([[self.sentences[j] for j in row] for row in idx],
                [[round(float(v), 4) for v in row] for row in sim])


def explanations_of(detector: Any, windowed: bool) -> list[str]:
    """What an explanation of this detector's alerts holds: ``nearest_benign`` (it keeps benign training
    sentences), ``attribution`` (it scores single sentences, not windows) and ``unseen_attributes`` (it keeps the
    benign attribute vocabulary of process contexts, or the benign pairs of single events' parts)."""
    benign = getattr(detector, "benign_", None)
    out = ["nearest_benign"] if benign is not None else []
    if not windowed:
        out.append("attribution")
    if benign is not None and (benign.vocabulary is not None or (benign.values is not None and benign.values.seen)):
        out.append("unseen_attributes")
    return out
