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

# The browser tests (tests/e2e/test_decision_browser.py) drive the system's Chromium through Playwright;
# `playwright install` is never used (it downloads browsers). Installed here only as root with apt-get.
if ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "Installing Chromium for the browser tests (apt-get install chromium) ..." >&2
    log=$(mktemp)
    if ! { DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >"$log" 2>&1 \
        || { apt-get update -q >>"$log" 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >>"$log" 2>&1; }; }; then
      tail -n 20 "$log" >&2
      echo "Could not install Chromium with apt-get (above); the browser tests fail until 'chromium' is installed." >&2
    fi
    rm -f "$log"
  else
    echo "Chromium is missing, so the browser tests will fail: install it (Debian/Ubuntu: 'sudo apt-get install -y chromium')." >&2
  fi
fi
