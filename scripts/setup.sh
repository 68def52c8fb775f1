#!/usr/bin/env bash
# Create (or reuse) the project's virtual environment in .venv and install mtsnn with its test
# extras. torch is pinned and installed first: an unpinned torch would pull gigabytes of CUDA
# packages; torch==2.13.0 is the CPU build.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
if ! .venv/bin/python - <<'PY' 2>/dev/null
import importlib.metadata as md, sys
need = ["torch", "brevitas", "onnx", "onnxruntime", "numpy", "scikit-learn", "array-api-compat", "tqdm",
        "matplotlib", "pytest", "hypothesis", "jsonschema", "mtsnn"]
missing = []
for name in need:
    try:
        md.version(name)
    except md.PackageNotFoundError:
        missing.append(name)
sys.exit(1 if missing or md.version("torch").split("+")[0] != "2.13.0" else 0)
PY
then
    echo "setting up .venv (torch==2.13.0 CPU first, then mtsnn[dev]) ..."
    .venv/bin/python -m pip install -q --upgrade pip
    .venv/bin/python -m pip install -q torch==2.13.0
    .venv/bin/python -m pip install -q -e ".[dev]"
fi
