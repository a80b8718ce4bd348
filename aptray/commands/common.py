"""Helpers shared by the CLI commands: config loading with overrides, the result as a JSON line and a summary."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable
from typing import Any

from aptray.config import AptrayConfig, load_config
from aptray.logs import configure


def setup(config: str | None, overrides: dict[str, Any]) -> AptrayConfig:
    """Configure logging and load the config with CLI overrides (dotted keys; None means not given)."""
    configure()
    return load_config(config, overrides)


def emit(result: dict[str, Any], summary: Iterable[str] = ()) -> None:
    """Write a short human ``summary`` to stderr, then the command's result as one JSON line on stdout."""
    for line in summary:
        sys.stderr.write(line + "\n")
    sys.stderr.flush()
    sys.stdout.write(json.dumps(result, default=str) + "\n")
    sys.stdout.flush()
