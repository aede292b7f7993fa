#!/usr/bin/env bash
# The whole test suite, on SQLite and on a throwaway PostgreSQL that this script starts
# and removes (scripts/with-postgres.sh). This is what CI runs (.ci/run).
#
#   scripts/test.sh                      # fmt, clippy, every test on both backends, quickstart
#                                        # and the downstream example (examples/downstream) on both
#   scripts/test.sh seq_is_gapless       # extra arguments go to `cargo test` (here a name filter)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
# A CI run builds once from a clean clone: incremental caches would only fill its disk.
if [ -n "${CI:-}" ]; then export CARGO_INCREMENTAL=0; fi

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets --quiet -- -D warnings

echo "== quickstart on a fresh embedded SQLite file"
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
log="$scratch/cargo-test.log"
(cd "$scratch" && env -u DATABASE_URL cargo run --quiet --manifest-path "$root/Cargo.toml" --example quickstart)

# The downstream example (examples/downstream, its own Cargo project) builds into the
# workspace's target directory so it reuses the compiled dependencies.
export FORGE_DOWNSTREAM_MANIFEST="$root/examples/downstream/Cargo.toml"
export FORGE_DOWNSTREAM_TARGET="${CARGO_TARGET_DIR:-$root/target}"
downstream_log="$scratch/downstream-sqlite.log"
echo "== downstream example's tests on SQLite"
env -u FORGE_TEST_DATABASE_URL cargo test --manifest-path "$FORGE_DOWNSTREAM_MANIFEST" \
  --target-dir "$FORGE_DOWNSTREAM_TARGET" 2>&1 | tee "$downstream_log"

echo "== cargo test (SQLite and PostgreSQL), then quickstart and the downstream example on PostgreSQL"
FORGE_TEST_LOG="$log" scripts/with-postgres.sh bash -c '
  set -eo pipefail
  cargo test --workspace "$@" 2>&1 | tee "$FORGE_TEST_LOG"
  echo "== quickstart on PostgreSQL"
  cargo run --quiet --example quickstart
  echo "== downstream example'"'"'s tests on PostgreSQL"
  cargo test --manifest-path "$FORGE_DOWNSTREAM_MANIFEST" --target-dir "$FORGE_DOWNSTREAM_TARGET" 2>&1 \
    | tee -a "$FORGE_TEST_LOG"
' test.sh "$@"

# One closing line for the whole run, summed over every test binary.
awk '/^test result:/ { p += $4; f += $6; i += $8 }
     END { printf "tests: %d passed, %d failed, %d skipped\n", p, f, i; if (p == 0) exit 1 }' "$log" "$downstream_log"
