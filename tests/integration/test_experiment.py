"""The experiment end to end on a small real ADAPT file: templatize -> embed -> fits on Ray -> metrics and report."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from aptray.config import AptrayConfig, Aspect, Compose, Protocol, Source, load_config
from aptray.evaluate.splits import split_rows
from aptray.templating.base import TEMPLATE_VERSION


def test_split_keeps_malicious_out_of_training() -> None:
    y = np.array([0] * 40 + [1] * 3)
    for seed in range(5):
        s = split_rows(y, seed, 0.3, 0.2)
        assert y[s.train].sum() == 0
        # 3 malicious: round(3 * 0.3 / 0.5) = 2 to test, 1 to validation; benign 12 test, 8 val, 20 train.
        assert s.counts(y) == {"train": 20, "train_benign": 20, "val": 9, "val_malicious": 1, "test": 14,
                               "test_malicious": 2}
        assert len(np.intersect1d(s.train, s.test)) == len(np.intersect1d(s.val, s.test)) == 0
    single = split_rows(np.array([0] * 10 + [1]), 0)
    assert single.counts(np.array([0] * 10 + [1]))["test_malicious"] == 1  # one malicious row goes to test
    assert split_rows(y, 1).test.tolist() == split_rows(y, 1).test.tolist()
    assert split_rows(y, 1).test.tolist() != split_rows(y, 2).test.tolist()


@pytest.mark.timeout(900)
def test_experiment_on_real_adapt_file(ray_cluster: None, shared_data: Path, tmp_path: Path) -> None:
    from aptray.evaluate import run_experiment

    folder = shared_data / "darpa_tc_adapt" / "bovia" / "clearscope"
    cfg = AptrayConfig()
    cfg.ingest.source = Source.ADAPT
    cfg.experiment.embedders = ["minilm"]
    cfg.experiment.detectors = ["ae", "knn", "rarity", "iforest", "avf"]
    cfg.experiment.aspects = [Aspect.EVENT]
    cfg.experiment.protocols = [Protocol.BENIGN_SPLIT, Protocol.UNSUPERVISED]
    cfg.experiment.seeds = 1
    cfg.experiment.epochs = 3
    cfg.experiment.tsne_points = 100
    out = tmp_path / "exp"
    for stale in (out / "plots" / "bovia_5dir-Exec-hist.png", out / "scores" / "bovia" / "5dir" / "Exec" / "x.parquet"):
        stale.parent.mkdir(parents=True)  # an earlier experiment's outputs in the same folder: replaced, not kept
        stale.write_bytes(b"old")
    result = run_experiment(str(folder), str(out), cfg)
    assert not (out / "plots" / "bovia_5dir-Exec-hist.png").exists()
    assert not (out / "scores" / "bovia" / "5dir").exists()
    # 5 detectors x 2 protocols, plus the seed's fusion of the 3 best of aptray's own on validation
    assert result["targets"] == 1 and result["errors"] == 0 and result["runs"] == 11

    doc = json.loads((out / "metrics.json").read_text())
    assert doc["schema_version"] == 1
    (target,) = doc["targets"]
    assert (target["dataset"], target["aspect"], target["rows"], target["malicious"]) == (
        "bovia/clearscope", "Event", 69, 4)
    # the choice on validation, written as a config that `aptray run` trains: it loads, and it runs
    (chosen,) = result["chosen"]
    assert doc["chosen"] == result["chosen"] and chosen["input"] == str(folder) == target["uri"]
    assert chosen["command"] == (f"aptray run {folder} --source adapt --aspect Event --config "
                                 f"{chosen['config_path']} --out out/bovia-clearscope-Event")
    deployed = load_config(chosen["config_path"])
    picked = doc["best"][0]["aptray_selected"]["detector"]
    assert deployed.train.model == ("ensemble" if picked == "fusion" else picked) and deployed.train.epochs == 3
    assert (deployed.embed.model, deployed.ingest.aspect) == ("minilm", Aspect.EVENT)
    from aptray.pipeline import run_pipeline

    ran = run_pipeline(str(tmp_path / "deployed"), deployed, str(folder), Source.ADAPT, Aspect.EVENT)
    assert ran["stages"]["train"]["model"] == deployed.train.model and ran["stages"]["score"]["rows_scored"] == 69
    split_runs = [r for r in doc["runs"] if r["protocol"] == "benign-split"]
    combos = {(r["embedder"], r["detector"], r["seed"]) for r in split_runs}
    assert combos == {("minilm", d, 0) for d in ("ae", "knn", "rarity", "iforest", "fusion")} | {("raw", "avf", 0)}
    (fusion,) = [r for r in split_runs if r["detector"] == "fusion"]
    # the three of aptray's own, less any at or below chance on validation (the AE is, on this split)
    val_auc = {r["detector"]: r["val"]["auc_roc"] for r in split_runs if r["detector"] in ("ae", "knn", "rarity")}
    assert set(fusion["members"]) == {d for d, auc in val_auc.items() if auc > 0.5} and len(fusion["members"]) >= 2
    assert fusion["threshold"]["method"] == "f1_validation"
    for run in doc["runs"]:
        if run["protocol"] == "unsupervised":  # every process fitted without labels and ranked
            assert run["status"] == "ok", run["error"]
            assert run["rows"]["train"] == run["rows"]["test"] == 69 and run["test"]["positives"] == 4
            assert 0.0 <= run["test"]["auc_roc"] <= 1.0
            continue
        assert run["status"] == "ok", run["error"]
        assert run["rows"]["test_malicious"] >= 1 and run["rows"]["train"] == run["rows"]["train_benign"]
        test = run["test"]
        for key in ("auc_roc", "pr_auc", "ndcg"):
            assert test[key] is not None and 0.0 <= test[key] <= 1.0, (run["detector"], key)
        cm = test["confusion"]
        assert sum(cm.values()) == run["rows"]["test"] == test["rows"]
        assert cm["tp"] + cm["fn"] == run["rows"]["test_malicious"]
    ae = next(r for r in doc["runs"] if r["detector"] == "ae")
    assert len(ae["history"]["train_loss"]) == 3
    for s in doc["summary"]:
        assert s["test"]["auc_roc"]["n"] == 1 and math.isfinite(s["test"]["auc_roc"]["mean"])
    assert set(doc["best"][0]["baselines"]) == {"iforest", "avf"}  # kNN and rarity are aptray's, not baselines
    assert doc["best"][0]["aptray_selected"]["detector"] in {"ae", "knn", "rarity", "fusion"}
    # 3 of the 4 attacks share one sentence with benign rows; no detector of the sentence passes the ceiling
    assert (target["malicious_with_benign_twin"], target["twin_sentences"]) == (3, 1)
    ceiling = target["sentence_ceiling"]
    assert ceiling["auc_roc"]["n"] == 1 and ceiling["auc_roc"]["mean"] < 1.0
    for run in split_runs:
        assert run["test"]["auc_roc"] <= ceiling["auc_roc"]["mean"] + 1e-9, run["detector"]

    html = (out / "report.html").read_text()
    md = (out / "report.md").read_text()
    assert "bovia/clearscope" in html and "| bovia/clearscope | Event | 69 | 4 |" in md
    assert "Unsupervised protocol" in md
    assert f"| {chosen['command']} |" in md  # the report says how to deploy the choice, as the summary does
    assert "3 malicious row(s) share their exact sentence with a benign row (1 distinct sentence(s))" in md
    pngs = {p.name for p in (out / "plots").glob("*.png")}
    from tests.browser import render

    shown = render(out / "report.html")  # in a real browser: every table there, every plot loads
    assert shown["title"] == "aptray experiment report" and shown["tables"] >= 3 and shown["broken"] == []
    assert shown["images"] == html.count("<img ") >= len(pngs) > 0
    for kind in ("heatmap", "roc-pr", "hist", "loss", "tsne-minilm"):
        assert f"bovia_clearscope-Event-{kind}.png" in pngs
        assert f"plots/bovia_clearscope-Event-{kind}.png" in md
    # The test split's scores are stored for notebooks and the report, one per test row.
    import pyarrow.parquet as pq

    scores = pq.read_table(out / "scores" / "bovia" / "clearscope" / "Event" / "scores.parquet").to_pandas()
    assert len(scores[(scores["split"] == "test") & (scores["detector"] == "ae")]) == ae["rows"]["test"]
    assert len(scores[(scores["split"] == "all") & (scores["detector"] == "ae")]) == 69  # unsupervised: every row

    # `aptray results --readme` rewrites the table between the markers, anchors included, and nothing else
    from typer.testing import CliRunner

    from aptray.cli import app

    readme = tmp_path / "README.md"
    readme.write_text("# title\n<!-- results:begin -->\nold table\n<!-- results:end -->\nafter\n")
    res = CliRunner().invoke(app, ["results", str(out / "metrics.json"), "--readme", str(readme)])
    assert res.exit_code == 0, res.output
    text = readme.read_text()
    assert "old table" not in text and text.startswith("# title\n") and text.endswith("<!-- results:end -->\nafter\n")
    row = next(ln for ln in text.splitlines() if ln.startswith("| bovia/clearscope | Event |"))
    assert row.endswith("| 0.912 / 0.624 | 0.935 / 0.497 (Attention AE) |")  # XAI-APT's clearscope ProcessEvent
    assert f"| {ceiling['auc_roc']['mean']:.3f} (3 twins) |" in row
    assert "XAI-APT AE (E3)" in text
    # a run of the unsupervised protocol alone has no chosen model: refused, the README's table left as it was
    doc = json.loads((out / "metrics.json").read_text())
    doc["summary"] = [x for x in doc["summary"] if x.get("protocol") == "unsupervised"]
    (tmp_path / "unsupervised.json").write_text(json.dumps(doc))
    res = CliRunner().invoke(app, ["results", str(tmp_path / "unsupervised.json"), "--readme", str(readme)])
    from aptray.errors import ConfigError  # the console script prints it in one line and exits 2

    assert isinstance(res.exception, ConfigError) and "no benign-split results" in str(res.exception)
    assert readme.read_text() == text


def test_discover_walks_the_adapt_root(shared_data: Path) -> None:
    from aptray.evaluate.experiment import discover

    root = shared_data / "darpa_tc_adapt"
    targets = discover(str(root), Source.ADAPT, None)
    names = {(t.name, t.aspect.value if t.aspect else None) for t in targets}
    assert ("bovia/clearscope", "All") in names and ("bovia/cadets", "Event") in names
    assert ("pandex/trace", "Netflow") in names and ("bovia/cadets", "Exec") not in names
    # ProcessAll by join is a default context wherever two or more aspects exist, not where only one does
    assert ("bovia/cadets", "All") in names and ("bovia/5dir", "All") in names
    # a glob of system folders, as every other command takes (it was "no input at '.../*/clearscope'")
    globbed = discover(str(root / "*" / "clearscope"), Source.ADAPT, [Aspect.EVENT])
    assert [(t.name, t.aspect) for t in globbed] == [("bovia/clearscope", Aspect.EVENT),
                                                     ("pandex/clearscope", Aspect.EVENT)]
    with pytest.raises(FileNotFoundError, match="no input matches"):
        discover(str(root / "*" / "nothing-here"), Source.ADAPT, None)
    assert ("pandex/trace", "All") not in names
    # raw traces: single events and, where the reader builds process contexts, their ProcessAll
    cdm = str(shared_data / "cdm" / "cadets_cdm20")
    assert [t.aspect for t in discover(cdm, Source.CDM, None)] == [None, Aspect.ALL]
    assert [t.aspect for t in discover(cdm, Source.CDM, [Aspect.EXEC])] == [Aspect.EXEC]
    assert [t.aspect for t in discover(str(shared_data / "beth"), Source.BETH, None)] == [None]
    with pytest.raises(ValueError, match="beth traces have no process contexts"):
        discover(str(shared_data / "beth"), Source.BETH, [Aspect.EXEC])
    only = discover(str(root / "bovia" / "clearscope"), Source.ADAPT, [Aspect.EVENT, Aspect.NETFLOW])
    assert [(t.name, t.aspect) for t in only] == [("bovia/clearscope", Aspect.EVENT),
                                                  ("bovia/clearscope", Aspect.NETFLOW)]


def test_aspects_of_a_folder_share_one_split_and_fuse_per_process(ray_cluster: None, shared_data: Path,
                                                                   tmp_path: Path) -> None:
    import pyarrow.parquet as pq

    from aptray.evaluate import run_experiment

    cfg = AptrayConfig()
    cfg.ingest.source = Source.ADAPT
    cfg.experiment.embedders = ["minilm"]
    cfg.experiment.detectors = ["knn", "rarity"]
    cfg.experiment.aspects = [Aspect.EVENT, Aspect.EXEC, Aspect.ALL]
    # ProcessAll whole and aspect by aspect; clearscope has no parents, so leaving them out changes nothing
    cfg.experiment.compose = [Compose.NONE, Compose.ASPECTS, Compose.ASPECTS_NO_PARENTS]
    cfg.experiment.seeds = 1
    cfg.experiment.tsne_points = 0
    cfg.embed.keep_warm_s = 300  # the second aspect's embed finds the first one's encoder loaded
    out = tmp_path / "exp"
    result = run_experiment(str(shared_data / "darpa_tc_adapt" / "bovia" / "clearscope"), str(out), cfg)
    assert result["targets"] == 4  # Event, Exec, All and their per-aspect fusion
    doc = json.loads((out / "metrics.json").read_text())
    assert doc["template"]["version"] == TEMPLATE_VERSION and doc["template"]["process_style"] == "prose"
    ran = {(r["aspect"], r["embedder"]) for r in doc["runs"] if r["aspect"] != "PerAspect"}
    # only ProcessAll composes (a single aspect's sentence has one clause); both representations of it ran
    assert ran == {("Event", "minilm"), ("Exec", "minilm"), ("All", "minilm"), ("All", "minilm+aspects")}
    (all_target,) = [t for t in doc["targets"] if t["aspect"] == "All"]
    records = all_target["embedders"]
    assert records["minilm+aspects"]["compose"] == "aspects" and records["minilm"]["compose"] == "none"
    assert records["minilm+aspects"]["dim"] == 5 * records["minilm"]["dim"]
    assert "no process of bovia/clearscope has parents" in records["minilm+aspects-no-parents"]["skipped"]
    (target,) = [t for t in doc["targets"] if t["aspect"] == "PerAspect"]
    assert target["aspects"] == ["All", "Event", "Exec"] and target["rows"] >= 68
    fused = [r for r in doc["runs"] if r["aspect"] == "PerAspect"]
    assert [(r["embedder"], r["seed"]) for r in fused] == [("minilm", 0)]  # one fusion over both representations
    for run in fused:
        assert run["status"] == "ok" and run["detector"] == "fusion"
        assert {m.split(":")[0] for m in run["members"]} <= {"All", "Event", "Exec"}
        members = {m.split(":")[1] for m in run["members"]}
        assert members <= {"knn", "rarity", "knn (minilm+aspects)", "rarity (minilm+aspects)"}
        assert run["rows"]["test_malicious"] >= 1 and 0.0 <= run["test"]["auc_roc"] <= 1.0

    def test_processes(aspect: str, seed: int) -> set[str]:
        base = out / "scores" / "bovia" / "clearscope" / aspect
        ids = pq.read_table(base / "rows.parquet").column("record_id").to_pylist()
        s = pq.read_table(base / "scores.parquet").to_pandas()
        rows = s[(s["split"] == "test") & (s["seed"] == seed) & (s["protocol"] == "benign-split")]["row"]
        return {ids[i] for i in rows}

    # a process is in the test split of every aspect it has, or of none
    event, exec_, both = test_processes("Event", 0), test_processes("Exec", 0), test_processes("PerAspect", 0)
    assert event and exec_ and event | exec_ | test_processes("All", 0) == both
    assert "Per-aspect fusion of All, Event, Exec" in (out / "report.md").read_text()


def test_unsupervised_protocol_alone_fits_every_row(ray_cluster: None, shared_data: Path, tmp_path: Path) -> None:
    """pandex/clearscope's Netflow context has 8 processes: the benign split leaves too few to train on, but the
    unsupervised protocol fits all 8; run alone it was skipped as "only 1 benign training rows"."""
    from aptray.evaluate import run_experiment

    cfg = AptrayConfig()
    cfg.ingest.source = Source.ADAPT
    cfg.experiment.embedders = []
    cfg.experiment.detectors = ["avf"]
    cfg.experiment.aspects = [Aspect.NETFLOW]
    cfg.experiment.protocols = [Protocol.UNSUPERVISED]
    cfg.experiment.seeds = 1
    folder = shared_data / "darpa_tc_adapt" / "pandex" / "clearscope"
    result = run_experiment(str(folder), str(tmp_path / "u"), cfg)
    assert result["skipped"] == 0 and result["errors"] == 0 and result["runs"] == 1, result
    cfg.experiment.protocols = [Protocol.BENIGN_SPLIT]
    assert run_experiment(str(folder), str(tmp_path / "b"), cfg)["skipped"] == 1  # too few to split


def test_a_rerun_resumes_the_folders_an_interrupted_run_finished(ray_cluster: None, shared_data: Path,
                                                                 tmp_path: Path) -> None:
    """An experiment stopped part way (the README table's run takes an hour) keeps the folders it finished: a rerun
    of the same settings runs only the rest, and its metrics equal an uninterrupted run's; other settings, or
    --fresh, start over. The folder's chosen/ (written by a finished run) is the experiment's own."""
    import shutil

    from aptray.evaluate import run_experiment

    root = tmp_path / "adapt"
    for system in ("bovia", "pandex"):
        shutil.copytree(shared_data / "darpa_tc_adapt" / system / "clearscope", root / system / "clearscope")
    cfg = AptrayConfig()
    cfg.ingest.source = Source.ADAPT
    cfg.experiment.embedders = []  # AVF on the raw 0/1 attributes: no embedding, a short test
    cfg.experiment.detectors = ["avf"]
    cfg.experiment.aspects = [Aspect.EVENT]
    cfg.experiment.seeds = 2
    out = tmp_path / "exp"
    whole = run_experiment(str(root), str(out), cfg)
    assert whole["folders_resumed"] == 0 and whole["runs"] == 4, whole
    doc = json.loads((out / "metrics.json").read_text())
    assert doc["folders_done"] == ["bovia/clearscope", "pandex/clearscope"]

    # as a run stopped inside its second folder leaves the checkpoint: that folder's targets, not marked done
    doc["folders_done"] = ["bovia/clearscope"]
    doc["runs"] = [{**r, "test": {"auc_roc": -1.0}} if r["dataset"] == "pandex/clearscope" else r
                   for r in doc["runs"]]
    (out / "metrics.json").write_text(json.dumps(doc))
    (out / "chosen").mkdir(exist_ok=True)
    resumed = run_experiment(str(root), str(out), cfg)
    assert resumed["folders_resumed"] == 1 and resumed["runs"] == 4, resumed
    again = json.loads((out / "metrics.json").read_text())
    assert again["folders_done"] == ["bovia/clearscope", "pandex/clearscope"]
    key = ("dataset", "seed")
    first = {tuple(r[k] for k in key): r["test"] for r in doc["runs"] if r["dataset"] == "bovia/clearscope"}
    for r in again["runs"]:  # the kept folder as it was, the rerun one computed again (not the planted -1)
        assert r["test"]["auc_roc"] >= 0.0, r
        if r["dataset"] == "bovia/clearscope":
            assert r["test"] == first[tuple(r[k] for k in key)]
    assert again["seconds"] >= doc["seconds"]  # the interrupted run's time counts too

    cfg.experiment.seeds = 1  # other settings: replaced, not resumed
    assert run_experiment(str(root), str(out), cfg)["folders_resumed"] == 0
    assert run_experiment(str(root), str(out), cfg, fresh=True)["folders_resumed"] == 0
