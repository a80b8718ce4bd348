"""Dispatch for the ``jobs/`` entry points of ``ray job submit``: one typed config file per job.

Each ``jobs/<name>.py`` is two lines that call :func:`main` with its stage name; every behaviour lives in
the package. A job config is the :class:`aptray.config.AptrayConfig` tree plus the job's ``input``/``out``.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from typing import Any

from aptray.config import AptrayConfig, load_config
from aptray.errors import ConfigError
from aptray.logs import configure

Stage = Callable[[str, str, AptrayConfig], dict[str, Any]]


def _templatize(input_uri: str, out_uri: str, cfg: AptrayConfig) -> dict[str, Any]:
    from aptray.templating.job import run_templatize

    return run_templatize(cfg.ingest.source, input_uri, out_uri, cfg)


def _embed(input_uri: str, out_uri: str, cfg: AptrayConfig) -> dict[str, Any]:
    """A templatize output, or a raw trace where the config names its ``ingest.source`` (``aptray embed --source``;
    the job ignored it)."""
    from aptray.embed.job import run_embed

    return run_embed(input_uri, out_uri, cfg,
                     source=str(cfg.ingest.source) if "source" in cfg.ingest.model_fields_set else None)


def _train(input_uri: str, out_uri: str, cfg: AptrayConfig) -> dict[str, Any]:
    from aptray.train import run_train

    return run_train(input_uri, out_uri, cfg)


def _score(input_uri: str, out_uri: str, cfg: AptrayConfig) -> dict[str, Any]:
    """The score stage with what ``aptray score`` adds: the evaluation where the trace is labelled, and the
    summary on stderr (counts, the alert-flood warning, the top alerts)."""
    from aptray.commands.summary import score_report
    from aptray.score import run_score

    result = run_score(input_uri, out_uri, cfg)
    result["evaluation"], lines = score_report(result, out_uri)
    sys.stderr.write("".join(line + "\n" for line in lines))
    return result


def _experiment(input_uri: str, out_uri: str, cfg: AptrayConfig) -> dict[str, Any]:
    from aptray.evaluate import run_experiment

    return run_experiment(input_uri, out_uri, cfg)


#: stage -> its function (input, out, cfg) -> a JSON-able summary; each imports its stage when called.
STAGES: dict[str, Stage] = {"templatize": _templatize, "embed": _embed, "train": _train, "score": _score,
                            "experiment": _experiment}


def run_stage(stage: str, cfg: AptrayConfig) -> dict[str, Any]:
    """Run ``stage`` on ``cfg.input`` into ``cfg.out``."""
    missing = [f for f in ("input", "out") if getattr(cfg, f) is None]
    if missing:
        raise ConfigError(f"config is missing {', '.join(missing)} (set it in the YAML or with --set {missing[0]}=...)")
    return STAGES[stage](str(cfg.input), str(cfg.out), cfg)


def parse_sets(pairs: Sequence[str]) -> dict[str, Any]:
    """``["embed.actors=2", "input=s3://b/x"]`` -> dotted overrides with YAML-typed values."""
    import yaml

    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set takes KEY=VALUE, got {pair!r}")
        out[key.strip()] = yaml.safe_load(value)
    return out


def main(stage: str, argv: Sequence[str] | None = None) -> int:
    """Run ``stage`` with ``--config FILE`` and ``--set key=value`` overrides; print one JSON line."""
    if stage not in STAGES:
        raise SystemExit(f"unknown stage {stage!r}; choose from {sorted(STAGES)}")
    parser = argparse.ArgumentParser(prog=f"jobs/{stage}.py", description=f"aptray {stage} job")
    parser.add_argument("--config", required=True, help="YAML config (jobs/configs/*.yaml)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config key")
    args = parser.parse_args(argv)
    configure()
    if stage != "templatize":
        from aptray.runtime import preload_torch

        preload_torch()  # before any S3 access in this driver
    try:
        cfg = load_config(args.config, parse_sets(args.set))
        result = run_stage(stage, cfg)
    except Exception as exc:  # a user's mistake: one line and a JSON line, exit 2 (as the aptray command does)
        from aptray.errors import as_user_error, first_line

        err = as_user_error(exc)
        if err is None:
            raise  # a failure that is no user's mistake keeps its traceback in the job's log
        sys.stderr.write(f"jobs/{stage}.py: error: {first_line(err, 600)}\n")
        sys.stdout.write(json.dumps({"error": first_line(err, 4000), "kind": type(err).__name__}) + "\n")
        return 2
    sys.stdout.write(json.dumps(result, default=str) + "\n")
    return 0
