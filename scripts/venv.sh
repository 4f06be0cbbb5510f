# Sourced by scripts/quickstart.sh and scripts/test.sh: `ensure_venv EXTRA` creates .venv (or
# reuses it) and installs the project with `.[EXTRA]` only when that is not already done for the
# current pyproject.toml (a stamp in .venv records it): a rerun needs no package index.
# PYTHON picks the interpreter that creates the venv (default python3).

ensure_venv() {
  local extra=$1 want stamp
  [[ -x .venv/bin/python ]] || "${PYTHON:-python3}" -m venv .venv
  want="$({ sha256sum pyproject.toml 2>/dev/null || shasum -a 256 pyproject.toml; } | cut -d" " -f1) $extra"
  for stamp in .venv/.sepconv_jax-installed-*; do
    # `test` includes `train`: either stamp for this pyproject satisfies `train`.
    if [[ -f $stamp ]] && { [[ $(cat "$stamp") == "$want" ]] ||
      [[ $extra == train && $(cat "$stamp") == "${want% *} test" ]]; }; then
      return 0
    fi
  done
  echo "== installing the project with .[$extra] into .venv (once; pip's output: .venv/install.log)" >&2
  if ! { .venv/bin/python -m pip install --upgrade pip &&
    .venv/bin/python -m pip install -e ".[$extra]"; } >.venv/install.log 2>&1; then
    tail -n 30 .venv/install.log >&2
    echo "== the installation failed; the whole log: .venv/install.log" >&2
    return 1
  fi
  echo "$want" >".venv/.sepconv_jax-installed-$extra"
}
