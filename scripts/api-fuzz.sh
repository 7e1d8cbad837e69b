#!/usr/bin/env bash
# scripts/api-fuzz.sh — fuzz the REST shim against its own OpenAPI document (`make api-fuzz`).
#
# Runs schemathesis (PyPI, pinned below, installed into the project's .venv/ next to
# nx-27017) against GET /api/openapi.json of a throwaway local stack and fails on any 5xx,
# any response that does not match the document (status, content type, body schema), or
# any crash (a dropped connection, a service that dies, a panic in a service's log).
#
#   1. installs the local servers (scripts/localdb.sh install --server all) and the pinned
#      schemathesis into .venv/ unless exactly those versions are there already;
#   2. unless MONGODB_URI is set, starts a throwaway local server (scripts/localdb.sh
#      start --throwaway: SecantusDB, or the one LOCALDB_SERVER names) that is removed
#      again at the end; the services use databases named
#      fuzz_<run>_<service>, dropped at the end when MONGODB_URI was given;
#   3. cargo build --workspace --bins;
#   4. starts the five subgraphs and the router on free loopback ports, wired to each
#      other explicitly (USERS_URL, EVENT_CONSUMERS, BUDGETS_URL, a router config with
#      [subgraphs.*] urls), with a fresh random JWT_SECRET, and waits for the router's
#      /ready; the router's rate limiting stays off (its default);
#   5. registers a user through POST /api/auth/register, gives it a budget, an expense
#      and so budget alerts and notifications, a household and an invitation to another
#      user's household, and runs
#        st --config-file scripts/api-fuzz.toml run
#               --checks not_a_server_error,status_code_conformance,
#                        content_type_conformance,response_schema_conformance
#               --phases examples,coverage,fuzzing,stateful
#               --seed 1 --generation-database none --max-examples 200 --workers 1
#               --header 'Authorization: Bearer <token>' http://127.0.0.1:<port>/api/openapi.json
#      A fixed seed, one worker and no example database or failure cache make every
#      run generate the same cases (up to the ids and data the services hand back).
#      Extra arguments go on to `st run`, e.g. `--checks all` to look further;
#   6. stops everything on exit (also on Ctrl-C) and exits non-zero if schemathesis
#      failed, a service died, or a service's log shows a panic.
#
# Environment:
#   MONGODB_URI            use this server instead of a throwaway local one
#   API_FUZZ_MAX_EXAMPLES  test cases per operation and phase (default 200)
#   API_FUZZ_WORKERS       schemathesis workers (default 1: the same cases every run;
#                          more are a little faster but interleave differently)
#   API_FUZZ_PHASES        schemathesis phases (default examples,coverage,fuzzing,stateful)
#   API_FUZZ_SEED          the seed (default 1)
#   API_FUZZ_DIR           where logs and the JUnit report go (default .run/api-fuzz);
#                          kept after the run
#   CARGO                  cargo command (default: cargo)
#   CARGO_TARGET_DIR       honoured when looking for the built binaries (default: target)

set -euo pipefail

readonly SCHEMATHESIS_VERSION="4.32.5"
# schemathesis is pinned, and so are the libraries that decide what it generates and how
# it validates responses, so that a run means the same thing on every machine.
readonly FUZZ_PACKAGES=(
    "schemathesis==${SCHEMATHESIS_VERSION}"
    "hypothesis==6.170.15"
    "jsonschema_rs==0.60.3"
)

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
readonly ROOT
cd "$ROOT"
# shellcheck source=scripts/lib.sh
source "${ROOT}/scripts/lib.sh"

readonly VENV_PY="${ROOT}/.venv/bin/python"
readonly ST="${ROOT}/.venv/bin/st"
CARGO="${CARGO:-cargo}"
BIN_DIR="${CARGO_TARGET_DIR:-${ROOT}/target}/debug"
MAX_EXAMPLES="${API_FUZZ_MAX_EXAMPLES:-200}"
WORKERS="${API_FUZZ_WORKERS:-1}"
SEED="${API_FUZZ_SEED:-1}"
PHASES="${API_FUZZ_PHASES:-examples,coverage,fuzzing,stateful}"
OUT_DIR="${API_FUZZ_DIR:-${ROOT}/.run/api-fuzz}"
readonly HOST=127.0.0.1
readonly SUBGRAPHS=(users expenses budgets analytics notifications)
readonly CHECKS="not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance"

say() { printf 'api-fuzz: %s\n' "$*" >&2; }
die() {
    printf 'api-fuzz: error: %s\n' "$*" >&2
    exit 1
}

[[ "$MAX_EXAMPLES" =~ ^[1-9][0-9]*$ ]] || die "API_FUZZ_MAX_EXAMPLES must be a positive whole number"
[[ "$WORKERS" =~ ^[1-9][0-9]*$ ]] || die "API_FUZZ_WORKERS must be a positive whole number"
[[ "$SEED" =~ ^[0-9]+$ ]] || die "API_FUZZ_SEED must be a whole number"

# ------------------------------------------------------------------------------ install

