#!/usr/bin/env bash
# Runs the whole test suite (lint is separate): unit tests, doctests of the library, the notebook.
# Sets itself up: creates .venv (or reuses it) and installs `.[test]` there unless already done.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/venv.sh
source scripts/venv.sh
ensure_venv test
.venv/bin/python -m pytest -n 2 --durations=15 tests --doctest-modules sepconv_jax \
  --nbmake examples "$@"
