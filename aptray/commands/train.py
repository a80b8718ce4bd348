"""``aptray train EMBEDDINGS --model NAME --out DIR``: fit a detector on an embed output, save the artifact."""

from __future__ import annotations

from typing import Annotated

import typer

from aptray.config import DetectorName


def register(app: typer.Typer) -> None:
    """Add the command to ``app``."""

    @app.command()
    def train(
        embeddings: Annotated[str, typer.Argument(help="Embed output folder (embeddings/*.parquet + manifest.json).")],
        out: Annotated[str, typer.Option(help="Artifact folder (local or s3://).")],
        model: Annotated[DetectorName | None, typer.Option(help="Detector (default ae).")] = None,
        workers: Annotated[int | None, typer.Option(help="Ray Train workers (DDP).")] = None,
        gpus: Annotated[bool, typer.Option("--gpus", help="One GPU per worker.")] = False,
        epochs: Annotated[int | None, typer.Option(help="Training epochs.")] = None,
        config: Annotated[str | None, typer.Option(help="YAML config.")] = None,
    ) -> None:
        """Train on benign rows (malicious-labelled rows are excluded) and print one JSON summary line."""
        from aptray.commands.common import emit, setup
        from aptray.train import run_train

        overrides = {"train.model": model.value if model else None, "train.workers": workers,
                     "train.use_gpu": gpus or None, "train.epochs": epochs}
        cfg = setup(config, overrides)
        result = run_train(embeddings, out, cfg)
        keys = ("model", "rows", "distinct_sentences", "rows_used", "benign_rows", "excluded_malicious",
                "fit_sample_rows", "epochs", "final_train_loss", "final_val_loss", "thresholds", "validation",
                "trainer", "artifact", "seconds")
        from aptray.commands.summary import train_lines

        emit({k: result[k] for k in keys if k in result}, train_lines(result))
