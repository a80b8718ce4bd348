#!/usr/bin/env bash
# The GPU check, for the first machine with one (limits add up to 470 s; each step has its own):
#   1. the devices;
#   2. encoder sentences/s of mpnet and MiniLM in fp32, bf16, fp16 and ONNX-O4 on one actor per GPU (bench/gpu.py);
#   3. the embed job end to end with --gpus-per-actor 1 (mpnet, a synthetic BETH trace);
#   4. aptray train --gpus on that output;
#   5. the CUDA-marked tests (pytest -m gpu).
# Usage: bash bench/gpu.sh [--dry-run]      (--dry-run prints the steps and runs none)
# Env: SENTENCES (default 50000), WORK (default a temp dir), PYTHON (default python).
set -uo pipefail

DRY=0
[[ "${1:-}" == "--dry-run" ]] && DRY=1
PY="${PYTHON:-python}"
SENTENCES="${SENTENCES:-50000}"
WORK="${WORK:-$(mktemp -d /tmp/aptray-gpu.XXXXXX)}"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 RAY_USAGE_STATS_ENABLED=0 TOKENIZERS_PARALLELISM=false
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$HERE/.." || exit 1
FAILED=()
APTRAY=("$PY" -c "from aptray.cli import main; main()")  # the CLI of this checkout's interpreter

step() {  # step NAME SECONDS COMMAND...
  local name="$1" limit="$2"
  shift 2
  echo "== $name (limit ${limit}s): $*"
  if [[ $DRY == 1 ]]; then return 0; fi
  local t0=$SECONDS
  timeout --kill-after=10 "$limit" "$@"
  local rc=$?
  echo "== $name: rc $rc in $((SECONDS - t0)) s"
  [[ $rc == 0 ]] || FAILED+=("$name (rc $rc)")
}

step devices 20 bash -c "nvidia-smi -L; $PY -c 'import torch; print(\"torch\", torch.__version__, \"cuda\", torch.version.cuda, torch.cuda.device_count(), \"device(s)\")'"
step encoders 200 "$PY" bench/gpu.py --models mpnet,minilm --variants torch,torch@bfloat16,torch@float16,onnx-o4 \
  --sentences "$SENTENCES"
step synthetic-input 30 "$PY" -c "from aptray.io.synthetic import generate; generate('$WORK/synthetic_trace.csv', 100000, seed=1)"
step embed-job 80 "${APTRAY[@]}" embed "$WORK/synthetic_trace.csv" --source synthetic --model mpnet --out "$WORK/emb" \
  --gpus-per-actor 1
step train-gpu 70 "${APTRAY[@]}" train "$WORK/emb" --model ae --gpus --epochs 3 --out "$WORK/artifact"
step cuda-tests 70 "$PY" -m pytest -q -m gpu -p no:cacheprovider tests

if [[ $DRY == 1 ]]; then echo "dry run: nothing ran"; exit 0; fi
if (( ${#FAILED[@]} )); then echo "failed: ${FAILED[*]}"; exit 1; fi
echo "all GPU steps passed"
