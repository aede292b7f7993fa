#!/usr/bin/env bash
# The whole test suite, on SQLite and on a throwaway PostgreSQL that this script starts
# and removes (scripts/with-postgres.sh). This is what CI runs (.ci/run).
#
#   scripts/test.sh            # fmt check, clippy, every test on both backends
#   scripts/test.sh -p forge-migration   # extra arguments go to `cargo test`
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets --quiet -- -D warnings
echo "== cargo test (SQLite and PostgreSQL)"
exec scripts/with-postgres.sh cargo test --workspace "$@"
