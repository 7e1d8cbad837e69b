#!/usr/bin/env bash
# scripts/run.sh — run the whole stack on this machine (`make run`).
#
#   1. unless MONGODB_URI is set, starts the local MongoDB-compatible server
#      (scripts/localdb.sh: SecantusDB, or nx-27017 with LOCALDB_SERVER=nx; persistent
#      data dir .data/<server>, port LOCALDB_PORT or 27017) and exports MONGODB_URI;
#   2. cargo build --workspace --bins;
#   3. starts the subgraphs users :3001, expenses :3002, budgets :3003, analytics :3004,
#      notifications :3005, then the router :3000 (only if schema/supergraph.graphql
#      exists), each with PORT, MONGODB_URI and JWT_SECRET set and told where the
#      others are (scripts/lib.sh: USERS_URL, BUDGETS_URL, EVENT_CONSUMERS; the router
#      gets .run/run-router.toml with each subgraph's URL unless ROUTER_CONFIG is set),
#      its output prefixed with its name;
#   4. unless SMTP_HOST is set (or MAILBOX=off), installs and starts the local mailbox
#      (scripts/mailbox.sh: MailDev; its web page on :1080) and points the notifications
#      service's SMTP settings at it;
#   5. runs until Ctrl-C / SIGTERM or until one of them exits, then stops them all:
#      SIGTERM, up to RUN_STOP_TIMEOUT seconds (default 10), then SIGKILL; a second
#      Ctrl-C kills at once. The local database is stopped too if this script started it
#      (one that was already running, e.g. from `make db-start`, is left running).
#
# Environment:
#   MONGODB_URI    use this server; no local server is started
#   LOCALDB_SERVER the local server: secantus (default) or nx
#   JWT_SECRET     defaults to a development value (with a warning)
#   USERS_PORT EXPENSES_PORT BUDGETS_PORT ANALYTICS_PORT NOTIFICATIONS_PORT ROUTER_PORT
#                  override the default ports (the links between the services follow)
#   LOCALDB_PORT   port of the local server (default 27017)
#   SMTP_HOST      send email through this server; unset: through the local mailbox
#   MAILBOX        "off": no local mailbox
#   MAILBOX_SMTP_PORT MAILBOX_WEB_PORT
#                  the local mailbox's ports (default 1025 and 1080, on 127.0.0.1)
#   CARGO          cargo command (default: cargo)
#   CARGO_TARGET_DIR  honoured when looking for the built binaries (default: target)

set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
# shellcheck source=scripts/lib.sh
source "${ROOT}/scripts/lib.sh"

CARGO="${CARGO:-cargo}"
STOP_TIMEOUT="${RUN_STOP_TIMEOUT:-10}"
LOCALDB_PORT="${LOCALDB_PORT:-27017}"
BIN_DIR="${CARGO_TARGET_DIR:-${ROOT}/target}/debug"
SUPERGRAPH="schema/supergraph.graphql"

say() { printf 'run.sh: %s\n' "$*" >&2; }
die() {
    printf 'run.sh: error: %s\n' "$*" >&2
    exit 1
}

[[ "$STOP_TIMEOUT" =~ ^[0-9]+$ ]] || die "RUN_STOP_TIMEOUT must be a whole number of seconds"

# name:port, in start order (the router last).
SERVICES=(
    "users:${USERS_PORT:-3001}"
    "expenses:${EXPENSES_PORT:-3002}"
    "budgets:${BUDGETS_PORT:-3003}"
    "analytics:${ANALYTICS_PORT:-3004}"
    "notifications:${NOTIFICATIONS_PORT:-3005}"
)
if [[ -f "$SUPERGRAPH" ]]; then
    SERVICES+=("router:${ROUTER_PORT:-3000}")
else
    say "note: ${SUPERGRAPH} does not exist (run 'make schema'); not starting the router"
fi

MAILBOX_SMTP_PORT="${MAILBOX_SMTP_PORT:-1025}"
MAILBOX_WEB_PORT="${MAILBOX_WEB_PORT:-1080}"
MAILBOX_PORTS=()
if [[ -z "${SMTP_HOST:-}" && "${MAILBOX:-on}" != off ]]; then
    MAILBOX_PORTS=("mailbox_smtp:${MAILBOX_SMTP_PORT}" "mailbox_web:${MAILBOX_WEB_PORT}")
fi

# ------------------------------------------------------------------ children & shutdown

