#!/usr/bin/env bash
# Refreshes the locks from pyproject.toml: requirements/test.lock (what the test command
# installs) and requirements/tools.lock (uv itself). Commit both, after scripts/test.sh passes.
# Usage: scripts/lock.sh [uv pip compile args..., e.g. --upgrade-package web3]
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || "${PYTHON:-python3}" -m venv .venv
.venv/bin/python -m pip install --quiet --disable-pip-version-check --require-hashes -r requirements/tools.lock
compile() { .venv/bin/uv pip compile --quiet --python-version 3.11 --generate-hashes "$@"; }
compile requirements/tools.in -o requirements/tools.lock
compile --extra test pyproject.toml requirements/build.in -o requirements/test.lock "$@"
