#!/usr/bin/env bash
# Checks scripts/with-postgres.sh and its opt-in extras with psql only (no cargo):
#
#   scripts/check-with-postgres.sh            # plain, 15 + pooler + replica, 18 + pooler + replica
#   scripts/check-with-postgres.sh 15         # only FORGE_PG_VERSION=15 with pooler and replica
#
# For each combination it runs with-postgres.sh around checks of this script (`--inner`):
# a transaction through PgBouncer, a role created later (forge_test_app, password
# forge_test_app) logging in through it into a database created later, the startup
# parameters sqlx sends (accepted) and `options` (refused), a primary restart through
# FORGE_TEST_PG_RESTART (pooler and replica carry on), the replica seeing new databases.
# Then it checks that nothing is left running and the work directory is gone, and that a
# failing command's status comes back. Exits non-zero on the first failed check.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
fail() { echo "check-with-postgres: FAILED: $*" >&2; exit 1; }
ok() { echo "check-with-postgres: ok: $*" >&2; }

find_psql() {
  local p
  for p in "$(command -v psql || true)" $(printf '%s\n' /usr/lib/postgresql/*/bin/psql | sort -V -r); do
    [ -n "$p" ] && [ -x "$p" ] && { echo "$p"; return; }
  done
  fail "no psql"
}

# Polls SQL on URL until it prints WANT (about 10 s).
poll() {
  local url=$1 sql=$2 want=$3 got='' i
  for i in $(seq 100); do
    got=$("$PSQL" "$url" -XAtqc "$sql" 2>/dev/null || true)
    [ "$got" = "$want" ] && return 0
    sleep 0.1
  done
  fail "$sql on ${url##*@}: got '$got', want '$want' (after $i tries)"
}

# Sends a startup packet with the parameters sqlx sends (plus EXTRA key=value pairs) and
# prints what came back: "ok <user> <extra_float_digits> <TimeZone>" or "error <message>".
startup() {
  python3 - "$@" <<'EOF'
import socket, struct, sys
host, port, user, db = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
params = [("user", user), ("database", db), ("DateStyle", "ISO, MDY"), ("client_encoding", "UTF8"),
          ("TimeZone", "UTC"), ("extra_float_digits", "2"), ("application_name", "check")]
params += [tuple(kv.split("=", 1)) for kv in sys.argv[5:]]
body = struct.pack("!I", 196608) + b"".join(k.encode() + b"\0" + v.encode() + b"\0" for k, v in params) + b"\0"
s = socket.create_connection((host, port), timeout=5)
s.sendall(struct.pack("!I", len(body) + 4) + body)
def recv(n):
    b = b""
    while len(b) < n:
        c = s.recv(n - len(b))
        if not c:
            raise SystemExit("error connection closed")
        b += c
    return b
def message():
    t = recv(1)
    return t, recv(struct.unpack("!I", recv(4))[0] - 4)
def error(payload):
    fields = {f[:1]: f[1:] for f in payload.split(b"\0") if f}
    return "error " + fields.get(b"M", b"?").decode()
while True:
    t, payload = message()
    if t == b"R" and struct.unpack("!I", payload[:4])[0] == 3:
        pw = (user + "\0").encode()
        s.sendall(b"p" + struct.pack("!I", len(pw) + 4) + pw)
    elif t == b"E":
        print(error(payload)); sys.exit(0)
    elif t == b"Z":
        break
q = b"SELECT current_user || ' ' || current_setting('extra_float_digits') || ' ' || current_setting('TimeZone')\0"
s.sendall(b"Q" + struct.pack("!I", len(q) + 4) + q)
out = "error no row"
while True:
    t, payload = message()
    if t == b"D":
        n = struct.unpack("!i", payload[2:6])[0]
        out = "ok " + payload[6:6 + n].decode()
    elif t == b"E":
        out = error(payload)
    elif t == b"Z":
        break
print(out)
EOF
}

inner() {
  PSQL=$(find_psql)
  local work db_url
  work=$(dirname "$FORGE_TEST_PG_RESTART")
  echo "$work" >"$1"
  "$PSQL" "$DATABASE_URL" -XAtqc "SELECT 1" >/dev/null || fail "DATABASE_URL does not answer"
  [ "$FORGE_TEST_DATABASE_URL" = "$DATABASE_URL" ] || fail "FORGE_TEST_DATABASE_URL differs from DATABASE_URL"
  case "${FORGE_PG_VERSION:-}" in
    "") ;;
    *) poll "$DATABASE_URL" "SELECT current_setting('server_version_num')::int / 10000" "$FORGE_PG_VERSION"
       ok "server is PostgreSQL $FORGE_PG_VERSION" ;;
  esac
  poll "$DATABASE_URL" "SELECT usename FROM pg_stat_activity WHERE pid = pg_backend_pid()" postgres
  "$PSQL" "$DATABASE_URL" -Xq -v ON_ERROR_STOP=1 \
    -c "CREATE DATABASE forge_check_late" \
    -c "CREATE ROLE forge_test_app LOGIN NOINHERIT PASSWORD 'forge_test_app'" \
    -c "CREATE ROLE forge_check_other LOGIN" || fail "cannot create the database and roles"
  db_url="${DATABASE_URL%/*}/forge_check_late"
  "$PSQL" "$db_url" -Xq -v ON_ERROR_STOP=1 -c "CREATE TABLE t (x int)" -c "INSERT INTO t VALUES (42)" \
    -c "GRANT SELECT ON t TO forge_test_app" || fail "cannot create the table"

  if [ -n "${FORGE_TEST_POOLER_URL:-}" ]; then
    local bport=${FORGE_TEST_POOLER_URL#postgres://postgres@127.0.0.1:}
    bport=${bport%%/*}
    local b_url="postgres://forge_test_app:forge_test_app@127.0.0.1:$bport/forge_check_late"
    "$PSQL" "postgres://postgres@127.0.0.1:$bport/pgbouncer" -XAtqc "SHOW CONFIG" | grep -qx 'pool_mode|transaction|session|yes' \
      || fail "PgBouncer is not in transaction mode"
    [ "$("$PSQL" "$FORGE_TEST_POOLER_URL" -XAtq -c "BEGIN" -c "SELECT pg_backend_pid()" -c "SELECT pg_backend_pid()" -c "COMMIT" | sort -u | wc -l)" = 1 ] \
      || fail "a transaction through PgBouncer changed server connections"
    ok "transaction through PgBouncer (pool_mode = transaction)"
    poll "$b_url" "SELECT current_user || ' ' || current_database() || ' ' || (SELECT x FROM t)" "forge_test_app forge_check_late 42"
    poll "postgres://forge_check_other@127.0.0.1:$bport/forge_check_late" "SELECT current_user" forge_check_other
    ok "roles and a database created after startup log in through PgBouncer"
    if command -v python3 >/dev/null 2>&1; then
      local got
      got=$(startup 127.0.0.1 "$bport" forge_test_app forge_check_late)
      case "$got" in "ok forge_test_app "*) ;; *) fail "sqlx-like startup through PgBouncer: $got" ;; esac
      got=$(startup 127.0.0.1 "$bport" postgres postgres "options=-c search_path=x")
      case "$got" in "error "*options*) ;; *) fail "PgBouncer accepted the startup parameter options: $got" ;; esac
      ok "sqlx's startup parameters pass PgBouncer, options is refused"
    else
      echo "check-with-postgres: no python3: startup-parameter checks skipped" >&2
    fi
  fi

  if [ -n "${FORGE_TEST_REPLICA_URL:-}" ]; then
    local r_db="${FORGE_TEST_REPLICA_URL%/*}/forge_check_late"
    poll "$FORGE_TEST_REPLICA_URL" "SELECT pg_is_in_recovery()::text || ' ' || (SELECT status FROM pg_stat_wal_receiver)" "true streaming"
    poll "$r_db" "SELECT x FROM t" 42
    ok "the replica streams a database created after startup"
  fi

  "$FORGE_TEST_PG_RESTART" || fail "FORGE_TEST_PG_RESTART failed"
  "$PSQL" "$db_url" -Xq -c "INSERT INTO t VALUES (43)" || fail "no primary after FORGE_TEST_PG_RESTART"
  if [ -n "${FORGE_TEST_POOLER_URL:-}" ]; then
    poll "${FORGE_TEST_POOLER_URL%/*}/forge_check_late" "SELECT count(*) FROM t" 2
  fi
  if [ -n "${FORGE_TEST_REPLICA_URL:-}" ]; then
    poll "${FORGE_TEST_REPLICA_URL%/*}/forge_check_late" "SELECT count(*) FROM t" 2
  fi
  ok "FORGE_TEST_PG_RESTART restarts the primary${FORGE_TEST_POOLER_URL:+ (the pooler carries on)}${FORGE_TEST_REPLICA_URL:+ (the replica carries on)}"
  "$PSQL" "$DATABASE_URL" -Xq -c "DROP DATABASE forge_check_late WITH (FORCE)" || fail "cannot drop the database"
}

if [ "${1:-}" = --inner ]; then inner "$2"; exit 0; fi

# No process of a work directory, and the directory gone.
left_over() {
  local work=$1 i
  for i in $(seq 50); do
    if [ ! -e "$work" ] && ! pgrep -f "$work" >/dev/null; then return 0; fi
    sleep 0.1
  done
  pgrep -af "$work" >&2 || true
  fail "left behind: $work"
}

run() { # run LABEL VAR=VALUE...
  local label=$1 marker
  shift
  marker=$(mktemp)
  echo "check-with-postgres: === $label" >&2
  env "$@" "$HERE/with-postgres.sh" "$HERE/check-with-postgres.sh" --inner "$marker" || fail "$label"
  left_over "$(cat "$marker")"
  rm -f "$marker"
  ok "$label: nothing left running"
}

versions=("$@")
[ ${#versions[@]} -gt 0 ] || versions=(plain 15 18)
for v in "${versions[@]}"; do
  case "$v" in
    plain) run "plain" FORGE_TEST_POOLER=0 ;;
    15 | 18) run "FORGE_PG_VERSION=$v FORGE_TEST_POOLER=1 FORGE_TEST_REPLICA=1" \
         FORGE_PG_VERSION="$v" FORGE_TEST_POOLER=1 FORGE_TEST_REPLICA=1 ;;
    *) fail "unknown combination $v (plain, 15 or 18)" ;;
  esac
done

set +e
# shellcheck disable=SC2016 # expanded by that sh
FORGE_TEST_POOLER=1 FORGE_TEST_REPLICA=1 "$HERE/with-postgres.sh" sh -c 'dirname "$FORGE_TEST_PG_RESTART" >"$0"; exit 3' "${TMPDIR:-/tmp}/forge-check.$$" 2>/dev/null
rc=$?
set -e
[ $rc = 3 ] || fail "a failing command's status 3 came back as $rc"
left_over "$(cat "${TMPDIR:-/tmp}/forge-check.$$")"
rm -f "${TMPDIR:-/tmp}/forge-check.$$"
ok "a failing command's status comes back; nothing left running"
echo "check-with-postgres: all checks passed" >&2
