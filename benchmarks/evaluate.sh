#!/usr/bin/env bash
# Regenerates the BEIR SciFact evaluation of benchmarks/RESULTS.md: prints the tables and writes benchmarks/scifact.json
# (every figure) and benchmarks/scifact-candidates.png (the plot). Uses the project venv only (.venv, see run.sh).
#   bash benchmarks/evaluate.sh [extra txtai-muvera evaluate flags]
# SHARED is the shared data and model folder (default: ../shared beside the checkout).
set -euo pipefail
cd "$(dirname "$0")/.."

SHARED="${SHARED:-../shared}"
VENV="${VENV:-.venv}"

exec "$VENV/bin/txtai-muvera" evaluate "$SHARED/models/minilm-colbert" "$SHARED/data/beir/scifact" \
    --compare txtai --json benchmarks/scifact.json --plot benchmarks/scifact-candidates.png "$@"
