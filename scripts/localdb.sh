#!/usr/bin/env bash
# scripts/localdb.sh — the project's local MongoDB-compatible servers.
#
# Two servers install from PyPI (pinned below), each into a project-local virtualenv,
# and listen on 127.0.0.1 only:
#   secantus  SecantusDB (the default): a MongoDB wire-protocol server over WiredTiger, a
#             one-node replica set named `secantus`: isolated transactions, change
#             streams with resume, collation. Virtualenv .venv-secantus/.
#   nx        nx-27017: a MongoDB wire-protocol server over SQLite, with the gaps listed
#             in the design doc, "The local MongoDB-compatible server". Virtualenv .venv/.
# Choose one with --server NAME or LOCALDB_SERVER=NAME (default secantus).
#
# Usage:
#   scripts/localdb.sh install [--server NAME|all]
#       Create the server's virtualenv (python3 -m venv) and pip-install the pinned
#       server (and the pinned versions of its dependencies) unless exactly those are
#       installed already. `all` installs both.
#   scripts/localdb.sh start [--server NAME] [--port N] [--data-dir DIR] [--throwaway]
#       Start a server in the background (installs first if needed) and wait until it
#       answers a `ping`. Defaults: port 27017, data dir .data/<server>.
#       Already running on that port: says so, exits 0.
#       --throwaway: fresh temporary data dir, removed again by `stop`; with it, the port
#       defaults to 0 = pick a free one. Port 0 always means "pick a free port".
#       The last line of stdout is the URI, e.g. mongodb://127.0.0.1:27017/?retryWrites=false,
#       so
#           MONGODB_URI="$(scripts/localdb.sh start --throwaway | tail -n 1)"
#       works; all other messages go to stderr.
#   scripts/localdb.sh stop [--port N | --all]
#       SIGTERM, wait, then SIGKILL; removes the pid file (and, for a throwaway server,
#       its data dir and log). Not running: fine, exits 0. Default port 27017. Whichever
#       server runs on that port is stopped. --all: every server started from this checkout.
#   scripts/localdb.sh status [--port N]
#       Without --port: every server this checkout started. Exit 0 if (all shown are)
#       running, 3 if none/not running.
#
# Files (all git-ignored): .venv/, .venv-secantus/, .data/<server>/,
#   .run/<server>-PORT.{pid,log,state} (<server> is nx-27017 or secantus)
# Environment: LOCALDB_SERVER (secantus or nx, default secantus),
#   PYTHON (interpreter used to create the venv, default python3),
#   LOCALDB_START_TIMEOUT (seconds to wait for ping, default 30),
#   LOCALDB_STOP_TIMEOUT (seconds between SIGTERM and SIGKILL, default 10).

set -euo pipefail

readonly NX_VERSION="0.8.1"
# nx-27017 itself is pinned by the project; its dependencies are pinned too so that the
# server behaves the same on every machine (neosqlite does the actual query work).
readonly NX_PACKAGES=(
    "nx-27017==${NX_VERSION}"
    "neosqlite==1.17.2"
    "pymongo==4.20.0"
    "dnspython==2.9.2"
)
readonly SECANTUS_VERSION="0.7.0b3"
readonly SECANTUS_PACKAGES=(
    "SecantusDB==${SECANTUS_VERSION}"
    "pymongo==4.20.1"
    "dnspython==2.9.2"
    "numpy==2.4.6"
    "shapely==2.2.0"
    "s2sphere==0.2.5"
    "python-dateutil==4.0.0"
    "future==1.0.0"
    "tzdata==2026.6"
)

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
readonly ROOT
readonly RUN_DIR="${ROOT}/.run"
readonly DEFAULT_PORT=27017
readonly HOST=127.0.0.1
readonly SERVERS=(secantus nx)

# What differs between the servers; set by use_server.
SERVER=""         # secantus | nx
PREFIX=""         # file prefix in .run/ and .data/, and the name in messages
VENV=""
VENV_PY=""
BIN=""            # the server's launcher
PROC_MATCH=""     # a word of the server's command line (guards against pid reuse)
URI_SUFFIX=""
DEFAULT_DATA_DIR=""
PINNED_PACKAGES=()
SERVER_VERSION=""

