"""Logging set-up for entry points (the package itself only calls ``logging.getLogger(__name__)``).

Quiet by default: aptray's own messages are short lines on stderr, Ray's own output (its console loggers, the
lines its workers print, model-loading bars) goes only to Ray's session log files, named once per run. Verbose
(``aptray -v``, or ``APTRAY_VERBOSE=1`` for a job's driver) brings Ray's console output back and adds each
message's level and logger.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Any

#: Environment variable that turns verbose output on (set by ``aptray -v``; read by job drivers too).
VERBOSE_ENV = "APTRAY_VERBOSE"

_SHORT = "%(asctime)s %(message)s"
_LONG = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def verbose() -> bool:
    """Whether verbose output is on (``aptray -v`` or ``$APTRAY_VERBOSE``)."""
    return os.environ.get(VERBOSE_ENV, "").lower() in {"1", "true", "yes"}


def set_verbose(on: bool) -> None:
    """Turn verbose output on or off for this process and the processes it starts."""
    if on:
        os.environ[VERBOSE_ENV] = "1"
    else:
        os.environ.pop(VERBOSE_ENV, None)


#: Loggers of S3 clients whose DEBUG records hold credentials (botocore's signed headers; aiobotocore, which s3fs
#: uses, logs "Found credentials in environment variables." at INFO on every client).
SIGNING_LOGGERS: tuple[str, ...] = ("botocore", "aiobotocore", "boto3", "s3transfer")


def configure(level: str | int | None = None) -> None:
    """Send log records to stderr (stdout is reserved for the one-line JSON results of the CLI).

    Args:
        level: a logging level; defaults to env ``APTRAY_LOG_LEVEL``, else ``DEBUG`` when verbose and ``INFO``
            otherwise.
    """
    loud = verbose()
    lvl = level if level is not None else os.environ.get("APTRAY_LOG_LEVEL", "DEBUG" if loud else "INFO")
    logging.basicConfig(
        level=lvl,
        stream=sys.stderr,
        format=_LONG if loud else _SHORT,
        datefmt=None if loud else "%H:%M:%S",
        force=True,
    )
    # S3 clients log signed request headers (the access key id, signatures) at DEBUG: never below INFO, even with -v
    for name in SIGNING_LOGGERS:
        logging.getLogger(name).setLevel(logging.INFO if loud else logging.WARNING)
    if not loud:
        # libraries that log at INFO through the root logger (httpx, filelock, urllib3, ...) stay quiet
        for name in ("httpx", "httpcore", "filelock", "urllib3", "s3fs", "fsspec", "asyncio",
                     "sentence_transformers", "transformers", "torch"):
            logging.getLogger(name).setLevel(logging.WARNING)
        os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")


def quiet_ray_console() -> None:
    """Raise Ray's console handlers (not its log files) to CRITICAL unless verbose.

    Ray, Ray Data, Ray Train and Ray Serve each attach their own stream handlers to their loggers; the file
    handlers that write the session logs keep their levels, so nothing is lost, it is only not printed. Errors
    too: a failed task reaches aptray as an exception, which it reports in a line or two (a user's mistake, such
    as a file of another source, named with its fix); Ray Data's ERROR records of the same failure printed three
    tracebacks and "please open an issue on the Ray project" before that line.
    """
    if verbose():
        return
    for name in [n for n in logging.root.manager.loggerDict if n == "ray" or n.startswith("ray.")]:
        logger = logging.getLogger(name)
        for handler in logger.handlers:
            if isinstance(handler, logging.StreamHandler) and not isinstance(handler, logging.FileHandler):
                handler.setLevel(logging.CRITICAL)
        if not logger.handlers and logger.propagate is False:
            logger.setLevel(logging.CRITICAL)


def progress_bars_enabled() -> bool:
    """Progress bars only on an interactive terminal, never in CI logs."""
    return sys.stderr.isatty() and not os.environ.get("CI")


class Progress:
    """A progress display on a terminal (tqdm: count, rate, ETA); nothing when stderr is not one or in CI.

    Use as a context manager: ``with Progress(len(tasks), "fits") as bar: ... bar.update()``.
    """

    def __init__(self, total: int, desc: str, unit: str = "it") -> None:
        self._bar: Any = None
        if progress_bars_enabled() and total > 0:
            from tqdm import tqdm

            self._bar = tqdm(total=total, desc=desc, unit=unit, dynamic_ncols=True, leave=False)

    def update(self, n: int = 1) -> None:
        """Advance by ``n``."""
        if self._bar is not None:
            self._bar.update(n)

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.close()
