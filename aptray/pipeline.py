"""The whole pipeline in one Ray session: templatize -> embed -> train -> score -> report (``aptray run``).

Each stage writes into its own folder of ``OUT`` and is recorded in ``OUT/run.json`` once it finishes; a re-run
with the same settings skips the finished stages (and the score stage itself skips the files it finished), so an
interrupted run continues where it stopped. A re-run with other settings (input, format, model, detector,
training settings) into the same ``OUT`` is refused rather than mixing two runs' outputs.

Layout of ``OUT``:

- ``embed/``: the training input's sentences (``sentences/``, the templatize stage) and their embeddings;
- ``model/``: the trained detector artifact;
- ``scores/``: the score job's output (``scores/``, ``alerts/``, ``incidents/``, ``quarantine/``, ``report.html``);
- ``cache/``: the embedding cache the embed and score stages share (each distinct sentence is encoded once);
- ``run.json``: the stages done, their counts and the settings' fingerprint.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from pathlib import Path
from typing import Any

from aptray.config import AptrayConfig, Aspect, Source
from aptray.errors import AptrayError
from aptray.io.fs import check_output, join, resolve

log = logging.getLogger(__name__)

#: The stages of a run, in order (templatize runs inside embed: a raw trace is templatized on the fly).
STAGES = ("embed", "train", "score")
RUN_FILE = "run.json"


class RunConflictError(AptrayError, ValueError):
    """``OUT`` holds a run made with other settings."""


def run_pipeline(out: str, cfg: AptrayConfig, input_uri: str | None = None, source: Source | None = None,
                 aspect: Aspect | None = None, train_uri: str | None = None, fresh: bool = False) -> dict[str, Any]:
    """Run every stage not yet done for these settings and return the run's summary.

    Args:
        out: output folder (local or ``s3://``).
        cfg: configuration (model, detector, resources, ...).
        input_uri: the trace to score; None: the synthetic demo trace (a benign training file, a test file with
            attacks), written to ``OUT/data``.
        source: the format of ``input_uri`` (required with it).
        aspect: the process context (ADAPT, CDM, auditd).
        train_uri: the trace to learn normal behaviour from (default ``input_uri``: rows labelled malicious, where
            the trace has labels, are left out of training).
        fresh: forget the stages recorded in ``OUT/run.json`` and run them all again.

    Returns:
        ``stages`` (each stage's counts; ``skipped`` for those done earlier), ``evaluation`` (AUC-ROC, PR-AUC
        where the scored trace has labels), ``top_alerts``, ``outputs`` and ``seconds``.
    """
    from aptray.runtime import init_ray

    check_output(out, cfg.embed.cache)  # a missing s3 bucket: refused before any work
    start = time.perf_counter()
    if input_uri is None:
        from aptray.io.synthetic import default_demo_input

        train_path, test_path = default_demo_input(Path(out) / "data")
        input_uri, train_uri, source, data_note = str(test_path), str(train_path), Source.SYNTHETIC, (
            "SYNTHETIC trace made by aptray.io.synthetic (benign training file, test file with attacks)")
    elif source is None:
        raise ValueError("--source is required with an input (adapt, beth, cdm, auditd, synthetic)")
    else:
        data_note = input_uri
    train_uri = train_uri or input_uri
    cfg = cfg.model_copy(deep=True)
    cfg.ingest.source, cfg.ingest.aspect = source, aspect
    cfg.embed.cache = cfg.embed.cache or join(out, "cache")
    cfg.score.artifact = join(out, "model")
    paths = {"embed": join(out, "embed"), "model": join(out, "model"), "scores": join(out, "scores")}

    settings = _settings(cfg, input_uri, train_uri)
    fingerprint = hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:16]
    state = {} if fresh else _read_state(out)
    if state and state.get("fingerprint") != fingerprint:
        old = state.get("settings", {})
        changed = [k for k in settings if old.get(k) != settings[k]]
        what = "differs in " + ", ".join(changed) if changed else "another version"
        raise RunConflictError(f"{out} holds a run with other settings ({what}): pass another --out, or --fresh to "
                               "run every stage again")
    _check_plan(cfg, source, aspect, input_uri, train_uri)
    done: dict[str, Any] = dict(state.get("stages", {}))
    if fresh:  # the score job resumes file by file: a new model must not find the old one's scores
        from aptray.templating.job import clear_dir

        clear_dir(paths["scores"])
    init_ray(cfg.ray)
    log.info("run: %s -> %s", data_note, out)

    skipped: set[str] = set()

    def stage(name: str, fn: Any) -> None:
        folder, marker = FINISHED[name]
        if name in done and _exists(join(paths[folder], marker)):
            log.info("%s: done earlier, skipped", name)
            skipped.add(name)
            return
        if name in done:  # recorded, but its output is gone (deleted, or replaced by another command)
            log.warning("%s: done earlier, but %s is gone: running it again", name, paths[folder])
        log.info("%s ...", name)
        done[name] = fn()
        _write_state(out, {"fingerprint": fingerprint, "settings": settings, "stages": done})

    from aptray.embed.job import run_embed
    from aptray.score import run_score
    from aptray.train import run_train

    borrowed = _share_encoders(cfg, [s for s in ("embed", "score") if s not in done])
    try:
        stage("embed", lambda: run_embed(train_uri, paths["embed"], cfg, source=str(source)))
        stage("train", lambda: run_train(paths["embed"], paths["model"], cfg))
        stage("score", lambda: run_score(input_uri, paths["scores"], cfg))
    finally:
        if borrowed:  # the user did not ask for warm actors: the run's own end here
            from aptray.embed.job import model_for
            from aptray.embed.pool import stop_warm
            from aptray.templating.job import effective_aspect

            aspect = effective_aspect(source, cfg.ingest.aspect, train_uri)  # what the embed stage read
            stop_warm(model_for(cfg.embed, aspect, cfg.template.model_dump(mode="json")), cfg.embed)
    from aptray.evaluate.score_output import evaluate_scores, top_alerts

    return {
        "data": data_note,
        "trained_on_input": train_uri == input_uri,
        "evaluation": evaluate_scores(paths["scores"]),
        "top_alerts": top_alerts(paths["scores"], 5),
        "stages": {k: {**done[k], "skipped": k in skipped} for k in STAGES},
        "outputs": {**paths, "report": join(paths["scores"], "report.html")},
        "seconds": round(time.perf_counter() - start, 1),
    }


#: Seconds the run keeps its encoder actors between its embed and score stages (they wait out the train stage).
SHARED_ENCODER_S = 600.0


#: Per stage, its output folder (a key of the run's ``paths``) and the file there that says it finished.
FINISHED = {"embed": ("embed", "manifest.json"), "train": ("model", "config.json"),
            "score": ("scores", "manifest.json")}


def _exists(uri: str) -> bool:
    import pyarrow.fs as pafs

    fs, path = resolve(uri)
    return bool(fs.get_file_info(path).type == pafs.FileType.File)


def _check_plan(cfg: AptrayConfig, source: Source, aspect: Aspect | None, input_uri: str, train_uri: str) -> None:
    """A missing input, a wrong ``--source``, a context the source does not build, or a windowed detector for rows
    without event order: refused before Ray starts (the last two failed as a crash after the embedding stage, the
    first two after Ray's start)."""
    from aptray.detectors.registry import detector_spec
    from aptray.embed.job import check_input
    from aptray.io.sources import source_spec
    from aptray.templating.job import effective_aspect
    from aptray.train import check_windowed

    for uri in dict.fromkeys((input_uri, train_uri)):  # a missing input or a wrong --source
        check_input(uri, cfg, str(source))
    effective = effective_aspect(source, aspect, input_uri)
    source_spec(source).check_aspect(effective)
    check_windowed(detector_spec(cfg.train.model), source, effective, f"{input_uri} is read as")


def _share_encoders(cfg: AptrayConfig, encoding: list[str]) -> bool:
    """Let the embed and score stages share one set of encoder actors (the score stage then skips the actors'
    start: about 10 s of imports and model load on two cores); True when the run turned this on itself and must
    stop them at its end.

    Only where both stages run and the train stage between them fits beside the idle actors: one worker on CPUs,
    and the cluster's CPUs hold it and the actors at once (Ray Train's DDP workers could otherwise wait for the
    actors' CPUs).
    """
    import ray

    if cfg.embed.keep_warm_s > 0 or len(encoding) < 2 or cfg.train.workers > 1 or cfg.train.use_gpu:
        return False
    need = cfg.train.cpus_per_worker + cfg.embed.actors * cfg.embed.cpus_per_actor
    if float(ray.cluster_resources().get("CPU", 0.0)) < need:
        return False
    cfg.embed.keep_warm_s = SHARED_ENCODER_S
    return True


def _settings(cfg: AptrayConfig, input_uri: str, train_uri: str) -> dict[str, Any]:
    """What a run's outputs depend on (resources and output options excluded)."""
    from aptray.templating.base import TEMPLATE_VERSION

    return {
        # 'x/' and 'x' are one input ('differs in input' refused the rerun)
        "input": input_uri.rstrip("/") or input_uri, "train_input": train_uri.rstrip("/") or train_uri,
        "source": str(cfg.ingest.source),
        "aspect": str(cfg.ingest.aspect) if cfg.ingest.aspect else None, "model": cfg.embed.model,
        "compose": cfg.embed.compose.value,
        "template_version": TEMPLATE_VERSION, "template": cfg.template.model_dump(mode="json"),
        "train": cfg.train.model_dump(mode="json", exclude={"workers", "use_gpu"}),
        "threshold": cfg.threshold.model_dump(mode="json"),
    }


def _read_state(out: str) -> dict[str, Any]:
    fs, root = resolve(out)
    try:
        with fs.open_input_stream(join(root, RUN_FILE)) as fh:
            return dict(json.loads(fh.read()))
    except FileNotFoundError:
        return {}


def _write_state(out: str, state: dict[str, Any]) -> None:
    fs, root = resolve(out)
    fs.create_dir(root, recursive=True)
    with fs.open_output_stream(join(root, RUN_FILE)) as fh:
        fh.write(json.dumps(state, indent=1, default=str).encode())
