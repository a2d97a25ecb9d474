#!/usr/bin/env bash
# Runs the whole test suite from a fresh checkout: installs what the tests need, then pytest.
# Usage: scripts/test.sh [pytest args...]
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e '.[test]'

# Lint first: it takes a second and keeps the tree clean.
.venv/bin/ruff check --quiet src tests benchmarks
.venv/bin/ruff format --check --quiet src tests benchmarks

# The Redis tests start their own redis-server (loopback only); install it when missing.
command -v redis-server >/dev/null || { apt-get update -qq && apt-get install -y -qq redis-server; }

exec .venv/bin/python -m pytest "$@"
