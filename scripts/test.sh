#!/usr/bin/env bash
# Runs the whole test suite (lint is separate): unit tests, doctests of the library, the notebook.
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pytest -n 2 --durations=15 tests --doctest-modules sepconv_jax --nbmake examples "$@"
