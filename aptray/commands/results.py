"""``aptray results METRICS.json... [--readme README.md]``: the headline results table of one or more experiments."""

from __future__ import annotations

from typing import Annotated

import typer


def register(app: typer.Typer) -> None:
    """Add the command to ``app``."""

    @app.command()
    def results(
        metrics: Annotated[list[str], typer.Argument(help="metrics.json of one or more experiments (local or s3://), "
                                                          "e.g. one per embedder; merged before the choice.")],
        readme: Annotated[str | None, typer.Option(help="Rewrite the table between the results markers of this "
                                                        "file (README.md).")] = None,
    ) -> None:
        """Print the results table (aptray chosen on validation, best on test, baselines, published anchors) as
        markdown on stderr (stdout keeps its JSON line, which also holds the table); with --readme, write it
        into that file. Only benign-split results make the table: a run of the unsupervised protocol alone is
        refused rather than written as an empty table."""
        import json

        from aptray.commands.common import emit
        from aptray.evaluate.report import markdown_table, merge_metrics, results_table, write_readme_table
        from aptray.io.fs import resolve
        from aptray.logs import configure

        configure()
        docs = []
        for uri in metrics:
            fs, path = resolve(uri)
            with fs.open_input_stream(path) as fh:
                docs.append(json.loads(fh.read()))
        header, rows = results_table(merge_metrics(docs))
        if not rows:  # an empty table would erase the README's (unsupervised-only runs have no chosen model)
            from aptray.errors import ConfigError

            raise ConfigError(f"{', '.join(metrics)}: no benign-split results to tabulate (a run of --protocols "
                              "unsupervised alone has none); nothing written")
        table = markdown_table(header, rows)
        if readme:
            write_readme_table(readme, table)
        else:
            typer.echo(table, err=True)
        emit({"experiments": len(metrics), "rows": len(rows), "readme": readme, "table": table})
