"""GPU encoder throughput: sentences/s of each model x numerics on ``num_gpus`` encoder actors (one GPU each).

Each variant runs on aptray's own encoder pool (:class:`aptray.embed.pool.EncoderPool`, the embed job's
broadcast path) with ``embed.gpus_per_actor = 1`` and one actor per GPU; the pool is warmed first (model load
and CUDA start are not timed), then ``--sentences`` all-distinct real sentences are encoded. Variants:
``torch`` (fp32), ``torch@bfloat16``, ``torch@float16``, ``onnx-o4`` (optimised fp16 ONNX, built once; needs
onnxruntime-gpu). Prints sentences/s in all and per GPU, and the cosine of each variant against fp32 torch.

``--device cpu`` runs the same code on CPU actors (what the tests run where no GPU is); ``--in-process``
skips Ray (one encoder in this process).

Usage::

    python bench/gpu.py --models mpnet,minilm --variants torch,torch@bfloat16,torch@float16,onnx-o4
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench/embed.py's helpers, when run by path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")


def _out(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def gpu_count() -> int:
    """CUDA devices torch sees (0 without CUDA)."""
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def pool_throughput(model: str, variant: str, sentences: list[str], actors: int, device: str,
                    encode_batch_size: int, chunk: int) -> tuple[float, Any]:
    """Sentences/s of ``actors`` encoder actors on ``sentences`` (warm), and the vectors in input order."""
    import numpy as np
    import pyarrow as pa
    from embed import _variant  # type: ignore[import-not-found]

    from aptray.config import EmbedConfig
    from aptray.embed.cache import HASH, embedding_matrix
    from aptray.embed.pool import EncoderPool
    from aptray.embed.registry import resolve

    name, _, dtype = variant.partition("@")
    backend, quantize = _variant(name)
    spec = resolve(model, backend, quantize)
    gpu = device.startswith("cuda")
    cfg = EmbedConfig(model=model, backend=backend, quantize=quantize, actors=actors, dtype=dtype or "float32",
                      gpus_per_actor=1.0 if gpu else 0.0, cpus_per_actor=1.0 if gpu else 0.5,
                      encode_batch_size=encode_batch_size, batch_size=chunk)
    hashes = [f"{i:032x}" for i in range(len(sentences))]
    table = pa.table({HASH: hashes, "sentence": sentences})
    pool = EncoderPool(spec, cfg)
    try:
        pool.encode(table.slice(0, min(len(sentences), encode_batch_size * actors)))  # load, CUDA start, warm-up
        t0 = time.perf_counter()
        out = pool.encode(table)
        seconds = time.perf_counter() - t0
    finally:
        pool.close()
    order = {h: i for i, h in enumerate(out.column(HASH).to_pylist())}
    vectors = embedding_matrix(out.column("embedding"))[np.array([order[h] for h in hashes])]
    return len(sentences) / seconds, vectors


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="mpnet,minilm")
    parser.add_argument("--variants", default="torch,torch@bfloat16,torch@float16,onnx-o4")
    parser.add_argument("--sentences", type=int, default=50_000)
    parser.add_argument("--actors", type=int, default=0, help="encoder actors (0: one per GPU)")
    parser.add_argument("--device", default="cuda", choices=("cuda", "cpu"))
    parser.add_argument("--encode-batch-size", type=int, default=512)
    parser.add_argument("--chunk", type=int, default=8192, help="sentences per actor call")
    parser.add_argument("--in-process", action="store_true", help="one encoder in this process, no Ray")
    parser.add_argument("--max-file-bytes", type=int, default=None, help="template sample: skip larger data files")
    args = parser.parse_args(argv)

    from embed import _variant, backends_side_by_side, distinct_real_sentences, print_backends

    from aptray.embed.export import available
    from aptray.embed.parity import cosines
    from aptray.logs import configure

    configure(os.environ.get("APTRAY_LOG_LEVEL", "WARNING"))
    gpus = gpu_count()
    if args.device == "cuda" and not gpus:
        raise SystemExit("no CUDA device: run with --device cpu for the CPU path")
    sentences = distinct_real_sentences(args.sentences, args.max_file_bytes)
    if args.in_process:
        rows = [r for m in args.models.split(",") for r in backends_side_by_side(
            m, args.variants.split(","), sentences, threads=os.cpu_count() or 1, rounds=1, device=args.device,
            batch_size=args.encode_batch_size)]
        print_backends(rows)
        _out(json.dumps({"device": args.device, "in_process": True, "results": rows}))
        return

    from aptray.config import AptrayConfig
    from aptray.runtime import init_ray

    actors = args.actors or max(1, gpus)
    cluster = AptrayConfig.model_validate({"ray": {"num_gpus": gpus or None}}).ray
    init_ray(cluster)
    _out(f"# {len(sentences)} all-distinct sentences, {actors} actor(s) on {args.device} ({gpus} GPU(s) seen)")
    _out(f"{'model':8} {'variant':16} {'sent/s':>10} {'per GPU':>10} {'min cos':>8} {'mean cos':>9}")
    results: list[dict[str, Any]] = []
    for model in args.models.split(","):
        reference = None
        for variant in args.variants.split(","):
            backend, _ = _variant(variant.partition("@")[0])
            if not available(backend):
                _out(f"{model:8} {variant:16} skipped: the {backend.value} extra is not installed")
                continue
            try:
                sps, vectors = pool_throughput(model, variant, sentences, actors, args.device, args.encode_batch_size,
                                               args.chunk)
            except Exception as exc:  # one variant failing (no onnxruntime-gpu, say) must not hide the others
                _out(f"{model:8} {variant:16} failed: {type(exc).__name__}: {str(exc)[:200]}")
                continue
            reference = vectors if reference is None else reference
            c = cosines(vectors, reference)
            row = {"model": model, "variant": variant, "sps": round(sps, 1), "per_gpu": round(sps / max(1, actors), 1),
                   "min_cosine": round(float(c.min()), 5), "mean_cosine": round(float(c.mean()), 6)}
            results.append(row)
            _out(f"{model:8} {variant:16} {row['sps']:>10} {row['per_gpu']:>10} {row['min_cosine']:>8} "
                 f"{row['mean_cosine']:>9}")
    _out(json.dumps({"device": args.device, "actors": actors, "gpus": gpus, "results": results}))


if __name__ == "__main__":
    main()
