#!/usr/bin/env bash
# GPU check: is this CUDA machine ready for a sweep?  Under 8 minutes, offline.
#   bench/gpu_check.sh [MODEL_FOLDER] [--steps N --batch-sizes B1 B2 --lr LR --peak-tflops T]
# 1. bench/gpu_check.py: short LoRA/PiSSA/MiLoRA training at two batch sizes on MODEL_FOLDER (default:
#    the cached `lorasweep fetch smollm2-135m` folder, else the built-in model); the loss must decrease;
#    tokens/s, MFU and peak memory go to bench/results/gpu_check.md.
# 2. the test suite's GPU-marked tests (pytest -m gpu).
# 3. bench/packing.py --device cuda: K packed trials ÷ K separate (K 4/8/16, B 4/16/64) on MODEL_FOLDER
#    (or the built-in model), bf16 autocast -> bench/results/packing.md; reported, never a failure.
# Python: $PYTHON, else .venv/bin/python, else python3; lorasweep is imported from src/ (no install
# needed, but torch with CUDA, transformers, peft, accelerate and pytest must be importable).
# Exit codes: 0 all passed, 1 a check failed, 2 no CUDA (or torch missing): nothing was run.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-}
if [ -z "$PY" ]; then
  if [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python3; fi
fi
export PYTHONPATH="$PWD/src:$PWD${PYTHONPATH:+:$PYTHONPATH}"

"$PY" - <<'PYEOF' || exit 2
import sys
try:
    import torch
except ImportError:
    sys.exit("gpu_check: torch is not importable by this Python; set PYTHON=/path/to/python (torch with CUDA)")
if not torch.cuda.is_available():
    sys.exit(
        f"gpu_check: no CUDA device visible to torch {torch.__version__} (CUDA build: {torch.version.cuda}); "
        "this check needs an NVIDIA GPU and a CUDA build of torch. Nothing was run."
    )
print(f"gpu_check: {torch.cuda.get_device_name(0)}, torch {torch.__version__}, CUDA {torch.version.cuda}")
PYEOF

timeout 400 "$PY" bench/gpu_check.py "$@"
train_rc=$?
timeout 60 "$PY" -m pytest -m gpu -q -p no:cacheprovider tests
test_rc=$?
MODEL=${1:-builtin:tinyworld}
[[ "$MODEL" == --* ]] && MODEL=builtin:tinyworld
timeout 900 "$PY" bench/packing.py --device cuda --model "$MODEL" --ks 4 8 16 --batches 4 16 64 \
  --steps 16 16 8 --max-micro 1024 --reps 3 || echo "gpu_check: packing benchmark did not finish (not a failure)"
echo "gpu_check: training check exit $train_rc, pytest -m gpu exit $test_rc"
[ "$train_rc" -eq 0 ] && [ "$test_rc" -eq 0 ] && exit 0
exit 1
