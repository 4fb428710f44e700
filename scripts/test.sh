#!/usr/bin/env bash
# Set up, lint (scripts/lint.sh) and run every test: unit, integration with the real offline backbones, and browser
# end-to-end.
# Extra arguments go to pytest (e.g. scripts/test.sh -m "not slow" for the quick suite).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh test
scripts/lint.sh
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
exec .venv/bin/python -m pytest -ra "$@"
