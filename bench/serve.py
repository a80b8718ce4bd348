"""Load test of the online detector on 127.0.0.1: latency percentiles and events/s vs raw batched throughput.

    .venv/bin/python bench/serve.py [--artifact DIR] [--levels 1 8 32] [--requests 300] [--seconds 30]
                                    [--events 1] [--no-access-log] [--paths default proxy]
                                    [--threads N] [--num-cpus X] [--raw-threads 1 2]

Starts a local Ray cluster and the Serve app (production builder, API key on) the way ``aptray serve`` does (the
replica answers on its port itself, Serve's proxy on another; the config's CPUs and torch threads, by default the
machine's cores, unless ``--num-cpus`` / ``--threads``), then loads both paths in turn, the default first, with a
closed-loop load generator (aiohttp, asyncio) at each concurrency level: every request carries ``--events`` BETH
events (real rows of ``$APTRAY_SHARED_DATA/beth``), each level is bounded by ``--requests`` and ``--seconds``.
Beside it, the raw batched model throughput: the same sentences through the same encoder and detector in this
process, in batches of ``max_batch_size`` (and of one request's events, and of what each level can fill), no HTTP,
at each of ``--raw-threads`` torch threads; the best of them is the reference (the raw model at its best on this
machine, whatever the replica runs with). The replica's embedding LRU is off by default (``--cache``) so both sides
encode every sentence. Without ``--artifact`` a tiny AE is trained first on MiniLM embeddings of the BETH sample
rows (about a minute).

Each level also reports the CPU milliseconds per request of every process (this one, the load generator; the
replica; Serve's proxy; the rest of the Ray cluster) and the cores another user's work kept busy meanwhile
(``other``): on a shared machine that column says whether a run's figures can be compared.

Prints one JSON object per line and two summary tables. Targets (issue 20; CPU, MiniLM, one event per request),
through the default path in the same run: p50 at concurrency 1 within 1.3x the raw model's single-event time
(``p50/raw``), p99 under 100 ms, and at concurrency 32 at least 0.8x the raw batch-64 throughput (``vs raw``).
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

KEY = "bench-key-0123456789abcdef"
REPO = Path(__file__).resolve().parent.parent


def shared_data() -> Path:
    """``$APTRAY_SHARED_DATA`` or ``../shared/data`` beside the checkout."""
    env = os.environ.get("APTRAY_SHARED_DATA")
    return Path(env) if env else REPO.parent / "shared" / "data"


def beth_lines(limit: int) -> list[str]:
    """Real BETH rows (no header): the STARAI test subset, else the head samples."""
    root = shared_data() / "beth"
    files = [root / "testing_subset_STARAI" / "new_test_results.csv",
             *sorted((root / "head_samples_BethSecure").glob("labelled_*_data.csv"))]
    out: list[str] = []
    for f in files:
        if f.is_file():
            lines = f.read_text().splitlines()
            header = lines[0].split(",")
            # keep the 16 standard columns only (the STARAI file has three extra ones)
            import csv

            idx = [header.index(c) for c in _beth_columns() if c in header]
            for row in csv.reader(lines[1:]):
                buf = io.StringIO()
                csv.writer(buf, lineterminator="").writerow([row[i] for i in idx])
                out.append(buf.getvalue())
                if len(out) >= limit:
                    return out
    if not out:
        sys.exit(f"no BETH data under {root}")
    return out


def _beth_columns() -> tuple[str, ...]:
    from aptray.io.beth import COLUMNS

    return COLUMNS


def train_tiny(out: Path) -> str:
    """A small AE on MiniLM embeddings of the BETH sample rows (in-process, no Ray jobs)."""
    from aptray.artifacts import save_detector
    from aptray.config import TemplateConfig
    from aptray.detectors.reconstruction import ReconstructionDetector
    from aptray.embed.encoder import SentenceEncoder
    from aptray.embed.registry import resolve
    from aptray.serve.parse import prepare
    from aptray.serve.schemas import EventFormat
    from aptray.templating.base import TEMPLATE_VERSION

    prepared = prepare(EventFormat.BETH, beth_lines(2000), TemplateConfig())
    spec = resolve("minilm")
    X = SentenceEncoder(spec).encode(prepared.sentences)
    det = ReconstructionDetector("ae", hidden=[128, 32], epochs=10, seed=0).fit(X)
    meta = {"embedder": {"model_id": spec.model_id, "revision": spec.revision, "dim": spec.dim},
            "template_version": TEMPLATE_VERSION, "template": TemplateConfig().model_dump(mode="json"),
            "data": {"source": "beth", "aspect": None}}
    return save_detector(det, str(out), meta)


def offline_quiet() -> None:
    """The benchmark's process settings: hub offline, no usage stats, warnings-only logging."""
    import logging

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    logging.basicConfig(level=logging.WARNING)


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


