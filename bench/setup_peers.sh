#!/usr/bin/env bash
# Creates bench/.venv-peers: a clean virtual environment (no system site-packages) with
# torch 2.13.0 (CPU), mtsnn (editable) and the peer SNN libraries used by
# bench/bench_training.py, pinned against torch 2.13.0.
#
#   bash bench/setup_peers.sh            # then: bench/.venv-peers/bin/python bench/bench_training.py
#
# Pinned versions (checked with `pip index versions NAME`, 2026):
#   snntorch      1.0.0   no declared dependencies
#   spikingjelly  2.0.0   declares torchvision + torchaudio (no CPU builds on this machine's
#                         registry: they would pull a CUDA torch), so it is installed with
#                         --no-deps and its import-time needs are installed by hand
#   sinabs        3.1.3   declares samna (the SynSense chip runtime, not needed to simulate),
#                         so it is installed with --no-deps plus pbr, nir, nirtorch by hand
# torch is installed FIRST and pinned again on every later install so nothing can upgrade it.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
VENV="$HERE/.venv-peers"
PY="${PYTHON:-python3}"

TORCH_VERSION="2.13.0"
SNNTORCH_VERSION="1.0.0"
SPIKINGJELLY_VERSION="2.0.0"
SINABS_VERSION="3.1.3"

if [ ! -x "$VENV/bin/python" ]; then
    "$PY" -m venv "$VENV"
fi
PIP=("$VENV/bin/python" -m pip install --disable-pip-version-check)
PIN="torch==$TORCH_VERSION"

# 1. torch first: `torch==2.13.0` resolves to the local CPU wheel (pip's find-links).
"${PIP[@]}" "$PIN"
# 2. the project itself (its deps are satisfied by the torch above).
"${PIP[@]}" "$PIN" -e "$ROOT"
# 3. peers. snnTorch has no declared dependencies.
"${PIP[@]}" "$PIN" "snntorch==$SNNTORCH_VERSION"
# SpikingJelly: skip torchvision/torchaudio/tensorboard (not imported by activation_based).
"${PIP[@]}" --no-deps "spikingjelly==$SPIKINGJELLY_VERSION"
"${PIP[@]}" "$PIN" numpy scipy matplotlib tqdm "loguru>=0.7,<1" packaging requests h5py
# sinabs: skip samna (chip runtime).
"${PIP[@]}" --no-deps "sinabs==$SINABS_VERSION"
"${PIP[@]}" "$PIN" pbr "nir<=1.0.4" nirtorch

"$VENV/bin/python" - <<'PY'
import torch
assert torch.__version__.startswith("2.13.0"), torch.__version__
import snntorch, spikingjelly.activation_based.neuron, sinabs.layers  # noqa: F401
from importlib.metadata import version
print("torch", torch.__version__, "| snntorch", version("snntorch"), "| spikingjelly",
      version("spikingjelly"), "| sinabs", version("sinabs"))
PY
