"""The model an experiment chose on validation, as a config that ``aptray run`` and ``aptray train`` train it with.

``aptray experiment`` compares representations and detectors and chooses one per dataset x context on the
validation split (:func:`aptray.evaluate.experiment.best`); this module turns each choice into what deploys it:

* the representation's recipe: the embedder, ``embed.compose`` and ``template.process_style`` it was embedded
  with (recorded per target in ``metrics.json``);
* the detector: the chosen one, or for the experiment's rank fusion the ``ensemble`` detector over the members
  the fusion used most often across seeds (each seed fuses its best ``experiment.fusion_size`` on validation; ties
  go to the higher summed validation AUC-ROC). Both take a score's place among benign scores and average the
  places: the experiment's fusion among the benign validation rows' (:mod:`aptray.evaluate.fusion`), the ensemble
  among benign training rows it holds out of its members' training (:mod:`aptray.detectors.ensemble`), since a
  deployed model has no labelled validation split;
* ``train.epochs`` where the experiment ran the torch detectors with other epochs than the config's.

:func:`write_chosen` writes ``OUT/chosen/<dataset>-<aspect>.yaml`` per choice and returns each with the
``aptray run`` command that trains and scores it on the dataset. Per-aspect fusion (``PerAspect``, a process
scored on each aspect's own model) is not one artifact and is not written.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from typing import Any

from aptray.config import DetectorName
from aptray.evaluate.fusion import FUSION
from aptray.evaluate.per_aspect import PER_ASPECT
from aptray.io.fs import join, resolve

#: The folder under an experiment's output that holds the chosen models' configs.
CHOSEN = "chosen"


def fusion_members(runs: list[dict[str, Any]], dataset: str, aspect: str, embedder: str, size: int) -> list[str]:
    """The detectors the fusion of ``embedder`` on a target used most often over its seeds (``size`` of them;
    ties to the higher summed validation AUC-ROC, then the name)."""
    used: Counter[str] = Counter()
    val: dict[str, float] = {}
    for r in runs:
        if (r.get("dataset"), r.get("aspect"), r.get("embedder"), r.get("detector")) == (dataset, aspect, embedder,
                                                                                         FUSION) \
                and r.get("status") == "ok":
            for member, auc in (r.get("members") or {}).items():
                name = str(member)  # a DetectorName in the running experiment, its text once read back
                used[name] += 1
                val[name] = val.get(name, 0.0) + float(auc or 0.0)
    ranked = sorted(used, key=lambda n: (-used[n], -val[n], n))
    return ranked[:size]


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-") or "target"


def chosen_models(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """Per dataset x context of ``doc`` (an experiment's ``metrics.json``) with a choice on validation: what it
    is (``dataset``, ``aspect``, ``embedder``, ``detector``, ``members`` of a fusion, ``val_auc_roc``), the
    ``config`` that trains it (a dict of config sections) and the target's ``input``; none for per-aspect fusion or
    a target whose representation the document does not describe (an experiment before it recorded them)."""
    recipes = {(t.get("dataset"), t.get("aspect")): t for t in doc.get("targets", [])}
    exp = doc.get("config") or {}
    out = []
    for b in doc.get("best", []):
        chosen = b.get("aptray_selected")
        if not chosen or b.get("aspect") == PER_ASPECT:
            continue
        target = recipes.get((b["dataset"], b["aspect"])) or {}
        recipe = (target.get("embedders") or {}).get(chosen["embedder"]) or {}
        if "embedder" not in recipe or "uri" not in target:
            continue
        detector = chosen["detector"]
        members: list[str] = []
        train: dict[str, Any] = {"model": detector}
        if detector == FUSION:
            members = fusion_members(doc.get("runs", []), b["dataset"], b["aspect"], chosen["embedder"],
                                     int(exp.get("fusion_size") or 3))
            if len(members) < 2:
                continue
            train = {"model": DetectorName.ENSEMBLE.value, "ensemble_members": members}
        if exp.get("epochs"):
            train["epochs"] = int(exp["epochs"])
        config = {"ingest": {"source": doc.get("source"), "aspect": b["aspect"]},
                  "template": {"process_style": recipe.get("template", "prose")},
                  "embed": {"model": recipe["embedder"], "compose": recipe.get("compose", "auto")},
                  "train": train}
        val = (chosen.get("val_auc_roc") or {}).get("mean")
        choice = {"dataset": b["dataset"], "aspect": b["aspect"], "embedder": chosen["embedder"],
                  "detector": detector, "members": members, "val_auc_roc": val, "input": target["uri"],
                  "config": config}
        out.append(json.loads(json.dumps(choice)))  # plain text where a running experiment holds enums (DetectorName)
    return out


def describe(choice: dict[str, Any]) -> str:
    """``minilm+aspects ensemble (dae, knn-wide, cae)``: a choice's representation, detector and fusion members."""
    members = choice.get("members")
    return f"{choice['embedder']} {choice['detector']}" + (f" ({', '.join(members)})" if members else "")


def _name(choice: dict[str, Any]) -> str:
    """``<dataset>-<aspect>`` as a file or folder name; the dataset alone for single events (no aspect)."""
    return _slug(choice["dataset"] + (f"-{choice['aspect']}" if choice.get("aspect") else ""))


def run_command(choice: dict[str, Any], config_path: str) -> str:
    """The ``aptray run`` line that trains ``choice`` on its dataset and scores it (into ``out/<dataset>-<aspect>``)."""
    cfg = choice["config"]
    aspect = f" --aspect {cfg['ingest']['aspect']}" if cfg["ingest"].get("aspect") else ""
    return (f"aptray run {choice['input']} --source {cfg['ingest']['source']}{aspect} --config {config_path} "
            f"--out out/{_name(choice)}")


def write_chosen(out_uri: str, doc: dict[str, Any]) -> list[dict[str, Any]]:
    """Write each choice's config to ``OUT/chosen/<dataset>-<aspect>.yaml`` (a config file ``--config`` reads);
    the choices (:func:`chosen_models`, less the config) with ``config_path`` and ``command``."""
    import yaml

    from aptray.config import AptrayConfig

    written = []
    for choice in chosen_models(doc):
        AptrayConfig.model_validate(choice["config"])  # what is written loads: a renamed key fails here, not there
        path = join(out_uri, CHOSEN, _name(choice) + ".yaml")
        fs, p = resolve(path)
        fs.create_dir(p.rsplit("/", 1)[0], recursive=True)
        head = (f"# aptray experiment's choice on validation for {choice['dataset']} "
                f"{choice['aspect'] or 'events'}: {describe(choice)}\n")
        with fs.open_output_stream(p) as fh:
            fh.write((head + yaml.safe_dump(choice["config"], sort_keys=False)).encode())
        brief = {k: v for k, v in choice.items() if k != "config"}
        written.append({**brief, "config_path": path, "command": run_command(choice, path)})
    return written
