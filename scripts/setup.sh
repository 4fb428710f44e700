#!/usr/bin/env bash
# Set up a fresh machine: Debian packages (demo images, browser for tests), a virtualenv, Python packages.
# Usage: scripts/setup.sh [runtime|test]   (default: runtime)
set -euo pipefail
cd "$(dirname "$0")/.."
what="${1:-runtime}"

debs=()
[ -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ] || debs+=(dataset-fashion-mnist)
if [ "$what" = test ] && ! command -v chromium >/dev/null 2>&1; then debs+=(chromium); fi
if [ ${#debs[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${debs[@]}" >/dev/null
  else
    sudo apt-get update -qq
    sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${debs[@]}" >/dev/null
  fi
fi

[ -x .venv/bin/python ] || python3 -m venv .venv
reqs=requirements.txt
[ "$what" = test ] && reqs=requirements-test.txt
# torch first on its own: the pinned build installs from the local wheel cache where there is one.
.venv/bin/pip install -q --disable-pip-version-check torch==2.14.1 torchvision==0.29.1
.venv/bin/pip install -q --disable-pip-version-check -r "$reqs"
.venv/bin/pip install -q --disable-pip-version-check --no-deps -e .
