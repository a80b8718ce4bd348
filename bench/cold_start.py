"""Cold start of an encoder actor: from the actor's creation to its first encoded sentence, and where it goes.

Each round starts a fresh local Ray cluster in a child process (``aptray.runtime.init_ray``), waits
``--settle`` seconds (a cluster that came up earlier, e.g. for the ingest stage: its idle workers have started),
then creates one actor that builds the embed stage's :class:`aptray.embed.encoder.SentenceEncoder` and encodes
one sentence. Two settings run in interleaved rounds, so a busy machine slows them alike:

- **plain**: the workers import nothing ahead; the actor imports torch and sentence-transformers itself;
- **preload**: ``ray.preload_modules: [sentence_transformers]`` (Ray's ``preload_python_modules``): every worker
  imports it when it starts, and the actor lands on such a worker.

It prints the median of each part: worker placement (creation to ``__init__``), ``import torch``,
``import sentence_transformers``, model load, first encode, and the total; and the ratio plain / preload.

Usage::

    python bench/cold_start.py [--model minilm] [--rounds 3] [--settle 25]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from typing import Any

PARTS = ("placement_s", "import_torch_s", "import_st_s", "load_s", "encode_s", "total_s")


def probe(model: str, preload: bool, settle: float) -> dict[str, Any]:
    """One fresh cluster, one actor: its parts in seconds (runs in a child process)."""
    import ray

    from aptray.config import RayConfig
    from aptray.runtime import init_ray

    init_ray(RayConfig(num_cpus=os.cpu_count() or 1,
                       preload_modules=["sentence_transformers"] if preload else []))
    time.sleep(settle)

    @ray.remote(num_cpus=0.5)
    class Encoder:
        def __init__(self, created: float) -> None:
            entered = time.time()
            preloaded = "sentence_transformers" in sys.modules
            import torch  # noqa: F401

            a = time.time()
            import sentence_transformers  # noqa: F401

            b = time.time()
            from aptray.embed.encoder import SentenceEncoder
            from aptray.embed.registry import resolve

            self.encoder = SentenceEncoder(resolve(model), threads=1)
            c = time.time()
            self.parts = {"preloaded": preloaded, "placement_s": entered - created, "import_torch_s": a - entered,
                          "import_st_s": b - a, "load_s": c - b}

        def first(self, created: float) -> dict[str, Any]:
            a = time.time()
            self.encoder.encode(["Process <pid> (cmd.exe) executed whoami"])
            b = time.time()
            return {**self.parts, "encode_s": b - a, "total_s": b - created}

    created = time.time()
    actor = Encoder.remote(created)  # type: ignore[attr-defined]
    result: dict[str, Any] = ray.get(actor.first.remote(created))
    ray.shutdown()
    return result


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="minilm")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--settle", type=float, default=25.0, help="seconds between cluster start and the actor")
    ap.add_argument("--probe", choices=["plain", "preload"], help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.probe:
        print(json.dumps(probe(args.model, args.probe == "preload", args.settle)), flush=True)
        return
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "RAY_USAGE_STATS_ENABLED": "0"}
    runs: dict[str, list[dict[str, Any]]] = {"plain": [], "preload": []}
    for r in range(args.rounds):
        for mode in runs:
            out = subprocess.run([sys.executable, __file__, "--probe", mode, "--model", args.model, "--settle",
                                  str(args.settle)], env=env, capture_output=True, text=True, check=True)
            res = json.loads(out.stdout.strip().splitlines()[-1])
            runs[mode].append(res)
            print(f"round {r + 1} {mode:8s} " + " ".join(f"{k} {res[k]:.2f}" for k in PARTS)
                  + f" preloaded {res['preloaded']}", flush=True)
    med = {mode: {k: statistics.median(x[k] for x in rs) for k in PARTS} for mode, rs in runs.items()}
    print(f"\nmedian of {args.rounds} rounds ({args.model}, first actor on a cluster {args.settle:.0f} s old)")
    print(f"{'':8s} " + " ".join(f"{k[:-2]:>12s}" for k in PARTS))
    for mode, m in med.items():
        print(f"{mode:8s} " + " ".join(f"{m[k]:12.2f}" for k in PARTS))
    print(f"plain / preload total: {med['plain']['total_s'] / med['preload']['total_s']:.1f}x")


if __name__ == "__main__":
    main()
