#!/usr/bin/env bash
# Create (or reuse) the project's virtual environment in .venv and install mtsnn with its test
# extras. torch is pinned and installed first: an unpinned torch would pull gigabytes of CUDA
# packages; torch==2.13.0 is the CPU build. The install is redone whenever pyproject.toml
# changes (its hash is kept in .venv), so a new dependency always reaches an existing .venv.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
stamp=.venv/.mtsnn-pyproject.sha256
wanted=$(sha256sum pyproject.toml | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$wanted" ] || ! .venv/bin/python -c "import mtsnn.toolchain, mtsnn.hw_model, mtsnn.export" 2>/dev/null; then
    echo "setting up .venv (torch==2.13.0 CPU first, then mtsnn[dev]) ..."
    .venv/bin/python -m pip install -q --upgrade pip
    .venv/bin/python -m pip install -q torch==2.13.0
    .venv/bin/python -m pip install -q -e ".[dev]"
    echo "$wanted" > "$stamp"
fi
