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

# The Redis tests start their own redis-server, the chain tests anvil, the Docker tests
# dockerd (all on loopback or a private socket); install whatever is missing.
missing=()
command -v redis-server >/dev/null || missing+=(redis-server)
command -v dockerd >/dev/null || missing+=(docker.io)
# The Docker tests build their image from Debian's static busybox (no registry is reachable).
dpkg -s busybox-static >/dev/null 2>&1 || missing+=(busybox-static)
command -v node >/dev/null || missing+=(nodejs npm)
if [ ${#missing[@]} -gt 0 ]; then
  apt-get update -qq && apt-get install -y -qq "${missing[@]}"
fi
# anvil (the local chain) and solc-js (compiles tests/contracts) come from npm (package.json).
if [ ! -x node_modules/.bin/anvil ] || [ ! -d node_modules/solc ]; then
  npm install --no-audit --no-fund --silent
fi

exec .venv/bin/python -m pytest "$@"
