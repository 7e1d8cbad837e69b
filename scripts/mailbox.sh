#!/usr/bin/env bash
# scripts/mailbox.sh — the local mailbox of `make run`: MailDev (npm, pinned below), an
# SMTP server that keeps every message it is sent and shows them on a web page.
#
#   scripts/mailbox.sh install   installs it into .tools/maildev/ (npm, project-local;
#                                nothing global) unless exactly that version is there
#   scripts/mailbox.sh bin       prints the path of its executable (after install)
#   scripts/mailbox.sh version   prints the pinned version
#
# scripts/run.sh installs and starts it (SMTP on MAILBOX_SMTP_PORT, default 1025; the web
# page on MAILBOX_WEB_PORT, default 1080; both on 127.0.0.1) and points the notifications
# service at it, unless SMTP_HOST is set. MailDev 2.2 is used: the 3.0 package on npm
# ships without its web page (its `/` answers 404).

set -euo pipefail

readonly MAILDEV_VERSION="2.2.1"

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
readonly ROOT
readonly PREFIX="${ROOT}/.tools/maildev"
readonly BIN="${PREFIX}/node_modules/.bin/maildev"

say() { printf 'mailbox: %s\n' "$*" >&2; }
die() {
    printf 'mailbox: error: %s\n' "$*" >&2
    exit 1
}

installed_version() {
    local manifest="${PREFIX}/node_modules/maildev/package.json"
    [[ -f "$manifest" ]] || return 0
    node -e 'process.stdout.write(require(process.argv[1]).version)' "$manifest" 2>/dev/null || true
}

install() {
    command -v node >/dev/null 2>&1 || die "node is not installed (MailDev needs Node.js 18 or later)"
    command -v npm >/dev/null 2>&1 || die "npm is not installed"
    if [[ "$(installed_version)" == "$MAILDEV_VERSION" && -x "$BIN" ]]; then
        return 0
    fi
    say "installing maildev@${MAILDEV_VERSION} into ${PREFIX}"
    mkdir -p "$PREFIX"
    npm install --prefix "$PREFIX" --no-audit --no-fund --loglevel=error \
        "maildev@${MAILDEV_VERSION}" >&2
    [[ -x "$BIN" ]] || die "npm did not install ${BIN}"
}

case "${1:-}" in
    install) install ;;
    bin)
        [[ -x "$BIN" ]] || die "not installed (scripts/mailbox.sh install)"
        printf '%s\n' "$BIN"
        ;;
    version) printf '%s\n' "$MAILDEV_VERSION" ;;
    *) die "usage: scripts/mailbox.sh install|bin|version" ;;
esac