NAMES=()   # names of the started services
PIDS=()    # their pids, same order
CHILD=""   # a foreground step (cargo build) being waited for
DB_STARTED=0
SHUTTING_DOWN=0
FORCE=0

alive() { kill -0 "$1" 2>/dev/null; }

# Interruptible sleep: a trapped signal ends it at once.
nap() {
    sleep "$1" &
    wait "$!" 2>/dev/null || true
}

shutdown() {
    local rc="$1"
    ((SHUTTING_DOWN)) && return 0
    SHUTTING_DOWN=1
    # A second Ctrl-C / SIGTERM while stopping: kill at once.
    trap 'FORCE=1' INT TERM

    local -a pids=("${PIDS[@]}")
    [[ -n "$CHILD" ]] && pids+=("$CHILD")
    local pid i any=0
    for pid in "${pids[@]}"; do
        if alive "$pid"; then
            kill -TERM "$pid" 2>/dev/null || true
            any=1
        fi
    done
    if ((any)); then
        say "stopping (SIGTERM; up to ${STOP_TIMEOUT}s, Ctrl-C again to kill now)"
        local ticks=0
        while ((FORCE == 0 && ticks < STOP_TIMEOUT * 10)); do
            any=0
            for pid in "${pids[@]}"; do
                if alive "$pid"; then any=1; fi
            done
            ((any)) || break
            nap 0.1
            ticks=$((ticks + 1))
        done
        for i in "${!PIDS[@]}"; do
            if alive "${PIDS[$i]}"; then
                say "${NAMES[$i]} (pid ${PIDS[$i]}) did not stop; sending SIGKILL"
                kill -KILL "${PIDS[$i]}" 2>/dev/null || true
            fi
        done
        if [[ -n "$CHILD" ]] && alive "$CHILD"; then kill -KILL "$CHILD" 2>/dev/null || true; fi
        for pid in "${pids[@]}"; do
            wait "$pid" 2>/dev/null || true
        done
    fi
    if ((DB_STARTED)); then
        scripts/localdb.sh stop --port "$LOCALDB_PORT" || true
    fi
    exit "$rc"
}

on_exit() {
    local rc=$?
    trap - EXIT
    shutdown "$rc"
}
trap on_exit EXIT
trap 'printf "\n" >&2; say "interrupted"; exit 130' INT
trap 'say "terminated"; exit 143' TERM

# Prefixes every line of stdin with LABEL (sed -u when it is GNU sed: fast, unbuffered).
prefix_lines() {
    local label="$1" line
    trap '' INT TERM # keep printing a stopping service's last lines
    if sed --version 2>/dev/null | grep -q GNU; then
        local escaped="${label//\\/\\\\}"
        escaped="${escaped//&/\\&}"
        escaped="${escaped//|/\\|}"
        exec sed -u "s|^|${escaped}|"
    fi
    while IFS= read -r line || [[ -n "$line" ]]; do
        printf '%s%s\n' "$label" "$line"
    done
}

port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

check_ports() {
    local entry name port
    for entry in "${SERVICES[@]}" "${MAILBOX_PORTS[@]}"; do
        name="${entry%%:*}"
        port="${entry##*:}"
        [[ "$port" =~ ^[0-9]+$ ]] || die "invalid port '${port}' for ${name}"
        if port_busy "$port"; then
            die "port ${port} (for ${name}) is already in use; stop what uses it or set ${name^^}_PORT"
        fi
    done
}

# ----------------------------------------------------------------------------- mailbox

# Email goes to the local mailbox (scripts/mailbox.sh: MailDev) unless SMTP_HOST names a
# server of the caller's, or MAILBOX=off.
MAILBOX_BIN=""
if [[ -z "${SMTP_HOST:-}" && "${MAILBOX:-on}" != off ]]; then
    if scripts/mailbox.sh install && MAILBOX_BIN="$(scripts/mailbox.sh bin)"; then
        export SMTP_HOST=127.0.0.1 SMTP_PORT="$MAILBOX_SMTP_PORT" SMTP_TLS=none
        export SMTP_USERNAME="" SMTP_PASSWORD=""
    else
        MAILBOX_BIN=""
        say "WARNING: the local mailbox could not be installed; email deliveries will fail (set SMTP_HOST to use another server)"
    fi
fi

# ---------------------------------------------------------------------------- database

check_ports

if [[ -z "${JWT_SECRET:-}" ]]; then
    export JWT_SECRET="dev-only-insecure-jwt-secret-change-me"
    say "WARNING: JWT_SECRET is not set; using an insecure development secret (never do this in production)"
