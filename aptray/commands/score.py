"""``aptray score INPUT --artifact ART --out OUT``: the resumable batch score job, run locally or on a cluster."""

from __future__ import annotations

from typing import Annotated

import typer

from aptray.config import Source


def register(app: typer.Typer) -> None:
    """Add the command to ``app``."""

    @app.command()
    def score(
        input: Annotated[str, typer.Argument(help="Raw traces: file, folder, glob; local or s3://.")],
        artifact: Annotated[str, typer.Option(help="Detector artifact folder (local or s3://).")],
        out: Annotated[str, typer.Option(help="Output folder for scores/, alerts/, quarantine/, manifest.json.")],
        source: Annotated[Source, typer.Option(help="Trace format.")] = Source.BETH,
        actors: Annotated[int | None, typer.Option(help="Embedding actors.")] = None,
        gpus_per_actor: Annotated[float | None, typer.Option(help="GPUs per embedding actor.")] = None,
        cache: Annotated[str | None, typer.Option(help="Embedding cache folder (local or s3://).")] = None,
        trusted: Annotated[bool, typer.Option(help="Accept artifacts without recorded hashes.")] = False,
        config: Annotated[str | None, typer.Option(help="YAML config.")] = None,
    ) -> None:
        """Score every event; rows read = rows scored + rows quarantined; re-runs skip finished files."""
        from aptray.commands.common import emit, setup
        from aptray.score import run_score

        cfg = setup(config, {"ingest.source": source.value, "score.artifact": artifact, "embed.actors": actors,
                             "embed.gpus_per_actor": gpus_per_actor, "embed.cache": cache,
                             "score.trusted": trusted or None})
        result = run_score(input, out, cfg)
        emit({k: result[k] for k in ("rows_read", "rows_scored", "rows_quarantined", "alerts", "files",
                                     "files_skipped", "seconds")})