fuzz_is_current() {
    [[ -x "$VENV_PY" && -x "$ST" ]] || return 1
    "$VENV_PY" - "${FUZZ_PACKAGES[@]}" <<'PY' >/dev/null 2>&1
import sys
from importlib import metadata
for spec in sys.argv[1:]:
    name, want = spec.split("==")
    if metadata.version(name) != want:
        sys.exit(1)
PY
}

install() {
    bash scripts/localdb.sh install --server all
    if fuzz_is_current; then
        return 0
    fi
    say "installing ${FUZZ_PACKAGES[*]} into .venv"
    PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1 \
        "$VENV_PY" -m pip install --quiet "${FUZZ_PACKAGES[@]}" ||
        die "pip install of schemathesis==${SCHEMATHESIS_VERSION} failed (see above)"
    fuzz_is_current || die "schemathesis==${SCHEMATHESIS_VERSION} is still not installed after pip install"
    # The same venv serves nx-27017: make sure its pins survived.
    bash scripts/localdb.sh install --server nx
}

# ------------------------------------------------------------------ children & shutdown

NAMES=() # started services
PIDS=()  # their pids, same order
DB_PORT=""
RUN_ID=""
DROP_DATABASES=0

alive() { kill -0 "$1" 2>/dev/null; }

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    local pid i ticks
    for pid in "${PIDS[@]}"; do
        if alive "$pid"; then kill -TERM "$pid" 2>/dev/null || true; fi
    done
    for ((ticks = 0; ticks < 100; ticks++)); do
        local any=0
        for pid in "${PIDS[@]}"; do
            if alive "$pid"; then any=1; fi
        done
        ((any)) || break
        sleep 0.1
    done
    for i in "${!PIDS[@]}"; do
        if alive "${PIDS[$i]}"; then
            say "${NAMES[$i]} (pid ${PIDS[$i]}) did not stop; sending SIGKILL"
            kill -KILL "${PIDS[$i]}" 2>/dev/null || true
        fi
        wait "${PIDS[$i]}" 2>/dev/null || true
    done
    if ((DROP_DATABASES)); then
        "$VENV_PY" - "$MONGODB_URI" "$RUN_ID" "${SUBGRAPHS[@]}" <<'PY' || say "could not drop the fuzz databases"
import sys
from pymongo import MongoClient
uri, run, names = sys.argv[1], sys.argv[2], sys.argv[3:]
with MongoClient(uri, serverSelectionTimeoutMS=5000) as client:
    for name in names:
        client.drop_database(f"fuzz_{run}_{name}")
PY
    fi
    if [[ -n "$DB_PORT" ]]; then
        bash scripts/localdb.sh stop --port "$DB_PORT" || true
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'say "interrupted"; exit 130' INT
trap 'say "terminated"; exit 143' TERM

# ------------------------------------------------------------------------------- steps

install

