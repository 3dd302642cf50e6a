# shellcheck shell=bash
# deploy/local/lib.sh — helpers sourced by the local-infrastructure scripts
# (install.sh, infra.sh, images.sh). Not meant to be run on its own.
#
# Provides:
#   REPO_ROOT, RUN_DIR (${DOCKYARD_RUN_DIR:-$REPO_ROOT/.run}), LOG_DIR, PID_DIR
#   log MSG... / warn MSG... / die MSG...      messages on stderr (stdout stays clean for `infra.sh env`)
#   port_open HOST PORT [SECONDS]             true if a TCP connect succeeds (bash /dev/tcp, 1 s timeout)
#   wait_for [-t SECONDS] CMD...              re-run CMD every 0.5 s until it succeeds (default 30 s)
#   mark_started NAME / started_by_us NAME / clear_started NAME
#                                             records in $RUN_DIR/started/ of servers these scripts started
#   pid_file NAME / pid_running NAME          pid files in $RUN_DIR/pids/ (checked against the command line)
#   exec_closing_fds CMD...                   exec CMD with all fds above 2 closed (no lock/pipe leaks)
#   start_bg NAME CMD...                      start CMD detached (own session), log to $LOG_DIR/NAME.log
#   stop_pid NAME [SECONDS]                   SIGTERM the recorded pid, SIGKILL after SECONDS (default 20)
#   with_lock NAME                            take an exclusive flock on $RUN_DIR/NAME.lock for this shell

DOCKYARD_LOCAL_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$DOCKYARD_LOCAL_DIR/../.." && pwd)
RUN_DIR=${DOCKYARD_RUN_DIR:-$REPO_ROOT/.run}
LOG_DIR=$RUN_DIR/logs
PID_DIR=$RUN_DIR/pids
export DOCKYARD_LOCAL_DIR REPO_ROOT RUN_DIR LOG_DIR PID_DIR

log() { printf '[dockyard %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
warn() { printf '[dockyard %s] WARNING: %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() {
  printf '[dockyard %s] ERROR: %s\n' "$(date +%H:%M:%S)" "$*" >&2
  exit 1
}

# Create the run dir (and its sub dirs). A `*` .gitignore inside keeps it out of git
# even when DOCKYARD_RUN_DIR points somewhere inside another checkout.
ensure_run_dir() {
  mkdir -p "$RUN_DIR" "$LOG_DIR" "$PID_DIR" "$RUN_DIR/started"
  [[ -e $RUN_DIR/.gitignore ]] || printf '*\n' >"$RUN_DIR/.gitignore"
}

# port_open HOST PORT [SECONDS]
port_open() {
  local host=$1 port=$2 secs=${3:-1}
  # shellcheck disable=SC2016 # $0/$1 are expanded by the inner bash
  timeout "$secs" bash -c 'exec 3<>"/dev/tcp/$0/$1"' "$host" "$port" >/dev/null 2>&1
}

# wait_for [-t SECONDS] CMD...
wait_for() {
  local secs=${WAIT_TIMEOUT:-30}
  if [[ ${1:-} == -t ]]; then
    secs=$2
    shift 2
  fi
  local deadline=$((SECONDS + secs))
  while true; do
    if "$@" >/dev/null 2>&1; then
      return 0
    fi
    if ((SECONDS >= deadline)); then
      return 1
    fi
    sleep 0.5
  done
}

mark_started() {
  ensure_run_dir
  date -u +%Y-%m-%dT%H:%M:%SZ >"$RUN_DIR/started/$1"
}
started_by_us() { [[ -e $RUN_DIR/started/$1 ]]; }
clear_started() { rm -f "$RUN_DIR/started/$1"; }

pid_file() { printf '%s/%s.pid\n' "$PID_DIR" "$1"; }

# pid_alive PID — true if PID exists and is not a zombie (PID 1 here may not reap orphans).
pid_alive() {
  local pid=$1 state
  [[ $pid =~ ^[0-9]+$ ]] || return 1
  [[ -r /proc/$pid/stat ]] || return 1
  state=$(sed -E 's/^.*\) ([A-Za-z]).*$/\1/' "/proc/$pid/stat" 2>/dev/null) || return 1
  [[ $state != Z && $state != X ]]
}
pid_gone() { ! pid_alive "$1"; }

# pid_running NAME — prints the pid if the process in NAME's pid file is alive and its
# command line still mentions the expected binary (stored on the pid file's 2nd line).
pid_running() {
  local f pid bin
  f=$(pid_file "$1")
  [[ -r $f ]] || return 1
  { read -r pid && read -r bin; } <"$f" || true
  pid_alive "${pid:-}" || return 1
  if [[ -n ${bin:-} ]]; then
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$bin" || return 1
  fi
  printf '%s\n' "$pid"
}

# exec_closing_fds CMD... — replace this (sub)shell by CMD with every fd above 2 closed.
exec_closing_fds() {
  local fd
  for fd in /proc/"$BASHPID"/fd/*; do
    fd=${fd##*/}
    if [[ $fd =~ ^[0-9]+$ ]] && ((fd > 2)); then eval "exec $fd>&-" 2>/dev/null || true; fi
  done
  exec "$@"
}

# start_bg NAME CMD... — detached from this shell (new session, stdin /dev/null), so it
# survives the calling terminal/job; output appended to $LOG_DIR/NAME.log.
start_bg() {
  local name=$1
  shift
  ensure_run_dir
  local logf=$LOG_DIR/$name.log
  printf '\n===== %s starting: %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$*" >>"$logf"
  # Close every inherited fd above 2 first: the with_lock fd (fd 9) or a caller's pipe would
  # otherwise stay open in the server for its whole life (lock held forever / reader never at EOF).
  # A non-interactive bash does not make background jobs group leaders, so setsid execs in
  # place (no fork) and $! is the server's own pid.
  (exec_closing_fds setsid "$@") </dev/null >>"$logf" 2>&1 &
  printf '%s\n%s\n' "$!" "$(basename "$1")" >"$(pid_file "$name")"
}

# stop_pid NAME [SECONDS] — returns 0 when the process is gone (or was not running).
stop_pid() {
  local name=$1 secs=${2:-20} pid
  if ! pid=$(pid_running "$name"); then
    rm -f "$(pid_file "$name")"
    return 0
  fi
  log "stopping $name (pid $pid)"
  kill -TERM "$pid" 2>/dev/null || true
  if ! wait_for -t "$secs" pid_gone "$pid"; then
    warn "$name (pid $pid) still running after ${secs}s; sending SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
    wait_for -t 5 pid_gone "$pid" || return 1
  fi
  rm -f "$(pid_file "$name")"
}

# with_lock NAME — serialise concurrent runs of the same script (released when the shell exits).
# The lock is fd 9: start anything long-lived through start_bg / exec_closing_fds so it does not inherit it.
with_lock() {
  ensure_run_dir
  exec 9>"$RUN_DIR/$1.lock"
  if ! flock -w 900 9; then
    die "could not lock $RUN_DIR/$1.lock within 900 s (another $1 run still going?)"
  fi
}
