#!/usr/bin/env bash
# scripts/localdb.sh — the project's local MongoDB-compatible server (nx-27017).
#
# nx-27017 (PyPI, pinned below) is a MongoDB wire-protocol server over SQLite. It is
# installed into the project-local virtualenv .venv/ and listens on 127.0.0.1 only.
# Its known gaps are listed in the design doc, "The local MongoDB-compatible server".
#
# Usage:
#   scripts/localdb.sh install
#       Create .venv/ (python3 -m venv) and pip-install the pinned nx-27017 (and the
#       pinned versions of its dependencies) unless exactly those are installed already.
#   scripts/localdb.sh start [--port N] [--data-dir DIR] [--throwaway]
#       Start a server in the background (installs first if needed) and wait until it
#       answers a `ping`. Defaults: port 27017, data dir .data/nx-27017 (one SQLite file
#       per logical database). Already running on that port: says so, exits 0.
#       --throwaway: fresh temporary data dir, removed again by `stop`; with it, the port
#       defaults to 0 = pick a free one. Port 0 always means "pick a free port".
#       The last line of stdout is the URI, e.g. mongodb://127.0.0.1:27017, so
#           MONGODB_URI="$(scripts/localdb.sh start --throwaway | tail -n 1)"
#       works; all other messages go to stderr.
#   scripts/localdb.sh stop [--port N | --all]
#       SIGTERM, wait, then SIGKILL; removes the pid file (and, for a throwaway server,
#       its data dir and log). Not running: fine, exits 0. Default port 27017.
#       --all: every server started from this checkout.
#   scripts/localdb.sh status [--port N]
#       Without --port: every server this checkout started. Exit 0 if (all shown are)
#       running, 3 if none/not running.
#
# Files (all git-ignored): .venv/, .data/nx-27017/, .run/nx-27017-PORT.{pid,log,state}
# Environment: PYTHON (interpreter used to create the venv, default python3),
#   LOCALDB_START_TIMEOUT (seconds to wait for ping, default 30),
#   LOCALDB_STOP_TIMEOUT (seconds between SIGTERM and SIGKILL, default 10).

set -euo pipefail

readonly NX_VERSION="0.8.1"
# nx-27017 itself is pinned by the project; its dependencies are pinned too so that the
# server behaves the same on every machine (neosqlite does the actual query work).
readonly PINNED_PACKAGES=(
    "nx-27017==${NX_VERSION}"
    "neosqlite==1.17.2"
    "pymongo==4.20.0"
    "dnspython==2.9.2"
)

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
readonly ROOT
readonly VENV="${ROOT}/.venv"
readonly VENV_PY="${VENV}/bin/python"
readonly NX_BIN="${VENV}/bin/nx-27017"
readonly RUN_DIR="${ROOT}/.run"
readonly DEFAULT_DATA_DIR="${ROOT}/.data/nx-27017"
readonly DEFAULT_PORT=27017
readonly HOST=127.0.0.1

START_TIMEOUT="${LOCALDB_START_TIMEOUT:-30}"
STOP_TIMEOUT="${LOCALDB_STOP_TIMEOUT:-10}"

log() { printf 'localdb: %s\n' "$*" >&2; }
die() {
    printf 'localdb: error: %s\n' "$*" >&2
    exit 1
}

usage() {
    sed -n '2,/^$/{s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}" >&2
}

