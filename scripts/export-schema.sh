#!/usr/bin/env bash
# scripts/export-schema.sh — rewrite the committed SDL files in schema/ from the code
# (`make schema`). The schema tests compare the code's SDL with schema/*.graphql and, when
# UPDATE_SCHEMA=1 is set, write the files instead of failing. Review the diff, then commit.
# Extra arguments go to cargo test (e.g. `-p users`). CARGO overrides the cargo command.

set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

UPDATE_SCHEMA=1 "${CARGO:-cargo}" test --workspace "$@" sdl_matches_committed_file
printf 'export-schema.sh: schema/ updated; review with: git diff -- schema/\n' >&2
