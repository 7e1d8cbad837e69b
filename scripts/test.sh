#!/usr/bin/env bash
# scripts/test.sh — everything CI checks (`make test` runs this).
#
#   1. installs what is missing: the nx-27017 virtualenv (scripts/localdb.sh install) and
#      the rustfmt / clippy components (only if `cargo fmt` / `cargo clippy` do not run);
#   2. unless MONGODB_URI is already set, starts a throwaway nx-27017 on a free port and
#      exports MONGODB_URI; it is stopped again on every exit (success, failure, Ctrl-C);
#   3. runs, continuing past failures so one run reports everything:
#        cargo fmt --all -- --check
#        cargo clippy --workspace --all-targets -- -D warnings
#        cargo test --doc --workspace, then cargo nextest run --workspace --no-fail-fast
#          (or, without cargo-nextest: cargo test --workspace --no-fail-fast)
#        scripts/api-fuzz.sh: schemathesis against the REST shim's OpenAPI document on a
#          local stack (set SKIP_API_FUZZ=1 to leave it out of a local run)
#   4. prints a summary and exits non-zero if any step failed.
#
# Environment:
#   MONGODB_URI       use this server instead of starting a throwaway nx-27017
#   CARGO             cargo command (default: cargo); e.g. CARGO=true to dry-run the script
#   CARGO_TERM_COLOR  kept if set; otherwise "never" under CI or when stdout is not a
#                     terminal, "auto" else
#   TEST_RUNNER       "nextest" or "cargo" to force a runner (default: nextest if installed)
#   SKIP_API_FUZZ     set to skip the schemathesis run

set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
# shellcheck source=scripts/lib.sh
source "${ROOT}/scripts/lib.sh"

CARGO="${CARGO:-cargo}"

say() { printf '\n==> %s\n' "$*"; }
die() {
    printf 'test.sh: error: %s\n' "$*" >&2
    exit 1
}

if [[ -z "${CARGO_TERM_COLOR:-}" ]]; then
    if [[ -n "${CI:-}" || ! -t 1 ]]; then
        export CARGO_TERM_COLOR=never
    else
        export CARGO_TERM_COLOR=auto
    fi
fi

# ---------------------------------------------------------------------- cleanup / traps

DB_PORT=""  # set once this script has started a throwaway server
CHILD=""    # pid of the step running now
STATUS=0

# shellcheck disable=SC2329 # invoked by the EXIT trap
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    if [[ -n "$CHILD" ]] && kill -0 "$CHILD" 2>/dev/null; then
        kill -TERM "$CHILD" 2>/dev/null || true
        local waited=0
        while kill -0 "$CHILD" 2>/dev/null && ((waited < 100)); do
            sleep 0.1
            waited=$((waited + 1))
        done
        kill -KILL "$CHILD" 2>/dev/null || true
        wait "$CHILD" 2>/dev/null || true
    fi
    if [[ -n "$DB_PORT" ]]; then
        if ((rc != 0)) && [[ -s ".run/nx-27017-${DB_PORT}.log" ]]; then
            printf '\n--- last lines of the nx-27017 log (.run/nx-27017-%s.log) ---\n' "$DB_PORT"
            tail -n 40 ".run/nx-27017-${DB_PORT}.log" || true
            printf -- '---\n'
        fi
        scripts/localdb.sh stop --port "$DB_PORT" || true
    fi
    exit "$rc"
}
trap cleanup EXIT
# On a signal, leave with the conventional status; the EXIT trap does the cleanup.
trap 'printf "\ntest.sh: interrupted\n" >&2; exit 130' INT
trap 'printf "\ntest.sh: terminated\n" >&2; exit 143' TERM

# ----------------------------------------------------------------------------- install

say "installing what is missing"
scripts/localdb.sh install

ensure_component() {
    local subcommand="$1" component="$2"
    if ! "$CARGO" "$subcommand" --version >/dev/null 2>&1; then
        command -v rustup >/dev/null 2>&1 ||
            die "'${CARGO} ${subcommand}' does not run and rustup is not installed to add ${component}"
        rustup component add "$component"
    fi
}
ensure_component fmt rustfmt
ensure_component clippy clippy

# ---------------------------------------------------------------------------- database

if [[ -n "${MONGODB_URI:-}" ]]; then
    say "using the MongoDB given in MONGODB_URI"
else
    say "starting a throwaway nx-27017"
    # localdb.sh prints the URI on its last line of stdout.
    uri="$(scripts/localdb.sh start --throwaway | tail -n 1)"
    [[ "$uri" =~ ^mongodb://127\.0\.0\.1:([0-9]+)$ ]] ||
        die "scripts/localdb.sh start did not print a URI (got '${uri}')"
    DB_PORT="${BASH_REMATCH[1]}"
    export MONGODB_URI="$uri"
    printf 'MONGODB_URI=%s\n' "$MONGODB_URI"
fi

# ------------------------------------------------------------------------------- steps

FAILED=()
step() {
    local name="$1"
    shift
    say "$name: $*"
    local rc=0
    run_child "$@" || rc=$?
    if ((rc != 0)); then
        printf '==> %s FAILED (exit %s)\n' "$name" "$rc"
        FAILED+=("$name")
        STATUS=1
    fi
}

runner="${TEST_RUNNER:-}"
if [[ -z "$runner" ]]; then
    if "$CARGO" nextest --version >/dev/null 2>&1; then runner=nextest; else runner=cargo; fi
fi

step fmt "$CARGO" fmt --all -- --check
step clippy "$CARGO" clippy --workspace --all-targets -- -D warnings
case "$runner" in
nextest)
    nextest_args=(nextest run --workspace --no-fail-fast)
    # An empty test set is not an error (newer nextest fails on it by default).
    if "$CARGO" nextest run --help 2>/dev/null | grep -q -- '--no-tests'; then
        nextest_args+=(--no-tests=warn)
    fi
    # Doc tests first: the last runner summary in the log should be the main suite's.
    step doctests "$CARGO" test --doc --workspace --no-fail-fast
    step tests "$CARGO" "${nextest_args[@]}"
    ;;
cargo)
    step tests "$CARGO" test --workspace --no-fail-fast
    ;;
*) die "TEST_RUNNER must be 'nextest' or 'cargo', not '${runner}'" ;;
esac

if [[ -n "${SKIP_API_FUZZ:-}" ]]; then
    say "api-fuzz: skipped (SKIP_API_FUZZ is set)"
else
    step api-fuzz bash scripts/api-fuzz.sh
fi

if ((STATUS == 0)); then
    say "all checks passed"
else
    say "FAILED: ${FAILED[*]}"
fi
exit "$STATUS"
