# Sourced by .ci/run after the test venv exists: a real MLflow tracking server on 127.0.0.1
# (SQLite backend, local artifact folder) for tests/track, stopped when CI exits.
# Exports CNNLAB_TEST_MLFLOW_URI; without it the tests start a server of their own.
MLFLOW_CI_DIR="$(mktemp -d)"
MLFLOW_CI_PORT="$(.venv/bin/python -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
setsid .venv/bin/python -m mlflow server --host 127.0.0.1 --port "$MLFLOW_CI_PORT" --workers 1 \
  --backend-store-uri "sqlite:///$MLFLOW_CI_DIR/mlflow.db" \
  --artifacts-destination "$MLFLOW_CI_DIR/artifacts" >"$MLFLOW_CI_DIR/server.log" 2>&1 &
MLFLOW_CI_PID=$!
stop_mlflow_ci() { kill -- "-$MLFLOW_CI_PID" 2>/dev/null || true; rm -rf "$MLFLOW_CI_DIR"; }
# Chain onto an EXIT trap another sourced service script (e.g. PostgreSQL) may have set.
MLFLOW_CI_PREV_TRAP="$(trap -p EXIT | sed -E "s/^trap -- '(.*)' EXIT$/\1/")"
trap "stop_mlflow_ci; ${MLFLOW_CI_PREV_TRAP}" EXIT
for _ in $(seq 120); do
  if .venv/bin/python -c "import urllib.request as u; u.urlopen('http://127.0.0.1:$MLFLOW_CI_PORT/health', timeout=2)" >/dev/null 2>&1; then
    export CNNLAB_TEST_MLFLOW_URI="http://127.0.0.1:$MLFLOW_CI_PORT"
    break
  fi
  sleep 1
done
if [ -z "${CNNLAB_TEST_MLFLOW_URI:-}" ]; then
  echo "note: mlflow server did not answer on /health; tests/track start their own" >&2
  tail -20 "$MLFLOW_CI_DIR/server.log" >&2 || true
fi
