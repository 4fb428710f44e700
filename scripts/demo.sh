#!/usr/bin/env bash
# Set up and launch the app on http://127.0.0.1:8501 (works offline: built-in demo data and models).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh runtime
export HF_HUB_OFFLINE="${HF_HUB_OFFLINE:-0}"
exec .venv/bin/streamlit run streamlit_app.py --server.address 127.0.0.1 "$@"