use_server() {
    case "$1" in
    secantus)
        SERVER=secantus PREFIX=secantus VENV="${ROOT}/.venv-secantus"
        BIN="${VENV}/bin/secantusd-py" PROC_MATCH=secantusd-py
        PINNED_PACKAGES=("${SECANTUS_PACKAGES[@]}") SERVER_VERSION="$SECANTUS_VERSION"
        # SecantusDB keeps a record of every retryable write (30 minutes) and scans them
        # all on each write, so with the drivers' default retryWrites=true inserts slow
        # to 30-55/s after ~15,000 writes. A local test server gains nothing from
        # retryable writes (no failover), so they are off in the URI it is given; a real
        # MongoDB keeps the default.
        URI_SUFFIX="/?retryWrites=false"
        ;;
    nx)
        SERVER=nx PREFIX=nx-27017 VENV="${ROOT}/.venv"
        BIN="${VENV}/bin/nx-27017" PROC_MATCH=nx-27017
        PINNED_PACKAGES=("${NX_PACKAGES[@]}") SERVER_VERSION="$NX_VERSION"
        URI_SUFFIX=""
        ;;
    *) die "unknown server '$1' (secantus or nx)" ;;
    esac
    VENV_PY="${VENV}/bin/python"
    DEFAULT_DATA_DIR="${ROOT}/.data/${PREFIX}"
}

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

pid_file() { printf '%s/%s-%s.pid' "$RUN_DIR" "$PREFIX" "$1"; }
log_file() { printf '%s/%s-%s.log' "$RUN_DIR" "$PREFIX" "$1"; }
state_file() { printf '%s/%s-%s.state' "$RUN_DIR" "$PREFIX" "$1"; }
# nx-27017 insists on writing a pid file of its own (default /tmp/nx_27017.pid, shared by
# every instance), so give each instance a private one next to ours.
server_pid_file() { printf '%s/%s-%s.server-pid' "$RUN_DIR" "$PREFIX" "$1"; }

# use_server_on PORT: selects the server that this checkout runs (or ran) on PORT, if
# any; returns 1 (selection unchanged) when neither has files for PORT.
use_server_on() {
    local name
    for name in "${SERVERS[@]}"; do
        use_server "$name"
        if [[ -f "$(pid_file "$1")" || -f "$(state_file "$1")" ]]; then
            return 0
        fi
    done
    use_server "${LOCALDB_SERVER:-secantus}"
    return 1
}

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
    [[ -x "$VENV_PY" && -x "$BIN" ]] || return 1
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
        die "'${python}' not found; ${PREFIX} needs Python >= 3.10 (set PYTHON=/path/to/python3)"
    "$python" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else 1)' ||
        die "${PREFIX} needs Python >= 3.10, but ${python} is $("$python" -V 2>&1)"

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
        die "pip install of ${PINNED_PACKAGES[0]} failed (see above)"
    venv_is_current || die "${PINNED_PACKAGES[0]} is still not installed in ${VENV} after pip install"
    log "${PREFIX} ${SERVER_VERSION} installed"
}

