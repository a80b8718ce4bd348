"""The ``aptray`` command line: one sub-command per pipeline stage (see ``aptray --help``)."""

from __future__ import annotations

import importlib

import typer

app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
    help="Find APTs in system logs on Ray.",
)



@app.callback()
def main() -> None:
    """Find APTs in system logs: templatize, embed, train, score, serve, experiment."""


#: Command modules under aptray.commands; a stage registers its command by being listed here.
COMMANDS: tuple[str, ...] = ("templatize", "embed", "train", "score", "experiment", "serve", "demo")

for _name in COMMANDS:
    importlib.import_module(f"aptray.commands.{_name}").register(app)
