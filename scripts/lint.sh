#!/usr/bin/env bash
# Lint and type-check the engine, the app and the pages (ruff and mypy; their settings are in pyproject.toml).
# scripts/test.sh runs it first.
set -euo pipefail
cd "$(dirname "$0")/.."
.venv/bin/ruff check transfer_core app pages streamlit_app.py
.venv/bin/mypy transfer_core app pages streamlit_app.py
