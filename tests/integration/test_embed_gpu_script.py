"""bench/gpu.sh and bench/gpu.py where no GPU is: the script's steps as a dry run, and the Python part on CPU."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_gpu_script_dry_run_lists_every_step() -> None:
    out = subprocess.run(["bash", str(ROOT / "bench" / "gpu.sh"), "--dry-run"], capture_output=True, text=True,
                         timeout=30, check=True).stdout
    steps = [line.split(" (limit")[0][3:] for line in out.splitlines() if line.startswith("== ")]
    assert steps == ["devices", "encoders", "synthetic-input", "embed-job", "train-gpu", "cuda-tests"]
    limits = [int(line.split("(limit ")[1].split("s)")[0]) for line in out.splitlines() if line.startswith("== ")]
    assert sum(limits) < 8 * 60  # the whole check fits the 8 minutes it is given
    assert "torch@bfloat16" in out and "onnx-o4" in out and "--gpus-per-actor 1" in out
    assert " train " in out and "--gpus" in out and "-m gpu" in out
    assert out.rstrip().endswith("dry run: nothing ran")


@pytest.mark.slow  # about 20-30 s: a fresh process loads the model twice
def test_gpu_bench_python_part_runs_on_cpu() -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    args = ["--device", "cpu", "--in-process", "--models", "minilm", "--variants", "torch,torch@bfloat16",
            "--sentences", "24", "--max-file-bytes", "100000", "--encode-batch-size", "8"]
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "gpu.py"), *args], capture_output=True, text=True,
                          timeout=180, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    rows = {r["variant"]: r for r in result["results"]}
    assert set(rows) == {"torch", "torch@bfloat16"}
    assert rows["torch"]["ratio"] == 1.0 and rows["torch"]["min_cosine"] >= 0.9999
    assert rows["torch@bfloat16"]["sps"] > 0 and 0.95 <= rows["torch@bfloat16"]["min_cosine"] < 1.0
