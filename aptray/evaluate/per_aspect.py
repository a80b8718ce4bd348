"""Per-aspect fusion: a process scored on each aspect of its ADAPT folder, then the aspects' scores fused.

An ADAPT folder describes each process in up to four files (its event types, executables, parents, network
peers) and the experiment also joins them (ProcessAll). Each aspect's detector sees one view; an attack can stand
out in one view and look ordinary in another. To combine them per process, every target of a folder draws its
splits from **one split of the folder's processes** (:func:`aligned_splits`: the union of the targets' record ids,
split by :func:`aptray.evaluate.splits.split_rows` with the usual rules, then restricted to each target's rows), so
a process is in the same split in every aspect. A target whose restriction would leave its test split without its
malicious rows keeps a split of its own and is not fused (ADAPT's small network files can hold three malicious
processes).

:func:`per_aspect_runs` then fuses, per embedder and seed, the aligned targets' (aspect, detector) scores with the
experiment's own rank fusion (:func:`aptray.evaluate.fusion.fuse`: members and threshold chosen on the folder's
validation processes only). A process with no row in an aspect gets that member's median benign validation
score there, i.e. a place of about one half: a missing view says nothing either way. The runs carry the aspect
:data:`PER_ASPECT` and the detector ``fusion``, beside the single-aspect runs in ``metrics.json`` and the report.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from aptray.config import Protocol
from aptray.evaluate.fusion import Candidates
from aptray.evaluate.splits import Split, split_rows

#: The aspect name of the per-aspect fusion's runs, targets and score files.
PER_ASPECT = "PerAspect"


@dataclass
class Universe:
    """A folder's processes (the union of its targets' record ids), their labels and one split per seed."""

    record_ids: list[str]
    y: np.ndarray
    splits: list[Split]
    _position: dict[str, int] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._position = {r: i for i, r in enumerate(self.record_ids)}

    def rows_of(self, record_ids: list[str]) -> np.ndarray:
        """The universe index of each of a target's rows."""
        return np.array([self._position[r] for r in record_ids], dtype=np.int64)

    def restrict(self, record_ids: list[str], y: np.ndarray) -> list[Split] | None:
        """Each seed's universe split restricted to a target's rows; None when a restriction's test split would
        hold none of the target's malicious rows (the target then draws its own splits)."""
        at = self.rows_of(record_ids)
        out = []
        for split in self.splits:
            role = np.full(len(self.record_ids), -1, dtype=np.int8)
            role[split.train], role[split.val], role[split.test] = 0, 1, 2
            mine = role[at]
            local = Split(split.seed, np.flatnonzero(mine == 0), np.flatnonzero(mine == 1), np.flatnonzero(mine == 2))
            if int(np.asarray(y).sum()) and not int(np.asarray(y)[local.test].sum()):
                return None
            out.append(local)
        return out


def aligned_splits(targets: list[tuple[list[str], np.ndarray]], seeds: int, test_fraction: float,
                   val_fraction: float) -> Universe:
    """The folder's process universe: the union of the targets' (record ids, labels), a process malicious where
    any target labels it so, split once per seed."""
    label: dict[str, int] = {}
    for ids, y in targets:
        for r, v in zip(ids, np.asarray(y).tolist(), strict=True):
            label[r] = max(label.get(r, 0), int(v))
    ids = sorted(label)
    y_u = np.array([label[r] for r in ids], dtype=np.int8)
    return Universe(ids, y_u, [split_rows(y_u, s, test_fraction, val_fraction) for s in range(seeds)])


@dataclass
class Member:
    """An aligned target's part in the fusion: the universe index of each of its rows, its splits (restrictions
    of the universe's) and its detectors' validation and test scores on them (:func:`run_target`'s candidates)."""

    at: np.ndarray
    splits: list[Split]
    candidates: Candidates


def per_aspect_runs(dataset: str, universe: Universe, members: dict[str, Member], fusion_size: int, top_k: int,
                    percentile: float) -> tuple[list[dict[str, Any]], pa.Table]:
    """The per-aspect fusion's runs (one per embedder x seed) and their scores on the universe's rows.

    Args:
        dataset: the folder's dataset name.
        universe: from :func:`aligned_splits`.
        members: aspect -> its :class:`Member`.
        fusion_size, top_k, percentile: as in the experiment's fusion.
    """
    from aptray.evaluate.fusion import FUSION, fuse, fused_run
    from aptray.evaluate.runs import ScoreRows

    n = len(universe.record_ids)
    by: dict[tuple[str, int], dict[str, np.ndarray]] = {}
    for aspect, m in members.items():
        for (emb, seed), detectors in m.candidates.items():
            local = m.splits[seed]
            for det, (val, test) in detectors.items():
                full = np.full(n, np.nan)
                full[m.at[local.val]], full[m.at[local.test]] = val, test
                by.setdefault((emb, seed), {})[f"{aspect}:{det}"] = full
    runs: list[dict[str, Any]] = []
    scores = ScoreRows()
    for (emb, seed), aligned in sorted(by.items()):
        split = universe.splits[seed]
        benign_val = split.val[universe.y[split.val] == 0]
        pairs = {}
        for name, whole in aligned.items():
            known = whole[benign_val][np.isfinite(whole[benign_val])]
            if len(known):
                filled = np.where(np.isfinite(whole), whole, float(np.median(known)))
                pairs[name] = (filled[split.val], filled[split.test])
        fused = fuse(pairs, universe.y[split.val], fusion_size, top_k, percentile)
        if fused is not None:
            key = {"dataset": dataset, "aspect": PER_ASPECT, "protocol": Protocol.BENIGN_SPLIT.value,
                   "embedder": emb, "detector": FUSION, "seed": seed}
            runs.append(fused_run(key, split, universe.y, fused, top_k, scores))
    return runs, scores.table()
