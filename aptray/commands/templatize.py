"""``aptray templatize SOURCE INPUT --out DIR``: trace -> sentences Parquet + quarantine, counts as JSON."""

from __future__ import annotations

from typing import Annotated

import typer

from aptray.config import Aspect, Source


def register(app: typer.Typer) -> None:
    """Add the command to ``app``."""

    @app.command()
    def templatize(
        source: Annotated[Source, typer.Argument(help="Trace format.")],
        input: Annotated[str, typer.Argument(help="File, folder or glob; local or s3://.")],
        out: Annotated[str, typer.Option(help="Output folder (local or s3://).")],
        aspect: Annotated[Aspect | None, typer.Option(help="Process context (ADAPT, CDM, auditd).")] = None,
        strict: Annotated[bool, typer.Option("--strict", help="Stop at the first bad row.")] = False,
        labels: Annotated[str | None, typer.Option(help="Ground-truth file of malicious UUIDs.")] = None,
        config: Annotated[str | None, typer.Option(help="YAML config.")] = None,
    ) -> None:
        """Turn a trace into labelled sentences; bad rows go to OUT/quarantine with a reason."""
        from aptray.commands.common import emit, setup
        from aptray.templating.job import run_templatize

        overrides = {"ingest.source": source.value, "ingest.strict": strict or None, "ingest.labels": labels,
                     "ingest.aspect": aspect.value if aspect else None}
        cfg = setup(config, overrides)
        counts = run_templatize(source, input, out, cfg)
        from aptray.commands.summary import templatize_lines

        emit({k: counts[k] for k in ("rows", "malicious", "quarantined", "distinct_sentences", "lines",
                                     "quarantine_reasons", "seconds")}, templatize_lines(counts, out))
