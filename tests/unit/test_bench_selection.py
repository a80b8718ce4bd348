"""bench/selection.py, the nested validation of the selection rule, on a small experiment folder it writes: the
model that ranks every attack first on one half of validation is the one each rule chooses, and the script reads
no test row."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[2]


def _experiment(out: Path) -> None:
    rng = np.random.default_rng(1)
    n = 120
    y = np.zeros(n, dtype=np.int8)
    y[::7] = 1  # 18 attacks, odd and even rows
    target = out / "scores" / "a" / "b" / "All"
    target.mkdir(parents=True)
    pq.write_table(pa.table({"row": np.arange(n), "record_id": [f"r{i}" for i in range(n)],
                             "sentence": ["s"] * n, "malicious": y}), target / "rows.parquet")
    cols: dict[str, list] = {k: [] for k in ("protocol", "embedder", "detector", "seed", "split", "row", "score")}
    for seed in range(2):
        val = np.arange(seed, n, 2)  # each seed's validation rows: 9 attacks
        for det, score in (("knn", y[val] + rng.random(len(val)) * 0.5),  # every attack above every benign row
                           ("ae", rng.random(len(val))), ("rarity", rng.random(len(val)))):
            for split, rows, s in (("val", val, score), ("test", val, 1.0 - y[val])):  # test: wrong on purpose
                for k, v in (("protocol", "benign-split"), ("embedder", "minilm"), ("detector", det),
                             ("seed", seed), ("split", split)):
                    cols[k] += [v] * len(rows)
                cols["row"] += rows.tolist()
                cols["score"] += np.asarray(s, dtype=np.float64).tolist()
    pq.write_table(pa.table(cols), target / "scores.parquet")


def test_each_rule_chooses_the_model_that_ranks_the_attacks_first(tmp_path: Path) -> None:
    _experiment(tmp_path)
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "selection.py"), str(tmp_path), "--repeats", "3"],
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    line = next(x for x in proc.stdout.splitlines() if x.startswith("a/b/All"))
    # the held-out half's figures of knn (1.000 / 1.000), not of the test split's scores (which rank attacks last)
    assert line.split()[1:] == ["auc", "1.000", "/", "1.000", "pr", "1.000", "/", "1.000", "auc+pr", "1.000", "/",
                                "1.000"]
    assert "mean over 1 targets" in proc.stdout
