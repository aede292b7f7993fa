#!/usr/bin/env bash
# The whole test suite, on SQLite and on a throwaway PostgreSQL that this script starts
# and removes (scripts/with-postgres.sh). This is what CI runs (.ci/run).
#
#   scripts/test.sh                      # fmt, clippy, every test on both backends, quickstart on both
#   scripts/test.sh -p forge-migration   # extra arguments go to `cargo test`
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets --quiet -- -D warnings

echo "== quickstart on a fresh embedded SQLite file"
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
(cd "$scratch" && env -u DATABASE_URL cargo run --quiet --manifest-path "$root/Cargo.toml" --example quickstart)

echo "== cargo test (SQLite and PostgreSQL), then quickstart on PostgreSQL"
scripts/with-postgres.sh bash -c '
  set -e
  cargo test --workspace "$@"
  echo "== quickstart on PostgreSQL"
  cargo run --quiet --example quickstart
' test.sh "$@"
