#!/usr/bin/env bash
# The one test command: prepares what the tests need (a Python venv with moto and the
# contract validator), then runs every Rust test. Usage: scripts/test.sh [cargo test args]
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/c360-target}"
export CARGO_BUILD_JOBS="${CARGO_BUILD_JOBS:-2}"

venv=".venv-test"
req="scripts/requirements-test.txt"
stamp="$venv/.installed-$(sha256sum "$req" | cut -c1-16)"
if [ ! -f "$stamp" ]; then
  echo "==> preparing $venv (moto server, contract validator, DuckDB) from $req"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --upgrade pip
  "$venv/bin/pip" install --quiet -r "$req"
  touch "$stamp"
fi
export C360_PYTHON="$PWD/$venv/bin/python"
export C360_MOTO_SERVER="$PWD/$venv/bin/moto_server"
export PATH="$PWD/$venv/bin:$PATH"

echo "==> cargo test (target dir $CARGO_TARGET_DIR)"
cargo test --locked "$@"
