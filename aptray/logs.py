"""Logging set-up for entry points (the package itself only calls ``logging.getLogger(__name__)``)."""

from __future__ import annotations

import logging
import os
import sys


def configure(level: str | int | None = None) -> None:
    """Send log records to stderr (stdout is reserved for the one-line JSON results of the CLI).

    Args:
        level: a logging level; defaults to env ``APTRAY_LOG_LEVEL`` or ``INFO``.
    """
    lvl = level if level is not None else os.environ.get("APTRAY_LOG_LEVEL", "INFO")
    logging.basicConfig(
        level=lvl,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        force=True,
    )


def progress_bars_enabled() -> bool:
    """Progress bars only on an interactive terminal, never in CI logs."""
    return sys.stderr.isatty() and not os.environ.get("CI")
