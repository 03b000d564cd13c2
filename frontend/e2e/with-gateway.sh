#!/usr/bin/env bash
# Runs the end-to-end suite against a fresh `chatgate serve` (temporary data dir,
# embedded engine, random admin password), then stops it.
#
#   CHATGATE_BIN   the chatgate executable (default: ../.venv/bin/chatgate)
#
# If the gateway does not serve the built UI at / (static serving not wired yet),
# the built files are served by `vite preview`, which proxies /api, /v1 and /health
# to the gateway.
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
PIDS+=($!)

echo "[e2e] waiting for the gateway on $GATEWAY (engine start can take a while)"
for _ in $(seq 1 300); do
  if curl -fsS "$GATEWAY/health/ready" >/dev/null 2>&1; then break; fi
  kill -0 "${PIDS[0]}" 2>/dev/null || { echo "[e2e] the gateway exited"; exit 1; }
  sleep 1
done
curl -fsS "$GATEWAY/health/ready" >/dev/null

URL="$GATEWAY"
if ! curl -fsS "$GATEWAY/" 2>/dev/null | grep -q '<div id="root">'; then
  PREVIEW_PORT="$(free_port)"
  echo "[e2e] the gateway does not serve the UI yet: using vite preview on port $PREVIEW_PORT"
  CHATGATE_API_URL="$GATEWAY" npx vite preview --host 127.0.0.1 --port "$PREVIEW_PORT" --strictPort >"$DATA/preview.log" 2>&1 &
  PIDS+=($!)
  URL="http://127.0.0.1:${PREVIEW_PORT}"
  for _ in $(seq 1 60); do curl -fsS "$URL/" >/dev/null 2>&1 && break; sleep 0.5; done
fi

CHATGATE_E2E_URL="$URL" CHATGATE_E2E_USER=admin CHATGATE_E2E_PASSWORD="$PASSWORD" node e2e/run.mjs
