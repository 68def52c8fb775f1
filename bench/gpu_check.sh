#!/usr/bin/env bash
# One command for a machine with an NVIDIA GPU (issue 11, item 2):
#
#   bash bench/gpu_check.sh [OUT_DIR]          # default OUT_DIR: runs/gpu_check
#
# 1. the CUDA tests: the integer forward on CUDA == the CPU's, bit for bit (logits and every
#    layer's spike counts), for a model trained on CUDA (tests/toolchain/test_device.py);
# 2. trains the digits on CUDA (`mtsnn train --device cuda`), evaluates the checkpoint on CUDA and
#    on the CPU (the same integer accuracy), exports it and validates it with the QAT path on
#    CUDA against the numpy reference, onnxruntime and the simulator (bit-exact or exit 1);
# 3. times the training step on CUDA against the same contenders as bench/bench_training.py
#    (the dense ReLU floor and whichever peers are installed), interleaved, and on the CPU.
#
# Python: $PYTHON, else bench/.venv-peers/bin/python (peers installed), else .venv/bin/python,
# else python3. It needs a torch with CUDA; without one it says so and exits 3 (nothing to check).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
OUT="${1:-$ROOT/runs/gpu_check}"
if [ -n "${PYTHON:-}" ]; then PY="$PYTHON"
elif [ -x "$HERE/.venv-peers/bin/python" ]; then PY="$HERE/.venv-peers/bin/python"
elif [ -x "$ROOT/.venv/bin/python" ]; then PY="$ROOT/.venv/bin/python"
else PY=python3; fi
mkdir -p "$OUT"
cd "$ROOT"

"$PY" - <<'PY' || exit 3
import sys, torch
if not torch.cuda.is_available():
    print(f"gpu_check: no CUDA device for torch {torch.__version__} (cuda {torch.version.cuda}); nothing to check",
          file=sys.stderr)
    sys.exit(1)
print(f"torch {torch.__version__}, CUDA {torch.version.cuda}, {torch.cuda.get_device_name(0)}")
PY

echo "== 1. CUDA tests (integer forward CUDA vs CPU, bit for bit)"
"$PY" -m pytest -q -p no:cacheprovider tests/toolchain/test_device.py -k "cuda" -rs

echo "== 2. train the digits on CUDA, evaluate on CUDA and CPU, export, validate (QAT path on CUDA)"
"$PY" -m mtsnn train --device cuda --epochs 10 --no-progress -o "$OUT/digits_cuda.pt"
"$PY" -m mtsnn evaluate "$OUT/digits_cuda.pt" --device cuda --json | tee "$OUT/evaluate_cuda.json"
"$PY" -m mtsnn evaluate "$OUT/digits_cuda.pt" --device cpu --json | tee "$OUT/evaluate_cpu.json"
"$PY" - "$OUT" <<'PY'
import json, sys, numpy as np, torch
from mtsnn.toolchain.checkpoint import load_checkpoint
from mtsnn.toolchain.datasets import load_dataset
out = sys.argv[1]
a, b = (json.load(open(f"{out}/evaluate_{d}.json"))["accuracy"] for d in ("cuda", "cpu"))
assert a == b, f"accuracy on CUDA {a} != on the CPU {b}"
model, _ = load_checkpoint(f"{out}/digits_cuda.pt")
images = torch.from_numpy(np.ascontiguousarray(load_dataset("digits").test.images))
cpu = model.integer_forward(images)
gpu = model.to("cuda").integer_forward(images.to("cuda"))
same = torch.equal(cpu.logits, gpu.logits.cpu()) and all(torch.equal(cpu.spikes[k], gpu.spikes[k].cpu()) for k in cpu.spikes)
print(f"integer forward, {len(images)} test images: CUDA == CPU bit for bit: {same}; accuracy {a:.4f} on both")
sys.exit(0 if same else 1)
PY
"$PY" -m mtsnn export "$OUT/digits_cuda.pt" --device cuda -o "$OUT/export"
"$PY" -m mtsnn validate "$OUT/digits_cuda.pt" "$OUT/export" --device cuda

echo "== 3. training step on CUDA vs the floor and the peers (interleaved), then the same on the CPU"
"$PY" bench/bench_training.py --device cuda --rounds 40 --warmup 5 --json "$OUT/bench_training_cuda.json"
"$PY" bench/bench_training.py --device cpu --rounds 20 --warmup 3 --json "$OUT/bench_training_cpu.json"
echo "gpu_check: all checks passed; reports in $OUT"
