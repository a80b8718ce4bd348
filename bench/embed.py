"""Embedding-stage benchmark: the seed's code path vs aptray's pipeline, and the Ray overhead.

For each input (real ADAPT and BETH files from ../shared/data, and the synthetic generator at 10x/100x the
BETH subset's size) the trace is templatized once (not timed), then the same sentences are embedded by

(a) the seed's code path: pandas reads the sentences and one ``SentenceTransformer.encode`` runs over every
    row in this process (sentence-transformers is imported before any timing, so the seed never pays the
    import: this favours the seed). Inputs longer than ``--seed-max-rows`` are encoded on their first
    ``--seed-max-rows`` rows and the full time is extrapolated: model load + encode time x rows / measured
    rows (its cost is linear in rows);
(b) aptray ``run_embed`` (Ray Data, distinct sentences only, encoder actors, join back to every row), twice:
    **cold** (a fresh job: the encoder actors start, import sentence-transformers and load the model inside
    the job) and **warm** (a second job finding the actors that the first kept, ``embed.keep_warm_s``).

It prints events/s of the three and the ratios. On all-distinct sentences it prints aptray's sentences/s
(cold and warm) against a raw ``encode`` of the same sentences in this process (the Ray overhead; no cache).

``--backends torch,onnx,onnx-int8,openvino`` first puts the encoder backends side by side in this process:
the same all-distinct real sentences through each (exported once if missing), in interleaved rounds so a
busy machine slows them alike; it prints sentences/s (median round), the ratio to torch fp32 and the min/mean
cosine against it. ``--backends-only`` stops after that table. ``openvino-static`` adds OpenVINO static int8
(sentence-transformers' own export, calibrated on 300 of the same sentences; needs ``pip install datasets``),
which aptray does not offer: it is measured here to say why.

Usage::

    python bench/embed.py --model minilm [--scales 10,100] [--distinct 8000] [--actors 1]
    python bench/embed.py --model minilm,mpnet --backends torch,onnx,onnx-int8,openvino --backends-only
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

log = logging.getLogger("bench.embed")

DATA = Path(os.environ.get("APTRAY_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
BETH_SUBSET = DATA / "beth" / "testing_subset_STARAI" / "new_test_results.csv"
REAL_INPUTS: list[tuple[str, str, Path]] = [
    ("adapt bovia/cadets Event", "adapt", DATA / "darpa_tc_adapt" / "bovia" / "cadets" / "ProcessEvent.csv"),
    ("adapt bovia/trace Exec", "adapt", DATA / "darpa_tc_adapt" / "bovia" / "trace" / "ProcessExec.csv"),
    ("beth test subset", "beth", BETH_SUBSET),
]


def _out(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def seed_path(sentences_dir: Path, model_path: str, max_rows: int, threads: int) -> tuple[int, float]:
    """The seed's way: pandas, one encode over every row. Returns (rows measured, events/s over all rows)."""
    import pandas as pd
    import torch
    from sentence_transformers import SentenceTransformer

    torch.set_num_threads(threads)
    start = time.perf_counter()
    sentences = pd.read_parquet(sentences_dir, columns=["sentence"])["sentence"].tolist()
    model = SentenceTransformer(model_path, device="cpu", local_files_only=True)
    loaded = time.perf_counter()
    measured = sentences[:max_rows]
    model.encode(measured, batch_size=32, show_progress_bar=False)
    encode_s = (time.perf_counter() - loaded) * len(sentences) / max(1, len(measured))
    return len(measured), len(sentences) / (loaded - start + encode_s)


def raw_encode(sentences: list[str], model_path: str, threads: int) -> float:
    """Sentences/s of a plain in-process encode (model load included, as in the pipeline)."""
    import torch
    from sentence_transformers import SentenceTransformer

    torch.set_num_threads(threads)
    start = time.perf_counter()
    model = SentenceTransformer(model_path, device="cpu", local_files_only=True)
    model.encode(sentences, batch_size=32, show_progress_bar=False)
    return len(sentences) / (time.perf_counter() - start)


