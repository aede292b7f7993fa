#!/usr/bin/env bash
# Runs a command against a throwaway PostgreSQL cluster, then stops and deletes the cluster
# (also when the command fails or is interrupted).
#
#   scripts/with-postgres.sh cargo test
#
# The command sees DATABASE_URL and FORGE_TEST_DATABASE_URL, both pointing at the cluster's
# `postgres` database as the superuser `postgres` (trust auth, 127.0.0.1 only, a free port),
# and FORGE_TEST_PG_RESTART, a script that restarts the server (for the fault tests).
# Needs PostgreSQL's server binaries (initdb, pg_ctl, postgres): found with
# `pg_config --bindir`, under /usr/lib/postgresql/*/bin, or on PATH. Run as root, the server
# runs as the `postgres` user. Without PostgreSQL it fails loudly; it never skips.
set -euo pipefail

die() { echo "with-postgres: $*" >&2; exit 1; }

[ $# -gt 0 ] || die "usage: $0 COMMAND [ARGS...]"

find_bindir() {
  local d
  if command -v pg_config >/dev/null 2>&1; then
    d=$(pg_config --bindir 2>/dev/null || true)
    [ -n "$d" ] && [ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ] && { echo "$d"; return; }
  fi
  for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
    [ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ] && { echo "$d"; return; }
  done
  if command -v initdb >/dev/null 2>&1 && command -v pg_ctl >/dev/null 2>&1; then
    dirname "$(command -v initdb)"; return
  fi
  return 1
}

BINDIR=$(find_bindir) || die "PostgreSQL server binaries (initdb, pg_ctl) not found; install PostgreSQL 15 (Debian: apt-get install postgresql-15)"

# As root, the server must run as an unprivileged user.
AS=()
if [ "$(id -u)" = 0 ]; then
  id postgres >/dev/null 2>&1 || die "running as root but there is no 'postgres' user to run the server as"
  if command -v runuser >/dev/null 2>&1; then AS=(runuser -u postgres --); else AS=(su postgres -s /bin/sh -c); fi
fi
as_pg() {
  if [ ${#AS[@]} -eq 0 ]; then "$@"
  elif [ "${AS[0]}" = runuser ]; then "${AS[@]}" "$@"
  else "${AS[@]}" "$(printf '%q ' "$@")"; fi
}

WORK=$(mktemp -d "${TMPDIR:-/tmp}/forge-pg.XXXXXX")
chmod 755 "$WORK"
[ "$(id -u)" = 0 ] && chown postgres "$WORK"
DATA="$WORK/data"
LOG="$WORK/server.log"

cleanup() {
  local rc=$?
  if [ -f "$DATA/postmaster.pid" ]; then
    as_pg "$BINDIR/pg_ctl" -D "$DATA" -m immediate -w stop >/dev/null 2>&1 || true
  fi
  rm -rf "$WORK"
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

as_pg "$BINDIR/initdb" -D "$DATA" -U postgres --auth=trust --encoding=UTF8 --no-locale >"$WORK/initdb.log" 2>&1 \
  || { cat "$WORK/initdb.log" >&2; die "initdb failed"; }

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

started=
for _ in 1 2 3 4 5 6 7 8 9 10; do
  PORT=$(( 20000 + RANDOM % 40000 ))
  port_free "$PORT" || continue
  if as_pg "$BINDIR/pg_ctl" -D "$DATA" -l "$LOG" -w -t 60 \
      -o "-p $PORT -k $WORK -c listen_addresses=127.0.0.1 -c max_connections=300 -c fsync=off -c synchronous_commit=off -c full_page_writes=off" \
      start >/dev/null 2>&1; then
    started=1; break
  fi
done
[ -n "$started" ] || { cat "$LOG" >&2 2>/dev/null || true; die "could not start PostgreSQL"; }

# A script the fault tests call to restart the server (same data, port and options).
RESTART="$WORK/restart-postgres.sh"
if [ ${#AS[@]} -eq 0 ]; then
  printf '#!/bin/sh\nexec %q -D %q -l %q -m fast -w -t 60 restart >/dev/null\n' \
    "$BINDIR/pg_ctl" "$DATA" "$LOG" >"$RESTART"
elif [ "${AS[0]}" = runuser ]; then
  printf '#!/bin/sh\nexec runuser -u postgres -- %q -D %q -l %q -m fast -w -t 60 restart >/dev/null\n' \
    "$BINDIR/pg_ctl" "$DATA" "$LOG" >"$RESTART"
else
  printf '#!/bin/sh\nexec su postgres -s /bin/sh -c %q\n' \
    "$(printf '%q ' "$BINDIR/pg_ctl" -D "$DATA" -l "$LOG" -m fast -w -t 60 restart) >/dev/null" >"$RESTART"
fi
chmod 755 "$RESTART"
export FORGE_TEST_PG_RESTART="$RESTART"

export DATABASE_URL="postgres://postgres@127.0.0.1:$PORT/postgres"
export FORGE_TEST_DATABASE_URL="$DATABASE_URL"
echo "with-postgres: PostgreSQL $("$BINDIR/postgres" --version | sed -E "s/^[^0-9]*([0-9.]+).*/\1/") on 127.0.0.1:$PORT (data in $DATA)" >&2
"$@"
