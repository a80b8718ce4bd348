"""Benchmark of the batch score job: events/s at 1x, 4x, 16x input and peak memory of driver and workers.

    .venv/bin/python bench/score.py [--base 2000] [--scales 1,4,16] [--real ../shared/data/beth]

The input at scale k is k synthetic BETH-format files of ``--base`` events each (and, with ``--real``,
the real BETH files concatenated k times). One artifact (MiniLM + AE) is trained once on benign synthetic
events; each scale is scored into a fresh output folder in the same Ray cluster, so the figures are side
by side. Cost per event must stay flat across scales and memory bounded: the last column is the ratio of
seconds per event to the 1x run.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from scale import Peaks  # bench/scale.py: RSS of the driver and of each kind of Ray worker


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", type=int, default=2000, help="events per synthetic file")
    parser.add_argument("--scales", default="1,4,16")
    parser.add_argument("--real", default=None, help="a folder of real BETH CSVs to concatenate k times")
    parser.add_argument("--workdir", default=None)
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    from aptray.config import load_config
    from aptray.embed.job import run_embed
    from aptray.io.synthetic import generate
    from aptray.runtime import init_ray
    from aptray.score import run_score
    from aptray.train import run_train

    root = Path(args.workdir or tempfile.mkdtemp(prefix="aptray-bench-score-"))
    cfg = load_config(None, {"ingest.source": "synthetic", "train.epochs": 3})
    init_ray(cfg.ray)
    train = generate(root / "train" / "synthetic_train.csv", 3000, seed=1, attack_fraction=0.0)["path"]
    run_embed(train, str(root / "emb"), cfg, source="synthetic")
    run_train(str(root / "emb"), str(root / "model"), cfg)
    score_cfg = load_config(None, {"ingest.source": "synthetic", "score.artifact": str(root / "model")})

    rows = []
    for k in (int(s) for s in args.scales.split(",")):
        inp = root / f"in-{k}"
        shutil.rmtree(inp, ignore_errors=True)
        for i in range(k):
            generate(inp / f"synthetic_{i}.csv", args.base, seed=100 + i, attack_fraction=0.02)
        if args.real:
            for i in range(k):
                for src in sorted(Path(args.real).glob("*.csv")):
                    shutil.copy(src, inp / f"real{i}_{src.name}")
        out = root / f"out-{k}"
        shutil.rmtree(out, ignore_errors=True)
        with Peaks() as mem:
            t0 = time.perf_counter()
            result = run_score(str(inp), str(out), score_cfg)
            seconds = time.perf_counter() - t0
        rows.append({"scale": k, "rows_read": result["rows_read"], "seconds": round(seconds, 2),
                     "events_per_s": round(result["rows_read"] / seconds, 1),
                     "driver_peak_rss_mb": round(mem.driver / 2**20),
                     "worker_peak_rss_mb": round(max(mem.workers.values(), default=0) / 2**20)})
    base = rows[0]["seconds"] / rows[0]["rows_read"]
    header = ("scale", "rows", "seconds", "events/s", "driver MB", "worker MB", "s/event vs 1x")
    print(" ".join(f"{h:>9}" for h in header))
    for r in rows:
        ratio = (r["seconds"] / r["rows_read"]) / base
        cells = (r["scale"], r["rows_read"], r["seconds"], r["events_per_s"], r["driver_peak_rss_mb"],
                 r["worker_peak_rss_mb"], f"{ratio:.2f}")
        print(" ".join(f"{c:>9}" for c in cells))
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
