#!/usr/bin/env bash
# Creates .venv-peers: the peer libraries the benchmarks compare against (txtai, PyLate, fastembed, maxsim-cpu) next to an editable
# install of this package, so ours and theirs run side by side in one process.
#   bash benchmarks/setup-peers.sh
# VENV overrides the location (default .venv-peers in the checkout). Reuses an existing venv, installs are idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV="${VENV:-.venv-peers}"
PIP="$VENV/bin/pip"

# CPU torch first, pinned: an unpinned torch would pull the CUDA build. Here the +cpu wheel comes from PIP_FIND_LINKS
# (/opt/wheels); elsewhere set TORCH_INDEX=https://download.pytorch.org/whl/cpu
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
"$PIP" install torch==2.13.0 ${TORCH_INDEX:+--index-url "$TORCH_INDEX"}

# PyLate without its dependencies (fast-plaid, fastkmeans and ninja are only needed for indexes, not rank.rerank)
"$PIP" install pylate==1.6.0 --no-deps
"$PIP" install datasets sentence-transformers==5.3.0 transformers==5.3.0 accelerate pandas ujson==5.12.0 fastembed "txtai>=9" numpy

# txtai 9.14 asks for transformers>=5.9 while PyLate 1.6 needs <=5.3, so the resolver above settles on an older txtai
# (9.10: NumPy Muvera, unmasked LateEncoder.score). Keep PyLate's pins and put txtai 9.14, the version this package
# targets, on top without dependencies: the parts benchmarked (Muvera, LateEncoder.score) do not need the newer transformers
"$PIP" install transformers==5.3.0 ujson==5.12.0
"$PIP" install txtai==9.14.0 --no-deps

# maxsim-cpu: mixedbread's Rust MaxSim kernel (libxsmm), a peer in bench_maxsim.py
"$PIP" install maxsim-cpu==0.1.0

# This package, editable and without dependencies, so the venv keeps the pins above
"$PIP" install -e . --no-deps
"$PIP" install "pluggy>=1.3"

# Check the pins held
"$VENV/bin/python" - <<'EOF'
from importlib.metadata import version

import torch

assert torch.__version__.startswith("2.13.0") and torch.version.cuda is None, torch.__version__
assert version("txtai") == "9.14.0", version("txtai")
print(", ".join(f"{name} {version(name)}" for name in ("torch", "txtai", "pylate", "fastembed", "transformers", "maxsim-cpu")))
EOF
