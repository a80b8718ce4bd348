"""Benchmark: what incidents save an analyst, and what explanations cost the score job.

    .venv/bin/python bench/triage.py [--events 20000] [--model ae]

Two labelled traces, each scored by an artifact trained on benign events of the same kind:

- synthetic: the generator's BETH-format trace (``--events`` rows, 2% attack events) scored by a model trained
  on a benign synthetic trace;
- BETH: the real STARAI test subset (6,491 rows, mostly attacks) scored by a model trained on the real BETH
  head samples (their benign rows).

Per trace it prints alerts, malicious alerts, incidents, alerts per incident, and the items an analyst reads,
best first, to reach every malicious alert: raw alerts in score order vs incidents in rank order (and the
ratio). It then scores the synthetic trace again with ``train.explain_max_sentences: 0`` (an artifact without
explanations) and prints the score job's seconds with and without them, side by side.
"""

from __future__ import annotations

import argparse
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


def main() -> None:
    """Entry point."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--model", default="ae")
    args = parser.parse_args()

    from aptray.config import load_config
    from aptray.embed.job import run_embed
    from aptray.io.synthetic import generate
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
        train = generate(root / "syn-train" / "synthetic_train.csv", 5000, seed=1, attack_fraction=0.0)["path"]
        generate(root / "syn-test" / "synthetic_test.csv", args.events, seed=7, attack_fraction=0.02)
        run_embed(str(train), str(root / "syn-emb"), syn, source="synthetic")
        timings = {}
        for label, keep in (("with explanations", 20_000), ("without", 0)):
            model = root / f"syn-model-{keep}"
            run_train(str(root / "syn-emb"), str(model), syn.model_copy(
                update={"train": syn.train.model_copy(update={"explain_max_sentences": keep})}))
            scfg = load_config(None, {"ingest.source": "synthetic", "score.artifact": str(model)})
            t0 = time.perf_counter()
            run_score(str(root / "syn-test"), str(root / f"syn-out-{keep}"), scfg)
            timings[label] = round(time.perf_counter() - t0, 2)
        figures.append({"trace": "synthetic", **reading_cost(root / "syn-out-20000"), "score_seconds": timings})

        beth = shared_data() / "beth"
        bcfg = load_config(None, {"ingest.source": "beth", "train.model": args.model})
        (root / "beth-train").mkdir()
        for name in ("labelled_training_data.csv", "labelled_validation_data.csv"):
            shutil.copy(beth / "head_samples_BethSecure" / name, root / "beth-train" / name)
        run_embed(str(root / "beth-train"), str(root / "beth-emb"), bcfg, source="beth")
        run_train(str(root / "beth-emb"), str(root / "beth-model"), bcfg)
        run_score(str(beth / "testing_subset_STARAI"), str(root / "beth-out"),
                  load_config(None, {"ingest.source": "beth", "score.artifact": str(root / "beth-model")}))
        figures.append({"trace": "BETH STARAI", **reading_cost(root / "beth-out")})
        for f in figures:
            print(json.dumps(f))
        print("\ntrace | alerts | malicious alerts | incidents | alerts/incident | raw alerts read | incidents read "
              "| reduction")
        for f in figures:
            print(" | ".join(str(f[k]) for k in ("trace", "alerts", "malicious_alerts", "incidents",
                                                 "alerts_per_incident", "raw_alerts_read", "incidents_read",
                                                 "reduction")))
        print(f"score job seconds, synthetic: {timings}")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
