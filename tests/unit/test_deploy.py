"""An experiment's choice on validation, as the config and command that train it (:mod:`aptray.evaluate.deploy`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aptray.config import DetectorName, load_config
from aptray.evaluate.deploy import chosen_models, fusion_members, write_chosen


def _doc() -> dict[str, Any]:
    recipe = {"model_id": "sentence-transformers/all-MiniLM-L6-v2", "compose": "aspects-no-events",
              "template": "prose", "embedder": "minilm"}
    runs = [{"dataset": "a/b", "aspect": "All", "embedder": "minilm+aspects-no-events", "detector": "fusion",
             "status": "ok", "seed": seed, "members": members}
            for seed, members in enumerate([{"knn-wide": 0.9, "dae": 0.8, "ae": 0.7},
                                            {"knn-wide": 0.9, "cae": 0.8, "dae": 0.7},
                                            {"dae": 0.9, "cae": 0.85, "knn-wide": 0.6}])]
    runs.append({**runs[0], "status": "error", "members": {"rarity": 1.0}})  # a failed seed names nothing
    runs[2]["members"] = {DetectorName(k): v for k, v in runs[2]["members"].items()}  # as a running experiment has
    brief = {"test": {}, "val_auc_roc": {"mean": 0.97}}
    return {
        "source": "adapt", "config": {"fusion_size": 3, "epochs": None},
        "targets": [{"dataset": "a/b", "aspect": "All", "uri": "s3://bucket/a/b",
                     "embedders": {"raw": {"dim": 9}, "minilm+aspects-no-events": recipe}},
                    {"dataset": "a/b", "aspect": "Exec", "uri": "s3://bucket/a/b",
                     "embedders": {"mpnet": {**recipe, "compose": "none", "embedder": "mpnet"}}}],
        "runs": runs,
        "best": [{"dataset": "a/b", "aspect": "All",
                  "aptray_selected": {"embedder": "minilm+aspects-no-events", "detector": "fusion", **brief}},
                 {"dataset": "a/b", "aspect": "Exec",
                  "aptray_selected": {"embedder": "mpnet", "detector": DetectorName.KNN_WIDE, **brief}},
                 {"dataset": "a/b", "aspect": "Event", "aptray_selected": None},  # no malicious validation row
                 {"dataset": "a/b", "aspect": "PerAspect",  # a process scored per aspect: not one artifact
                  "aptray_selected": {"embedder": "minilm", "detector": "fusion", **brief}}],
    }


def test_fusion_becomes_an_ensemble_of_the_members_used_most() -> None:
    # dae and knn-wide in all 3 seeds, cae in 2 (summed AUC 1.65), ae in 1
    assert fusion_members(_doc()["runs"], "a/b", "All", "minilm+aspects-no-events", 3) == ["dae", "knn-wide", "cae"]
    (fused, plain) = chosen_models(_doc())
    assert fused["config"] == {"ingest": {"source": "adapt", "aspect": "All"},
                               "template": {"process_style": "prose"},
                               "embed": {"model": "minilm", "compose": "aspects-no-events"},
                               "train": {"model": "ensemble", "ensemble_members": ["dae", "knn-wide", "cae"]}}
    assert plain["config"]["train"] == {"model": "knn-wide"} and plain["config"]["embed"]["model"] == "mpnet"
    assert [c["aspect"] for c in chosen_models(_doc())] == ["All", "Exec"]
    doc = _doc()
    doc["config"]["epochs"] = 4  # the experiment's epochs, not the config default, trained what it chose
    assert chosen_models(doc)[0]["config"]["train"]["epochs"] == 4
    del doc["targets"][1]["uri"]  # an experiment from before targets recorded what they read: no command to give
    assert [c["aspect"] for c in chosen_models(doc)] == ["All"]


def test_written_configs_load_and_the_command_names_them(tmp_path: Path) -> None:
    chosen = write_chosen(str(tmp_path), _doc())
    assert [Path(c["config_path"]).name for c in chosen] == ["a-b-All.yaml", "a-b-Exec.yaml"]
    cfg = load_config(chosen[0]["config_path"])
    assert cfg.train.model is DetectorName.ENSEMBLE and [m.value for m in cfg.train.ensemble_members] == [
        "dae", "knn-wide", "cae"]
    assert (cfg.embed.model, cfg.embed.compose.value, cfg.ingest.aspect) == ("minilm", "aspects-no-events", "All")
    assert Path(chosen[0]["config_path"]).read_text().startswith(
        "# aptray experiment's choice on validation for a/b All: minilm+aspects-no-events fusion (dae, knn-wide, cae)")
    assert chosen[1]["command"] == (f"aptray run s3://bucket/a/b --source adapt --aspect Exec --config "
                                    f"{tmp_path}/chosen/a-b-Exec.yaml --out out/a-b-Exec")
    assert "config" not in chosen[0] and chosen[0]["members"] == ["dae", "knn-wide", "cae"]
    events = _doc()  # single events (BETH, auditd, CDM): no aspect in the name, the command or the summary
    events["targets"][1]["aspect"] = events["best"][1]["aspect"] = None
    (_, single) = write_chosen(str(tmp_path / "ev"), events)
    assert Path(single["config_path"]).name == "a-b.yaml" and "--aspect" not in single["command"]
    assert single["command"].endswith("--out out/a-b") and load_config(single["config_path"]).ingest.aspect is None


def test_the_summary_names_each_datasets_best_choice() -> None:
    from aptray.commands.summary import chosen_lines

    chosen = [{"dataset": "a/b", "aspect": "All", "embedder": "minilm+aspects", "detector": "fusion",
               "members": ["dae", "knn"], "val_auc_roc": 0.9, "command": "aptray run X"},
              {"dataset": "a/b", "aspect": "Exec", "embedder": "minilm", "detector": "knn", "members": [],
               "val_auc_roc": 0.95, "command": "aptray run Y"},
              {"dataset": "c/d", "aspect": "Event", "embedder": "minilm", "detector": "ae", "members": [],
               "val_auc_roc": 0.7, "command": "aptray run Z"}]
    lines = chosen_lines(chosen, "out/exp")
    assert lines == ["chosen on validation, each dataset's best context (configs of all 3 in out/exp/chosen/):",
                     "  a/b Exec: minilm knn, validation AUC-ROC 0.950", "    aptray run Y",
                     "  c/d Event: minilm ae, validation AUC-ROC 0.700", "    aptray run Z"]
    assert chosen_lines(chosen, "out/exp", most=1)[-1] == "  and 1 more dataset(s)"
    assert chosen_lines([], "out/exp") == []
    assert chosen_lines([{**chosen[2], "aspect": None}], "out/exp")[1].startswith("  c/d events: minilm ae")
