"""Parity of an exported encoder variant with the fp32 torch model, and the rule that guards detectors with it.

A variant (ONNX, int8 ONNX, OpenVINO) gives vectors close to, not equal to, the torch model's. Its parity is
measured on real log sentences (:func:`measure`: per dataset, the min and mean cosine of each sentence's two
vectors) and recorded in the variant's folder (``parity.json``, tied to the export's sha256). A detector
trained on one variant accepts embeddings of another only when every non-torch variant involved has a
recorded parity with min cosine >= :data:`MIN_COSINE` (:func:`check_variant`).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from aptray.config import Backend, Quantize
from aptray.errors import AptrayError

if TYPE_CHECKING:
    from aptray.embed.encoder import SentenceEncoder
    from aptray.embed.registry import ModelSpec

log = logging.getLogger(__name__)

#: The least cosine (per sentence, over every sentence measured) that counts as parity.
MIN_COSINE = 0.99
PARITY_FILE = "parity.json"
_TORCH = (Backend.TORCH, Quantize.NONE)


class ParityError(AptrayError, ValueError):
    """Embeddings of one encoder variant offered to a detector trained on another, without proven parity."""


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise cosine similarity of two ``(n, dim)`` arrays."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    return np.asarray((a * b).sum(axis=1) / np.maximum(norms, 1e-12))


def measure(candidate: SentenceEncoder, reference: SentenceEncoder,
            datasets: Mapping[str, list[str]]) -> dict[str, Any]:
    """Cosine of ``candidate``'s vectors against ``reference``'s on each dataset's sentences.

    Returns:
        ``datasets`` (name -> ``sentences``, ``min_cosine``, ``mean_cosine``), the overall ``min_cosine``,
        ``mean_cosine`` and ``sentences``, and whether it reaches :data:`MIN_COSINE` (``parity``).
    """
    per: dict[str, dict[str, Any]] = {}
    every: list[np.ndarray] = []
    for name, sentences in datasets.items():
        if not sentences:
            continue
        c = cosines(candidate.encode_distinct(sentences), reference.encode(sentences))  # reference: LRU, once
        every.append(c)
        per[name] = {"sentences": len(sentences), "min_cosine": round(float(c.min()), 6),
                     "mean_cosine": round(float(c.mean()), 6)}
    if not every:
        raise ValueError("no sentences to measure parity on")
    allc = np.concatenate(every)
    return {"datasets": per, "sentences": int(allc.size), "min_cosine": round(float(allc.min()), 6),
            "mean_cosine": round(float(allc.mean()), 6), "parity": bool(allc.min() >= MIN_COSINE)}


def record(spec: ModelSpec, result: Mapping[str, Any]) -> Path:
    """Write ``result`` (:func:`measure`) as the variant's ``parity.json``, tied to its export sha256."""
    if spec.variant == _TORCH:
        raise ValueError("the torch model is the reference; it has no parity to record")
    path = Path(spec.path) / PARITY_FILE
    doc = {**result, "revision": spec.revision, "export_sha256": spec.export_sha256, "reference": "torch/float32",
           "min_required": MIN_COSINE, "measured": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    path.write_text(json.dumps(doc, indent=2) + "\n")
    return path


def proven(spec: ModelSpec) -> dict[str, Any] | None:
    """The variant's recorded parity summary when it holds (min cosine >= :data:`MIN_COSINE` for this very
    export), else None. The torch model is its own reference: always proven."""
    if spec.variant == _TORCH:
        return {"min_cosine": 1.0, "mean_cosine": 1.0, "reference": "torch/float32"}
    path = Path(spec.path) / PARITY_FILE
    if not path.is_file():
        return None
    doc = json.loads(path.read_text())
    if doc.get("export_sha256") != spec.export_sha256 or float(doc.get("min_cosine", 0.0)) < MIN_COSINE:
        return None
    return {k: doc.get(k) for k in ("min_cosine", "mean_cosine", "sentences", "export_sha256", "measured")}


def embedder_record(spec: ModelSpec) -> dict[str, Any]:
    """The ``embedder`` record of manifests and artifacts: identity, backend, numerics, export hash and
    the parity proven for it (None when not)."""
    return {**spec.record(), "parity": None if spec.variant == _TORCH else proven(spec)}


def check_variant(recorded: Mapping[str, Any] | None, spec: ModelSpec) -> None:
    """Refuse ``spec``'s embeddings for a detector whose ``embedder`` record names another backend/numerics,
    unless parity is proven for both sides (torch/float32 needs none; the recorded side's proof is the one it
    recorded, this side's the local ``parity.json``).

    Raises:
        ParityError: the variants differ and a side has no proven parity.
    """
    from aptray.embed.registry import recorded_variant

    recorded = recorded or {}
    theirs = recorded_variant(recorded)
    if theirs == spec.variant:
        return
    their_proof = theirs == _TORCH or _holds(recorded.get("parity"))
    our_proof = proven(spec) is not None
    if their_proof and our_proof:
        log.info("embedding with %s/%s for a detector trained on %s/%s: parity proven for both",
                 spec.backend.value, spec.quantize.value, theirs[0].value, theirs[1].value)
        return
    missing = [f"{b.value}/{q.value}" for (b, q), ok in ((theirs, their_proof), (spec.variant, our_proof)) if not ok]
    raise ParityError(
        f"the detector was trained on {recorded.get('model_id')} embeddings made with {theirs[0].value}/"
        f"{theirs[1].value}, but these are made with {spec.backend.value}/{spec.quantize.value}, and parity "
        f"(min cosine >= {MIN_COSINE} against fp32 torch) is not proven for {', '.join(missing)}; embed with the "
        "recorded backend, or prove parity: python bench/parity.py --record")


def _holds(proof: Any) -> bool:
    return isinstance(proof, Mapping) and float(proof.get("min_cosine") or 0.0) >= MIN_COSINE


def sample_sentences(data_root: str | Path, per_dataset: int | None = None,
                     max_file_bytes: int | None = None) -> dict[str, list[str]]:
    """Distinct real sentences per dataset of ``../shared/data``: every ADAPT ``Process<Aspect>.csv``
    (``<scenario>/<system>/<Aspect>``) and the BETH test subset (``beth``), templatized in-process by
    aptray's own parsers and templates (no Ray). At most ``per_dataset`` each (evenly spaced), sorted;
    files larger than ``max_file_bytes`` are skipped (a quick sample of the templates).
    """
    from aptray.config import IngestConfig, Source
    from aptray.io import adapt, beth
    from aptray.io.request import Request
    from aptray.templating.base import templatize

    root = Path(data_root)
    found: dict[str, list[str]] = {}
    for f in sorted((root / "darpa_tc_adapt").glob("*/*/Process*.csv")):
        if max_file_bytes is not None and f.stat().st_size > max_file_bytes:
            continue
        aspect = adapt.file_aspect(f.name)
        table = adapt.parse_request(Request(items=f.read_text().splitlines()),
                                    IngestConfig(source=Source.ADAPT, aspect=aspect))
        found[f"{f.parent.parent.name}/{f.parent.name}/{aspect}"] = _distinct(templatize(table), per_dataset)
    subset = root / "beth" / "testing_subset_STARAI" / "new_test_results.csv"
    if subset.is_file() and (max_file_bytes is None or subset.stat().st_size <= max_file_bytes):
        table = beth.parse_request(Request(items=subset.read_text().splitlines()), IngestConfig(source=Source.BETH))
        found["beth"] = _distinct(templatize(table), per_dataset)
    return found


def _distinct(table: Any, limit: int | None) -> list[str]:
    sentences = sorted(set(table.column("sentence").to_pylist()))
    if limit is None or len(sentences) <= limit:
        return sentences
    step = len(sentences) / limit
    return [sentences[int(i * step)] for i in range(limit)]
