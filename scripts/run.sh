#!/usr/bin/env bash
# Run Faro with the demo on the embedded default: web (gunicorn), a Celery worker and beat, until Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."

export DJANGO_SETTINGS_MODULE="${DJANGO_SETTINGS_MODULE:-config.settings.base}"
VAR_DIR="${FARO_VAR_DIR:-$PWD/var}"
HOST="${FARO_HOST:-127.0.0.1}"
PORT="${FARO_PORT:-8000}"
WEB_WORKERS="${FARO_WEB_WORKERS:-2}"
mkdir -p "$VAR_DIR/log"
export PROMETHEUS_MULTIPROC_DIR="$VAR_DIR/prometheus"
rm -rf "$PROMETHEUS_MULTIPROC_DIR" && mkdir -p "$PROMETHEUS_MULTIPROC_DIR"

PY=.venv/bin/python
pids=()
# The processes run in their own sessions, so Ctrl-C reaches this script only, which stops them cleanly.
stop() {
  trap - INT TERM EXIT
  echo
  echo "Stopping Faro ..."
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap 'stop; exit 0' INT TERM
trap stop EXIT

$PY manage.py migrate --no-input -v0
$PY manage.py collectstatic --no-input -v0

setsid $PY -m celery -A config worker --loglevel=INFO --concurrency=1 -n "faro-worker@%h" \
  >>"$VAR_DIR/log/worker.log" 2>&1 &
pids+=($!)
setsid $PY -m celery -A config beat --loglevel=INFO --pidfile= >>"$VAR_DIR/log/beat.log" 2>&1 &
pids+=($!)
setsid $PY -m gunicorn config.wsgi:application -c config/gunicorn.py --bind "$HOST:$PORT" --workers "$WEB_WORKERS" \
  >>"$VAR_DIR/log/web.log" 2>&1 &
pids+=($!)

$PY manage.py demo_setup
cat <<MSG

Faro is running at http://$HOST:$PORT/
  decision page   http://$HOST:$PORT/decide/credit-risk/
  console (admin) http://$HOST:$PORT/admin/
  API docs        http://$HOST:$PORT/api/docs/
  metrics         http://$HOST:$PORT/metrics
Logs in $VAR_DIR/log/. Press Ctrl-C to stop.
MSG
wait -n "${pids[@]}" || true
echo "A Faro process exited; see $VAR_DIR/log/." >&2
