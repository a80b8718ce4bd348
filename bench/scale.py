"""Benchmark: the whole pipeline (embed a raw trace -> train -> score) at 1x, 4x and 16x, per source.

    .venv/bin/python bench/scale.py [--mb 4] [--scales 1 4 16] [--sources beth cdm auditd] [--model ae]
                                    [--workdir DIR] [--keep]

The input of each source at scale k is about ``k x --mb`` MB built from the real rows under
``$APTRAY_SHARED_DATA`` (or ../shared/data), every copy re-keyed so that joins and groupings stay as selective
as in a real trace while the sentences repeat as they do there: BETH CSV rows (process, thread and parent ids
and timestamps shifted per copy), CDM JSON (fresh UUIDs, as bench/ingest.py does) and auditd (fresh serials).

For every source and scale, in one local Ray cluster and side by side, three stages run through the package's
own job functions, each into a fresh folder:

- embed: ``run_embed(raw, source=...)``: read, templatize, distinct sentences, encode (MiniLM), write;
- train: ``run_train`` with ``--model`` (distinct sentences weighted by their counts);
- score: ``run_score`` of the same raw trace with that artifact.

Per stage it prints events/s, seconds per event relative to the source's smallest scale, the driver's peak RSS,
the peak RSS of each kind of Ray worker (by process title: the encoder actors, Ray Data's map workers, the
scorer, idle workers) and the bytes the object store spilled during the stage.

Targets (issue 16): driver peak RSS flat from 1x to 16x (within 1.2x); cost per event flat within 25% from
4x to 16x.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import json
import re
import shutil
import sys
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ingest import shared_data  # bench/ingest.py: the data folder (and, in generate, its CDM/auditd copies)

SUFFIX = {"beth": "csv", "cdm": "json", "auditd": "log"}
BETH_HEADER = ("timestamp,processId,threadId,parentProcessId,userId,mountNamespace,processName,hostName,eventId,"
               "eventName,stackAddresses,argsNum,returnValue,args,sus,evil")
TITLE = re.compile(r"^ray::([A-Za-z_][A-Za-z0-9_]*)")


def beth_seed() -> list[tuple[float, int, int, int, str]]:
    """The real labelled BETH rows (16-column files and the STARAI subset, its extra columns dropped), split into
    the four numeric key fields that a copy shifts and the rest of the line."""
    data = shared_data() / "beth"
    names = BETH_HEADER.split(",")
    files = sorted((data / "head_samples_BethSecure").glob("labelled_*_data.csv"))
    files += sorted((data / "testing_subset_STARAI").glob("*.csv"))
    rows: list[tuple[float, int, int, int, str]] = []
    for path in files:
        with open(path, newline="", encoding="utf-8") as fh:
            for rec in csv.DictReader(fh):
                buf = io.StringIO()
                csv.writer(buf, lineterminator="").writerow([rec[n] for n in names[4:]])
                rows.append((float(rec["timestamp"]), int(rec["processId"]), int(rec["threadId"]),
                             int(rec["parentProcessId"]), buf.getvalue()))
    return rows


def generate(source: str, out: Path, mb: float, files: int = 4) -> int:
    """Write about ``mb`` MB of re-keyed copies of the source's real rows into ``files`` files; the lines."""
    if source != "beth":
        from ingest import generate as generate_raw

        return generate_raw(source, out, mb, files)
    seed = beth_seed()
    target = int(mb * 1e6)
    out.mkdir(parents=True, exist_ok=True)
    written = lines = copy = 0
    with contextlib.ExitStack() as stack:
        handles = [stack.enter_context(open(out / f"part-{i:03d}.csv", "w", encoding="utf-8")) for i in range(files)]
        for h in handles:
            h.write(BETH_HEADER + "\n")
        while written < target:
            shift = copy * 1_000_000
            text = "".join(f"{ts + copy * 10_000:.6f},{pid + shift},{tid + shift},{ppid + shift if ppid > 1 else ppid},"
                           f"{rest}\n" for ts, pid, tid, ppid, rest in seed)
            handles[copy % files].write(text)
            written += len(text)
            lines += len(seed)
            copy += 1
    return lines


class Peaks:
    """Samples the RSS of this process and of every Ray worker process, by the worker's kind (process title)."""

    def __init__(self, interval: float = 0.25) -> None:
        self.interval = interval
        self.driver = 0
        self.workers: dict[str, int] = defaultdict(int)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        me = psutil.Process()
        while not self._stop.is_set():
            self.driver = max(self.driver, me.memory_info().rss)
            for proc in psutil.process_iter(["cmdline"]):
                try:
                    m = TITLE.match(" ".join(proc.info["cmdline"] or []))
                    if m:
                        self.workers[m[1]] = max(self.workers[m[1]], proc.memory_info().rss)
                except psutil.Error:
                    continue
            self._stop.wait(self.interval)

    def __enter__(self) -> Peaks:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def spilled_bytes() -> int:
    """Bytes the object store has spilled since the cluster started."""
    from ray._private.internal_api import get_memory_info_reply, get_state_from_address

    return int(get_memory_info_reply(get_state_from_address()).store_stats.spilled_bytes_total)


