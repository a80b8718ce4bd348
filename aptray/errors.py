"""Errors a user can act on: the CLI prints their message as one line (and a JSON line), never a traceback."""

from __future__ import annotations


class AptrayError(Exception):
    """Base of the errors whose message tells the user what to do."""


class WrongSourceError(AptrayError, ValueError):
    """An input file is not in the format it is read as (its first block quarantined entirely)."""


class FormatMismatchError(AptrayError, ValueError):
    """Events of one format (or process context) scored with an artifact trained on another."""


class LineAccountingError(AptrayError, RuntimeError):
    """The readers accounted for fewer (or more) lines than the input has: a reader bug, never silent."""


def user_error(exc: BaseException) -> AptrayError | None:
    """The :class:`AptrayError` behind ``exc`` (Ray wraps task errors: its cause chain is searched), or None."""
    seen: set[int] = set()
    todo: list[BaseException | None] = [exc]
    while todo:
        e = todo.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        cause = getattr(e, "cause", None)  # a Ray task error: the exception raised in the task
        if isinstance(e, AptrayError) and not isinstance(cause, AptrayError):
            return e
        todo += [e.__cause__, e.__context__, cause if isinstance(cause, BaseException) else None]
    return None
