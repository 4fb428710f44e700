#!/usr/bin/env bash
# Set up and launch the app on http://127.0.0.1:8501/?token=... (works offline: built-in demo data and models).
# It prints that address: the token, random at each launch unless TRANSFER_STUDIO_TOKEN sets it, keeps
# other programs and users of this machine out.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh runtime
export HF_HUB_OFFLINE="${HF_HUB_OFFLINE:-0}"
exec .venv/bin/streamlit run streamlit_app.py --server.address 127.0.0.1 "$@"
