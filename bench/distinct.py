"""Training on distinct sentences weighted by their counts vs training on every row: test AUC and training cost.

    .venv/bin/python bench/distinct.py [--input DIR] [--aspect Event] [--models ae vae] [--seeds 0 1 2]
                                       [--repeat 1 16]

Templatizes and embeds an ADAPT folder (default ``$APTRAY_SHARED_DATA/darpa_tc_adapt/bovia/cadets``, the
paper's ProcessEvent contexts, labelled by the folder's ground truth), then per seed splits the rows with the
experiment's own split (:func:`aptray.evaluate.splits.split_rows`: 30% of benign rows and their share of the
malicious ones to test), writes the training rows as an embed output and trains the same detector twice with
``aptray train``'s code path (``run_train``): ``train.distinct`` on (distinct sentences, minibatches drawn by
row counts) and off (every row). Both artifacts score the same held-out test rows.

``--repeat K`` also runs each seed with the training rows repeated K times under new record ids (as a trace
K times longer would give): the row-level cost grows with K, the distinct one should not.

Prints one JSON line per run and a table: test AUC-ROC of each, |difference|, training seconds and the ratio.
Targets: |AUC difference| <= 0.01 at equal seeds; distinct >= 10x faster at 16x.
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

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import serve as load_bench  # bench/serve.py: shared settings and the data folder


def embed_folder(folder: str, aspect: str, work: Path) -> Path:
    """Templatize and embed ``folder`` (ADAPT, ``aspect``) with MiniLM; the embed output's folder."""
    from aptray.config import AptrayConfig, EmbedConfig, IngestConfig, RayConfig
    from aptray.embed.job import run_embed
    from aptray.runtime import init_ray
    from aptray.templating.job import run_templatize

    cfg = AptrayConfig(ray=RayConfig(num_cpus=2), ingest=IngestConfig(aspect=aspect),
                       embed=EmbedConfig(actors=1, cpus_per_actor=1.0))
    init_ray(cfg.ray)
    run_templatize("adapt", folder, str(work / "t"), cfg)
    run_embed(str(work / "t"), str(work / "e"), cfg)
    return work / "e"


def write_subset(table: Any, rows: np.ndarray, repeat: int, manifest: Path, out: Path) -> None:
    """An embed output of ``table``'s ``rows``, repeated ``repeat`` times under new record ids."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    (out / "embeddings").mkdir(parents=True)
    shutil.copy(manifest, out / "manifest.json")
    part = table.take(pa.array(rows))
    for k in range(repeat):
        ids = pc.binary_join_element_wise(part.column("record_id"), pa.scalar(f"#{k}"), "")
        pq.write_table(part.set_column(part.column_names.index("record_id"), "record_id", ids),
                       out / "embeddings" / f"part-{k:03d}.parquet")


def main() -> None:
    """Run the comparison and print the figures."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--input", default=str(load_bench.shared_data() / "darpa_tc_adapt" / "bovia" / "cadets"))
    ap.add_argument("--aspect", default="Event")
    ap.add_argument("--models", nargs="+", default=["ae"])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--repeat", type=int, nargs="+", default=[1])
    ap.add_argument("--epochs", type=int, default=15)
    args = ap.parse_args()
    load_bench.offline_quiet()

    import pyarrow.dataset as pads
    from sklearn.metrics import roc_auc_score

    from aptray.artifacts import load_detector
    from aptray.config import AptrayConfig, RayConfig, TrainConfig
    from aptray.embed.cache import embedding_matrix
    from aptray.evaluate.splits import split_rows
    from aptray.train import run_train

    work = Path(tempfile.mkdtemp(prefix="aptray-distinct-"))
    t0 = time.perf_counter()
    emb = embed_folder(args.input, args.aspect, work)
    table = pads.dataset(str(emb / "embeddings"), format="parquet").to_table().sort_by("record_id")
    y = np.nan_to_num(table.column("malicious").to_numpy(zero_copy_only=False).astype(np.float64)).astype(np.int8)
    X = embedding_matrix(table.column("embedding"))
    distinct = len(set(table.column("sentence_hash").to_pylist()))
    print(json.dumps({"input": args.input, "rows": len(y), "malicious": int(y.sum()), "distinct_sentences": distinct,
                      "prepare_s": round(time.perf_counter() - t0, 1)}), flush=True)
    results: list[dict[str, Any]] = []
    for model in args.models:
        for repeat in args.repeat:
            for seed in args.seeds:
                split = split_rows(y, seed, 0.3, 0.0)
                train_dir = work / f"train-{seed}-{repeat}"
                write_subset(table, np.sort(split.train), repeat, emb / "manifest.json", train_dir)
                test_auc, seconds = {}, {}
                for distinct_on in (True, False):
                    cfg = AptrayConfig(ray=RayConfig(num_cpus=2), train=TrainConfig(
                        model=model, epochs=args.epochs, seed=seed, distinct=distinct_on, local_max_rows=10**7))
                    out = work / f"art-{model}-{seed}-{repeat}-{int(distinct_on)}"
                    start = time.perf_counter()
                    summary = run_train(str(train_dir), str(out), cfg)
                    seconds[distinct_on] = time.perf_counter() - start
                    det = load_detector(str(out))
                    test_auc[distinct_on] = float(roc_auc_score(y[split.test], det.decision_function(X[split.test])))
                    del summary
                res = {"model": model, "seed": seed, "repeat": repeat, "train_rows": len(split.train) * repeat,
                       "auc_distinct": round(test_auc[True], 4), "auc_rows": round(test_auc[False], 4),
                       "auc_diff": round(abs(test_auc[True] - test_auc[False]), 4),
                       "seconds_distinct": round(seconds[True], 2), "seconds_rows": round(seconds[False], 2),
                       "speedup": round(seconds[False] / seconds[True], 1)}
                results.append(res)
                print(json.dumps(res), flush=True)
                shutil.rmtree(train_dir)
    print(f"\n{'model':>6} {'repeat':>6} {'seed':>4} {'train rows':>10} {'AUC distinct':>12} {'AUC rows':>9} "
          f"{'|diff|':>7} {'s distinct':>10} {'s rows':>8} {'speedup':>7}")
    for r in results:
        print(f"{r['model']:>6} {r['repeat']:>6} {r['seed']:>4} {r['train_rows']:>10} {r['auc_distinct']:>12} "
              f"{r['auc_rows']:>9} {r['auc_diff']:>7} {r['seconds_distinct']:>10} {r['seconds_rows']:>8} "
              f"{r['speedup']:>7}")


if __name__ == "__main__":
    main()
