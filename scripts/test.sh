#!/usr/bin/env bash
# The whole test suite, on SQLite and on a throwaway PostgreSQL that this script starts
# and removes (scripts/with-postgres.sh). This is what CI runs (.ci/run).
#
#   scripts/test.sh                      # fmt, clippy, every test on both backends, quickstart on both
#   scripts/test.sh seq_is_gapless       # extra arguments go to `cargo test` (here a name filter)
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
log="$scratch/cargo-test.log"
(cd "$scratch" && env -u DATABASE_URL cargo run --quiet --manifest-path "$root/Cargo.toml" --example quickstart)

echo "== cargo test (SQLite and PostgreSQL), then quickstart on PostgreSQL"
FORGE_TEST_LOG="$log" scripts/with-postgres.sh bash -c '
  set -eo pipefail
  cargo test --workspace "$@" 2>&1 | tee "$FORGE_TEST_LOG"
  echo "== quickstart on PostgreSQL"
  cargo run --quiet --example quickstart
' test.sh "$@"

# One closing line for the whole run, summed over every test binary.
awk '/^test result:/ { p += $4; f += $6; i += $8 }
     END { printf "tests: %d passed, %d failed, %d skipped\n", p, f, i; if (p == 0) exit 1 }' "$log"