#: Process groups whose CPU time a level reports, by a part of their command line (first match wins).
GROUPS = (("replica", "ServeReplica"), ("proxy", "ProxyActor"))


def cpu_seconds() -> dict[str, float]:
    """CPU seconds (user + system) so far of this process (the load generator and Ray driver: ``client``), the
    replica, Serve's proxy, the rest of the Ray cluster this process started (``ray``), and the whole machine
    (``machine``; what is not ours is another user's)."""
    import psutil

    out = dict.fromkeys(("client", "replica", "proxy", "ray"), 0.0)
    me = psutil.Process()
    for p in [me, *me.children(recursive=True)]:
        try:
            times, cmd = p.cpu_times(), " ".join(p.cmdline())
        except psutil.Error:  # gone meanwhile
            continue
        group = "client" if p.pid == me.pid else next((g for g, part in GROUPS if part in cmd), "ray")
        out[group] += times.user + times.system
    m = psutil.cpu_times()
    out["machine"] = m.user + m.system + getattr(m, "nice", 0.0) + getattr(m, "irq", 0.0) + getattr(m, "softirq", 0.0)
    return out


def cpu_per_request(before: dict[str, float], after: dict[str, float], requests: int, wall: float
                    ) -> dict[str, Any]:
    """CPU ms per request of each group between two :func:`cpu_seconds`, and the cores the machine was busy with
    work not ours (``other_cores``: another user's jobs on a shared machine)."""
    d = {k: after[k] - before[k] for k in after}
    ours = sum(v for k, v in d.items() if k != "machine")
    per = {f"cpu_ms_{k}": round(1000 * v / max(requests, 1), 2) for k, v in d.items() if k != "machine"}
    return {**per, "cores_ours": round(ours / wall, 2), "other_cores": round(max(d["machine"] - ours, 0.0) / wall, 2)}


def percentiles(lat_ms: list[float]) -> dict[str, float]:
    """p50/p95/p99/mean of latencies in ms."""
    a = np.asarray(lat_ms)
    return {"p50_ms": round(float(np.percentile(a, 50)), 2), "p95_ms": round(float(np.percentile(a, 95)), 2),
            "p99_ms": round(float(np.percentile(a, 99)), 2), "mean_ms": round(statistics.fmean(lat_ms), 2)}


