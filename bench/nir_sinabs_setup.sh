#!/usr/bin/env bash
# Creates .venv-sinabs at the repository root: a clean virtual environment (no system
# site-packages, mtsnn NOT installed) for bench/nir_sinabs_check.py, which loads a NIR file
# written by mtsnn into sinabs and compares sinabs's logits with mtsnn's integer reference.
#
#   bash bench/nir_sinabs_setup.sh        # once (about a minute; torch comes from the local wheel)
#   .venv-sinabs/bin/python bench/nir_sinabs_check.py     # see that script's docstring
#
# Pinned versions and why (checked with `pip index versions NAME` and the wheels' metadata):
#   torch     2.13.0  the local CPU wheel, installed FIRST and pinned again on every later install:
#                     an unpinned torch would pull gigabytes of CUDA packages.
#   nir       1.0.6   the version mtsnn writes with (the project's .venv): a file written by
#                     nir 1.0.6 stores v_reset on IF/LIF nodes, which nir <= 1.0.5 cannot read.
#   nirtorch  2.6     declares torch and nir>=1.0.6 (both satisfied here); sinabs.from_nir calls
#                     its nirtorch.load (deprecated in 2.x, still present).
#   sinabs    3.1.3   installed with --no-deps: it declares nir<=1.0.4 (conflicts with the
#                     nir 1.0.6 above, and with nirtorch>=2.0.5) and samna (the SynSense chip
#                     runtime, not needed to simulate); its import-time needs are installed by hand.
#   numpy 2.4.6, h5py 3.16.0 (nir's only dependencies; the project's .venv has the same), pbr 7.1.3
#   (sinabs reads its own version with pbr at import), matplotlib 3.11.2 (sinabs.network imports
#   pylab at import); the same versions as the project's .venv.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
VENV="${VENV:-$ROOT/.venv-sinabs}"
PY="${PYTHON:-python3}"

TORCH_VERSION="2.13.0"
NIR_VERSION="1.0.6"
NIRTORCH_VERSION="2.6"
SINABS_VERSION="3.1.3"
NUMPY_VERSION="2.4.6"
H5PY_VERSION="3.16.0"
PBR_VERSION="7.1.3"
MATPLOTLIB_VERSION="3.11.2"

if [ ! -x "$VENV/bin/python" ]; then
    "$PY" -m venv "$VENV"
fi
# Keep git from listing the environment (what Python 3.13's venv does by itself).
printf '# created by bench/nir_sinabs_setup.sh\n*\n' > "$VENV/.gitignore"

PIP=("$VENV/bin/python" -m pip install --disable-pip-version-check -q)
PIN="torch==$TORCH_VERSION"

# 1. torch first: `torch==2.13.0` resolves to the local CPU wheel (pip's find-links).
"${PIP[@]}" "$PIN"
# 2. nir, nirtorch and what sinabs imports, with torch pinned so nothing can replace it.
"${PIP[@]}" "$PIN" "numpy==$NUMPY_VERSION" "h5py==$H5PY_VERSION" "pbr==$PBR_VERSION" \
    "matplotlib==$MATPLOTLIB_VERSION" \
    "nir==$NIR_VERSION" "nirtorch==$NIRTORCH_VERSION"
# 3. sinabs without its declared dependencies (nir<=1.0.4, samna).
"${PIP[@]}" --no-deps "sinabs==$SINABS_VERSION"

"$VENV/bin/python" - <<PY
import torch
assert torch.__version__.startswith("$TORCH_VERSION"), torch.__version__
import nir, nirtorch, sinabs, sinabs.activation  # noqa: F401
from importlib.metadata import version
got = {d: version(d) for d in ("torch", "nir", "nirtorch", "sinabs", "numpy", "h5py")}
want = {"nir": "$NIR_VERSION", "nirtorch": "$NIRTORCH_VERSION", "sinabs": "$SINABS_VERSION"}
bad = {d: (got[d], v) for d, v in want.items() if got[d] != v}
assert not bad, f"version mismatch (found, wanted): {bad}"
print(" | ".join(f"{d} {v}" for d, v in got.items()))
PY
