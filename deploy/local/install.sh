#!/usr/bin/env bash
# deploy/local/install.sh — idempotent installer of Dockyard's local infrastructure on a
# fresh Debian 12 machine, as root (no systemd needed):
#   * apt packages (only those missing): docker.io nats-server docker-registry busybox-static
#     debootstrap postgresql nginx iproute2 curl ca-certificates (+ debian-archive-keyring, util-linux)
#   * pnpm 12.21.0 globally via npm (only when `pnpm --version` is not 12.21.0)
# Safe to re-run; waits for a concurrently running apt/dpkg instead of failing on its lock.
# Package scripts are not allowed to start services (infra.sh starts what is needed).
# Usage: deploy/local/install.sh
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

PNPM_VERSION=12.21.0
APT_PACKAGES=(
  docker.io nats-server docker-registry busybox-static debootstrap postgresql nginx
  iproute2 curl ca-certificates
  debian-archive-keyring # debootstrap verifies the archive with it
  util-linux             # flock, setsid
  chromium               # the console's browser test (test/console.test.ts) and bench/console
)

[[ $(id -u) -eq 0 ]] || die "install.sh must run as root (apt-get install)"
command -v apt-get >/dev/null || die "apt-get not found: install.sh supports Debian 12 only"

is_installed() {
  dpkg -s "$1" 2>/dev/null | grep -q '^Status: install ok installed$'
}

missing=()
for p in "${APT_PACKAGES[@]}"; do
  is_installed "$p" || missing+=("$p")
done

if ((${#missing[@]})); then
  log "installing apt packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  # Lock timeout: another apt-get (e.g. a provisioning run in the background) may hold the lock.
  apt_opts=(-o DPkg::Lock::Timeout=900 -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold)
  # Services are started by infra.sh, not by package scripts: while installing, deny
  # invoke-rc.d starts with a temporary policy-rc.d unless the machine already has one.
  if [[ ! -e /usr/sbin/policy-rc.d ]]; then
    printf '#!/bin/sh\n# temporary, from deploy/local/install.sh\nexit 101\n' >/usr/sbin/policy-rc.d
    chmod 0755 /usr/sbin/policy-rc.d
    trap 'rm -f /usr/sbin/policy-rc.d' EXIT
  fi
  apt-get "${apt_opts[@]}" update -qq
  apt-get "${apt_opts[@]}" install -y -q "${missing[@]}"
  for p in "${missing[@]}"; do
    is_installed "$p" || die "apt package $p still not installed"
  done
else
  log "apt packages: all present"
fi

# pnpm — ask from / so a "packageManager" field in a package.json does not interfere.
pnpm_version() { (cd / && pnpm --version 2>/dev/null) || true; }
current_pnpm=$(pnpm_version)
if [[ $current_pnpm != "$PNPM_VERSION" ]]; then
  command -v npm >/dev/null || die "npm not found: install Node.js 20 (with npm) first"
  log "installing pnpm@$PNPM_VERSION with npm (found: ${current_pnpm:-none})"
  npm install -g --no-fund --no-audit "pnpm@$PNPM_VERSION" >&2
  hash -r
  current_pnpm=$(pnpm_version)
  [[ $current_pnpm == "$PNPM_VERSION" ]] ||
    die "pnpm --version says '${current_pnpm}' after install (want $PNPM_VERSION); check PATH: $(command -v pnpm || echo 'pnpm not on PATH')"
else
  log "pnpm $PNPM_VERSION: present"
fi

log "install done (docker CLI: $(docker --version 2>/dev/null || echo none); dockerd: $(dockerd --version 2>/dev/null || echo none))"
