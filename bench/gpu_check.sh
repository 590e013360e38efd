#!/usr/bin/env bash
# GPU check: is this CUDA machine ready for a sweep, and what does packing gain on it?  ~6 minutes, offline.
#   bench/gpu_check.sh [MODEL_FOLDER]
# 1. bench/gpu_check.py: short LoRA/PiSSA/MiLoRA training at two batch sizes on MODEL_FOLDER (default:
#    the cached `lorasweep fetch smollm2-135m` folder, else the built-in model); the loss must decrease;
#    tokens/s, MFU and peak memory -> $RESULTS/gpu_check.md.
# 2. the test suite's GPU-marked tests (pytest -m gpu, on the files that hold such tests).
# 3. bench/packing.py --device cuda on a 1.0B model: K packed trials ÷ K separate (K 4/8/16, B 4/8),
#    bf16 autocast, MetaMathQA-shaped rows (bench/metamath_like.py). The model is Llama-3.2-1B's shape
#    with random weights (bench/random_model.py: the hub is unreachable, and speed does not depend on
#    the weights' values) -> $RESULTS/packing-gpu-1b.md; reported, never a failure.
# 4. the same on the built-in tiny model (a launch-bound extreme) -> $RESULTS/packing-gpu-tiny.md.
# 5. gpu_check.py's LoRA tokens/s and MFU on the 1.0B model -> $RESULTS/gpu_check-1b.md (speed only:
#    with random weights the loss check means little, so its result does not count).
# RESULTS: default bench/results; TOKENIZER: a model folder whose tokenizer the 1.0B model gets (default:
# the cached smollm2-135m folder, else the built-in model's). Python: $PYTHON, else .venv/bin/python, else python3; lorasweep is
# imported from src/ (no install needed, but torch with CUDA, transformers, peft, accelerate and pytest
# must be importable). Exit codes: 0 all checks passed, 1 a check failed, 2 no CUDA: nothing was run.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-}
if [ -z "$PY" ]; then
  if [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python3; fi
fi
RESULTS=${RESULTS:-bench/results}
WORK=${WORK:-runs/bench}
mkdir -p "$RESULTS" "$WORK"
export PYTHONPATH="$PWD/src:$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1

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

echo "== 1. training check"
timeout 150 "$PY" bench/gpu_check.py "$@" --out "$RESULTS/gpu_check.md"
train_rc=$?

echo "== 2. pytest -m gpu"
mapfile -t gpu_tests < <(grep -rl "pytest.mark.gpu" tests --include='test_*.py')
timeout 180 "$PY" -m pytest -m gpu -q -p no:cacheprovider "${gpu_tests[@]}"
test_rc=$?

echo "== 3. packing on a 1.0B model (random weights)"
BIG="$WORK/random-llama-1b"
[ -f "$BIG/model.safetensors" ] || timeout 120 "$PY" bench/random_model.py "$BIG" --shape llama-1b \
  ${TOKENIZER:+--tokenizer "$TOKENIZER"}
[ -f "$WORK/metamath_like.jsonl" ] || "$PY" bench/metamath_like.py "$WORK/metamath_like.jsonl" 512
timeout 270 "$PY" bench/packing.py --device cuda --model "$BIG" --data "$WORK/metamath_like.jsonl" \
  --max-len 256 --ks 4 8 16 --batches 4 8 --steps 8 4 --max-micro 1024 --reps 3 \
  --out "$RESULTS" --name packing-gpu-1b || echo "gpu_check: 1B packing benchmark did not finish (not a failure)"

echo "== 4. packing on the built-in tiny model"
timeout 120 "$PY" bench/packing.py --device cuda --model builtin:tinyworld --ks 4 8 16 --batches 4 64 \
  --steps 16 8 --max-micro 1024 --reps 3 --out "$RESULTS" --name packing-gpu-tiny \
  || echo "gpu_check: tiny packing benchmark did not finish (not a failure)"

echo "== 5. tokens/s and MFU on the 1.0B model (random weights: speed only)"
timeout 150 "$PY" bench/gpu_check.py "$BIG" --methods lora --steps 8 --lr 1e-4 --out "$RESULTS/gpu_check-1b.md" \
  || echo "gpu_check: the 1B speed run did not pass (not a failure: random weights)"

echo "gpu_check: training check exit $train_rc, pytest -m gpu exit $test_rc"
[ "$train_rc" -eq 0 ] && [ "$test_rc" -eq 0 ] && exit 0
exit 1
