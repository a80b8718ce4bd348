"""Parity of each encoder backend with fp32 torch on the real ADAPT and BETH sentences of ../shared/data.

For each model and each variant (onnx, onnx-int8, openvino; built once through sentence-transformers if
missing), every distinct sentence of every dataset is encoded by the variant and by fp32 torch; the min and
mean cosine per dataset and overall are printed. ``--record`` writes the result as the variant's
``parity.json`` (what lets a detector trained on one backend accept another's embeddings).

Usage::

    python bench/parity.py --models minilm,mpnet --variants onnx,onnx-int8,openvino [--record]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

DATA = Path(os.environ.get("APTRAY_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))


def parse_variant(text: str) -> tuple[Any, Any]:
    """``onnx``, ``onnx-int8``, ``onnx-o4``, ``openvino``, ``torch`` -> (Backend, Quantize)."""
    from aptray.config import Backend, Quantize

    backend, _, quant = text.partition("-")
    return Backend(backend), Quantize(quant or "none")


def _out(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="minilm")
    parser.add_argument("--variants", default="onnx,onnx-int8,openvino")
    parser.add_argument("--per-dataset", type=int, default=None, help="at most this many sentences per dataset")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--record", action="store_true", help="write each variant's parity.json")
    args = parser.parse_args(argv)

    from aptray.embed.encoder import SentenceEncoder
    from aptray.embed.export import available
    from aptray.embed.parity import measure, record, sample_sentences
    from aptray.embed.registry import resolve

    datasets = sample_sentences(DATA, args.per_dataset)
    _out(f"# {sum(map(len, datasets.values()))} distinct sentences in {len(datasets)} datasets from {DATA}")
    results: list[dict[str, Any]] = []
    for model in args.models.split(","):
        reference = SentenceEncoder(resolve(model), threads=args.threads)  # its LRU keeps the reference vectors
        for text in args.variants.split(","):
            backend, quantize = parse_variant(text)
            if not available(backend):
                _out(f"{model} {text}: skipped (the {backend.value} extra is not installed)")
                continue
            t0 = time.perf_counter()
            spec = resolve(model, backend, quantize)
            built = time.perf_counter() - t0
            result = measure(SentenceEncoder(spec, threads=args.threads, lru_size=0), reference, datasets)
            _out(f"{model} {text} ({spec.revision}, ready in {built:.1f} s): min cosine {result['min_cosine']:.4f}, "
                 f"mean {result['mean_cosine']:.5f} over {result['sentences']} sentences; parity {result['parity']}")
            for name, r in result["datasets"].items():
                _out(f"    {name:28} {r['sentences']:>5}  min {r['min_cosine']:.4f}  mean {r['mean_cosine']:.5f}")
            if args.record:
                _out(f"    recorded {record(spec, result)}")
            results.append({"model": model, "variant": text, "revision": spec.revision, **result})
    _out(json.dumps(results))


if __name__ == "__main__":
    main()
