#!/usr/bin/env bash
# deploy/local/stack.sh — start/stop Dockyard's own processes on this machine: the six services
# (127.0.0.1:7101-7106, or DOCKYARD_STACK_PORT_BASE+1..6) and the gateway (0.0.0.0:${DOCKYARD_GATEWAY_PORT:-8080}).
#
# Usage: deploy/local/stack.sh up|down|status
#   up      start every service and the gateway not already running, wait for /readyz
#   down    stop them (SIGTERM: they drain NATS and close their databases)
#   status  one line per process
# Environment: DATABASE_URL (absent: each service keeps an embedded PGlite database in
# $DOCKYARD_DATA_DIR/<service>/db), DOCKYARD_DATA_DIR (default .data), DOCKYARD_SEED_TEST_USERS,
# DOCKYARD_STACK_WAIT (seconds to wait for /readyz, default 300), any other DOCKYARD_* variable
# from the README. The admin token and the internal secret are
# made once and kept (0600) in $RUN_DIR.
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

SERVICES=(permissions registry build execution source-cache process)
# Services listen on PORT_BASE+1..+6 (7101-7106 by default); a second stack on one machine moves them.
PORT_BASE=${DOCKYARD_STACK_PORT_BASE:-7100}
declare -A PORTS=()
i=1
for s in "${SERVICES[@]}"; do PORTS[$s]=$((PORT_BASE + i)); i=$((i + 1)); done
GATEWAY_PORT=${DOCKYARD_GATEWAY_PORT:-8080}

usage() {
  sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//' >&2
  exit 2
}

# secret FILE — a random secret kept in $RUN_DIR, made on first use.
secret() {
  local f=$RUN_DIR/$1
  if [[ ! -s $f ]]; then
    (umask 077 && head -c 32 /dev/urandom | base64 | tr -d '/+=\n' >"$f")
  fi
  cat "$f"
}

start_node() { # start_node NAME DIR PORT [HOST]
  local name=$1 dir=$2 port=$3 host=${4:-127.0.0.1}
  if pid_running "stack-$name" >/dev/null; then
    log "$name already running"
    return
  fi
  (cd "$REPO_ROOT/$dir" && export DOCKYARD_PORT=$port DOCKYARD_HOST=$host && start_bg "stack-$name" node --import tsx src/server.ts)
}

cmd_up() {
  ensure_run_dir
  export DOCKYARD_INTERNAL_SECRET=${DOCKYARD_INTERNAL_SECRET:-$(secret internal-secret)}
  export DOCKYARD_ADMIN_TOKEN=${DOCKYARD_ADMIN_TOKEN:-dky_$(secret admin-token)}
  export DOCKYARD_DATA_DIR=${DOCKYARD_DATA_DIR:-$REPO_ROOT/.data}
  for s in "${SERVICES[@]}"; do
    start_node "$s" "services/$s" "${PORTS[$s]}"
    # The gateway finds each service at its port (DOCKYARD_SOURCE_CACHE_URL for source-cache).
    local var=${s//-/_}
    export "DOCKYARD_${var^^}_URL=http://127.0.0.1:${PORTS[$s]}"
  done
  start_node gateway gateway "$GATEWAY_PORT" "${DOCKYARD_GATEWAY_HOST:-0.0.0.0}"
  log "waiting for http://127.0.0.1:$GATEWAY_PORT/readyz"
  if ! WAIT_TIMEOUT=${DOCKYARD_STACK_WAIT:-300} wait_for curl -fsS -m 3 -o /dev/null "http://127.0.0.1:$GATEWAY_PORT/readyz"; then
    curl -sS -m 5 "http://127.0.0.1:$GATEWAY_PORT/readyz" >&2 || true
    die "the stack did not become ready; see $LOG_DIR/stack-*.log"
  fi
  cat <<EOT

Dockyard is up: http://127.0.0.1:$GATEWAY_PORT   (API reference: http://127.0.0.1:$GATEWAY_PORT/docs)
Admin token:    $DOCKYARD_ADMIN_TOKEN
Try:            curl -H "Authorization: Bearer $DOCKYARD_ADMIN_TOKEN" http://127.0.0.1:$GATEWAY_PORT/auth/whoami
CLI:            pnpm exec dockyard login --url http://127.0.0.1:$GATEWAY_PORT   (then: pnpm exec dockyard --help)
Logs:           make logs      Stop: make down
EOT
}

cmd_down() {
  stop_pid stack-gateway 20 || true
  for s in "${SERVICES[@]}"; do stop_pid "stack-$s" 20 || true; done
}

cmd_status() {
  for name in gateway "${SERVICES[@]}"; do
    if pid=$(pid_running "stack-$name"); then echo "$name: running (pid $pid)"; else echo "$name: stopped"; fi
  done
}

case ${1:-} in
  up) cmd_up ;;
  down) cmd_down ;;
  status) cmd_status ;;
  *) usage ;;
esac
