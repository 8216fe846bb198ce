#!/usr/bin/env bash
# The test command (README): installs what any test needs when it is missing, then runs
# pytest with the arguments given. Needs root (or sudo) only when a Debian package is missing.
#   bash tests/run.sh                      # everything, as CI runs it
#   bash tests/run.sh -m "not slow"        # the quick loop
set -euo pipefail
cd "$(dirname "$0")/.."

# Servers and a browser the tests start themselves, from Debian's packages (nothing
# downloads a browser or a server binary): Chromium for the browser tests, PostgreSQL
# for the engine tests, Redis for the broker tests, gcc for the compiled trees (TL2cgen).
missing=()
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing+=(postgresql)
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
command -v gcc >/dev/null 2>&1 || missing+=(gcc)
if [ ${#missing[@]} -gt 0 ]; then
  echo "tests/run.sh: installing Debian's ${missing[*]}" >&2
  as_root=()
  [ "$(id -u)" -eq 0 ] || as_root=(sudo)
  "${as_root[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${as_root[@]}" apt-get install -y -qq "${missing[@]}" >/dev/null
fi

command -v uv >/dev/null 2>&1 || python3 -m pip install --quiet uv
# Compiled bytecode up front: with PYTHONDONTWRITEBYTECODE set, every process Dagster
# starts (run workers, sensors, code servers) would otherwise recompile dagster and mlflow.
uv sync --locked --quiet --compile-bytecode
# Two workers: the end-to-end tests mostly wait on daemons and servers, so two at once
# take about two thirds of the serial time on two cores (`-n 0` after it runs serially).
exec uv run pytest -n 2 "$@"
