#!/usr/bin/env bash
# deploy/local/images.sh — make Dockyard's base images locally (nothing is ever pulled):
#   dockyard/busybox:latest   rootfs = static /bin/busybox (package busybox-static) + applet
#                             symlinks, /tmp /inbox /outbox, /etc/passwd with root; CMD /bin/sh
#   dockyard/debian:bookworm  debootstrap --variant=minbase --include=python3,ca-certificates,
#                             apt lists removed; CMD /bin/bash. The rootfs tar is cached at
#                             ${DOCKYARD_CACHE_DIR:-$HOME/.cache/dockyard}/debian-bookworm.tar, so
#                             re-making the image (after `docker rmi`) imports it without bootstrapping.
# An image that already exists is kept. Each image is then checked with a `docker run`.
# Needs a running dockerd (deploy/local/infra.sh up) and the packages of install.sh.
# Usage: deploy/local/images.sh busybox|debian|all
# Env: DOCKYARD_CACHE_DIR, DOCKYARD_DEBIAN_MIRROR (default http://deb.debian.org/debian), DOCKER_HOST
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

BUSYBOX_IMAGE=dockyard/busybox:latest
DEBIAN_IMAGE=dockyard/debian:bookworm
CACHE_DIR=${DOCKYARD_CACHE_DIR:-$HOME/.cache/dockyard}
DEBIAN_TAR=$CACHE_DIR/debian-bookworm.tar
DEBIAN_MIRROR=${DOCKYARD_DEBIAN_MIRROR:-http://deb.debian.org/debian}
export DOCKER_HOST=${DOCKER_HOST:-unix:///var/run/docker.sock}

usage() {
  sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//' >&2
  exit 2
}

image_exists() { docker image inspect "$1" >/dev/null 2>&1; }

# Remove a scratch dir; first unmount whatever a failed debootstrap left mounted inside
# (proc, sys, ...), and never cross into another file system while deleting.
SCRATCH_DIRS=()
remove_scratch() {
  local d=$1 m
  [[ -n $d && -d $d ]] || return 0
  while read -r m; do
    umount -l "$m" 2>/dev/null || true
  done < <(awk -v d="$d/" 'index($2, d) == 1 { print $2 }' /proc/mounts | sort -r)
  rm -rf --one-file-system "$d"
}
cleanup() {
  local d
  for d in "${SCRATCH_DIRS[@]}"; do remove_scratch "$d"; done
}
trap cleanup EXIT

scratch_dir() { # scratch_dir PARENT PREFIX — prints a new 0755 dir (mktemp makes 0700: that would become /'s mode)
  mkdir -p "$1"
  local d
  d=$(mktemp -d "$1/$2.XXXXXX")
  chmod 0755 "$d"
  printf '%s\n' "$d"
}

# ---------------------------------------------------------------- busybox
make_busybox() {
  local t0=$SECONDS root applet n=0
  if image_exists "$BUSYBOX_IMAGE"; then
    log "$BUSYBOX_IMAGE: exists, keeping it"
  else
    [[ -x /bin/busybox ]] || die "/bin/busybox missing: run deploy/local/install.sh (package busybox-static)"
    if ldd /bin/busybox >/dev/null 2>&1; then
      die "/bin/busybox is dynamically linked (package busybox instead of busybox-static?): run apt-get install busybox-static"
    fi
    log "$BUSYBOX_IMAGE: building rootfs"
    root=$(scratch_dir "$RUN_DIR/tmp" busybox-rootfs)
    SCRATCH_DIRS+=("$root")
    install -D -m 0755 /bin/busybox "$root/bin/busybox"
    # Links from the applet list (paths like usr/bin/awk); plain --list into /bin as a fallback.
    if "$root/bin/busybox" --list-full >/dev/null 2>&1; then
      while read -r applet; do
        [[ -n $applet && $applet != bin/busybox ]] || continue
        mkdir -p "$root/$(dirname "$applet")"
        ln -sfn /bin/busybox "$root/$applet"
        n=$((n + 1))
      done < <("$root/bin/busybox" --list-full)
    else
      while read -r applet; do
        [[ -n $applet && $applet != busybox ]] || continue
        ln -sfn /bin/busybox "$root/bin/$applet"
        n=$((n + 1))
      done < <("$root/bin/busybox" --list)
    fi
    [[ -L $root/bin/sh ]] || ln -sfn /bin/busybox "$root/bin/sh"
    install -d -m 1777 "$root/tmp" "$root/var/tmp"
    install -d -m 0755 "$root/inbox" "$root/outbox" "$root/etc" "$root/proc" "$root/sys" "$root/dev"
    install -d -m 0700 "$root/root"
    printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' >"$root/etc/passwd"
    printf 'root:x:0:\nnogroup:x:65534:\n' >"$root/etc/group"
    log "$BUSYBOX_IMAGE: importing ($n applet links)"
    tar --numeric-owner -C "$root" -c . |
      docker import --change 'CMD ["/bin/sh"]' - "$BUSYBOX_IMAGE" >/dev/null
    remove_scratch "$root"
  fi
  local out
  out=$(docker run --rm "$BUSYBOX_IMAGE" sh -c 'echo ok' 2>&1) || die "$BUSYBOX_IMAGE: docker run failed: $out"
  [[ $out == ok ]] || die "$BUSYBOX_IMAGE: docker run printed '$out', expected 'ok'"
  log "$BUSYBOX_IMAGE: ok (docker run printed '$out') in $((SECONDS - t0))s"
}

# ---------------------------------------------------------------- debian
bootstrap_debian_tar() {
  command -v debootstrap >/dev/null || die "debootstrap missing: run deploy/local/install.sh"
  local dir logf=$LOG_DIR/debootstrap.log
  ensure_run_dir
  dir=$(scratch_dir "$CACHE_DIR" debootstrap)
  SCRATCH_DIRS+=("$dir")
  log "$DEBIAN_IMAGE: debootstrap bookworm from $DEBIAN_MIRROR into $dir (a few minutes; log $logf)"
  if ! debootstrap --variant=minbase --include=python3,ca-certificates \
    bookworm "$dir" "$DEBIAN_MIRROR" >"$logf" 2>&1; then
    {
      echo "----- last lines of $logf -----"
      tail -n 25 "$logf"
      [[ -r $dir/debootstrap/debootstrap.log ]] && {
        echo "----- last lines of $dir/debootstrap/debootstrap.log -----"
        tail -n 25 "$dir/debootstrap/debootstrap.log"
      }
    } >&2
    die "$DEBIAN_IMAGE: debootstrap failed; see $logf"
  fi
  # Slim it down: apt lists and caches, logs. (Containers run `apt-get update` first.)
  rm -rf "$dir"/var/lib/apt/lists/* "$dir"/var/cache/apt/archives/*.deb "$dir"/var/cache/apt/*.bin \
    "$dir"/var/cache/debconf/*-old "$dir"/var/log/apt/* "$dir"/var/log/bootstrap.log "$dir"/var/log/dpkg.log
  mkdir -p "$dir/var/lib/apt/lists/partial"
  printf 'deb %s bookworm main\n' "$DEBIAN_MIRROR" >"$dir/etc/apt/sources.list"
  # /dev, /proc, /sys are provided by the runtime; keep only the empty dirs.
  log "$DEBIAN_IMAGE: writing rootfs tar $DEBIAN_TAR"
  tar --numeric-owner -C "$dir" \
    --exclude='./dev/*' --exclude='./proc/*' --exclude='./sys/*' \
    -cf "$DEBIAN_TAR.tmp.$$" .
  mv -f "$DEBIAN_TAR.tmp.$$" "$DEBIAN_TAR"
  remove_scratch "$dir"
}

make_debian() {
  local t0=$SECONDS
  if image_exists "$DEBIAN_IMAGE"; then
    log "$DEBIAN_IMAGE: exists, keeping it"
  else
    mkdir -p "$CACHE_DIR"
    if [[ -s $DEBIAN_TAR ]] && tar -tf "$DEBIAN_TAR" ./usr/bin/python3 >/dev/null 2>&1; then
      log "$DEBIAN_IMAGE: importing cached rootfs $DEBIAN_TAR"
    else
      [[ -e $DEBIAN_TAR ]] && warn "$DEBIAN_TAR is unusable; bootstrapping again"
      bootstrap_debian_tar
    fi
    docker import --change 'CMD ["/bin/bash"]' - "$DEBIAN_IMAGE" <"$DEBIAN_TAR" >/dev/null
  fi
  local out
  out=$(docker run --rm "$DEBIAN_IMAGE" python3 -c 'print(1)' 2>&1) || die "$DEBIAN_IMAGE: docker run failed: $out"
  [[ $out == 1 ]] || die "$DEBIAN_IMAGE: docker run printed '$out', expected '1'"
  log "$DEBIAN_IMAGE: ok (python3 printed '$out') in $((SECONDS - t0))s"
}

# ---------------------------------------------------------------- main
target=${1:-}
case $target in
  busybox | debian | all) ;;
  *) usage ;;
esac
[[ $(id -u) -eq 0 ]] || die "images.sh must run as root (debootstrap, docker socket)"
docker info >/dev/null 2>&1 || die "docker does not answer at $DOCKER_HOST: run deploy/local/infra.sh up first"
with_lock images
case $target in
  busybox) make_busybox ;;
  debian) make_debian ;;
  all)
    make_busybox
    make_debian
    ;;
esac