async def load(url: str, payloads: list[dict[str, Any]], concurrency: int, max_requests: int,
               seconds: float) -> dict[str, Any]:
    """Closed loop: ``concurrency`` workers send requests until ``max_requests`` or ``seconds`` is reached.

    The client is aiohttp (lighter per request than httpx): it shares the machine's cores with the
    proxy and the replica, so a heavy client would be measured as server overhead.
    """
    import aiohttp

    latencies: list[float] = []
    replica_ms: list[float] = []
    codes: dict[int, int] = {}
    events = 0
    sent = 0
    deadline = time.perf_counter() + seconds
    bodies = [json.dumps(p).encode() for p in payloads]
    headers = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}
    connector = aiohttp.TCPConnector(limit=concurrency)
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout, headers=headers) as client:

        async def worker() -> None:
            nonlocal sent, events
            while sent < max_requests and time.perf_counter() < deadline:
                body = bodies[sent % len(bodies)]
                sent += 1
                t0 = time.perf_counter()
                async with client.post(url, data=body) as r:
                    data = await r.read()
                latencies.append((time.perf_counter() - t0) * 1000)
                codes[r.status] = codes.get(r.status, 0) + 1
                if r.status == 200:
                    answer = json.loads(data)
                    events += len(answer["results"])
                    replica_ms.append(float(answer["took_ms"]))

        health = url.rsplit("/v1/", 1)[0] + "/healthz"
        async with client.get(health) as r:
            before = await r.json()
        cpu_before = cpu_seconds()
        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        wall = time.perf_counter() - start
        cpu = cpu_per_request(cpu_before, cpu_seconds(), len(latencies), wall)
        async with client.get(health) as r:
            after = await r.json()
    batches = after["micro_batches"] - before["micro_batches"]
    return {"concurrency": concurrency, "requests": len(latencies), "events": events, "seconds": round(wall, 2),
            "events_per_s": round(events / wall, 1), "status": codes, **percentiles(latencies),
            "replica_p50_ms": round(float(np.percentile(replica_ms, 50)), 2) if replica_ms else None,
            "events_per_micro_batch": round((after["events"] - before["events"]) / batches, 1) if batches else None,
            "model_busy": round((after["model_busy_s"] - before["model_busy_s"]) / wall, 2),
            "model_ms_per_event": round(1000 * (after["model_busy_s"] - before["model_busy_s"])
                                        / max(1, after["events"] - before["events"]), 2),
            "parse_busy": round((after["parse_busy_s"] - before["parse_busy_s"]) / wall, 2), **cpu}


def raw_throughput(artifact: str, sentences: list[str], batches: list[int], threads: list[int],
                   seconds: float) -> dict[int, dict[str, Any]]:
    """Sentences/s of encoder + detector at each batch size and torch thread count, in this process (no HTTP, no
    LRU); each batch size's ``events_per_s`` is its best over ``threads`` (the raw model at its best here)."""
    import torch

    from aptray.serve.loader import ArtifactLoader

    loaded = ArtifactLoader(artifact, device="cpu", batch_size=64, cache_size=0)()
    model = loaded.models[loaded.default]
    out: dict[int, dict[str, Any]] = {}
    for batch in sorted(set(batches)):
        by_threads: dict[int, float] = {}
        for t in threads:
            torch.set_num_threads(t)
            model.encoder.encode(sentences[:batch])  # warm up
            done = 0
            start = time.perf_counter()
            while time.perf_counter() - start < seconds:
                chunk = sentences[(done % len(sentences)):(done % len(sentences)) + batch] or sentences[:batch]
                model.detector.decision_function(model.encoder.encode(chunk))
                done += len(chunk)
            by_threads[t] = round(done / (time.perf_counter() - start), 1)
        out[batch] = {"raw_batch": batch, "events_per_s": max(by_threads.values()),
                      "events_per_s_by_threads": by_threads}
    return out