fi

if [[ -n "${MONGODB_URI:-}" ]]; then
    say "using MONGODB_URI from the environment"
else
    if ! scripts/localdb.sh status --port "$LOCALDB_PORT" >/dev/null 2>&1; then
        DB_STARTED=1
    fi
    uri="$(scripts/localdb.sh start --port "$LOCALDB_PORT" | tail -n 1)"
    [[ "$uri" == mongodb://* ]] || die "scripts/localdb.sh start did not print a URI (got '${uri}')"
    export MONGODB_URI="$uri"
fi
say "MONGODB_URI=${MONGODB_URI}"

# ------------------------------------------------------------------------------- build

say "building: ${CARGO} build --workspace --bins"
run_child "$CARGO" build --workspace --bins || die "the build failed"
check_ports # again: something may have taken a port during the build

for entry in "${SERVICES[@]}"; do
    name="${entry%%:*}"
    [[ -x "${BIN_DIR}/${name}" ]] || die "${BIN_DIR}/${name} was not built (is there a [[bin]] named '${name}'?)"
done

# ------------------------------------------------------------------------------- start

COLORS=(32 33 34 35 36 92 93 94)
width=0
for entry in "${SERVICES[@]}"; do
    name="${entry%%:*}"
    ((${#name} > width)) && width=${#name}
done

# start_child NAME COLOR COMMAND...: runs COMMAND in the background, its output prefixed
# with NAME, and watches it with the services.
start_child() {
    local name="$1" color="$2" label
    shift 2
    printf -v label '%-*s | ' "$width" "$name"
    if [[ -t 1 && -z "${NO_COLOR:-}" ]]; then
        label=$'\e['"${color}m${label}"$'\e[0m'
    fi
    (
        trap - INT QUIT TERM
        exec "$@"
    ) </dev/null > >(prefix_lines "$label") 2>&1 &
    NAMES+=("$name")
    PIDS+=("$!")
}

start_service() {
    local name="$1" port="$2" color="$3"
    local links=()
    if [[ "$name" == router ]]; then
        links=("ROUTER_CONFIG=${ROUTER_CONFIG:-${ROUTER_TOML}}")
    else
        mapfile -t links < <(stack_links "$name")
    fi
    start_child "$name" "$color" env PORT="$port" "${links[@]}" "${BIN_DIR}/${name}"
    say "started ${name} on :${port} (pid $!)"
}

# Each subgraph is told where the others are, and the router where each subgraph is
# (unless ROUTER_CONFIG names a file of the caller's), so other ports work too.
declare -A PORT_OF=()
for entry in "${SERVICES[@]}"; do
    PORT_OF[${entry%%:*}]="${entry##*:}"
done
ROUTER_TOML="${ROOT}/.run/run-router.toml"
mkdir -p "${ROOT}/.run"
stack_router_config >"$ROUTER_TOML"

if [[ -n "$MAILBOX_BIN" ]]; then
    start_child mailbox 90 "$MAILBOX_BIN" --ip 127.0.0.1 --smtp "$MAILBOX_SMTP_PORT" \
        --web "$MAILBOX_WEB_PORT" --mail-directory "${ROOT}/.run/mailbox"
    say "started the mailbox (pid $!): read the product's email on http://127.0.0.1:${MAILBOX_WEB_PORT}/"
fi

i=0
for entry in "${SERVICES[@]}"; do
    name="${entry%%:*}"
    port="${entry##*:}"
    if [[ "$name" == router ]]; then
        # Give the subgraphs a moment to listen before the router starts (not fatal).
        for sub in "${SERVICES[@]}"; do
            [[ "${sub%%:*}" == router ]] && continue
            for ((tick = 0; tick < 100; tick++)); do
                port_busy "${sub##*:}" && break
                nap 0.1
            done
        done
    fi
    start_service "$name" "$port" "${COLORS[$((i % ${#COLORS[@]}))]}"
    i=$((i + 1))
done

say "running; Ctrl-C stops everything"

# ----------------------------------------------------------------------------- monitor

while true; do
    for i in "${!PIDS[@]}"; do
        if ! alive "${PIDS[$i]}"; then
            rc=0
            wait "${PIDS[$i]}" || rc=$?
            say "${NAMES[$i]} exited with status ${rc}; stopping the others"
            exit 1
        fi
    done
    nap 0.5
done
