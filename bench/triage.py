"""Benchmark: what incidents save an analyst, whether attribution names the injected part, what explanations cost.

    .venv/bin/python bench/triage.py [--events 20000] [--model ae] [--skip-real] [--seeds 1]

Three labelled traces, each scored by an artifact trained on benign rows of the same kind:

- synthetic: the generator's BETH-format trace (``--events`` rows, ``--attack-fraction`` attack events) scored by a
  model trained on a benign synthetic trace; the generator records each attack event's injected field
  (:func:`aptray.io.synthetic.injected_fields`);
- BETH: the real STARAI test subset (6,491 rows, mostly attacks) scored by a model trained on the real BETH head
  samples (their benign rows);
- ADAPT: pandex/clearscope ProcessAll (102 processes, 9 malicious), trained on its own benign rows (malicious rows
  are excluded from training by their labels) and scored: a check of the process-context explanations, not a
  held-out evaluation.

Per trace it prints alerts, malicious alerts, incidents, alerts per incident, the items an analyst reads, best
first, to reach every malicious alert (raw alerts in score order vs incidents in rank order, and the ratio), and the
distribution of the true-positive alerts' top attributed parts. On the synthetic trace it prints the share of
true-positive alerts whose top part is the injected field; on ADAPT the share with an attribute never seen in benign
training. With ``--seeds N`` the synthetic part runs N times (its own benign and attacked traces and model seed
each) and prints the median and the worst run. It then scores the first synthetic trace again with an artifact
without explanations (``train.explain_max_sentences: 0``) and ``score.attribute_alerts: false``, no embedding cache
either time, and prints the score job's seconds with and without explanations, side by side, and their ratio; and
the same online: the synthetic trace's first 5,000 events sent to a local Serve replica in requests of 100, without
and with ``explain``.
"""

from __future__ import annotations

import argparse
import collections
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ingest import shared_data  # bench/ingest.py: the data folder


def reading_cost(out: Path) -> dict[str, Any]:
    """Alerts and incidents of a score output, and the items read to reach every malicious alert."""
    import pyarrow.dataset as pads
    import pyarrow.parquet as pq

    from aptray.triage.incidents import items_to_full_recall

    alerts = pads.dataset(str(out / "alerts"), format="parquet").to_table(columns=["score", "malicious"])
    incidents = pq.read_table(out / "incidents" / "incidents.parquet")
    labels = [m for _, m in sorted(zip(alerts.column("score").to_pylist(), alerts.column("malicious").to_pylist(),
                                       strict=True), key=lambda t: -t[0])]
    malicious = sum(1 for m in labels if m == 1)
    raw = max((i + 1 for i, m in enumerate(labels) if m == 1), default=0)
    inc = items_to_full_recall(incidents, malicious)["incidents_read"]
    return {"alerts": alerts.num_rows, "malicious_alerts": malicious, "incidents": incidents.num_rows,
            "alerts_per_incident": round(alerts.num_rows / max(incidents.num_rows, 1), 2),
            "raw_alerts_read": raw, "incidents_read": inc,
            "reduction": round(raw / inc, 2) if inc else None}


def attribution_figures(out: Path, injected: dict[int, str] | None = None) -> dict[str, Any]:
    """The true-positive alerts' top parts; with ``injected`` (line -> field), the share naming it first."""
    import pyarrow.dataset as pads

    alerts = pads.dataset(str(out / "alerts"), format="parquet").to_table().to_pylist()
    tp = [a for a in alerts if a.get("malicious") == 1]
    parts = collections.Counter(str(a.get("attribution_part")) for a in tp)
    fig: dict[str, Any] = {"tp_alerts": len(tp), "tp_top_parts": dict(parts.most_common())}
    if any(a.get("unseen_attributes") is not None for a in alerts):
        fig["tp_with_unseen_attribute"] = sum(1 for a in tp if a.get("unseen_attributes"))
        fig["fp_with_unseen_attribute"] = sum(1 for a in alerts if a.get("malicious") != 1
                                              and a.get("unseen_attributes"))
        fig["fp_alerts"] = len(alerts) - len(tp)
    if injected is not None:
        hits = [a for a in tp if a.get("attribution_part") == injected.get(int(a["line"]))]
        fig["tp_naming_injected_first"] = len(hits)
        fig["share_naming_injected_first"] = round(len(hits) / max(len(tp), 1), 4)
        misses = collections.Counter(f"{injected.get(int(a['line']))}->{a.get('attribution_part')}" for a in tp
                                     if a not in hits)
        fig["misses_injected_to_top"] = dict(misses.most_common(8))
    return fig


def summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Median and worst over the synthetic seeds of the reduction and of the share naming the injected part."""
    import statistics

    out: dict[str, Any] = {"trace": f"synthetic, median of {len(runs)} seeds"}
    for key in ("alerts", "malicious_alerts", "incidents", "alerts_per_incident", "raw_alerts_read",
                "incidents_read", "reduction", "share_naming_injected_first", "alert_rate"):
        values = [r[key] for r in runs if r.get(key) is not None]
        if values:
            out[key] = round(statistics.median(values), 4)
    out["worst_reduction"] = min((r["reduction"] for r in runs if r.get("reduction") is not None), default=None)
    out["worst_share_naming_injected_first"] = min(r["share_naming_injected_first"] for r in runs)
    return out


def online_cost(artifact: Path, trace: Path, events: int = 5000, per_request: int = 100) -> dict[str, Any]:
    """``POST /v1/score`` on a local Serve replica of ``artifact``: the first ``events`` lines of ``trace`` in
    requests of ``per_request``, sent one after another without and with ``explain``; seconds and replica
    milliseconds (``took_ms``) of each pass, and the anomalous events explained."""
    import socket

    import httpx
    from ray import serve

    from aptray.config import ServeConfig
    from aptray.serve.app import run

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    key = "bench-key-0123456789abcdef"
    keys = trace.parent / "keys.txt"
    keys.write_text(key + "\n")
    run(ServeConfig(artifact=str(artifact), port=port, api_key_file=str(keys), num_cpus=0.5, torch_threads=1,
                    max_events_per_request=per_request + 1,  # the header line is an item too
                    allow_format_mismatch=True))  # synthetic traces are BETH lines
    lines = trace.read_text().splitlines()
    header, body = lines[0], lines[1 : events + 1]
    out: dict[str, Any] = {"events": len(body), "per_request": per_request}
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers={"X-API-Key": key}, timeout=300) as client:
            for explain in (False, True):
                t0, took, explained = time.perf_counter(), 0.0, 0
                for i in range(0, len(body), per_request):
                    r = client.post("/v1/score", json={"format": "beth", "events": [header, *body[i:i + per_request]],
                                                       "explain": explain})
                    r.raise_for_status()
                    took += r.json()["took_ms"]
                    explained += sum(1 for e in r.json()["results"] if e.get("explanation"))
                label = "with explain" if explain else "without"
                out[label] = {"seconds": round(time.perf_counter() - t0, 2), "replica_ms": round(took, 1),
                              "explained": explained}
    finally:
        serve.shutdown()
    out["ratio"] = round(out["with explain"]["seconds"] / out["without"]["seconds"], 2)
    return out


def main() -> None:
    """Entry point."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--attack-fraction", type=float, default=0.005,
                        help="share of attack events (0.005 gives an alert rate of about 1-2%%)")
    parser.add_argument("--model", default="ae")
    parser.add_argument("--skip-real", action="store_true", help="the synthetic trace only")
    parser.add_argument("--seeds", type=int, default=1,
                        help="synthetic runs, each with its own traces and model seed; prints each and their median "
                             "and worst")
    args = parser.parse_args()

    from aptray.config import load_config
    from aptray.embed.job import run_embed
    from aptray.io.synthetic import generate, injected_fields
    from aptray.logs import configure
    from aptray.runtime import init_ray
    from aptray.score import run_score
    from aptray.train import run_train

    configure("WARNING")
    root = Path(tempfile.mkdtemp(prefix="aptray-bench-triage-"))
    init_ray(load_config().ray)
    try:
        figures = []
        syn = load_config(None, {"ingest.source": "synthetic", "train.model": args.model})
        per_seed: list[dict[str, Any]] = []
        timings: dict[str, float] = {}
        for seed in range(args.seeds):
            # each seed draws its own benign training trace, attacked test trace and model initialisation
            tag = f"s{seed}"
            scfg_seed = syn.model_copy(update={"train": syn.train.model_copy(update={"seed": seed})})
            train = generate(root / f"syn-train-{tag}" / "synthetic_train.csv", 5000, seed=1 + seed,
                             attack_fraction=0.0)["path"]
            test = root / f"syn-test-{tag}"
            generate(test / "synthetic_test.csv", args.events, seed=7 + seed, attack_fraction=args.attack_fraction)
            injected = injected_fields(args.events, seed=7 + seed, attack_fraction=args.attack_fraction)
            run_embed(str(train), str(root / f"syn-emb-{tag}"), syn, source="synthetic")
            # the cost of explanations: the first seed's trace scored by a model with and one without them
            variants = (("with explanations", 20_000), ("without", 0)) if seed == 0 else (("with explanations",
                                                                                              20_000),)
            results = {}
            for label, keep in variants:
                model = root / f"syn-model-{tag}-{keep}"
                run_train(str(root / f"syn-emb-{tag}"), str(model), scfg_seed.model_copy(
                    update={"train": scfg_seed.train.model_copy(update={"explain_max_sentences": keep})}))
                scfg = load_config(None, {"ingest.source": "synthetic", "score.artifact": str(model),
                                          "score.attribute_alerts": bool(keep)})
                t0 = time.perf_counter()
                results[label] = run_score(str(test), str(root / f"syn-out-{tag}-{keep}"), scfg)
                if seed == 0:
                    timings[label] = round(time.perf_counter() - t0, 2)
            out = root / f"syn-out-{tag}-20000"
            rate = results["with explanations"]["alerts"] / max(results["with explanations"]["rows_scored"], 1)
            per_seed.append({"trace": f"synthetic seed {seed}", **reading_cost(out),
                             **attribution_figures(out, injected), "alert_rate": round(rate, 4)})
            print(json.dumps(per_seed[-1]), flush=True)
        timings["ratio"] = round(timings["with explanations"] / timings["without"], 2)
        figures += per_seed
        if len(per_seed) > 1:
            figures.append(summary(per_seed))
            print(json.dumps(figures[-1]), flush=True)
        online = online_cost(root / "syn-model-s0-20000", root / "syn-test-s0" / "synthetic_test.csv")
        print(json.dumps({"online": online}), flush=True)

        if not args.skip_real:
            beth = shared_data() / "beth"
            bcfg = load_config(None, {"ingest.source": "beth", "train.model": args.model})
            (root / "beth-train").mkdir()
            for name in ("labelled_training_data.csv", "labelled_validation_data.csv"):
                shutil.copy(beth / "head_samples_BethSecure" / name, root / "beth-train" / name)
            run_embed(str(root / "beth-train"), str(root / "beth-emb"), bcfg, source="beth")
            run_train(str(root / "beth-emb"), str(root / "beth-model"), bcfg)
            run_score(str(beth / "testing_subset_STARAI"), str(root / "beth-out"),
                      load_config(None, {"ingest.source": "beth", "score.artifact": str(root / "beth-model")}))
            figures.append({"trace": "BETH STARAI", **reading_cost(root / "beth-out"),
                            **attribution_figures(root / "beth-out")})

            adapt = shared_data() / "darpa_tc_adapt" / "pandex" / "clearscope"
            acfg = load_config(None, {"ingest.source": "adapt", "ingest.aspect": "All", "train.model": args.model})
            run_embed(str(adapt), str(root / "adapt-emb"), acfg, source="adapt")
            run_train(str(root / "adapt-emb"), str(root / "adapt-model"), acfg)
            run_score(str(adapt), str(root / "adapt-out"), load_config(None, {
                "ingest.source": "adapt", "ingest.aspect": "All", "score.artifact": str(root / "adapt-model")}))
            figures.append({"trace": "ADAPT pandex/clearscope All", **reading_cost(root / "adapt-out"),
                            **attribution_figures(root / "adapt-out")})
        for f in figures:
            print(json.dumps(f))
        print("\ntrace | alerts | malicious alerts | incidents | alerts/incident | raw alerts read | incidents read "
              "| reduction | TP top part = injected")
        for f in figures:
            print(" | ".join(str(f.get(k, "n/a")) for k in (
                "trace", "alerts", "malicious_alerts", "incidents", "alerts_per_incident", "raw_alerts_read",
                "incidents_read", "reduction", "share_naming_injected_first")))
        print(f"score job seconds, synthetic (alert rate {figures[0]['alert_rate']:.2%}): {timings}")
        print(f"online POST /v1/score, synthetic, without vs with explain: {json.dumps(online)}")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
