"""``aptray templatize beth FILE --out DIR`` as a user runs it: a subprocess printing one JSON line."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.data, pytest.mark.timeout(300)]


def test_cli_counts(shared_data: Path, tmp_path: Path) -> None:
    path = shared_data / "beth" / "head_samples_BethSecure" / "labelled_testing_data.csv"
    with open(path, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    aptray = Path(sys.executable).parent / "aptray"
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "RAY_ADDRESS": ""}
    out = subprocess.run([str(aptray), "templatize", "beth", str(path), "--out", str(tmp_path / "out")],
                         capture_output=True, text=True, timeout=280, env=env, check=False)
    assert out.returncode == 0, out.stderr[-3000:]
    lines = out.stdout.strip().splitlines()
    assert len(lines) == 1, out.stdout
    result = json.loads(lines[0])
    assert result["rows"] == len(rows) == 100 and result["quarantined"] == 0
    assert result["malicious"] == sum(r["evil"] == "1" for r in rows)
    assert 1 < result["distinct_sentences"] < len(rows)
