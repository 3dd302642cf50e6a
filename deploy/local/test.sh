#!/usr/bin/env bash
# deploy/local/test.sh — `make test`: start the real servers the tests need (reusing any that
# already answer), check types and contracts, run every jest test, then stop what it started.
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO_ROOT"

before=$(ls "$RUN_DIR/started" 2>/dev/null || true)
cleanup() {
  # Stop only the servers this run started; ones that were up before stay up.
  for name in $(ls "$RUN_DIR/started" 2>/dev/null || true); do
    if ! grep -qx "$name" <<<"$before"; then stop_list+=("$name"); fi
  done
  if ((${#stop_list[@]})); then deploy/local/infra.sh down "${stop_list[@]}" || true; fi
}
stop_list=()
trap cleanup EXIT

deploy/local/infra.sh up
deploy/local/images.sh all
eval "$(deploy/local/infra.sh env)"

log "type check and contract check"
pnpm exec tsc -p tsconfig.json
pnpm --filter @dockyard/contracts run check

log "jest: unit and integration tests"
NODE_OPTIONS=--experimental-vm-modules pnpm exec jest "$@"

# The multi-node fault test (~20 processes, ~3 min) runs last and alone: beside other test files
# on two cores its timings would be the machine's, not the platform's. Skipped when paths are given.
if (($# == 0)); then
  log "jest: the multi-node fault test"
  DOCKYARD_MULTINODE=1 NODE_OPTIONS=--experimental-vm-modules pnpm exec jest test/multinode.test.ts
fi
