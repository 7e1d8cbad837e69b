#!/usr/bin/env bash
# scripts/run-check.sh — checks `make run` the way the README's walkthrough uses it
# (`make run-check`; a step of `make test`).
#
#   1. starts a throwaway local server (scripts/localdb.sh start --throwaway: SecantusDB,
#      or the one LOCALDB_SERVER names), removed again at the end (never a MONGODB_URI of
#      the caller's: `make run` writes to its default databases);
#   2. runs scripts/run.sh (what `make run` runs) with every service, the router and the
#      local mailbox on free loopback ports, and waits for the router's /ready;
#   3. plays the walkthrough's alert through the REST shim and GraphQL: a new user
#      registers, gives the notifications an email address, sets a food budget of 100
#      and spends 50 and 35;
#   4. checks that the mailbox's web page is served and that the 80% alert email reaches
#      the mailbox (its API, /email) addressed to that user, within 60 s;
#   5. stops run.sh (SIGTERM, as Ctrl-C does) and exits non-zero if anything failed.
#
# Environment: LOCALDB_SERVER (secantus or nx), RUN_CHECK_DIR (logs; default
# .run/run-check).

set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
readonly ROOT
cd "$ROOT"

readonly OUT_DIR="${RUN_CHECK_DIR:-${ROOT}/.run/run-check}"
readonly PY="${ROOT}/.venv/bin/python"

say() { printf 'run-check: %s\n' "$*" >&2; }
die() {
    printf 'run-check: error: %s\n' "$*" >&2
    exit 1
}

RUN_PID=""
DB_PORT=""
# shellcheck disable=SC2329 # invoked by the EXIT trap
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    if [[ -n "$RUN_PID" ]] && kill -0 "$RUN_PID" 2>/dev/null; then
        kill -TERM "$RUN_PID" 2>/dev/null || true
        wait "$RUN_PID" 2>/dev/null || true
    fi
    if [[ -n "$DB_PORT" ]]; then
        scripts/localdb.sh stop --port "$DB_PORT" >/dev/null 2>&1 || true
    fi
    if ((rc != 0)) && [[ -s "${OUT_DIR}/run.log" ]]; then
        printf -- '--- last lines of %s ---\n' "${OUT_DIR}/run.log" >&2
        tail -n 40 "${OUT_DIR}/run.log" >&2 || true
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

scripts/localdb.sh install --server all >&2
[[ -x "$PY" ]] || die "${PY} is missing (scripts/localdb.sh install)"
mkdir -p "$OUT_DIR"

uri="$(scripts/localdb.sh start --throwaway | tail -n 1)"
[[ "$uri" == mongodb://* ]] || die "scripts/localdb.sh start did not print a URI (got '${uri}')"
DB_PORT="${uri#mongodb://127.0.0.1:}"
DB_PORT="${DB_PORT%%/*}"
export MONGODB_URI="$uri"

# Eight distinct free ports, held open together while choosing.
read -r P_USERS P_EXPENSES P_BUDGETS P_ANALYTICS P_NOTIFICATIONS P_ROUTER P_SMTP P_WEB < <(
    "$PY" - <<'PY'
import socket
socks = [socket.socket() for _ in range(8)]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in socks))
PY
)

say "starting scripts/run.sh (router :${P_ROUTER}, mailbox :${P_WEB}); log in ${OUT_DIR}/run.log"
env -u SMTP_HOST -u ROUTER_CONFIG MAILBOX=on \
    USERS_PORT="$P_USERS" EXPENSES_PORT="$P_EXPENSES" BUDGETS_PORT="$P_BUDGETS" \
    ANALYTICS_PORT="$P_ANALYTICS" NOTIFICATIONS_PORT="$P_NOTIFICATIONS" ROUTER_PORT="$P_ROUTER" \
    MAILBOX_SMTP_PORT="$P_SMTP" MAILBOX_WEB_PORT="$P_WEB" NO_COLOR=1 \
    bash scripts/run.sh >"${OUT_DIR}/run.log" 2>&1 </dev/null &
RUN_PID=$!

"$PY" - "$P_ROUTER" "$P_WEB" "$RUN_PID" <<'PY'
import json, os, secrets, sys, time, urllib.error, urllib.request

router, web, run_pid = f"http://127.0.0.1:{sys.argv[1]}", f"http://127.0.0.1:{sys.argv[2]}", int(sys.argv[3])

def fail(msg):
    print(f"run-check: FAILED: {msg}", file=sys.stderr)
    sys.exit(1)

def call(method, url, body=None, token=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method)
    req.add_header("content-type", "application/json")
    if token:
        req.add_header("authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()

def alive():
    try:
        os.kill(run_pid, 0)
        return True
    except OSError:
        return False

# The first `make run` builds the binaries: wait up to 15 minutes for the router.
deadline = time.time() + 900
while True:
    if not alive():
        fail("scripts/run.sh stopped before the stack was ready")
    try:
        if call("GET", f"{router}/ready")[0] == 200:
            break
    except OSError:
        pass
    if time.time() > deadline:
        fail("the router was not ready within 15 minutes")
    time.sleep(0.5)

# The mailbox (Node) may start listening a moment after the router.
deadline = time.time() + 30
while True:
    try:
        status, page = call("GET", f"{web}/")
    except OSError as e:
        status, page = str(e), b""
    if status == 200 and b"<html" in page.lower():
        break
    if time.time() > deadline:
        fail(f"the mailbox page answered {status}")
    time.sleep(0.5)

name = "walk" + secrets.token_hex(4)
email = f"{name}@example.com"
status, body = call("POST", f"{router}/api/auth/register",
                    {"username": name, "email": email, "password": "correct horse battery"})
if status != 201:
    fail(f"register answered {status}: {body[:300]!r}")
token = json.loads(body)["token"]
status, body = call("POST", f"{router}/graphql", {
    "query": "mutation($e: String) { updateNotificationPreferences(input: {email: $e}) { email } }",
    "variables": {"e": email}}, token)
if status != 200 or b'"errors"' in body:
    fail(f"setting the notification email answered {status}: {body[:300]!r}")
for path, payload in [("/api/budgets", {"category": "food", "amount": 100}),
                      ("/api/expenses", {"amount": 50, "description": "groceries", "category": "food"}),
                      ("/api/expenses", {"amount": "35.00", "description": "dinner", "category": "food"})]:
    status, body = call("POST", f"{router}{path}", payload, token)
    if status != 201:
        fail(f"POST {path} answered {status}: {body[:300]!r}")

deadline = time.time() + 60
while True:
    status, body = call("GET", f"{web}/email")
    if status == 200:
        for mail in json.loads(body):
            to = [t.get("address") for t in mail.get("to") or []]
            text = (mail.get("subject") or "") + " " + (mail.get("text") or "")
            if email in to and "80%" in text:
                print(f"run-check: the 80% alert email reached the mailbox: {mail.get('subject')!r}",
                      file=sys.stderr)
                sys.exit(0)
    if time.time() > deadline:
        fail(f"no 80% alert email to {email} in the mailbox within 60 s")
    time.sleep(0.5)
PY
say "ok: make run serves the mailbox page and the walkthrough's alert email is in it"
