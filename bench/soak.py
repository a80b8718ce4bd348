"""Soak test of the online detector: sustained mixed load, status codes, latency and the replica's memory.

    .venv/bin/python bench/soak.py [--artifact DIR] [--requests 10000] [--concurrency 32] [--seconds 1200]
                                   [--invalid 0.35] [--replicas 1] [--kill-replica-at 0.5] [--seed 0]

Starts a local Ray cluster and the Serve app (production builder, API key on, every format accepted by the one
BETH artifact), then sends ``--requests`` requests from ``--concurrency`` closed-loop clients (aiohttp), bounded
by ``--seconds``. The requests are drawn with a seeded RNG from real lines of ``$APTRAY_SHARED_DATA`` (BETH,
auditd, CDM, sentences): about ``--invalid`` of them are invalid on purpose, each kind expecting its own 4xx
(malformed JSON 422, wrong field types 422, unknown format 422, too many events 422, body too large 413, wrong
content type 415, no API key 401), and a share of the valid ones carry broken lines (200 with ``rejected``).

Reports, as JSON lines and a table: status codes per request kind (and any answer that is not the expected
one), client errors and timeouts (a request that hangs past ``--timeout`` counts as one), p50/p99 latency, and
the replica's resident memory after a warm-up and after the soak (sampled through the run, max too).

``--kill-replica-at F`` SIGKILLs the replica's process once a fraction F of the requests was sent, and reports
what the clients saw from then until Serve answered 200 again: the failed requests, how long recovery took and
the slowest request (none may hang). Without ``--artifact`` a tiny AE is trained first (about a minute).

Targets: no 5xx and no timeout without a kill; the replica's memory after within 10% of after the warm-up.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import serve as load_bench  # bench/serve.py: the load generator's helpers

REPLICA_CLASS = "ServeReplica:aptray:OnlineDetector"


@dataclass
class Req:
    """One request to send: its kind, body bytes, headers and the status codes that are the right answer."""

    kind: str
    body: bytes
    headers: dict[str, str]
    expect: tuple[int, ...]


def _lines(rel: str, limit: int) -> list[str]:
    path = load_bench.shared_data() / rel
    if not path.is_file():
        return []
    return [ln for ln in path.read_text(errors="replace").splitlines()[:limit] if ln.strip()]


def requests(n: int, invalid: float, seed: int, max_events: int, max_bytes: int) -> list[Req]:
    """``n`` requests drawn with ``random.Random(seed)``: valid ones of every format, and invalid ones."""
    rng = random.Random(seed)
    beth = load_bench.beth_lines(3000)
    audit = _lines("auditd/ait_lds_v2_russellmitchell/intranet_server_audit.log", 2000)
    cdm = _lines("cdm/cadets_cdm20/direct_pipe.cdm.json", 700)
    auth = {"Authorization": f"Bearer {load_bench.KEY}", "Content-Type": "application/json"}
    sentences = ["Process <pid> (sshd), child of process 1, opened /etc/shadow.",
                 'Process <pid> (cron) executed /bin/sh with the command line "sh -c run-parts /etc/cron.hourly".']

    def dumps(obj: Any) -> bytes:
        return json.dumps(obj).encode()

    def broken(line: str) -> str:
        cut = rng.randrange(len(line)) if line else 0
        return rng.choice([line[:cut], line.replace(",", ";"), line + '"', "\x00" + line, line[::-1]])

    def valid() -> Req:
        fmt = rng.choice(["beth", "beth", "beth", "sentence", "auditd", "cdm"] if audit and cdm else ["beth"])
        k = rng.randint(1, 4)
        if fmt == "beth":
            events: list[Any] = [rng.choice(beth) for _ in range(k)]
        elif fmt == "auditd":
            i = rng.randrange(len(audit) - 12)
            events = audit[i: i + rng.randint(1, 12)]
        elif fmt == "cdm":
            i = rng.randrange(len(cdm) - 20)
            events = cdm[i: i + rng.randint(1, 20)]
        else:
            events = [rng.choice(sentences) for _ in range(k)]
        kind = f"valid:{fmt}"
        if rng.random() < 0.25:  # a broken line or a blank item among good ones: still 200, with `rejected`
            events[rng.randrange(len(events))] = rng.choice([broken(str(events[0])), "", "   "])
            kind += "+broken"
        return Req(kind, dumps({"format": fmt, "events": events}), auth, (200,))

    def bad() -> Req:
        line = rng.choice(beth)
        choice = rng.randrange(9)
        if choice == 0:
            return Req("bad:json", dumps({"format": "beth", "events": [line]})[:-rng.randint(1, 20)], auth, (422,))
        if choice == 1:
            body = rng.choice([{"format": 7, "events": [line]}, {"format": "beth", "events": line},
                               {"format": "beth", "events": [42]}, {"format": "beth", "events": [line], "header": 5},
                               {"format": "beth", "events": [[line]]}, {"format": "beth", "events": [line],
                                                                        "model": "../x"}])
            return Req("bad:types", dumps(body), auth, (422,))
        if choice == 2:
            return Req("bad:format", dumps({"format": "pcap", "events": [line]}), auth, (422,))
        if choice == 3:
            return Req("bad:missing", dumps(rng.choice([{"events": [line]}, {"format": "beth"},
                                                        {"format": "beth", "events": []}, [], "x", None])),
                       auth, (422,))
        if choice == 4:
            return Req("bad:too-many", dumps({"format": "sentence", "events": ["a"] * (max_events + 1)}), auth, (422,))
        if choice == 5:
            return Req("bad:too-large", dumps({"format": "sentence", "events": ["x" * (max_bytes // 4)] * 5}), auth,
                       (413,))
        if choice == 6:
            ctype = rng.choice(["text/plain", "application/x-www-form-urlencoded", "text/csv"])
            return Req("bad:content-type", dumps({"format": "beth", "events": [line]}),
                       {**auth, "Content-Type": ctype}, (415,))
        if choice == 7:
            headers = rng.choice([{"Content-Type": "application/json"},
                                  {"Content-Type": "application/json", "Authorization": "Bearer wrong-key-000000"}])
            return Req("bad:auth", dumps({"format": "beth", "events": [line]}), headers, (401,))
        depth = rng.choice([100, 5000, 100_000])
        return Req("bad:nesting", b'{"format": "cdm", "events": [' + b"[" * depth + b"]" * depth + b"]}", auth,
                   (400, 422))

    return [bad() if rng.random() < invalid else valid() for _ in range(n)]


@dataclass
class Outcome:
    """What the clients saw."""

    codes: Counter[str] = field(default_factory=Counter)
    unexpected: Counter[str] = field(default_factory=Counter)
    latencies: list[float] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    timeline: list[tuple[float, int, bool]] = field(default_factory=list)  # (finish time, status, as expected)


async def soak(url: str, reqs: list[Req], concurrency: int, seconds: float, timeout: float,
               on_sent: Any = None) -> tuple[Outcome, float]:
    """Send ``reqs`` from ``concurrency`` closed-loop clients; returns what they saw and the wall time."""
    import aiohttp

    out = Outcome()
    sent = 0
    deadline = time.perf_counter() + seconds
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=timeout)) as client:

        async def worker() -> None:
            nonlocal sent
            while sent < len(reqs) and time.perf_counter() < deadline:
                req = reqs[sent]
                sent += 1
                if on_sent is not None:
                    on_sent(sent)
                t0 = time.perf_counter()
                try:
                    async with client.post(url, data=req.body, headers=req.headers) as r:
                        await r.read()
                        status = r.status
                except TimeoutError:
                    out.errors["timeout"] += 1
                    status = 0
                except aiohttp.ClientError as exc:
                    out.errors[type(exc).__name__] += 1
                    status = 0
                now = time.perf_counter()
                out.latencies.append((now - t0) * 1000)
                out.timeline.append((now, status, status in req.expect))
                if status:
                    out.codes[f"{req.kind} {status}"] += 1
                    if status not in req.expect:
                        out.unexpected[f"{req.kind} {status}"] += 1

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return out, time.perf_counter() - start


def replica_pids() -> list[int]:
    """PIDs of the live replicas of the aptray app (Ray titles a replica's process ``ray::<actor class>``)."""
    import psutil

    pids = []
    for proc in psutil.process_iter(["pid", "cmdline"]):
        cmd = proc.info["cmdline"] or []
        if cmd and cmd[0].startswith(f"ray::{REPLICA_CLASS}"):
            pids.append(int(proc.info["pid"]))
    return pids


def rss_mb(pids: list[int]) -> float:
    """Resident memory of the processes, MB (0 for one that is gone)."""
    import psutil

    total = 0
    for pid in pids:
        try:
            total += psutil.Process(pid).memory_info().rss
        except psutil.Error:
            continue
    return round(total / 2**20, 1)


class Sampler(threading.Thread):
    """Samples the replicas' resident memory every ``every`` seconds (the max is reported)."""

    def __init__(self, every: float = 2.0) -> None:
        super().__init__(daemon=True)
        self.every, self.max_mb, self.stop = every, 0.0, threading.Event()

    def run(self) -> None:
        while not self.stop.wait(self.every):
            try:
                self.max_mb = max(self.max_mb, rss_mb(replica_pids()))
            except Exception:  # the state API can be briefly unavailable; a missed sample is harmless
                continue


def main() -> None:
    """Run the soak and print the figures."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--artifact", help="detector artifact (default: train a tiny AE first)")
    ap.add_argument("--requests", type=int, default=10_000)
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--seconds", type=float, default=1200.0, help="bound on the soak's wall time")
    ap.add_argument("--timeout", type=float, default=30.0, help="client timeout per request (a hang)")
    ap.add_argument("--invalid", type=float, default=0.35, help="share of invalid requests")
    ap.add_argument("--replicas", type=int, default=1)
    ap.add_argument("--kill-replica-at", type=float, default=None, help="SIGKILL a replica after this share sent")
    ap.add_argument("--warmup", type=int, default=300, help="requests before the first memory reading")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    load_bench.offline_quiet()
    tmp = Path(tempfile.mkdtemp(prefix="aptray-soak-"))
    artifact = args.artifact or load_bench.train_tiny(tmp / "artifact")
    max_events, max_bytes = 256, 256 * 1024
    reqs = requests(args.requests, args.invalid, args.seed, max_events, max_bytes)
    warm = requests(args.warmup, args.invalid, args.seed + 1, max_events, max_bytes)
    print(json.dumps({"artifact": artifact, "requests": len(reqs), "kinds": Counter(r.kind.split("+")[0]
                                                                                    for r in reqs)}), flush=True)

    import ray
    from ray import serve

    from aptray.config import RayConfig, ServeConfig
    from aptray.runtime import init_ray
    from aptray.serve.app import run

    key_file = tmp / "keys"
    key_file.write_text(load_bench.KEY + "\n")
    port = load_bench.free_port()
    cfg = ServeConfig(artifact=artifact, port=port, api_key_file=str(key_file), num_cpus=0.5,
                      replicas=args.replicas, torch_threads=1, allow_format_mismatch=True,
                      max_events_per_request=max_events, max_request_bytes=max_bytes)
    init_ray(RayConfig(num_cpus=2))
    run(cfg)
    url = f"http://127.0.0.1:{port}/v1/score"
    try:
        asyncio.run(soak(url, warm, args.concurrency, 300, args.timeout))
        pids = replica_pids()
        before = rss_mb(pids)
        sampler = Sampler()
        sampler.start()
        killed: dict[str, float] = {}

        def on_sent(n: int) -> None:
            if args.kill_replica_at is not None and not killed and n >= args.kill_replica_at * len(reqs):
                os.kill(pids[0], signal.SIGKILL)
                killed["at"] = time.perf_counter()

        outcome, wall = asyncio.run(soak(url, reqs, args.concurrency, args.seconds, args.timeout, on_sent))
        sampler.stop.set()
        after_pids = replica_pids()
        after = rss_mb(after_pids)
    finally:
        serve.shutdown()
        ray.shutdown()

    import numpy as np

    lat = np.asarray(outcome.latencies)
    statuses = Counter(code.rsplit(" ", 1)[1] for code in outcome.codes.elements())
    five = sum(n for s, n in statuses.items() if s.startswith("5"))
    result: dict[str, Any] = {
        "requests": len(outcome.latencies), "concurrency": args.concurrency, "seconds": round(wall, 1),
        "requests_per_s": round(len(outcome.latencies) / wall, 1), "status": dict(sorted(statuses.items())),
        "5xx": five, "client_errors": dict(outcome.errors), "unexpected": dict(outcome.unexpected),
        "p50_ms": round(float(np.percentile(lat, 50)), 1), "p99_ms": round(float(np.percentile(lat, 99)), 1),
        "max_ms": round(float(lat.max()), 1), "replicas": args.replicas,
        "replica_rss_mb": {"after_warmup": before, "after": after, "max": max(sampler.max_mb, after),
                           "change": round((after - before) / before, 3) if before else None},
    }
    if killed:
        at = killed["at"]
        after_kill = [(t, s, ok) for t, s, ok in outcome.timeline if t >= at]
        # recovered: the first 200 answered after the kill by a request sent after it (a new replica's answer)
        recovered = next((t for t, s, _ in after_kill if s == 200 and t - at > 1.0), None)
        failed = [s for t, s, ok in after_kill if not ok and (recovered is None or t <= recovered)]
        result["kill"] = {"killed_pid": pids[0], "replica_pids_after": after_pids,
                          "unexpected_after_kill": dict(Counter(str(s) for s in failed)),
                          "recovered_after_s": round(recovered - at, 2) if recovered else None}
    print(json.dumps(result), flush=True)
    print(f"\n{result['requests']} requests at concurrency {args.concurrency} in {result['seconds']} s "
          f"({result['requests_per_s']}/s): p50 {result['p50_ms']} ms, p99 {result['p99_ms']} ms, "
          f"max {result['max_ms']} ms; 5xx: {five}; client errors: {dict(outcome.errors) or 0}")
    print(f"replica RSS: {before} MB after warm-up, {after} MB after the soak (max {result['replica_rss_mb']['max']})")
    print(f"{'request kind':<28} {'status':>6} {'count':>6}")
    for code, n in sorted(outcome.codes.items()):
        kind, status = code.rsplit(" ", 1)
        print(f"{kind:<28} {status:>6} {n:>6}")
    if outcome.unexpected:
        print(f"unexpected answers: {dict(outcome.unexpected)}")


if __name__ == "__main__":
    main()