def backends_side_by_side(model: str, variants: list[str], sentences: list[str], threads: int, rounds: int = 3,
                          device: str = "cpu", batch_size: int = 32) -> list[dict[str, Any]]:
    """Sentences/s of each variant (``torch``, ``torch-bf16``, ``onnx``, ``onnx-int8``, ``onnx-o4``,
    ``openvino``) on the same sentences, interleaved over ``rounds``; ratio and cosine against the first."""
    import numpy as np

    from aptray.embed.encoder import SentenceEncoder
    from aptray.embed.export import available
    from aptray.embed.parity import cosines
    from aptray.embed.registry import resolve

    encoders: dict[str, Any] = {}
    rows: dict[str, dict[str, Any]] = {}
    for text in variants:
        name, _, dtype = text.partition("@")  # torch@bfloat16: a dtype for the torch backend
        static = name == STATIC
        backend, quantize = _variant("openvino" if static else name)
        if not available(backend):
            rows[text] = {"variant": text, "skipped": f"{backend.value} extra not installed"}
            continue
        t0 = time.perf_counter()
        spec = resolve(model, backend, quantize)
        if static:
            spec = static_openvino(spec, sentences)
        t1 = time.perf_counter()
        enc = SentenceEncoder(spec, device=device, dtype=dtype or "float32", threads=threads, lru_size=0,
                              batch_size=batch_size)
        enc.encode_distinct(sentences[:batch_size])  # warm-up (graph compilation, allocator)
        encoders[text] = enc
        rows[text] = {"variant": text, "revision": spec.revision, "export_s": round(t1 - t0, 2),
                      "load_s": round(time.perf_counter() - t1, 2), "times": []}
    vectors: dict[str, Any] = {}
    for _ in range(rounds):
        for text, enc in encoders.items():
            t0 = time.perf_counter()
            vectors[text] = enc.encode_distinct(sentences)
            rows[text]["times"].append(time.perf_counter() - t0)
    medians = {text: float(np.median(rows[text].pop("times"))) for text in encoders}
    ref = next(iter(encoders), "")
    for text in encoders:
        c = cosines(vectors[text], vectors[ref])
        rows[text].update(sps=round(len(sentences) / medians[text], 1), ratio=round(medians[ref] / medians[text], 2),
                          min_cosine=round(float(c.min()), 5), mean_cosine=round(float(c.mean()), 6))
    out = [{"model": model, **rows[text]} for text in variants]
    return out


#: Not an aptray backend: OpenVINO static int8, built here for the comparison only (:func:`static_openvino`).
STATIC = "openvino-static"


