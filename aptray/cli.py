"""The ``aptray`` command line: one sub-command per pipeline stage (see ``aptray --help``).

Errors a user can act on (:class:`aptray.errors.AptrayError`: a wrong ``--source``, an artifact of another
format, a tampered artifact, a config key or value that does not validate; a missing input or model) end the
command with their message on stderr, a JSON line ``{"error": ...}`` on stdout and exit code 2, not a traceback.
Any other error prints one line and exits 1; ``aptray -v`` shows the traceback (and Ray's own output).
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Annotated

import typer
from typer.core import TyperGroup

from aptray.commands import demo, embed, experiment, results, run, score, serve, templatize, train

if TYPE_CHECKING:  # typer's own copy of click, which its classes are typed with
    from typer._click import Context, HelpFormatter


class _Group(TyperGroup):
    """The command group; its list of commands gives each one's first sentence whole, wrapped to the width
    (click's list cuts it at the first line's end with "...")."""

    def format_commands(self, ctx: Context, formatter: HelpFormatter) -> None:
        """The commands, each with its first sentence."""
        rows = [(name, cmd.get_short_help_str(limit=1 << 16)) for name in self.list_commands(ctx)
                if (cmd := self.get_command(ctx, name)) is not None and not cmd.hidden]
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


# Help in click's plain layout (rich_markup_mode=None), not typer's rich tables: a table shares the width among
# option, type and help columns and cuts what does not fit ("--allow-format-misma…" at 80 columns); the plain
# layout puts a long option on a line of its own, so every option and choice is shown whole at any width.
app = typer.Typer(
    cls=_Group,
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,
    pretty_exceptions_show_locals=False,
    help="Find APTs in system logs on Ray.",
)


@app.callback()
def _main(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Ray's own output and tracebacks too.")] = False,
) -> None:
    """Find APTs in system logs: run (the whole pipeline), or each stage: templatize, embed, train, score, serve;
    experiment and results for evaluation."""
    from aptray.logs import set_verbose

    if verbose:
        set_verbose(True)


for _command in (run, templatize, embed, train, score, experiment, results, serve, demo):
    _command.register(app)

#: Exit code of a command stopped by a user error.
USER_ERROR = 2
#: Exit code of a command stopped by any other error (a bug, a lost cluster).
FAILED = 1
#: Exit code of a command stopped by Ctrl-C or SIGTERM (128 + SIGINT, as a shell reports it).
INTERRUPTED = 130


def main() -> None:
    """The console script: run :data:`app`, turning user errors into one clear line (exit code 2) and other
    errors into one line (exit code 1) unless verbose."""
    from aptray.errors import as_user_error, first_line
    from aptray.logs import verbose

    try:
        code = app(standalone_mode=False)
    except typer.Abort:
        code = INTERRUPTED
    except typer.TyperException as exc:  # a wrong option value, a missing argument, an unknown command
        message = str(exc.format_message() if hasattr(exc, "format_message") else exc).replace("Value error, ", "")
        ctx = getattr(exc, "ctx", None)
        where = f" (see `{ctx.command_path.replace(sys.argv[0], 'aptray', 1)} --help`)" if ctx is not None else ""
        sys.stderr.write(f"aptray: error: {message}{where}\n")
        raise SystemExit(int(getattr(exc, "exit_code", USER_ERROR))) from None
    except Exception as exc:
        err = as_user_error(exc)
        from aptray.commands.common import emit

        if err is None:
            if verbose():
                raise
            sys.stderr.write(f"aptray: failed: {type(exc).__name__}: {first_line(exc)}\n"
                             "aptray: run it again with -v for the traceback and Ray's own output\n")
            emit({"error": first_line(exc), "kind": type(exc).__name__})
            raise SystemExit(FAILED) from None
        if verbose():
            import traceback

            traceback.print_exception(exc, file=sys.stderr)
        sys.stderr.write(f"aptray: error: {first_line(err, 600)}\n")
        emit({"error": first_line(err, 4000), "kind": type(err).__name__})  # not Ray's retry advice after it
        raise SystemExit(USER_ERROR) from None
    if code == INTERRUPTED:  # Ctrl-C or SIGTERM (runtime.stop_on_sigterm): typer returns this code or aborts
        sys.stderr.write("aptray: interrupted\n")
    raise SystemExit(code if isinstance(code, int) else 0)  # as a console script ends (typer's own way)
