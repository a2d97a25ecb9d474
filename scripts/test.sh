#!/usr/bin/env bash
# Runs the whole test suite from a fresh checkout: installs what the tests need, then lint,
# the type checker and pytest.
#
# Usage: scripts/test.sh [--latest | --lowest] [pytest args...]
#   (default)  the exact versions in requirements/test.lock, in .venv: what CI runs
#   --latest   the newest releases pyproject.toml allows, no lock, in .venv-latest: shows
#              what a new release of a dependency will do before it reaches users
#   --lowest   the lowest releases pyproject.toml allows for our direct dependencies, in
#              .venv-lowest: keeps the lower bounds honest
# Refresh the lock: scripts/lock.sh
set -euo pipefail
cd "$(dirname "$0")/.."

mode=locked
case "${1:-}" in
  --latest | --lowest) mode=${1#--}; shift ;;
esac

PYTHON=${PYTHON:-python3}
pip_install() { "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "$@"; }
if [ "$mode" = locked ]; then
  venv=.venv
  lock=requirements/test.lock
else
  venv=.venv-$mode
  # uv resolves the unlocked set; it comes pinned in the lock, like every other tool.
  [ -x .venv/bin/uv ] || { [ -x .venv/bin/python ] || "$PYTHON" -m venv .venv; .venv/bin/python -m pip install \
    --quiet --disable-pip-version-check --require-hashes -r requirements/tools.lock; }
  lock=$(mktemp)
  trap 'rm -f "$lock"' EXIT
  resolution=highest
  [ "$mode" = lowest ] && resolution=lowest-direct
  .venv/bin/uv pip compile --quiet --python-version 3.11 --resolution "$resolution" --extra test \
    pyproject.toml requirements/build.in -o "$lock"
fi
[ -x "$venv/bin/python" ] || "$PYTHON" -m venv "$venv"
# Exact versions first (hash-checked when locked), then the project itself on top of them.
if [ "$mode" = locked ]; then
  pip_install --require-hashes -r "$lock"
else
  pip_install -r "$lock"
fi
pip_install --no-deps --no-build-isolation -e .

# Lint and types first (with the locked tools: a new ruff or mypy rule is a change we make,
# not one that arrives): seconds, and they keep the tree clean.
if [ "$mode" = locked ]; then
  "$venv/bin/ruff" check --quiet src tests benchmarks
  "$venv/bin/ruff" format --check --quiet src tests benchmarks
  "$venv/bin/mypy" src
fi

# The Redis tests start their own redis-server, the chain tests anvil, the Docker tests
# dockerd (all on loopback or a private socket); install whatever is missing.
missing=()
command -v redis-server >/dev/null || missing+=(redis-server)
command -v dockerd >/dev/null || missing+=(docker.io)
# The Docker tests build their image from Debian's static busybox (no registry is reachable).
dpkg -s busybox-static >/dev/null 2>&1 || missing+=(busybox-static)
# The image test builds its base, a Debian root filesystem, with debootstrap.
dpkg -s debootstrap >/dev/null 2>&1 || missing+=(debootstrap)
# The metrics test scrapes the node with a real Prometheus server.
command -v prometheus >/dev/null || missing+=(prometheus)
command -v node >/dev/null || missing+=(nodejs npm)
if [ ${#missing[@]} -gt 0 ]; then
  apt-get update -qq && apt-get install -y -qq "${missing[@]}"
fi
# anvil (the local chain) and solc-js (compiles tests/contracts) come from npm, exactly as
# package-lock.json has them.
if [ ! -x node_modules/.bin/anvil ] || [ ! -d node_modules/solc ]; then
  npm ci --no-audit --no-fund --silent
fi

exec "$venv/bin/python" -m pytest "$@"
