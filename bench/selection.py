"""Nested validation of the experiment's selection rule, from an ``aptray experiment`` output folder.

``aptray experiment`` chooses a model per dataset x context by mean validation AUC-ROC, and each seed's rank fusion
takes its members by validation AUC-ROC too. Whether another rule (validation PR-AUC, or both) would choose models
that rank attacks better elsewhere cannot be read from the test split without choosing on test. This script splits
each seed's validation rows in two halves (stratified, ``--repeats`` times), makes the choice on one half with each
rule (fusion members included) and measures the chosen model on the other. Test rows are never read.

    python bench/selection.py OUT [--repeats 30] [--fusion-size 3]

OUT is an experiment's ``--out`` folder (its ``scores/<dataset>/<aspect>/{scores,rows}.parquet``). Prints, per
target and rule, the held-out half's AUC-ROC / PR-AUC (mean over seeds and repeats), then the mean over targets
and how many targets each rule moves up or down in PR-AUC against the current rule (``auc``).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq

from aptray.detectors.registry import APTRAY_DETECTORS
from aptray.evaluate.fusion import CHANCE, FUSION, place
from aptray.evaluate.metrics import auc_roc, average_precision

#: Rule name -> (the key fusion members are ranked by, the key the model is chosen by), each of (AUC-ROC, PR-AUC).
Key = Callable[[float, float], float]
RULES: dict[str, tuple[Key, Key]] = {
    "auc": (lambda a, p: a, lambda a, p: a),  # the experiment's rule
    "pr": (lambda a, p: p, lambda a, p: p),
    "auc+pr": (lambda a, p: a + p, lambda a, p: a + p),
}
OURS = frozenset(str(d) for d in APTRAY_DETECTORS)


def _halves(y: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A stratified half of the rows (True: the half the choice is made on); an odd class's extra row goes to
    either half at random."""
    first = np.zeros(len(y), dtype=bool)
    for label in (0, 1):
        idx = np.flatnonzero(y == label)
        rng.shuffle(idx)
        first[idx[: (len(idx) + int(rng.integers(0, 2))) // 2]] = True
    return first


def _both(y: np.ndarray, s: np.ndarray) -> tuple[float, float]:
    return auc_roc(y, s), average_precision(y, s)


def target_vectors(root: Path) -> tuple[np.ndarray, dict[int, tuple[np.ndarray, dict[tuple[str, str], np.ndarray]]]]:
    """A target's labels, and per seed its validation rows and each (representation, detector)'s scores on them
    (aptray's own detectors of the benign-split protocol; the stored fusion is rebuilt per half, not read)."""
    rows = pq.read_table(root / "rows.parquet", columns=["row", "malicious"])
    y = np.zeros(int(pc.max(rows["row"]).as_py()) + 1, dtype=np.int8)
    y[rows["row"].to_numpy()] = rows["malicious"].to_numpy()
    table = pq.read_table(root / "scores.parquet", filters=[("split", "=", "val"), ("protocol", "=", "benign-split")])
    frame = table.to_pandas()
    frame = frame[frame.detector.isin(OURS)]
    seeds: dict[int, tuple[np.ndarray, dict[tuple[str, str], np.ndarray]]] = {}
    for seed, per_seed in frame.groupby("seed"):
        val_rows = np.sort(per_seed.row.unique())
        vectors = {}
        for (emb, det), g in per_seed.groupby(["embedder", "detector"]):
            scores = g.set_index("row").score.reindex(val_rows)
            if not scores.isna().any():
                vectors[(str(emb), str(det))] = scores.to_numpy(dtype=np.float64)
        seeds[int(seed)] = (val_rows, vectors)
    return y, seeds


def held_out(y: np.ndarray, seeds: dict[int, tuple[np.ndarray, dict[tuple[str, str], np.ndarray]]],
             first: dict[int, np.ndarray], member_key: Key, choose_key: Key, size: int) -> tuple[float, float]:
    """Choose on the first halves with one rule; the chosen model's (AUC-ROC, PR-AUC) on the second halves, mean
    over seeds."""
    per_model: dict[tuple[str, str], list[tuple[float, float, float, float]]] = {}
    for seed, (val_rows, vectors) in seeds.items():
        yv, a = y[val_rows], first[seed]
        b = ~a
        on_a = {model: _both(yv[a], s[a]) for model, s in vectors.items()}
        for model, s in vectors.items():
            per_model.setdefault(model, []).append((*on_a[model], *_both(yv[b], s[b])))
        for emb in sorted({e for e, _ in vectors}):
            ranked = []
            for (e, det), (auc, pr) in on_a.items():
                if e == emb and np.isfinite(auc) and auc > CHANCE:
                    ranked.append((member_key(auc, pr), det))
            members = [det for _, det in sorted(ranked, key=lambda t: (-t[0], t[1]))[:size]]
            if len(members) < 2:
                continue
            benign = a & (yv == 0)
            fused = np.mean([place(vectors[(emb, d)][benign], vectors[(emb, d)]) for d in members], axis=0)
            per_model.setdefault((emb, FUSION), []).append((*_both(yv[a], fused[a]), *_both(yv[b], fused[b])))
    complete = {m: np.array(v) for m, v in per_model.items() if len(v) == len(seeds)}
    chosen = max(complete, key=lambda m: choose_key(float(np.nanmean(complete[m][:, 0])),
                                                    float(np.nanmean(complete[m][:, 1]))))
    return float(np.nanmean(complete[chosen][:, 2])), float(np.nanmean(complete[chosen][:, 3]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path, help="an aptray experiment's --out folder")
    parser.add_argument("--repeats", type=int, default=30, help="random halvings of each seed's validation rows")
    parser.add_argument("--fusion-size", type=int, default=3, help="members of a rank fusion (experiment's: 3)")
    args = parser.parse_args()

    results: dict[str, dict[str, tuple[float, float]]] = {}
    for scores in sorted(args.out.glob("scores/*/*/*/scores.parquet")):
        root = scores.parent
        name = str(root.relative_to(args.out / "scores"))
        y, seeds = target_vectors(root)
        if not seeds or min(int(y[rows].sum()) for rows, _ in seeds.values()) < 2:
            print(f"{name}: skipped (a seed has fewer than 2 malicious validation rows, or no scores of its own)")
            continue
        rng = np.random.default_rng(0)
        found: dict[str, list[tuple[float, float]]] = {rule: [] for rule in RULES}
        for _ in range(args.repeats):
            first = {seed: _halves(y[rows], rng) for seed, (rows, _) in seeds.items()}
            for rule, (member_key, choose_key) in RULES.items():
                found[rule].append(held_out(y, seeds, first, member_key, choose_key, args.fusion_size))
        results[name] = {rule: (float(np.mean([v[0] for v in vs])), float(np.mean([v[1] for v in vs])))
                         for rule, vs in found.items()}
        print(f"{name:28s} " + "  ".join(f"{rule} {a:.3f} / {p:.3f}" for rule, (a, p) in results[name].items()),
              flush=True)
    if not results:
        raise SystemExit(f"{args.out}: no target with scores to compare")
    print(f"\nheld-out half, mean over {len(results)} targets (AUC-ROC / PR-AUC), {args.repeats} halvings:")
    for rule in RULES:
        auc = np.mean([r[rule][0] for r in results.values()])
        pr = np.mean([r[rule][1] for r in results.values()])
        up = sum(r[rule][1] > r["auc"][1] + 1e-9 for r in results.values())
        down = sum(r[rule][1] < r["auc"][1] - 1e-9 for r in results.values())
        print(f"  {rule:8s} {auc:.4f} / {pr:.4f}   PR-AUC against 'auc': {up} up, {down} down")


if __name__ == "__main__":
    main()