def main() -> None:
    """Run the benchmark and print the figures."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--artifact", help="detector artifact (default: train a tiny AE first)")
    ap.add_argument("--levels", type=int, nargs="+", default=[1, 8, 32])
    ap.add_argument("--requests", type=int, default=300, help="max requests per level")
    ap.add_argument("--seconds", type=float, default=30.0, help="max seconds per level")
    ap.add_argument("--events", type=int, default=1, help="events per request")
    ap.add_argument("--threads", type=int, default=None,
                    help="the replica's torch threads (default: the config's, the machine's cores per replica)")
    ap.add_argument("--num-cpus", type=float, default=None, help="CPUs the replica reserves (default: the config's)")
    ap.add_argument("--raw-threads", type=int, nargs="+", default=[1, os.cpu_count() or 1],
                    help="torch threads the raw model is measured at; the best of them is the reference")
    ap.add_argument("--max-batch-size", type=int, default=64)
    ap.add_argument("--wait", type=float, default=None, help="batch_wait_timeout_s (default: the config's)")
    ap.add_argument("--refill", type=float, default=None, help="batch_refill (default: the config's)")
    ap.add_argument("--omp-active", action="store_true",
                    help="leave the replica's OpenMP threads spinning between passes (serve.omp_passive false)")
    ap.add_argument("--cache", action="store_true", help="keep the replica's embedding LRU on")
    ap.add_argument("--no-access-log", action="store_true", help="turn Serve's per-request access log off")
    ap.add_argument("--paths", nargs="+", choices=["default", "proxy"], default=["default", "proxy"],
                    help="which HTTP paths to load (default: both, the default path first)")
    args = ap.parse_args()

    offline_quiet()
    tmp = Path(tempfile.mkdtemp(prefix="aptray-bench-"))
    t0 = time.perf_counter()
    artifact = args.artifact or train_tiny(tmp / "artifact")
    print(json.dumps({"artifact": artifact, "prepare_s": round(time.perf_counter() - t0, 1)}), flush=True)

    lines = beth_lines(6000)
    payloads = [{"format": "beth", "events": lines[i : i + args.events]}
                for i in range(0, len(lines) - args.events + 1, args.events)]
    from aptray.config import ServeConfig, TemplateConfig
    from aptray.serve.parse import prepare
    from aptray.serve.schemas import EventFormat

    sentences = prepare(EventFormat.BETH, lines, TemplateConfig()).sentences
    # raw at the configured batch size (the target's reference), and at the largest batch each level can fill
    fill = {c: min(c * args.events, args.max_batch_size) for c in args.levels}
    raws = raw_throughput(artifact, sentences, [args.max_batch_size, args.events, *fill.values()], args.raw_threads,
                          min(args.seconds, 10))
    for r in raws.values():
        print(json.dumps(r), flush=True)
    raw = raws[args.max_batch_size]

    import ray
    from ray import serve

    from aptray.config import RayConfig
    from aptray.runtime import init_ray
    from aptray.serve.app import run

    key_file = tmp / "keys"
    key_file.write_text(KEY + "\n")
    port = free_port()
    chosen = {"batch_wait_timeout_s": args.wait, "batch_refill": args.refill, "torch_threads": args.threads,
              "num_cpus": args.num_cpus, "omp_passive": False if args.omp_active else None}
    overrides: dict[str, Any] = {k: v for k, v in chosen.items() if v is not None}
    cfg = ServeConfig(artifact=artifact, port=port, proxy_port=free_port(), api_key_file=str(key_file),
                      max_batch_size=args.max_batch_size,
                      cache_size=100_000 if args.cache else 0, access_log=not args.no_access_log, **overrides)
    from aptray.commands.serve import default_ingress, serve_urls
    from aptray.embed.encoder import node_threads
    from aptray.serve.app import direct_ingress_env

    default_ingress(cfg)  # what `aptray serve` runs: the replica on --port, the proxy beside it
    os.environ.update(direct_ingress_env(cfg))
    init_ray(RayConfig(num_cpus=2))
    t0 = time.perf_counter()
    run(cfg)
    print(json.dumps({"serve_ready_s": round(time.perf_counter() - t0, 1), "batch_wait_timeout_s":
                      cfg.batch_wait_timeout_s, "batch_refill": cfg.batch_refill, "max_batch_size": cfg.max_batch_size,
                      "access_log": cfg.access_log, "num_cpus": cfg.num_cpus, "omp_passive": cfg.omp_passive,
                      "torch_threads": node_threads(cfg.replicas_per_node(), cfg.torch_threads)}), flush=True)
    urls = serve_urls(cfg)
    paths = {"default": f"{urls['url']}/v1/score", "proxy": f"{urls['proxy_url']}/v1/score"}
    import urllib.error
    import urllib.request

    try:  # the replica's own port runs the same app: no key, no answer
        urllib.request.urlopen(urllib.request.Request(paths["default"], data=b"{}", method="POST",
                                                      headers={"Content-Type": "application/json"}), timeout=30)
        unauthorised = 200
    except urllib.error.HTTPError as exc:
        unauthorised = exc.code
    print(json.dumps({"default_path_without_key": unauthorised}), flush=True)
    results = []
    try:
        for path in args.paths:
            url = paths[path]
            asyncio.run(load(url, payloads, 1, 20, 10))  # warm-up
            for c in args.levels:
                res = {"path": path, **asyncio.run(load(url, payloads, c, max(args.requests, 4 * c), args.seconds))}
                res["vs_raw"] = round(res["events_per_s"] / raw["events_per_s"], 2)
                res["vs_raw_at_fill"] = round(res["events_per_s"] / raws[fill[c]]["events_per_s"], 2)
                res["raw_ms_at_fill"] = round(1000 / raws[fill[c]]["events_per_s"], 2)
                # latency against the raw model's own time for one request's events (the c=1 target's reference)
                res["p50_vs_raw"] = (round(res["p50_ms"] * raws[args.events]["events_per_s"] / 1000 / args.events, 2)
                                     if c == 1 else None)
                results.append(res)
                print(json.dumps(res), flush=True)
    finally:
        serve.shutdown()
        ray.shutdown()
    print("\nraw batched (best of torch threads): " + ", ".join(
        f"batch {b}: {r['events_per_s']} events/s {r['events_per_s_by_threads']}" for b, r in raws.items()))
    print(f"{args.events} event(s) per request; 'vs raw' = events/s / raw at batch {args.max_batch_size}; "
          "'vs fill' = / raw at batch min(concurrency x events, max batch), the most a level can fill")
    print(f"{'path':>6} {'conc':>5} {'req':>5} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} {'replica p50':>11} "
          f"{'ev/batch':>8} {'events/s':>9} {'vs raw':>7} {'vs fill':>7}  status")
    for r in results:
        print(f"{r['path']:>6} {r['concurrency']:>5} {r['requests']:>5} {r['p50_ms']:>8} {r['p95_ms']:>8} "
              f"{r['p99_ms']:>8} {r['replica_p50_ms']!s:>11} {r['events_per_micro_batch']!s:>8} {r['events_per_s']:>9} "
              f"{r['vs_raw']:>7} {r['vs_raw_at_fill']:>7}  {r['status']}")
    print(f"'p50/raw' = p50 / the raw model's time for one request's events (batch {args.events}); CPU ms per "
          "request of each process (client: this process, the load generator); 'other' = cores busy with work not "
          "ours (another user's jobs); 'busy' = share of the time the replica's model passes ran, 'ms/ev' = their "
          "milliseconds per event (the raw model's at the level's fill in brackets): near 1 busy and ms/ev above "
          "raw is the model slowed by the request path on its cores")
    print(f"{'path':>6} {'conc':>5} {'p50/raw':>7} {'client':>7} {'replica':>7} {'proxy':>6} {'ray':>6} "
          f"{'cores':>5} {'other':>5} {'busy':>5} {'ms/ev (raw)':>14}")
    for r in results:
        print(f"{r['path']:>6} {r['concurrency']:>5} {r['p50_vs_raw']!s:>7} {r['cpu_ms_client']:>7} "
              f"{r['cpu_ms_replica']:>7} {r['cpu_ms_proxy']:>6} {r['cpu_ms_ray']:>6} {r['cores_ours']:>5} "
              f"{r['other_cores']:>5} {r['model_busy']:>5} {r['model_ms_per_event']:>6} ({r['raw_ms_at_fill']})")


if __name__ == "__main__":
    main()
