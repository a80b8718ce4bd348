"""``aptray experiment INPUT --out DIR``: every embedder x detector x aspect x seed -> metrics.json and a report."""

from __future__ import annotations

from typing import Annotated

import typer

from aptray.config import Source


def _names(value: str | None) -> list[str] | None:
    return [v.strip() for v in value.split(",") if v.strip()] if value else None


def register(app: typer.Typer) -> None:
    """Add the command to ``app``."""

    @app.command()
    def experiment(
        input: Annotated[str, typer.Argument(help="ADAPT system folder, or a root above several; local or s3://.")],
        out: Annotated[str, typer.Option(help="Output folder: metrics.json, report.html, report.md, plots/, "
                                              "chosen/ (each choice on validation as a config).")],
        source: Annotated[Source, typer.Option(help="Trace format.")] = Source.ADAPT,
        aspects: Annotated[str | None, typer.Option(help="Comma-separated aspects (default: all present).")] = None,
        embedders: Annotated[str | None, typer.Option(
            help="Comma-separated embedders (default minilm,mpnet where mpnet is installed). On 2 CPU cores mpnet "
                 "is the slow one: its torch autoencoders took 26 min on bovia/5dir's ProcessAll alone, where MiniLM "
                 "ran the whole folder in 5.")] = None,
        detectors: Annotated[str | None, typer.Option(help="Comma-separated detectors, e.g. ae,vae,iforest.")] = None,
        seeds: Annotated[int | None, typer.Option(help="Number of seeds (splits and initialisations).")] = None,
        protocols: Annotated[str | None, typer.Option(
            help="Comma-separated: benign-split (default: train on benign rows, choose on validation) and/or "
                 "unsupervised (fit every row without labels and rank them all).")] = None,
        epochs: Annotated[int | None, typer.Option(help="Epochs of the torch detectors.")] = None,
        compose: Annotated[str | None, typer.Option(
            help="Comma-separated embed.compose values to compare on ProcessAll: auto (default), none, aspects "
                 "(each aspect clause embedded on its own, reported as <embedder>+aspects), aspects-no-events, "
                 "-no-execs, -no-parents, -no-netflows (one aspect left out).")] = None,
        process_style: Annotated[str | None, typer.Option(
            help="Process sentences as prose (default) or terse (the APT-LLM papers' 'Process has event X and "
                 "exec Y'), reported as <embedder>/terse.")] = None,
        cache: Annotated[str | None, typer.Option(help="Embedding cache folder (default OUT/cache).")] = None,
        fresh: Annotated[bool, typer.Option("--fresh", help="Run every folder again, even those an interrupted or "
                                                             "finished run of the same settings in OUT completed.")
                         ] = False,
        config: Annotated[str | None, typer.Option(help="YAML config.")] = None,
    ) -> None:
        """Compare embedders, detectors and provenance contexts on labelled traces (benign-only training, and
        optionally the unsupervised protocol); each seed also gets the rank fusion of its best detectors. A rerun
        of the same settings into the same OUT resumes: the folders it finished are kept."""
        from aptray.commands.common import emit, setup
        from aptray.evaluate import run_experiment

        overrides = {
            "ingest.source": source.value, "experiment.aspects": _names(aspects),
            "experiment.embedders": _names(embedders), "experiment.detectors": _names(detectors),
            "experiment.seeds": seeds, "experiment.protocols": _names(protocols), "experiment.epochs": epochs,
            "embed.cache": cache, "experiment.compose": _names(compose), "template.process_style": process_style,
        }
        cfg = setup(config, overrides)
        from aptray.commands.summary import experiment_lines

        result = run_experiment(input, out, cfg, fresh=fresh)
        emit(result, experiment_lines(result, out))
