#!/usr/bin/env bash
# The main job on the embedded scikit-learn digits: train -> export -> simulate -> validate,
# then a small design-space sweep (bits x Smax x T x target) with its Pareto plots.
# Everything lands in runs/digits/. Set EPOCHS=3 for a quick smoke run (shorter sweep too).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export PATH="$PWD/.venv/bin:$PATH"
OUT=runs/digits
mkdir -p "$OUT"
EPOCHS=${EPOCHS:-30}

echo "== 1/5 train (QAT: 8-bit fixed-point weights, T=2, Smax=15) =="
mtsnn-train --epochs "$EPOCHS" -T 2 --smax 15 --bits 8 -o "$OUT/model.pt"

echo "== 2/5 export (ONNX + core description + 16 golden vectors) =="
mtsnn-export "$OUT/model.pt" --bits 8 -o "$OUT" --golden 16

echo "== 3/5 simulate on the Loihi-like and TrueNorth-like targets =="
mtsnn-sim "$OUT" --target loihi --json "$OUT/sim_loihi.json" --plots "$OUT/plots_loihi"
# 8-bit weights break TrueNorth's rule of 4 axon types (one weight per type per neuron): price the
# network anyway with the rule relaxed; the report states it (without --relax: exit 2, the rule named)
mtsnn-sim "$OUT" --target truenorth --relax axon-types --json "$OUT/sim_truenorth.json" --plots "$OUT/plots_truenorth"

echo "== 4/5 validate: QAT forward, numpy reference, onnxruntime and simulator, bit for bit =="
mtsnn-validate "$OUT/model.pt" "$OUT"

echo "== 5/5 sweep: bits 4,8 x Smax 3,15 x T 1,2 on Loihi and Loihi 2 (a couple of minutes) =="
# one float baseline, each point fine-tuned with QAT, exported, validated bit for bit, simulated;
# resumable: rerun the same command and finished points are kept
SWEEP_EPOCHS=$(( EPOCHS < 5 ? 1 : 5 ))
mtsnn sweep --dataset digits --bits 4,8 --smax 3,15 --timesteps 1,2 --target loihi,loihi2 \
    --epochs "$SWEEP_EPOCHS" --baseline-epochs "$(( EPOCHS < 15 ? EPOCHS : 15 ))" -o "$OUT/sweep_e$SWEEP_EPOCHS"
echo "outputs in $OUT/ (sweep table and Pareto plots in $OUT/sweep_e$SWEEP_EPOCHS/)"
