# Shared by scripts/serve, scripts/test and scripts/lock: a virtualenv in .venv with every
# dependency installed from requirements.lock, each checked against its recorded hash.
# Re-installs only when the lock changes. Sourced, not executed.

pick_python() {
  for candidate in "${PYTHON:-}" python3.13 python3.12 python3.11 python3; do
    [ -n "$candidate" ] || continue
    if command -v "$candidate" >/dev/null 2>&1 &&
       "$candidate" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' 2>/dev/null; then
      echo "$candidate"; return 0
    fi
  done
  echo "rpgrealtime needs Python 3.11 or newer (set PYTHON=/path/to/python3.11)" >&2
  return 1
}

if [ ! -x .venv/bin/python ]; then
  "$(pick_python)" -m venv .venv
fi
stamp=".venv/.lock-$(sha256sum requirements.lock | cut -c1-16)"
if [ ! -f "$stamp" ]; then
  .venv/bin/python -m pip install --quiet --upgrade pip
  .venv/bin/python -m pip install --quiet --require-hashes -r requirements.lock
  rm -f .venv/.lock-* .venv/.requirements-*
  touch "$stamp"
fi
export PATH="$PWD/.venv/bin:$PATH"
