#!/usr/bin/env bash
# Runs the end-to-end suite against a fresh `chatgate serve` (temporary data dir,
# embedded engine, random admin password), which serves the built UI, then stops it.
#
#   CHATGATE_BIN   the chatgate executable (default: ../.venv/bin/chatgate)
set -euo pipefail
cd "$(dirname "$0")/.."

CHATGATE="${CHATGATE_BIN:-../.venv/bin/chatgate}"
free_port() { node -e "const s=require('net').createServer().listen(0,'127.0.0.1',()=>{console.log(s.address().port);s.close()})"; }
PORT="$(free_port)"
DATA="$(mktemp -d)"
PASSWORD="e2e-$(node -e "console.log(require('crypto').randomBytes(12).toString('hex'))")"
GATEWAY="http://127.0.0.1:${PORT}"
PIDS=()

cleanup() {
  local status=$?
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  if [ "$status" -ne 0 ] && [ -f "$DATA/gateway.log" ]; then
    echo "--- gateway log (last 40 lines) ---"; tail -n 40 "$DATA/gateway.log"
  fi
  rm -rf "$DATA"
  exit "$status"
}
trap cleanup EXIT INT TERM

[ -f ../src/chatgate/web/static/index.html ] || npm run build

# A second engine that streams the XSS corpus as its answers (model "xss-fake").
FAKE_PORT="$(free_port)"
node e2e/fake-engine.mjs "$FAKE_PORT" &
PIDS+=($!)
for _ in $(seq 1 50); do curl -fsS "http://127.0.0.1:$FAKE_PORT/v1/models" >/dev/null 2>&1 && break; sleep 0.1; done

CHATGATE_DATA_DIR="$DATA" CHATGATE_ADMIN_PASSWORD="$PASSWORD" CHATGATE_HOST=127.0.0.1 CHATGATE_PORT="$PORT" \
  "$CHATGATE" serve --engine "xss-fake=http://127.0.0.1:$FAKE_PORT" >"$DATA/gateway.log" 2>&1 &
GATEWAY_PID=$!
PIDS+=("$GATEWAY_PID")

echo "[e2e] waiting for the gateway on $GATEWAY (engine start can take a while)"
for _ in $(seq 1 300); do
  if curl -fsS "$GATEWAY/health/ready" >/dev/null 2>&1; then break; fi
  kill -0 "$GATEWAY_PID" 2>/dev/null || { echo "[e2e] the gateway exited"; exit 1; }
  sleep 1
done
curl -fsS "$GATEWAY/health/ready" >/dev/null

if ! curl -fsS "$GATEWAY/" 2>/dev/null | grep -q '<div id="root">'; then
  echo "[e2e] the gateway does not serve the UI at / (is src/chatgate/web/static built?)"
  exit 1
fi

CHATGATE_E2E_URL="$GATEWAY" CHATGATE_E2E_USER=admin CHATGATE_E2E_PASSWORD="$PASSWORD" node e2e/run.mjs
