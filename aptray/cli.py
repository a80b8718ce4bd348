"""The ``aptray`` command line: one sub-command per pipeline stage (see ``aptray --help``).

Errors a user can act on (:class:`aptray.errors.AptrayError`: a wrong ``--source``, an artifact of another
format, a tampered artifact; a missing input) end the command with their message on stderr, a JSON line
``{"error": ...}`` on stdout and exit code 2, not a traceback.
"""

from __future__ import annotations

import sys

import typer

from aptray.commands import demo, embed, experiment, results, score, serve, templatize, train

app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
    help="Find APTs in system logs on Ray.",
)


@app.callback()
def _main() -> None:
    """Find APTs in system logs: templatize, embed, train, score, serve, experiment, results."""


for _command in (templatize, embed, train, score, experiment, results, serve, demo):
    _command.register(app)

#: Exit code of a command stopped by a user error.
USER_ERROR = 2


def main() -> None:
    """The console script: run :data:`app`, turning user errors into one clear line (exit code 2)."""
    from aptray.errors import user_error

    try:
        app()
    except Exception as exc:
        err = user_error(exc) or (exc if isinstance(exc, FileNotFoundError) else None)
        if err is None:
            raise
        from aptray.commands.common import emit

        sys.stderr.write(f"aptray: error: {err}\n")
        emit({"error": str(err), "kind": type(err).__name__})
        raise SystemExit(USER_ERROR) from None
