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

# Debian packages some tests need, installed only as root with apt-get; anyone else is told what to install.
# `apt_install COMMAND PACKAGE WHAT [apt-get options]` does nothing when COMMAND is already on the PATH.
apt_install() {
  local command=$1 package=$2 what=$3
  shift 3
  command -v "$command" >/dev/null 2>&1 && return 0
  if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "$package is missing, so $what will fail: install it (Debian/Ubuntu: 'sudo apt-get install -y $package')." >&2
    return 0
  fi
  echo "Installing $package for $what (apt-get install $package) ..." >&2
  # A package's maintainer scripts start its service (prometheus's postinst runs `invoke-rc.d prometheus
  # start`, and fails the install if that fails). Nothing here wants a system-wide daemon: the tests start
  # their own processes, and containers have no init system. A policy-rc.d that denies every action
  # (exit 101) stops invoke-rc.d from starting anything; an existing one (Docker images ship one) is kept.
  local policy=/usr/sbin/policy-rc.d placed=""
  if [ ! -e "$policy" ]; then
    trap 'rm -f /usr/sbin/policy-rc.d' EXIT  # also when apt-get is interrupted
    printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod 755 "$policy" && placed=1
  fi
  local log status=0
  log=$(mktemp)
  { DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@" "$package" >"$log" 2>&1 \
    || { apt-get update -q >>"$log" 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@" "$package" >>"$log" 2>&1; }; } \
    || status=$?
  if [ -n "$placed" ]; then
    rm -f "$policy"
    trap - EXIT
  fi
  if [ "$status" -ne 0 ] || ! command -v "$command" >/dev/null 2>&1; then
    tail -n 20 "$log" >&2
    echo "Could not install $package with apt-get (above); $what fail until '$command' is installed." >&2
  fi
  rm -f "$log"
}

# The browser tests (tests/e2e/test_decision_browser.py) drive the system's Chromium through Playwright;
# `playwright install` is never used (it downloads browsers).
apt_install chromium chromium "the browser tests"

# tests/e2e/test_prometheus.py scrapes a running stack with a real Prometheus, and tests/monitoring check the
# alerting rules, their unit tests, the scrape config and the Grafana dashboard's queries with promtool.
# Without recommends: prometheus-node-exporter would be one more daemon nobody here needs.
apt_install promtool prometheus "the Prometheus tests" --no-install-recommends

# tests/core/test_compose.py validates docker/compose.yml with `docker-compose config` (no Docker engine needed).
apt_install docker-compose docker-compose "the compose file tests" --no-install-recommends