cmd_install() {
    local which="${LOCALDB_SERVER:-secantus}"
    while [[ $# -gt 0 ]]; do
        case "$1" in
        --server)
            [[ $# -ge 2 ]] || die "--server needs a value"
            which="$2"
            shift 2
            ;;
        --server=*)
            which="${1#--server=}"
            shift
            ;;
        *) die "install: unknown argument '$1' (see: scripts/localdb.sh help)" ;;
        esac
    done
    acquire_lock
    local name
    for name in "${SERVERS[@]}"; do
        if [[ "$which" == all || "$which" == "$name" ]]; then
            use_server "$name"
            do_install
        fi
    done
    [[ "$which" == all ]] || use_server "$which"
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
    # Guard against pid reuse: the process must still be the server.
    if [[ -r "/proc/${pid}/cmdline" ]]; then
        tr '\0' ' ' <"/proc/${pid}/cmdline" | grep -q -- "$PROC_MATCH" || return 1
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
            die "${PREFIX} is already running on ${HOST}:${port} (pid ${pid}); a throwaway server needs a port of its own (omit --port)"
        fi
        log "${PREFIX} is already running on ${HOST}:${port} (pid ${pid}, data dir ${running_dir:-unknown})"
        if [[ -d "$data_dir" ]]; then data_dir="$(cd "$data_dir" && pwd)"; fi
        if [[ -n "$data_dir" && -n "$running_dir" && "$data_dir" != "$running_dir" ]]; then
            log "warning: it uses ${running_dir}, not the requested ${data_dir}"
        fi
        wait_ready "$port" "$pid" || {
            log_tail "$(log_file "$port")"
            die "${PREFIX} (pid ${pid}) on port ${port} is running but does not answer ping"
        }
        printf 'mongodb://%s:%s%s\n' "$HOST" "$port" "$URI_SUFFIX"
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
        data_dir="$(mktemp -d "${TMPDIR:-/tmp}/${PREFIX}-throwaway.XXXXXXXX")"
    elif [[ -z "$data_dir" ]]; then
        data_dir="$DEFAULT_DATA_DIR"
    fi
    mkdir -p "$data_dir" || die "cannot create the data dir ${data_dir}"
    data_dir="$(cd "$data_dir" && pwd)"
    # Two servers on the same SQLite files would step on each other.
    local f other
    for f in "$RUN_DIR"/"$PREFIX"-*.state; do
        [[ -f "$f" ]] || continue
        other="${f##*/"$PREFIX"-}"
        other="${other%.state}"
        if [[ "$other" != "$port" && "$(state_get "$other" DATA_DIR)" == "$data_dir" ]] && live_pid "$other" >/dev/null; then
            die "the data dir ${data_dir} is already used by the ${PREFIX} on port ${other}; stop it first or use --data-dir"
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
    printf '\n=== %s: starting %s %s on %s:%s, data dir %s\n' \
        "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$PREFIX" "$SERVER_VERSION" "$HOST" "$port" "$data_dir" >>"$logf"

    # Foreground mode under our control: our pid file holds the real server pid. setsid
    # detaches it from the terminal's process group so a Ctrl-C aimed at the caller does
    # not kill it; stdin/stdout/stderr are detached so $(...) callers do not hang.
    local -a launcher=()
    if command -v setsid >/dev/null 2>&1; then
        launcher=(setsid)
    fi
    case "$SERVER" in
    nx)
        # nx-27017 logs to stderr (captured in $logf) and to --log-file (discarded:
        # duplicate).
        "${launcher[@]}" "$BIN" \
            --host "$HOST" --port "$port" --data-dir "$data_dir" \
            --pid-file "$(server_pid_file "$port")" --log-file /dev/null \
            </dev/null >>"$logf" 2>&1 9>&- &
        ;;
    secantus)
        # A one-node replica set; WiredTiger files in the data dir; logs to stderr.
        "${launcher[@]}" "$BIN" \
            --host "$HOST" --port "$port" --storage-path "$data_dir" --log-level WARNING \
            </dev/null >>"$logf" 2>&1 9>&- &
        ;;
    esac
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
        die "${PREFIX} did not start on ${HOST}:${port} (log: ${logf})"
    fi
    trap - INT TERM
    if [[ "$throwaway" == 1 ]]; then
        log "started throwaway ${PREFIX} on ${HOST}:${port} (pid ${pid}, data dir ${data_dir}); stop it with: scripts/localdb.sh stop --port ${port}"
    else
        log "started ${PREFIX} on ${HOST}:${port} (pid ${pid}, data dir ${data_dir}, log ${logf})"
    fi
    printf 'mongodb://%s:%s%s\n' "$HOST" "$port" "$URI_SUFFIX"
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
        --server)
            [[ $# -ge 2 ]] || die "--server needs a value"
            use_server "$2"
            shift 2
            ;;
        --server=*)
            use_server "${1#--server=}"
            shift
            ;;
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
        log "stopping ${PREFIX} on ${HOST}:${port} (pid ${pid})"
        terminate "$pid"
    elif [[ -f "$(pid_file "$port")" ]]; then
        log "${PREFIX} on port ${port} was not running (removing stale pid file)"
    else
        log "no local server is running on port ${port}"
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
        local name
        for name in "${SERVERS[@]}"; do
            use_server "$name"
            for f in "$RUN_DIR"/"$PREFIX"-*.pid "$RUN_DIR"/"$PREFIX"-*.state; do
                p="${f##*/"$PREFIX"-}"
                p="${p%.*}"
                if is_uint "$p" && [[ -e "$f" ]]; then
                    do_stop "$p"
                fi
            done
        done
        return 0
    fi
    port="$(parse_port_only stop "$@")"
    port="${port:-$DEFAULT_PORT}"
    acquire_lock
    use_server_on "$port" || true
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
        printf 'running%s %s: mongodb://%s:%s  pid %s  data %s  log %s\n' \
            "$kind" "$PREFIX" "$HOST" "$port" "$pid" "${data_dir:-?}" "$(log_file "$port")"
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
        use_server_on "$port" || true
        status_one "$port"
        return
    fi
    local f any=0 rc=0 p name
    shopt -s nullglob
    for name in "${SERVERS[@]}"; do
        use_server "$name"
        for f in "$RUN_DIR"/"$PREFIX"-*.pid; do
            p="${f##*/"$PREFIX"-}"
            p="${p%.pid}"
            is_uint "$p" || continue
            any=1
            status_one "$p" || rc=3
        done
    done
    if [[ "$any" == 0 ]]; then
        printf 'not running: no local server started from %s\n' "$ROOT"
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
    use_server "${LOCALDB_SERVER:-secantus}"
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
