"""``aptray demo``: ``aptray run`` on the embedded default (local Ray, synthetic trace, MiniLM), into ``out/demo``."""

from __future__ import annotations

from typing import Annotated

import typer

from aptray.config import Source


def register(app: typer.Typer) -> None:
    """Add the command to ``app``."""

    @app.command()
    def demo(
        out: Annotated[str, typer.Option(help="Output folder.")] = "out/demo",
        input: Annotated[str | None, typer.Option(help="A real trace instead of the synthetic one.")] = None,
        source: Annotated[Source, typer.Option(help="Format of --input.")] = Source.BETH,
        model: Annotated[str, typer.Option(help="Embedder: minilm, mpnet or a local folder.")] = "minilm",
        epochs: Annotated[int, typer.Option(help="Training epochs.")] = 15,
        config: Annotated[str | None, typer.Option(help="YAML config.")] = None,
    ) -> None:
        """The same as "aptray run" with the demo's defaults (synthetic input, 15 epochs, out/demo)."""
        from aptray.commands.common import emit, setup
        from aptray.commands.summary import run_lines
        from aptray.pipeline import run_pipeline

        cfg = setup(config, {"embed.model": model, "train.epochs": epochs})
        result = run_pipeline(out, cfg, input, source if input else None)
        emit(result, run_lines(result))
