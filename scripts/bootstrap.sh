#!/usr/bin/env bash
# Create or update .venv with Python 3.13 or 3.12 and the pinned requirements. Quick when nothing changed.
set -euo pipefail
cd "$(dirname "$0")/.."

find_python() {
  local candidates=(python3.13 python3.12)
  local root="${PYENV_ROOT:-$HOME/.pyenv}"
  for dir in "$root"/versions/3.13* "$root"/versions/3.12*; do
    [ -x "$dir/bin/python3" ] && candidates+=("$dir/bin/python3")
  done
  for candidate in "${candidates[@]}"; do
    if "$candidate" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 12) else 1)' >/dev/null 2>&1; then
      echo "$candidate"
      return 0
    fi
  done
  return 1
}

if [ -x .venv/bin/python ] && ! .venv/bin/python -c 'import sys; sys.exit(0 if sys.version_info >= (3, 12) else 1)'; then
  echo "The existing .venv uses $(.venv/bin/python --version); Faro needs Python 3.12 or newer. Recreating it." >&2
  rm -rf .venv
fi

if [ ! -x .venv/bin/python ]; then
  if ! PY=$(find_python); then
    found=$(python3 --version 2>/dev/null || echo "no python3")
    echo "Faro needs Python 3.13 or 3.12 (Django 6); found only $found. Install python3.13 (e.g. 'pyenv install 3.13') and retry." >&2
    exit 1
  fi
  echo "Creating .venv with $("$PY" --version)" >&2
  "$PY" -m venv .venv
fi

stamp=.venv/.requirements.sha256
want=$(cat requirements/*.txt | sha256sum | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "Installing the pinned requirements into .venv ..." >&2
  .venv/bin/python -m pip install --quiet --disable-pip-version-check --upgrade pip
  .venv/bin/python -m pip install --quiet --disable-pip-version-check -r requirements/local.txt -c requirements/constraints.txt
  echo "$want" > "$stamp"
fi
