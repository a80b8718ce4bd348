"""``aptray run [INPUT] --source S --out DIR``: the whole pipeline in one Ray session, resumable."""

from __future__ import annotations

from typing import Annotated

import typer

from aptray.config import Aspect, Compose, DetectorName, Source


def register(app: typer.Typer) -> None:
    """Add the command to ``app``."""

    @app.command()
    def run(
        input: Annotated[str | None, typer.Argument(
            help="Trace to score: file, folder, glob; local or s3:// (default: a synthetic trace with attacks).",
        )] = None,
        out: Annotated[str, typer.Option(help="Output folder (embed/, model/, scores/, run.json).")] = "out/run",
        source: Annotated[Source | None, typer.Option(help="Trace format of INPUT (required with it).")] = None,
        aspect: Annotated[Aspect | None, typer.Option(help="Process context (ADAPT, CDM, auditd).")] = None,
        train_input: Annotated[str | None, typer.Option(
            "--train", help="Trace of normal behaviour to learn from (default: INPUT, less its rows labelled "
            "malicious).")] = None,
        detector: Annotated[DetectorName | None, typer.Option(help="Detector (default ae).")] = None,
        model: Annotated[str | None, typer.Option(help="Embedder: minilm, mpnet or a local folder.")] = None,
        epochs: Annotated[int | None, typer.Option(help="Training epochs.")] = None,
        compose: Annotated[Compose | None, typer.Option(
            help="How sentences become vectors: auto (default: ProcessAll aspect by aspect), none, aspects, "
                 "aspects-no-<events|execs|parents|netflows>.")] = None,
        fresh: Annotated[bool, typer.Option(
            "--fresh", help="Run every stage again, even those OUT/run.json records.")] = False,
        config: Annotated[str | None, typer.Option(help="YAML config.")] = None,
    ) -> None:
        """Templatize, embed, train, score and report in one go; a re-run skips the stages already done."""
        from aptray.commands.common import emit, setup
        from aptray.commands.summary import run_lines
        from aptray.pipeline import run_pipeline

        if input is not None and source is None:
            raise typer.BadParameter("INPUT needs its format: --source adapt|beth|cdm|auditd|synthetic",
                                     param_hint="--source")
        cfg = setup(config, {"train.model": detector.value if detector else None, "embed.model": model,
                             "train.epochs": epochs, "embed.compose": compose.value if compose else None})
        result = run_pipeline(out, cfg, input, source, aspect, train_input, fresh)
        emit(result, run_lines(result))