is_uint() { [[ "$1" =~ ^[0-9]+$ ]]; }
# valid_port VALUE MIN: a decimal port number in [MIN, 65535].
valid_port() {
    is_uint "$1" || return 1
    ((${#1} <= 5 && 10#$1 >= $2 && 10#$1 <= 65535))
}

pid_file() { printf '%s/nx-27017-%s.pid' "$RUN_DIR" "$1"; }
log_file() { printf '%s/nx-27017-%s.log' "$RUN_DIR" "$1"; }
state_file() { printf '%s/nx-27017-%s.state' "$RUN_DIR" "$1"; }
# nx-27017 insists on writing a pid file of its own (default /tmp/nx_27017.pid, shared by
# every instance), so give each instance a private one next to ours.
server_pid_file() { printf '%s/nx-27017-%s.server-pid' "$RUN_DIR" "$1"; }

# Take the exclusive lock .run/localdb.lock (if flock(1) is available) for the rest of this
# process, so that concurrent invocations cannot race on the venv, a port or a pid file.
# Fd 9 holds it; the server is started with fd 9 closed so that it does not keep the lock.
acquire_lock() {
    mkdir -p "$RUN_DIR"
    command -v flock >/dev/null 2>&1 || return 0
    exec 9>"${RUN_DIR}/localdb.lock"
    flock -w 600 9 || die "could not lock ${RUN_DIR}/localdb.lock within 600s"
}

# ---------------------------------------------------------------------------- install

# True if the venv has exactly the pinned packages.
venv_is_current() {
    [[ -x "$VENV_PY" && -x "$NX_BIN" ]] || return 1
    "$VENV_PY" - "${PINNED_PACKAGES[@]}" <<'PY' >/dev/null 2>&1
import sys
from importlib import metadata
for spec in sys.argv[1:]:
    name, want = spec.split("==")
    if metadata.version(name) != want:
        sys.exit(1)
PY
}

do_install() {
    if venv_is_current; then
        return 0
    fi
    local python="${PYTHON:-python3}"
    command -v "$python" >/dev/null 2>&1 ||
        die "'${python}' not found; nx-27017 needs Python >= 3.10 (set PYTHON=/path/to/python3)"
    "$python" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else 1)' ||
        die "nx-27017 needs Python >= 3.10, but ${python} is $("$python" -V 2>&1)"

    # A venv whose interpreter no longer runs (e.g. the base Python was removed) is rebuilt.
    if [[ -e "$VENV" ]] && ! "$VENV_PY" -c 'pass' >/dev/null 2>&1; then
        log "the virtualenv ${VENV} is broken; recreating it"
        rm -rf "$VENV"
    fi
    if [[ ! -x "$VENV_PY" ]]; then
        log "creating virtualenv ${VENV}"
        "$python" -m venv "$VENV" ||
            die "'${python} -m venv' failed (on Debian/Ubuntu the python3-venv package provides it)"
    fi
    log "installing ${PINNED_PACKAGES[*]} into ${VENV}"
    PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1 \
        "$VENV_PY" -m pip install --quiet "${PINNED_PACKAGES[@]}" ||
        die "pip install of nx-27017==${NX_VERSION} failed (see above)"
    venv_is_current || die "nx-27017==${NX_VERSION} is still not installed in ${VENV} after pip install"
    log "nx-27017 ${NX_VERSION} installed"
}

cmd_install() {
    [[ $# -eq 0 ]] || die "install takes no arguments"
    acquire_lock
    do_install
}

# ---------------------------------------------------------------------- process helpers

# Prints the pid recorded for PORT if that process is alive and is an nx-27017 server.
live_pid() {
    local port="$1" file pid
    file="$(pid_file "$port")"
    [[ -f "$file" ]] || return 1
    pid="$(tr -dc '0-9' <"$file")"
    [[ -n "$pid" ]] || return 1
    kill -0 "$pid" 2>/dev/null || return 1
    # Guard against pid reuse: the process must still be nx-27017.
    if [[ -r "/proc/${pid}/cmdline" ]]; then
        tr '\0' ' ' <"/proc/${pid}/cmdline" | grep -q 'nx-27017' || return 1
    fi
    printf '%s\n' "$pid"
}

# Reads KEY from the state file of PORT (empty if absent).
state_get() {
    local file
    file="$(state_file "$1")"
    [[ -f "$file" ]] || return 0
    sed -n "s/^$2=//p" "$file" | head -n 1
}

free_port() {
    "$VENV_PY" -c '
import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
s.close()'
}

port_in_use() {
    "$VENV_PY" - "$1" <<'PY'
import socket, sys
s = socket.socket()
try:
    s.settimeout(1)
    s.connect(("127.0.0.1", int(sys.argv[1])))
except OSError:
    sys.exit(1)
finally:
    s.close()
PY
}

# Waits until the server on PORT answers `ping`, failing early if PID dies.
wait_ready() {
    local port="$1" pid="$2"
    "$VENV_PY" - "$port" "$pid" "$START_TIMEOUT" <<'PY'
import os, sys, time
from pymongo import MongoClient
from pymongo.errors import PyMongoError

port, pid, timeout = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
deadline = time.monotonic() + timeout
last = "no attempt yet"
first = True
while first or time.monotonic() < deadline:
    first = False
    try:
        os.kill(pid, 0)
    except OSError:
        print(f"the server process {pid} exited during startup", file=sys.stderr)
        sys.exit(2)
    client = MongoClient(f"mongodb://127.0.0.1:{port}/", directConnection=True,
                         serverSelectionTimeoutMS=500, connectTimeoutMS=500)
    try:
        client.admin.command("ping")
        sys.exit(0)
    except PyMongoError as exc:
        last = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    finally:
        client.close()
    time.sleep(0.2)
print(f"no answer to ping on 127.0.0.1:{port} within {timeout:g}s (last error: {last})",
      file=sys.stderr)
sys.exit(1)
PY
}

log_tail() {
    local file="$1"
    if [[ -s "$file" ]]; then
        printf -- '--- last lines of %s ---\n' "$file" >&2
        tail -n 30 "$file" >&2
        printf -- '---\n' >&2
    fi
}

# Sends SIGTERM, waits up to STOP_TIMEOUT, then SIGKILL.
terminate() {
    local pid="$1" waited=0
    kill -TERM "$pid" 2>/dev/null || return 0
    # Poll in tenths of a second.
    while kill -0 "$pid" 2>/dev/null; do
        if ((waited >= STOP_TIMEOUT * 10)); then
            log "pid ${pid} still alive after ${STOP_TIMEOUT}s; sending SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
            sleep 0.2
            break
        fi
        sleep 0.1
        waited=$((waited + 1))
    done
}

remove_instance_files() {
    local port="$1"
    rm -f "$(pid_file "$port")" "$(server_pid_file "$port")" "$(state_file "$port")"
}

# ------------------------------------------------------------------------------- start

do_start() {
    local port="$1" data_dir="$2" throwaway="$3"
    local pid pidf logf

    if [[ "$port" != 0 ]] && pid="$(live_pid "$port")"; then
        local running_dir
        running_dir="$(state_get "$port" DATA_DIR)"
        if [[ "$throwaway" == 1 ]]; then
            die "nx-27017 is already running on ${HOST}:${port} (pid ${pid}); a throwaway server needs a port of its own (omit --port)"
        fi
        log "nx-27017 is already running on ${HOST}:${port} (pid ${pid}, data dir ${running_dir:-unknown})"
        if [[ -d "$data_dir" ]]; then data_dir="$(cd "$data_dir" && pwd)"; fi
        if [[ -n "$data_dir" && -n "$running_dir" && "$data_dir" != "$running_dir" ]]; then
            log "warning: it uses ${running_dir}, not the requested ${data_dir}"
        fi
        wait_ready "$port" "$pid" || {
            log_tail "$(log_file "$port")"
            die "nx-27017 (pid ${pid}) on port ${port} is running but does not answer ping"
        }
        printf 'mongodb://%s:%s\n' "$HOST" "$port"
        return 0
    fi

    if [[ "$port" == 0 ]]; then
        port="$(free_port)"
    else
        # Whatever the pid file said, no live server of ours owns this port.
        if [[ -f "$(pid_file "$port")" ]]; then
            log "removing stale pid file $(pid_file "$port")"
        fi
        # A stale throwaway instance leaves its temporary data dir behind: clean it.
        if [[ "$(state_get "$port" THROWAWAY)" == 1 ]]; then
            local old_dir
            old_dir="$(state_get "$port" DATA_DIR)"
            if [[ -n "$old_dir" && -d "$old_dir" ]]; then
                rm -rf "$old_dir"
            fi
        fi
        remove_instance_files "$port"
        if port_in_use "$port"; then
            die "port ${port} on ${HOST} is already in use by another program (not started by this script); use --port N, or set MONGODB_URI to use that server"
        fi
    fi

    if [[ "$throwaway" == 1 ]]; then
        data_dir="$(mktemp -d "${TMPDIR:-/tmp}/nx-27017-throwaway.XXXXXXXX")"
    elif [[ -z "$data_dir" ]]; then
        data_dir="$DEFAULT_DATA_DIR"
    fi
    mkdir -p "$data_dir" || die "cannot create the data dir ${data_dir}"
    data_dir="$(cd "$data_dir" && pwd)"
    # Two servers on the same SQLite files would step on each other.
    local f other
    for f in "$RUN_DIR"/nx-27017-*.state; do
        [[ -f "$f" ]] || continue
        other="${f##*/nx-27017-}"
        other="${other%.state}"
        if [[ "$other" != "$port" && "$(state_get "$other" DATA_DIR)" == "$data_dir" ]] && live_pid "$other" >/dev/null; then
            die "the data dir ${data_dir} is already used by the nx-27017 on port ${other}; stop it first or use --data-dir"
        fi
    done

    pidf="$(pid_file "$port")"
    logf="$(log_file "$port")"
    # Keep a persistent server's log from growing without bound.
    if [[ -f "$logf" ]] && (($(wc -c <"$logf") > 50 * 1024 * 1024)); then
        mv -f "$logf" "${logf}.old"
    fi
    {
        printf 'PORT=%s\n' "$port"
        printf 'DATA_DIR=%s\n' "$data_dir"
        printf 'THROWAWAY=%s\n' "$throwaway"
    } >"$(state_file "$port")"
    printf '\n=== %s: starting nx-27017 %s on %s:%s, data dir %s\n' \
        "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$NX_VERSION" "$HOST" "$port" "$data_dir" >>"$logf"

    # Foreground mode under our control: our pid file holds the real server pid. setsid
    # detaches it from the terminal's process group so a Ctrl-C aimed at the caller does
    # not kill it; stdin/stdout/stderr are detached so $(...) callers do not hang.
    # nx-27017 logs to stderr (captured in $logf) and to --log-file (discarded: duplicate).
    local -a launcher=()
    if command -v setsid >/dev/null 2>&1; then
        launcher=(setsid)
    fi
    "${launcher[@]}" "$NX_BIN" \
        --host "$HOST" --port "$port" --data-dir "$data_dir" \
        --pid-file "$(server_pid_file "$port")" --log-file /dev/null \
        </dev/null >>"$logf" 2>&1 9>&- &
    pid=$!
    printf '%s\n' "$pid" >"$pidf"
    # Interrupted before the server is up: do not leave a half-started server behind.
    local on_signal
    printf -v on_signal 'kill -KILL %q 2>/dev/null; rm -f %q %q %q; exit 130' \
        "$pid" "$pidf" "$(server_pid_file "$port")" "$(state_file "$port")"
    if [[ "$throwaway" == 1 ]]; then
        printf -v on_signal 'rm -rf %q %q; %s' "$data_dir" "$logf" "$on_signal"
    fi
    # shellcheck disable=SC2064 # expanded now on purpose: the locals are gone later
    trap "$on_signal" INT TERM

    if ! wait_ready "$port" "$pid"; then
        log_tail "$logf"
        kill -KILL "$pid" 2>/dev/null || true
        { wait "$pid"; } 2>/dev/null || true
        remove_instance_files "$port"
        if [[ "$throwaway" == 1 ]]; then
            rm -rf "$data_dir"
        fi
        die "nx-27017 did not start on ${HOST}:${port} (log: ${logf})"
    fi
    trap - INT TERM
    if [[ "$throwaway" == 1 ]]; then
        log "started throwaway nx-27017 on ${HOST}:${port} (pid ${pid}, data dir ${data_dir}); stop it with: scripts/localdb.sh stop --port ${port}"
    else
        log "started nx-27017 on ${HOST}:${port} (pid ${pid}, data dir ${data_dir}, log ${logf})"
    fi
    printf 'mongodb://%s:%s\n' "$HOST" "$port"
}

cmd_start() {
    local port="" data_dir="" throwaway=0
    while [[ $# -gt 0 ]]; do
        case "$1" in
        --port)
            [[ $# -ge 2 ]] || die "--port needs a value"
            port="$2"
            shift 2
            ;;
        --port=*)
            port="${1#--port=}"
            shift
            ;;
        --data-dir)
            [[ $# -ge 2 ]] || die "--data-dir needs a value"
            data_dir="$2"
            shift 2
            ;;
        --data-dir=*)
            data_dir="${1#--data-dir=}"
            shift
            ;;
        --throwaway) throwaway=1 && shift ;;
        *) die "start: unknown argument '$1' (see: scripts/localdb.sh help)" ;;
        esac
    done
    if [[ -z "$port" ]]; then
        if [[ "$throwaway" == 1 ]]; then port=0; else port="$DEFAULT_PORT"; fi
    fi
    valid_port "$port" 0 || die "invalid port '${port}' (0-65535; 0 = pick a free one)"
    port=$((10#$port))
    if [[ "$throwaway" == 1 && -n "$data_dir" ]]; then
        die "--throwaway and --data-dir exclude each other"
    fi
    is_uint "$START_TIMEOUT" || die "LOCALDB_START_TIMEOUT must be a whole number of seconds"

    acquire_lock
    do_install
    do_start "$port" "$data_dir" "$throwaway"
}

# -------------------------------------------------------------------------------- stop

do_stop() {
    local port="$1" pid data_dir throwaway
    data_dir="$(state_get "$port" DATA_DIR)"
    throwaway="$(state_get "$port" THROWAWAY)"
    if pid="$(live_pid "$port")"; then
        log "stopping nx-27017 on ${HOST}:${port} (pid ${pid})"
        terminate "$pid"
    elif [[ -f "$(pid_file "$port")" ]]; then
        log "nx-27017 on port ${port} was not running (removing stale pid file)"
    else
        log "nx-27017 is not running on port ${port}"
    fi
    remove_instance_files "$port"
    if [[ "$throwaway" == 1 ]]; then
        if [[ -n "$data_dir" && -d "$data_dir" ]]; then
            rm -rf "$data_dir"
            log "removed throwaway data dir ${data_dir}"
        fi
        rm -f "$(log_file "$port")"
    fi
}

parse_port_only() {
    local cmd="$1"
    shift
    local port=""
    while [[ $# -gt 0 ]]; do
        case "$1" in
        --port)
            [[ $# -ge 2 ]] || die "--port needs a value"
            port="$2"
            shift 2
            ;;
        --port=*)
            port="${1#--port=}"
            shift
            ;;
        *) die "${cmd}: unknown argument '$1' (see: scripts/localdb.sh help)" ;;
        esac
    done
    if [[ -n "$port" ]]; then
        valid_port "$port" 1 || die "invalid port '${port}' (1-65535)"
        port=$((10#$port))
    fi
    printf '%s\n' "$port"
}

cmd_stop() {
    local port
    is_uint "$STOP_TIMEOUT" || die "LOCALDB_STOP_TIMEOUT must be a whole number of seconds"
    if [[ $# -eq 1 && "$1" == --all ]]; then
        acquire_lock
        local f p
        shopt -s nullglob
        for f in "$RUN_DIR"/nx-27017-*.pid "$RUN_DIR"/nx-27017-*.state; do
            p="${f##*/nx-27017-}"
            p="${p%.*}"
            if is_uint "$p" && [[ -e "$f" ]]; then
                do_stop "$p"
            fi
        done
        return 0
    fi
    port="$(parse_port_only stop "$@")"
    port="${port:-$DEFAULT_PORT}"
    acquire_lock
    do_stop "$port"
}

# ------------------------------------------------------------------------------ status

status_one() {
    local port="$1" pid data_dir kind=""
    data_dir="$(state_get "$port" DATA_DIR)"
    if [[ "$(state_get "$port" THROWAWAY)" == 1 ]]; then
        kind=" throwaway"
    fi
    if pid="$(live_pid "$port")"; then
        printf 'running%s: mongodb://%s:%s  pid %s  data %s  log %s\n' \
            "$kind" "$HOST" "$port" "$pid" "${data_dir:-?}" "$(log_file "$port")"
        return 0
    elif [[ -f "$(pid_file "$port")" ]]; then
        printf 'not running (stale pid file %s): port %s\n' "$(pid_file "$port")" "$port"
    else
        printf 'not running: port %s\n' "$port"
    fi
    return 3
}

cmd_status() {
    local port
    port="$(parse_port_only status "$@")"
    if [[ -n "$port" ]]; then
        status_one "$port"
        return
    fi
    local f any=0 rc=0 p
    shopt -s nullglob
    for f in "$RUN_DIR"/nx-27017-*.pid; do
        p="${f##*/nx-27017-}"
        p="${p%.pid}"
        is_uint "$p" || continue
        any=1
        status_one "$p" || rc=3
    done
    if [[ "$any" == 0 ]]; then
        printf 'not running: no nx-27017 started from %s\n' "$ROOT"
        return 3
    fi
    return "$rc"
}

# -------------------------------------------------------------------------------- main

main() {
    [[ $# -ge 1 ]] || {
        usage
        exit 2
    }
    local cmd="$1"
    shift
    case "$cmd" in
    install) cmd_install "$@" ;;
    start) cmd_start "$@" ;;
    stop) cmd_stop "$@" ;;
    status) cmd_status "$@" ;;
    help | -h | --help) usage ;;
    *)
        usage
        die "unknown command '${cmd}'"
        ;;
    esac
}

main "$@"
