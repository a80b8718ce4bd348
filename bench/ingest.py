"""Benchmark: records/s of the raw-trace readers (CDM JSON, auditd) on a generated multi-GB-shaped input.

The input is made by repeating the real samples under ``$APTRAY_SHARED_DATA`` (or ../shared/data) with
every copy re-keyed (fresh CDM UUIDs, fresh audit serials) so that joins and groupings stay as selective as
in a real trace, split over several files like a release. Default: about 8 MB per source (well under a
minute); ``--mb 2000`` for a multi-GB run. ``--source avro`` writes the same re-keyed THEIA CDM20 records (the
real Avro container's) twice, as Avro containers (Engagement 5's format) and as JSON lines, and reads both side
by side under each join plan (:func:`avro_vs_json`).

    .venv/bin/python bench/ingest.py [--mb 8] [--files 4] [--source cdm|auditd|both|avro] [--aspect All]
        [--join auto|one-task|shuffled]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import re
import tempfile
import time
from pathlib import Path
from typing import Any

DASHED = re.compile(r"[0-9a-fA-F]{8}(-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})")
SERIAL = re.compile(r"msg=audit\((\d+(?:\.\d+)?):(\d+)\)")


def shared_data() -> Path:
    """The real data folder."""
    env = os.environ.get("APTRAY_SHARED_DATA")
    return Path(env) if env else Path(__file__).resolve().parent.parent.parent / "shared" / "data"


def rekey(source: str, text: str, copy: int) -> str:
    """Copy ``copy`` of the seed text: CDM UUIDs get a new first group, audit serials a new range."""

    def uuid(m: re.Match[str]) -> str:
        return f"{copy:08x}{m[1]}"

    def serial(m: re.Match[str]) -> str:
        return f"msg=audit({m[1]}:{int(m[2]) + copy * 100_000_000})"

    return DASHED.sub(uuid, text) if source == "cdm" else SERIAL.sub(serial, text)


def generate(source: str, out: Path, mb: float, files: int) -> int:
    """Write about ``mb`` MB of re-keyed copies of the real samples into ``files`` files; return the lines."""
    data = shared_data()
    if source == "cdm":
        seeds = [p for d in ("cadets_cdm20", "cadets_cdm18") for p in sorted((data / "cdm" / d).glob("*.json"))]
    else:
        seeds = [p for d in ("spade_checksum_inputs", "ait_lds_v2_russellmitchell", "laurel")
                 for p in sorted((data / "auditd" / d).iterdir()) if p.suffix in (".log", ".txt")]
    seed_text = "".join(p.read_text(encoding="utf-8", errors="replace") for p in seeds)
    target = int(mb * 1e6)
    out.mkdir(parents=True, exist_ok=True)
    written = lines = copy = 0
    with contextlib.ExitStack() as stack:
        handles = [stack.enter_context(open(out / f"part-{i:03d}.{'json' if source == 'cdm' else 'log'}", "w",
                                            encoding="utf-8")) for i in range(files)]
        while written < target:
            text = rekey(source, seed_text, copy)
            handles[copy % files].write(text)
            written += len(text)
            lines += text.count("\n")
            copy += 1
    return lines


def generate_avro(out: Path, mb: float, files: int) -> tuple[int, Path, Path]:
    """Re-keyed copies of the real THEIA CDM20 container (every 16-byte UUID gets the copy in its first 4 bytes)
    until the Avro files hold about ``mb`` MB, written as Avro containers and again as Avro-JSON lines (UUIDs
    dashed hex, as the E3 release writes them); return the records and the two folders."""
    import fastavro

    from aptray.io.labels import normalize_uuid

    seed = shared_data() / "cdm" / "theia_cdm20_avro" / "ripe-unit-tests.bin"
    with seed.open("rb") as src:
        reader = fastavro.reader(src, return_record_name=True, handle_unicode_errors="replace")
        schema = reader.writer_schema
        records = list(reader)
    per_copy = seed.stat().st_size
    copies = max(1, round(mb * 1e6 / per_copy))

    def rekey_uuids(value: object, copy: int) -> object:
        if isinstance(value, bytes) and len(value) == 16:
            return copy.to_bytes(4, "big") + value[4:]
        if isinstance(value, tuple):
            return (value[0], rekey_uuids(value[1], copy))
        if isinstance(value, dict):
            return {k: rekey_uuids(v, copy) for k, v in value.items()}
        if isinstance(value, list):
            return [rekey_uuids(v, copy) for v in value]
        return value

    def avro_as_json(value: object) -> object:  # a named union branch (name, value) as Avro-JSON's {name: value}
        if isinstance(value, tuple):
            return {value[0]: avro_as_json(value[1])}
        if isinstance(value, dict):
            return {k: avro_as_json(v) for k, v in value.items()}
        if isinstance(value, list):
            return [avro_as_json(v) for v in value]
        return value

    def as_text(value: object) -> object:  # fixed(16) UUIDs dashed, other bytes hex
        return (normalize_uuid(value) if len(value) == 16 else value.hex()) if isinstance(value, bytes) else str(value)

    avro_dir, json_dir = out / "avro", out / "json"
    avro_dir.mkdir(parents=True, exist_ok=True)
    json_dir.mkdir(parents=True, exist_ok=True)
    parsed = fastavro.parse_schema(schema)
    for f in range(files):
        mine = [rekey_uuids(r, c + 1) for c in range(f, copies, files) for r in records]
        with (avro_dir / f"ta1-theia-1-e5-official-1.bin.{f + 1}").open("wb") as binary:
            fastavro.writer(binary, parsed, mine)
        with (json_dir / f"ta1-theia-1-e5-official-1.bin.{f + 1}.json").open("w", encoding="utf-8") as text:
            for r in mine:
                text.write(json.dumps(avro_as_json(r), default=as_text) + "\n")
    return copies * len(records), avro_dir, json_dir


def run(source: str, path: Path, aspect: str | None, **ingest: Any) -> dict[str, float]:
    """Read ``path`` with the source's reader to the end (``ingest``: more IngestConfig settings); return the
    timing figures."""
    from aptray.config import Aspect, IngestConfig
    from aptray.io.sources import read

    cfg = IngestConfig(source=source, aspect=Aspect(aspect) if aspect else None, **ingest)
    start = time.perf_counter()
    rows = read(source, str(path), cfg).count()
    return {"rows_out": rows, "seconds": time.perf_counter() - start}


#: ``--join``: the ``ingest.join_in_one_task_bytes`` that forces each plan (None: the configured default).
JOIN_PLANS: dict[str, int | None] = {"auto": None, "one-task": 1 << 40, "shuffled": 0}


def avro_vs_json(mb: float, files: int, aspect: str | None) -> None:
    """The same records as Avro and as JSON lines through the CDM reader, one JSON line per format and join plan.

    The reader picks its join plan by input bytes (``ingest.join_in_one_task_bytes``), and Avro is about 6x denser,
    so at default settings the two formats can take different plans; each plan is forced here for both formats
    (one task; hash shuffles) so that a ratio compares formats, not plans. Two interleaved rounds, the faster kept.
    """
    with tempfile.TemporaryDirectory(prefix="aptray-bench-") as tmp:
        records, avro_dir, json_dir = generate_avro(Path(tmp), mb, files)
        folders = {"avro": avro_dir, "json": json_dir}
        plans = {"one task": JOIN_PLANS["one-task"], "shuffled": JOIN_PLANS["shuffled"]}
        best: dict[tuple[str, str], float] = {}
        rows: dict[tuple[str, str], int] = {}
        for _ in range(2):
            for plan, limit in plans.items():
                for fmt, folder in folders.items():
                    fig = run("cdm", folder, aspect, join_in_one_task_bytes=limit)
                    best[fmt, plan] = min(best.get((fmt, plan), fig["seconds"]), fig["seconds"])
                    rows[fmt, plan] = int(fig["rows_out"])
        for plan in plans:
            for fmt, folder in folders.items():
                size = sum(p.stat().st_size for p in folder.iterdir())
                print(json.dumps({"source": "cdm", "format": fmt, "join": plan, "aspect": aspect,
                                  "mb": round(size / 1e6, 1), "records": records, "rows_out": rows[fmt, plan],
                                  "seconds": round(best[fmt, plan], 2),
                                  "records_per_s": round(records / best[fmt, plan])}))
            print(json.dumps({"join": plan, "avro_vs_json_records_per_s":
                              round(best["json", plan] / best["avro", plan], 2)}))


def main() -> None:
    """Entry point: generate, read, print one JSON line per source."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=float, default=8.0, help="input size per source in MB (default 8)")
    parser.add_argument("--files", type=int, default=4)
    parser.add_argument("--source", choices=["cdm", "auditd", "both", "avro"], default="both")
    parser.add_argument("--aspect", default=None, help="Event|Exec|Parent|Netflow|All (default: single events)")
    parser.add_argument("--num-cpus", type=int, default=None)
    parser.add_argument("--join", choices=sorted(JOIN_PLANS), default="auto",
                        help="the join plan of CDM and auditd: auto (by input bytes), one-task or shuffled")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    from aptray.config import RayConfig
    from aptray.runtime import init_ray

    init_ray(RayConfig(num_cpus=args.num_cpus))
    if args.source == "avro":
        avro_vs_json(args.mb, args.files, args.aspect)
        return
    from scale import Peaks  # bench/scale.py samples the driver's and each Ray worker's RSS (it imports this file)

    sources = ["cdm", "auditd"] if args.source == "both" else [args.source]
    with tempfile.TemporaryDirectory(prefix="aptray-bench-") as tmp:
        for source in sources:
            path = Path(tmp) / source
            t0 = time.perf_counter()
            lines = generate(source, path, args.mb, args.files)
            gen = time.perf_counter() - t0
            size = sum(p.stat().st_size for p in path.iterdir())
            with Peaks() as peaks:
                fig = run(source, path, args.aspect, join_in_one_task_bytes=JOIN_PLANS[args.join])
            print(json.dumps({"source": source, "aspect": args.aspect, "join": args.join, "mb": round(size / 1e6, 1),
                              "records": lines, "rows_out": fig["rows_out"], "seconds": round(fig["seconds"], 2),
                              "records_per_s": round(lines / fig["seconds"]),
                              "mb_per_s": round(size / 1e6 / fig["seconds"], 2), "generate_s": round(gen, 2),
                              "driver_peak_rss_mb": round(peaks.driver / 1e6),
                              "worker_peak_rss_mb": round(max(peaks.workers.values(), default=0) / 1e6)}))


if __name__ == "__main__":
    main()
