#!/usr/bin/env bash
# Regenerates the BEIR SciFact evaluation of benchmarks/RESULTS.md: prints the tables, writes benchmarks/scifact.json
# (every figure) and benchmarks/scifact-candidates.png (the plot), then the RESULTS.md section with the targets checked.
# Uses the project venv only (.venv, see run.sh).
#   bash benchmarks/evaluate.sh [extra txtai-muvera evaluate flags]
# SHARED is the shared data and model folder (default: ../shared beside the checkout).
set -euo pipefail
cd "$(dirname "$0")/.."

SHARED="${SHARED:-../shared}"
VENV="${VENV:-.venv}"

"$VENV/bin/txtai-muvera" evaluate "$SHARED/models/minilm-colbert" "$SHARED/data/beir/scifact" \
    --compare txtai --json benchmarks/scifact.json --plot benchmarks/scifact-candidates.png "$@"

"$VENV/bin/python" benchmarks/results.py scifact benchmarks/scifact.json
