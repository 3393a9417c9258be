#!/usr/bin/env bash
# Sets up a local virtual environment (once) and runs the demo or the test suite.
#   bash run.sh demo [--local MODEL_FOLDER] [--model HUB_ID]   (or TXTAI_MUVERA_LOCAL_MODEL=MODEL_FOLDER)
#   bash run.sh test [pytest args]
set -euo pipefail
cd "$(dirname "$0")"

VENV="${VENV:-.venv}"
PYTHON="${PYTHON:-$(command -v python3.11 || command -v python3)}"

setup() {
    # Create the environment, then install torch first: a pinned CPU build (an unpinned torch pulls a multi-GB CUDA build)
    [ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
    stamp="$VENV/.txtai-muvera-$(sha256sum pyproject.toml | cut -c1-16)"
    if [ ! -f "$stamp" ]; then
        "$VENV/bin/python" -m pip install -q --upgrade pip
        "$VENV/bin/python" -m pip install -q torch==2.13.0
        "$VENV/bin/python" -m pip install -q -e ".[test]"
        touch "$stamp"
    fi
}

command="${1:-}"
shift || true
case "$command" in
    demo)
        setup
        exec "$VENV/bin/python" examples/demo.py "$@"
        ;;
    test)
        setup
        exec "$VENV/bin/python" -m pytest "$@"
        ;;
    *)
        echo "usage: bash run.sh demo [--local MODEL_FOLDER] [--model HUB_ID] | bash run.sh test [pytest args]" >&2
        exit 2
        ;;
esac
