"""``aptray score INPUT --artifact ART --out OUT``: the resumable batch score job, run locally or on a cluster."""

from __future__ import annotations

from typing import Annotated

import typer

from aptray.config import Aspect, Source


def register(app: typer.Typer) -> None:
    """Add the command to ``app``."""

    @app.command()
    def score(
        input: Annotated[str, typer.Argument(help="Raw traces: file, folder, glob; local or s3://.")],
        artifact: Annotated[str, typer.Option(help="Detector artifact folder (local or s3://).")],
        out: Annotated[str, typer.Option(help="Output folder for scores/, alerts/, quarantine/, manifest.json.")],
        source: Annotated[Source | None, typer.Option(help="Trace format (default: the artifact's).")] = None,
        aspect: Annotated[Aspect | None, typer.Option(
            help="Process context (ADAPT, CDM, auditd; default: the artifact's).")] = None,
        allow_format_mismatch: Annotated[bool, typer.Option(
            "--allow-format-mismatch",
            help="Score events of another source or context than the artifact was trained on.")] = False,
        actors: Annotated[int | None, typer.Option(help="Embedding actors.")] = None,
        gpus_per_actor: Annotated[float | None, typer.Option(help="GPUs per embedding actor.")] = None,
        cache: Annotated[str | None, typer.Option(
            help="Embedding cache folder (local or s3://): read for known sentences, appended with new ones.")] = None,
        trusted: Annotated[bool, typer.Option(
            "--trusted",
            help="Accept artifact files without a recorded sha256 (a recorded one must still match).")] = False,
        config: Annotated[str | None, typer.Option(help="YAML config.")] = None,
    ) -> None:
        """Score every event; rows read = rows scored + rows quarantined; re-runs skip finished files."""
        from aptray.commands.common import emit, setup
        from aptray.score import run_score

        cfg = setup(config, {"ingest.source": source.value if source else None, "score.artifact": artifact,
                             "ingest.aspect": aspect.value if aspect else None, "embed.actors": actors,
                             "embed.gpus_per_actor": gpus_per_actor, "embed.cache": cache,
                             "score.trusted": trusted or None,
                             "score.allow_format_mismatch": allow_format_mismatch or None})
        result = run_score(input, out, cfg)
        from aptray.commands.summary import score_report

        evaluation, lines = score_report(result, out)  # AUC-ROC / PR-AUC where labelled, as aptray run gives
        emit({**{k: result[k] for k in ("rows_read", "rows_scored", "rows_quarantined", "alerts", "incidents",
                                        "files", "files_read", "files_in_output", "files_skipped", "source",
                                        "aspect", "lines", "quarantine_reasons", "distinct_sentences", "encoded",
                                        "seconds", "outputs")},
              "evaluation": evaluation}, lines)