def stage(name: str, events: int, fn: Any) -> dict[str, Any]:
    """Run one stage under the samplers; its figures."""
    before = spilled_bytes()
    with Peaks() as mem:
        t0 = time.perf_counter()
        result = fn()
        seconds = time.perf_counter() - t0
    return {"stage": name, "events": events, "seconds": round(seconds, 2),
            "events_per_s": round(events / seconds, 1) if seconds else None,
            "driver_mb": round(mem.driver / 2**20), "workers_mb": {k: round(v / 2**20) for k, v in
                                                                 sorted(mem.workers.items())},
            "spilled_mb": round((spilled_bytes() - before) / 2**20, 1), "result": result}


def run_stages(source: str, work: Path, lines: int, model: str) -> tuple[dict[str, Any], ...]:
    """embed, train and score ``work/in`` (``lines`` input lines of ``source``) into folders under ``work``."""
    from aptray.config import load_config
    from aptray.embed.job import run_embed
    from aptray.score import run_score
    from aptray.train import run_train

    cfg = load_config(None, {"ingest.source": source, "train.model": model})
    emb = stage("embed", lines, lambda: run_embed(str(work / "in"), str(work / "emb"), cfg, source=source))
    tr = stage("train", int(emb["result"]["rows"]), lambda: run_train(str(work / "emb"), str(work / "model"), cfg))
    scfg = load_config(None, {"ingest.source": source, "train.model": model, "score.artifact": str(work / "model")})
    sc = stage("score", lines, lambda: run_score(str(work / "in"), str(work / "out"), scfg))
    return emb, tr, sc


def main() -> None:
    """Entry point: generate, run the stages per source and scale, print JSON lines and a table."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mb", type=float, default=4.0, help="input MB per source at 1x (default 4)")
    parser.add_argument("--scales", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--sources", nargs="+", choices=sorted(SUFFIX), default=["beth", "cdm", "auditd"])
    parser.add_argument("--model", default="ae")
    parser.add_argument("--workdir", default=None)
    parser.add_argument("--keep", action="store_true", help="keep the generated inputs and outputs")
    args = parser.parse_args()

    from aptray.config import load_config
    from aptray.logs import configure
    from aptray.runtime import init_ray

    configure("WARNING")
    root = Path(args.workdir or tempfile.mkdtemp(prefix="aptray-bench-scale-"))
    init_ray(load_config().ray)
    figures: list[dict[str, Any]] = []
    try:
        for source in args.sources:
            for k in args.scales:
                work = root / f"{source}-{k}x"
                shutil.rmtree(work, ignore_errors=True)
                lines = generate(source, work / "in", args.mb * k)
                size = sum(p.stat().st_size for p in (work / "in").iterdir())
                emb, tr, sc = run_stages(source, work, lines, args.model)
                for fig in (emb, tr, sc):
                    res = fig.pop("result")
                    fig.update(source=source, scale=k, input_mb=round(size / 1e6, 1), lines=lines)
                    if fig["stage"] == "embed":
                        fig.update(rows=res["rows"], distinct=res["distinct_sentences"], encoded=res["encoded"])
                    elif fig["stage"] == "train":
                        fig.update(distinct=res.get("distinct_sentences"), trainer=res.get("trainer"))
                    else:
                        fig.update(rows=res["rows_read"], alerts=res["alerts"], quarantined=res["rows_quarantined"])
                    print(json.dumps(fig), flush=True)
                    figures.append(fig)
                if not args.keep:
                    shutil.rmtree(work / "in", ignore_errors=True)
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    print_table(figures)


def print_table(figures: list[dict[str, Any]]) -> None:
    """One line per source, stage and scale; cost per event relative to the source's smallest scale."""
    base: dict[tuple[str, str], float] = {}
    header = ("source", "stage", "scale", "MB", "events", "seconds", "events/s", "s/ev vs 1st", "driver MB",
              "spill MB", "workers MB")
    print("\n" + " | ".join(header))
    for f in figures:
        per = f["seconds"] / max(f["events"], 1)
        ratio = per / base.setdefault((f["source"], f["stage"]), per)
        workers = ", ".join(f"{k} {v}" for k, v in f["workers_mb"].items())
        cells = (f["source"], f["stage"], f"{f['scale']}x", f["input_mb"], f["events"], f["seconds"],
                 f["events_per_s"], f"{ratio:.2f}", f["driver_mb"], f["spilled_mb"], workers)
        print(" | ".join(str(c) for c in cells))


if __name__ == "__main__":
    main()
