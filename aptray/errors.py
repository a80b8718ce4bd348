"""Errors a user can act on: the CLI prints their message as one line (and a JSON line), never a traceback."""

from __future__ import annotations


class AptrayError(Exception):
    """Base of the errors whose message tells the user what to do."""


class WrongSourceError(AptrayError, ValueError):
    """An input file is not in the format it is read as (its first block quarantined entirely)."""


class FormatMismatchError(AptrayError, ValueError):
    """Events of one format (or process context) scored with an artifact trained on another."""


class EmptyInputError(AptrayError, ValueError):
    """A stage that needs rows got none (an empty input, or one whose lines are all headers, labels or context)."""


class MissingBucketError(AptrayError, FileNotFoundError):
    """An ``s3://`` output names a bucket that does not exist: aptray never creates one (a misspelt name would)."""


class UriError(AptrayError, ValueError):
    """A path that is neither a local path nor an ``s3://`` URI (another scheme, ``s3:/`` with one slash)."""


class LineAccountingError(AptrayError, RuntimeError):
    """The readers accounted for fewer (or more) lines than the input has: a reader bug, never silent."""


class S3AccessError(AptrayError, PermissionError):
    """S3 refused the request: missing or wrong credentials, or a policy that denies the bucket or key."""


#: Texts of S3 clients' errors that mean the credentials or the policy, not aptray (pyarrow, botocore, s3fs).
_ACCESS_DENIED = ("ACCESS_DENIED", "AccessDenied", "Unable to locate credentials", "InvalidAccessKeyId",
                  "SignatureDoesNotMatch", "NoCredentialsError", "ExpiredToken")


def _chain(exc: BaseException) -> list[BaseException]:
    """``exc`` and what it wraps (causes, contexts, and a Ray task error's ``cause``: the exception in the task)."""
    seen: set[int] = set()
    out: list[BaseException] = []
    todo: list[BaseException | None] = [exc]
    while todo:
        e = todo.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        out.append(e)
        cause = getattr(e, "cause", None)
        todo += [e.__cause__, e.__context__, cause if isinstance(cause, BaseException) else None]
    return out


def user_error(exc: BaseException) -> AptrayError | None:
    """The :class:`AptrayError` behind ``exc`` (Ray wraps task errors: its cause chain is searched), or None."""
    for e in _chain(exc):
        cause = getattr(e, "cause", None)  # a Ray task error: the exception raised in the task
        if isinstance(e, AptrayError) and not isinstance(cause, AptrayError):
            return e
    return None


def as_user_error(exc: Exception) -> BaseException | None:
    """What the CLI and the jobs print as one line with exit code 2: an :class:`AptrayError`, a config that does
    not validate, a missing file, or S3 refusing the credentials; None for a failure that is no user's mistake."""
    found = user_error(exc) or config_error(exc)
    if found is not None:
        return found
    if isinstance(exc, FileNotFoundError):
        return exc
    for e in _chain(exc):
        text = str(e)
        if isinstance(e, OSError) and any(t in text or t in type(e).__name__ for t in _ACCESS_DENIED):
            return S3AccessError(f"S3 refused access: {first_line(e, 300)}; check the credentials "
                                 "(AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, AWS_PROFILE or the node's role) and the "
                                 "bucket's policy")
    return None


class ConfigError(AptrayError, ValueError):
    """A config file or option that does not validate: names the key, what is wrong and the keys it could be."""


def config_error(exc: Exception) -> ConfigError | None:
    """One clear :class:`ConfigError` for a pydantic validation error of the config tree, or None for other errors.

    An unknown key names the closest known keys of its section; a wrong value names the key, the expected type
    and the value given; further errors are counted, not listed.
    """
    import difflib

    from pydantic import BaseModel, ValidationError

    if not isinstance(exc, ValidationError):
        return None
    errors = exc.errors()
    if not errors:
        return None
    first = errors[0]
    where = ".".join(str(p) for p in first["loc"])
    more = f" (and {len(errors) - 1} more problem(s))" if len(errors) > 1 else ""
    if first["type"] == "extra_forbidden":
        known = _section_keys(exc.title, first["loc"][:-1])
        close = difflib.get_close_matches(str(first["loc"][-1]), known, n=3)
        hint = f"did you mean {' or '.join(close)}?" if close else f"known keys: {', '.join(known) or '-'}"
        return ConfigError(f"unknown config key {where}: {hint}{more}")
    given = first.get("input")
    msg = str(first["msg"]).removeprefix("Value error, ")  # a validator's own message reads as it is
    shown = "" if isinstance(given, dict | list | BaseModel) else f" = {given!r}"
    return ConfigError(f"config value {where}{shown}: {msg}{more}; fix it in --config FILE or the option")


def _section_keys(model_name: str, loc: tuple[int | str, ...]) -> list[str]:
    """The field names of the config section at ``loc`` below the model named ``model_name`` ([] if unknown)."""
    from aptray import config as config_module

    model = getattr(config_module, model_name, None)
    for part in loc:
        field = getattr(model, "model_fields", {}).get(part)
        model = getattr(field, "annotation", None) if field is not None else None
    return sorted(getattr(model, "model_fields", {}))


def first_line(exc: BaseException, limit: int = 300) -> str:
    """The first line of an error's message, shortened (Ray wraps task errors in pages of context)."""
    text = str(exc).strip().splitlines()
    line = text[0] if text else type(exc).__name__
    return line if len(line) <= limit else line[: limit - 3] + "..."