def static_openvino(spec: Any, sentences: list[str], samples: int = 300) -> Any:
    """The OpenVINO export of ``spec`` quantised to static int8 by sentence-transformers'
    ``export_static_quantized_openvino_model`` (NNCF post-training quantisation, its default config, calibrated
    on ``samples`` of ``sentences`` instead of the hub's GLUE set), in a temporary copy; needs ``datasets``."""
    import dataclasses

    from optimum.intel import OVQuantizationConfig
    from sentence_transformers import SentenceTransformer, export_static_quantized_openvino_model

    samples = min(samples, len(sentences))
    root = Path(tempfile.mkdtemp(prefix="aptray-bench-ovstatic-"))
    target = root / "model"
    shutil.copytree(spec.path, target)
    calib = root / "calibration"
    calib.mkdir()
    with (calib / "train.jsonl").open("w") as fh:
        for text in sentences[:: max(1, len(sentences) // samples)][:samples]:
            fh.write(json.dumps({"sentence": text}) + "\n")
    model = SentenceTransformer(str(target), backend="openvino", device="cpu", local_files_only=True,
                                model_kwargs={"file_name": spec.file_name})
    export_static_quantized_openvino_model(model, OVQuantizationConfig(num_samples=samples), str(target),
                                           dataset_name=str(calib), dataset_config_name="default",
                                           dataset_split="train", column_name="sentence")
    return dataclasses.replace(spec, path=str(target), file_name="openvino/openvino_model_qint8_quantized.xml",
                               revision=f"{spec.revision}-static")


def _variant(text: str) -> tuple[Any, Any]:
    from aptray.config import Backend, Quantize

    backend, _, quant = text.partition("-")
    return Backend(backend), Quantize(quant or "none")


def print_backends(rows: list[dict[str, Any]]) -> None:
    """The side-by-side table."""
    _out(f"{'model':40} {'variant':16} {'sent/s':>8} {'x torch':>8} {'min cos':>8} {'mean cos':>9} {'export s':>8}"
         f" {'load s':>7}")
    for r in rows:
        if "skipped" in r:
            _out(f"{r['model']:40} {r['variant']:16} skipped: {r['skipped']}")
            continue
        _out(f"{r['model']:40} {r['variant']:16} {r['sps']:>8} {r['ratio']:>8} {r['min_cosine']:>8} "
             f"{r['mean_cosine']:>9} {r['export_s']:>8} {r['load_s']:>7}")


def distinct_real_sentences(n: int, max_file_bytes: int | None = None) -> list[str]:
    """``n`` all-distinct sentences built from the real ADAPT/BETH templates (each made unique)."""
    from aptray.embed.parity import sample_sentences

    found = sample_sentences(DATA, max_file_bytes=max_file_bytes)
    base = sorted({s for v in found.values() for s in v}) or ["process event"]
    return [f"{base[i % len(base)]} (event {i})" for i in range(n)]


def templatize(source: str, uri: str, out: Path, cfg: Any) -> dict[str, Any]:
    from aptray.templating.job import run_templatize

    return run_templatize(source, uri, str(out), cfg)


def write_distinct(root: Path, n: int, base: list[str]) -> Path:
    """A templatize-shaped folder of ``n`` all-distinct sentences (real templates, each made unique)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from aptray.templating.base import sentence_hash

    sentences = [f"{base[i % len(base)]} (event {i})" for i in range(n)]
    table = pa.table({"record_id": [f"d{i}" for i in range(n)], "sentence": sentences,
                      "sentence_hash": sentence_hash(sentences),
                      "malicious": pa.array([0] * n, pa.int8()), "source_file": ["distinct"] * n,
                      "line": pa.array(range(n), pa.int64())})
    (root / "sentences").mkdir(parents=True)
    pq.write_table(table, root / "sentences" / "part-0.parquet")
    return root


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="minilm")
    parser.add_argument("--scales", default="10,100", help="synthetic sizes as multiples of the BETH subset")
    parser.add_argument("--seed-max-rows", type=int, default=30_000)
    parser.add_argument("--distinct", type=int, default=8000, help="all-distinct sentences for the overhead run")
    parser.add_argument("--keep-warm", type=float, default=120.0, help="embed.keep_warm_s of the aptray runs")
    parser.add_argument("--actors", type=int, default=1)
    parser.add_argument("--gpus-per-actor", type=float, default=0.0)
    parser.add_argument("--dtype", default="auto")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--skip-real", action="store_true")
    parser.add_argument("--workdir", default=None)
    parser.add_argument("--backends", default="", help="variants side by side, e.g. torch,onnx,onnx-int8,openvino")
    parser.add_argument("--backend-sentences", type=int, default=1000)
    parser.add_argument("--backend-rounds", type=int, default=3)
    parser.add_argument("--backends-only", action="store_true")
    args = parser.parse_args(argv)

    if args.backends:
        sentences = distinct_real_sentences(args.backend_sentences)
        _out(f"# backends side by side: {len(sentences)} all-distinct real sentences, {args.threads} threads, "
             f"{args.backend_rounds} interleaved rounds (median)")
        rows = [r for m in args.model.split(",")
                for r in backends_side_by_side(m, args.backends.split(","), sentences, args.threads,
                                               args.backend_rounds)]
        print_backends(rows)
        _out(json.dumps({"backends": rows}))
        if args.backends_only:
            return

    from aptray.config import AptrayConfig
    from aptray.embed.pool import stop_warm
    from aptray.embed.registry import resolve
    from aptray.logs import configure
    from aptray.runtime import init_ray

    configure(os.environ.get("APTRAY_LOG_LEVEL", "WARNING"))
    cfg = AptrayConfig.model_validate({"embed": {"model": args.model, "actors": args.actors,
                                                 "gpus_per_actor": args.gpus_per_actor, "dtype": args.dtype,
                                                 "torch_threads": max(1, args.threads // args.actors),
                                                 "keep_warm_s": args.keep_warm}})
    import sentence_transformers  # noqa: F401  (imported before any timing: neither in-process path pays it)

    spec = resolve(args.model)
    init_ray(cfg.ray)
    work = Path(args.workdir or tempfile.mkdtemp(prefix="aptray-bench-embed-"))
    work.mkdir(parents=True, exist_ok=True)
    _out(f"# model {spec.model_id} ({spec.dim}-d), {os.cpu_count()} cores, actors {args.actors}, "
         f"gpus/actor {args.gpus_per_actor}, work dir {work}")

    inputs: list[tuple[str, str, Path]] = [] if args.skip_real else [i for i in REAL_INPUTS if i[2].is_file()]
    from aptray.io.synthetic import generate

    base_rows = 6491
    for scale in (int(s) for s in args.scales.split(",") if s):
        path = work / f"synthetic_x{scale}.csv"
        if not path.exists():
            generate(path, base_rows * scale, seed=scale)
        inputs.append((f"synthetic x{scale}", "synthetic", path))

    _out(f"{'input':28} {'rows':>8} {'distinct':>8} {'seed ev/s':>10} {'cold ev/s':>10} {'ratio':>6}"
         f" {'cold s':>7} {'warm ev/s':>10} {'ratio':>6} {'warm s':>7}")
    results: list[dict[str, Any]] = []
    for name, source, path in inputs:
        tdir = work / f"tpl_{name.replace(' ', '_').replace('/', '_')}"
        if not (tdir / "manifest.json").exists():
            shutil.rmtree(tdir, ignore_errors=True)
            templatize(source, str(path), tdir, cfg)
        seed_rows, seed_eps = seed_path(tdir / "sentences", spec.path, args.seed_max_rows, args.threads)
        out = work / f"emb_{tdir.name}"
        cold, warm = cold_and_warm(str(tdir), str(out), cfg, spec)
        row = {"input": name, "rows": cold["rows"], "distinct": cold["distinct_sentences"],
               "seed_rows_measured": seed_rows, "seed_eps": round(seed_eps, 1)}
        for label, counts in (("cold", cold), ("warm", warm)):
            eps = counts["rows"] / counts["seconds"]
            row.update({f"{label}_eps": round(eps, 1), f"{label}_ratio": round(eps / seed_eps, 2),
                        f"{label}_seconds": counts["seconds"]})
        results.append(row)
        _out(f"{name:28} {row['rows']:>8} {row['distinct']:>8} {row['seed_eps']:>10} {row['cold_eps']:>10}"
             f" {row['cold_ratio']:>6} {row['cold_seconds']:>7} {row['warm_eps']:>10} {row['warm_ratio']:>6}"
             f" {row['warm_seconds']:>7}")

    import pyarrow.parquet as pq

    first = next((work / d / "sentences" for d in sorted(os.listdir(work)) if d.startswith("tpl_")), None)
    base = pq.read_table(first, columns=["sentence"]).column("sentence").to_pylist()[:500] if first else ["event"]
    ddir = work / f"distinct_{args.distinct}"
    if not ddir.exists():
        write_distinct(ddir, args.distinct, sorted(set(base)))
    sentences = pq.read_table(ddir / "sentences").column("sentence").to_pylist()
    raw_sps = raw_encode(sentences, spec.path, args.threads)
    cold, warm = cold_and_warm(str(ddir), str(work / "emb_distinct"), cfg, spec)
    overhead: dict[str, Any] = {"sentences": len(sentences), "raw_sps": round(raw_sps, 1)}
    for label, counts in (("cold", cold), ("warm", warm)):
        sps = counts["distinct_sentences"] / counts["seconds"]
        overhead.update({f"{label}_sps": round(sps, 1), f"{label}_ratio": round(sps / raw_sps, 3)})
    _out(f"all-distinct {overhead['sentences']} sentences: raw encode {overhead['raw_sps']}/s; aptray cold "
         f"{overhead['cold_sps']}/s (ratio {overhead['cold_ratio']}), warm {overhead['warm_sps']}/s "
         f"(ratio {overhead['warm_ratio']})")
    stop_warm(spec, cfg.embed)
    _out(json.dumps({"model": spec.model_id, "results": results, "all_distinct": overhead}))


def cold_and_warm(input_dir: str, out: str, cfg: Any, spec: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """``run_embed`` twice: a cold job (no encoder actors alive), then a warm one (the actors it kept)."""
    from aptray.embed.job import run_embed
    from aptray.embed.pool import stop_warm

    stop_warm(spec, cfg.embed)
    time.sleep(1.0)  # let the killed actors' processes exit before timing
    return run_embed(input_dir, out, cfg), run_embed(input_dir, out, cfg)


if __name__ == "__main__":
    main()
