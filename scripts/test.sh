#!/usr/bin/env bash
# The whole test suite, on SQLite and on a throwaway PostgreSQL that this script starts
# and removes (scripts/with-postgres.sh). This is what CI runs (.ci/run).
#
#   scripts/test.sh                      # fmt, clippy, every test on both backends, quickstart
#                                        # and the downstream example (examples/downstream) on both;
#                                        # PostgreSQL 15 with PgBouncer and a replica, the service
#                                        # races again through PgBouncer, and what proves
#                                        # PostgreSQL 18 on 18
#   FORGE_PG_VERSION=18 scripts/test.sh  # the main run on 18, the proving subset on 15
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

echo "== cargo test (SQLite and PostgreSQL ${FORGE_PG_VERSION:-15}, with PgBouncer and a streaming replica)"
# The cluster comes with a PgBouncer in transaction mode (FORGE_TEST_POOLER_URL) and a hot
# standby (FORGE_TEST_REPLICA_URL) for tests/topology.rs. FORGE_PG_VERSION picks the
# PostgreSQL major of this main run (15: Debian's, the default; 18: npm's embedded build).
FORGE_TEST_LOG="$log" FORGE_TEST_POOLER=1 FORGE_TEST_REPLICA=1 scripts/with-postgres.sh bash -c '
  set -eo pipefail
  cargo test --workspace "$@" 2>&1 | tee "$FORGE_TEST_LOG"
  echo "== through PgBouncer (transaction mode): isolation, the queue race, the session-limit race, credits, the event tail"
  FORGE_TEST_THROUGH_POOLER=1 cargo test -p forge-db --test service_sessions --test service_jobs \
    --test service_events --test service_credits "$@" 2>&1 | tee -a "$FORGE_TEST_LOG"
  echo "== quickstart on PostgreSQL"
  cargo run --quiet --example quickstart
  echo "== downstream example'"'"'s tests on PostgreSQL"
  cargo test --manifest-path "$FORGE_DOWNSTREAM_MANIFEST" --target-dir "$FORGE_DOWNSTREAM_TARGET" 2>&1 \
    | tee -a "$FORGE_TEST_LOG"
' test.sh "$@"

# The second major: what proves it (the migrations, the database wall, the triggers and
# notifications, the topology), not every test again. FORGE_PG_VERSION=18 scripts/test.sh
# runs everything on it.
other=18
[ "${FORGE_PG_VERSION:-15}" = 18 ] && other=15
echo "== PostgreSQL $other: migrations, the database wall, events, topology"
FORGE_TEST_LOG="$log" FORGE_PG_VERSION=$other FORGE_TEST_POOLER=1 FORGE_TEST_REPLICA=1 \
  scripts/with-postgres.sh bash -c '
  set -eo pipefail
  cargo test -p forge-migration --test cli --test verify --test keyset --test concurrency "$@" 2>&1 | tee -a "$FORGE_TEST_LOG"
  cargo test -p forge-db --test postgres --test security --test schema --test service_events \
    --test topology "$@" 2>&1 | tee -a "$FORGE_TEST_LOG"
' test.sh "$@"

# One closing line for the whole run, summed over every test binary.
awk '/^test result:/ { p += $4; f += $6; i += $8 }
     END { printf "tests: %d passed, %d failed, %d skipped\n", p, f, i; if (p == 0) exit 1 }' "$log" "$downstream_log"
