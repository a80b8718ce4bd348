"""Benchmark: Ray Train DDP throughput of the seed autoencoder, 1 vs 2 workers, printed side by side.

    .venv/bin/python bench/train.py [--embeddings EMB] [--rows 20000] [--dim 384] [--epochs 3]

Without ``--embeddings`` it trains on Gaussian rows of the MiniLM dimension (throughput does not depend
on the values). ``samples/s (epoch)`` is the last epoch's training rows per second of training time
(all workers together); ``samples/s (wall)`` divides rows x epochs by the whole ``fit`` including worker
start-up and checkpointing.
"""

from __future__ import annotations

import argparse
import logging
import os
import tempfile

import numpy as np


def main() -> None:
    """Run the benchmark and print one table."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--embeddings", help="embed output folder (default: synthetic rows)")
    ap.add_argument("--rows", type=int, default=20000)
    ap.add_argument("--dim", type=int, default=384)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--cpus-per-worker", type=float, default=0.5)
    ap.add_argument("--num-cpus", type=float, default=None, help="local Ray cluster CPUs (default: all)")
    ap.add_argument("--gpus", action="store_true")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

    from aptray.config import RayConfig, TrainConfig
    from aptray.runtime import init_ray
    from aptray.train.trainer import train_ddp

    if args.embeddings:
        from aptray.train.data import load_embeddings

        data = load_embeddings(args.embeddings)
        x = data.X[~(data.y == 1)]
    else:
        x = np.random.default_rng(0).normal(size=(args.rows, args.dim)).astype(np.float32)
    x_val = x[: max(1, len(x) // 10)]
    init_ray(RayConfig(num_cpus=args.num_cpus, num_gpus=1 if args.gpus else None))
    rows: list[tuple[int, float, float, float]] = []
    with tempfile.TemporaryDirectory() as storage:
        for w in args.workers:
            cfg = TrainConfig(model="ae", epochs=args.epochs, batch_size=args.batch_size, workers=w, patience=0,
                              cpus_per_worker=args.cpus_per_worker, use_gpu=args.gpus, storage_path=storage)
            res = train_ddp("ae", x, x_val, cfg)
            per_epoch = float(res.history["samples_per_s_last_epoch"] or 0.0)
            rows.append((w, per_epoch, len(x) * args.epochs / res.seconds, res.history["final_train_loss"]))
    print(f"rows={len(x)} dim={x.shape[1]} epochs={args.epochs} batch={args.batch_size} "
          f"cpus/worker={args.cpus_per_worker} gpu={args.gpus} cpus={os.cpu_count()}")
    print(f"{'workers':>7} {'samples/s (epoch)':>18} {'samples/s (wall)':>17} {'final loss':>11}")
    for w, pe, wall, loss in rows:
        print(f"{w:>7} {pe:>18.0f} {wall:>17.0f} {loss:>11.5f}")


if __name__ == "__main__":
    main()