mkdir -p "$OUT_DIR"
rm -f "$OUT_DIR"/*.log "$OUT_DIR"/router.toml "$OUT_DIR"/junit.xml

if [[ -n "${MONGODB_URI:-}" ]]; then
    say "using MONGODB_URI from the environment"
    DROP_DATABASES=1
else
    uri="$(bash scripts/localdb.sh start --throwaway | tail -n 1)"
    [[ "$uri" == mongodb://* ]] || die "scripts/localdb.sh start did not print a URI (got '${uri}')"
    DB_PORT="${uri##*:}"
    DB_PORT="${DB_PORT%%/*}"
    export MONGODB_URI="$uri"
fi

say "building: ${CARGO} build --workspace --bins"
"$CARGO" build --workspace --bins || die "the build failed"
for name in "${SUBGRAPHS[@]}" router; do
    [[ -x "${BIN_DIR}/${name}" ]] || die "${BIN_DIR}/${name} was not built"
done

# Six distinct free ports (held open together while choosing), a run id and a secret.
read -r RUN_ID JWT_SECRET P_USERS P_EXPENSES P_BUDGETS P_ANALYTICS P_NOTIFICATIONS P_ROUTER < <(
    "$VENV_PY" -c '
import secrets, socket
socks = [socket.socket() for _ in range(6)]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(secrets.token_hex(4), secrets.token_hex(32), *(s.getsockname()[1] for s in socks))
for s in socks:
    s.close()'
)
export JWT_SECRET
declare -A PORT_OF=(
    [users]="$P_USERS" [expenses]="$P_EXPENSES" [budgets]="$P_BUDGETS"
    [analytics]="$P_ANALYTICS" [notifications]="$P_NOTIFICATIONS" [router]="$P_ROUTER"
)
STACK_HOST="$HOST"

# start NAME [VAR=VALUE...]: runs the binary NAME with its output in OUT_DIR/NAME.log.
start() {
    local name="$1"
    shift
    (
        trap - INT TERM
        exec env "$@" "${BIN_DIR}/${name}"
    ) </dev/null >"${OUT_DIR}/${name}.log" 2>&1 &
    NAMES+=("$name")
    PIDS+=("$!")
}

for name in "${SUBGRAPHS[@]}"; do
    mapfile -t links < <(stack_links "$name")
    start "$name" HOST="$HOST" PORT="${PORT_OF[$name]}" \
        MONGODB_DATABASE="fuzz_${RUN_ID}_${name}" "${links[@]}"
done

{
    printf 'listen = "%s:%s"\n' "$HOST" "$P_ROUTER"
    stack_router_config
} >"${OUT_DIR}/router.toml"
start router RUST_LOG="${RUST_LOG:-warn}" ROUTER_CONFIG="${OUT_DIR}/router.toml"

BASE="$(stack_url router)"
say "stack: router ${BASE}, subgraphs on ports ${P_USERS}-${P_NOTIFICATIONS} (logs in ${OUT_DIR})"

# Waits for the router's /ready (all subgraphs up), failing early if a service dies.
for ((tick = 0; ; tick++)); do
    for i in "${!PIDS[@]}"; do
        alive "${PIDS[$i]}" || die "${NAMES[$i]} exited during start-up; see ${OUT_DIR}/${NAMES[$i]}.log"
    done
    if "$VENV_PY" - "${BASE}/ready" <<'PY' 2>/dev/null; then
import sys, urllib.request
urllib.request.urlopen(sys.argv[1], timeout=2)
PY
        break
    fi
    ((tick < 600)) || die "the stack was not ready within 60s; see the logs in ${OUT_DIR}"
    sleep 0.1
done
say "ready"

# Registers the fuzzing user and gives it data that every kind of route can find: a
# budget, an expense of today that exceeds it, and so (once the events have gone from
# the expenses service to the budgets service and on to notifications) budget alerts and
# notifications to list, mark read and delete; a household, and an invitation to another
# user's household.
TOKEN="$(
    "$VENV_PY" - "${BASE}/api" "$RUN_ID" <<'PY'
import json, sys, time, urllib.request

api, run = sys.argv[1], sys.argv[2]

def call(method, path, body=None, token=None):
    headers = {"content-type": "application/json"}
    if token:
        headers["authorization"] = f"Bearer {token}"
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(api + path, data=data, headers=headers, method=method)
    with urllib.request.urlopen(req, timeout=30) as resp:
        return json.load(resp)

token = call("POST", "/auth/register", {
    "username": f"fuzz{run}",
    "email": f"fuzz-{run}@example.com",
    "password": "fuzzing is fun, 42 times",
})["token"]
call("POST", "/budgets", {"amount": 10, "category": "food", "alertThresholds": [25, 50, 75, 100]}, token)
# A household of the user's, and one they are invited to (by a second user).
call("POST", "/households", {"name": "Fuzz home", "currency": "USD"}, token)
other = call("POST", "/auth/register", {
    "username": f"fuzz{run}b",
    "email": f"fuzz-{run}-b@example.com",
    "password": "fuzzing is fun, 42 times",
})["token"]
theirs = call("POST", "/households", {"name": "Their home", "currency": "EUR"}, other)["id"]
call("POST", f"/households/{theirs}/invitations", {"user": f"fuzz{run}", "role": "viewer"}, other)
call("POST", "/expenses", {"amount": 25, "description": "seed", "category": "food"}, token)
for _ in range(150):
    if (call("GET", "/budgets/alerts", token=token)["alerts"]
            and call("GET", "/notifications", token=token)["notifications"]):
        break
    time.sleep(0.2)
else:
    print("api-fuzz: warning: no budget alert and notification within 30s", file=sys.stderr)
print(token)
PY
)" || die "could not register and seed the fuzzing user"

say "st run (schemathesis ${SCHEMATHESIS_VERSION}, ${MAX_EXAMPLES} examples, phases ${PHASES})"
set +e
"$ST" --no-color --config-file scripts/api-fuzz.toml run \
    --checks "$CHECKS" \
    --phases "$PHASES" \
    --seed "$SEED" \
    --generation-database none \
    --max-examples "$MAX_EXAMPLES" \
    --workers "$WORKERS" \
    --request-timeout 30 \
    --header "Authorization: Bearer ${TOKEN}" \
    --report junit --report-junit-path "${OUT_DIR}/junit.xml" \
    "$@" \
    "${BASE}/api/openapi.json"
rc=$?
set -e
# A crash is a failure even when no response showed it: a service that died, or a panic
# (axum drops the connection of a panicking handler; a background task just logs it).
for i in "${!PIDS[@]}"; do
    alive "${PIDS[$i]}" || {
        say "${NAMES[$i]} died during the run; see ${OUT_DIR}/${NAMES[$i]}.log"
        rc=1
    }
    if grep -q 'panicked at' "${OUT_DIR}/${NAMES[$i]}.log"; then
        say "${NAMES[$i]} panicked during the run; see ${OUT_DIR}/${NAMES[$i]}.log"
        rc=1
    fi
done
if ((rc == 0)); then
    say "passed"
else
    say "FAILED (exit ${rc}); logs and the JUnit report are in ${OUT_DIR}"
fi
exit "$rc"
