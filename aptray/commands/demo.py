"""``aptray demo``: the main job end to end on the embedded default (local Ray, synthetic data, MiniLM)."""

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
        """Templatize, embed, train an autoencoder and score; prints AUC and the top alerts as one JSON line."""
        from aptray.commands.common import emit, setup
        from aptray.demo import run_demo

        cfg = setup(config, {"embed.model": model, "train.epochs": epochs})
        emit(run_demo(out, cfg, input, source if input else None))
