#!/usr/bin/env bash
# Lint the engine, the app and the pages (ruff; its rules are in pyproject.toml). scripts/test.sh runs it first.
set -euo pipefail
cd "$(dirname "$0")/.."
.venv/bin/ruff check transfer_core app pages streamlit_app.py
