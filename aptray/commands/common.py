"""Helpers shared by the CLI commands: config loading with overrides, one-line JSON output."""

from __future__ import annotations

import json
import sys
from typing import Any

from aptray.config import AptrayConfig, load_config
from aptray.logs import configure


def setup(config: str | None, overrides: dict[str, Any]) -> AptrayConfig:
    """Configure logging and load the config with CLI overrides (dotted keys; None means not given)."""
    configure()
    return load_config(config, overrides)


def emit(result: dict[str, Any]) -> None:
    """Print the command's result as one JSON line on stdout (logs go to stderr)."""
    sys.stdout.write(json.dumps(result, default=str) + "\n")
    sys.stdout.flush()
