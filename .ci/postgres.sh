#!/usr/bin/env bash
# A private, throwaway PostgreSQL server for the storage tests.
#
#   eval "$(bash .ci/postgres.sh)"     # start it (or reuse a running one); sets
#                                      # PROMPTSEARCH_TEST_POSTGRES_URL in this shell
#   pg="$(bash .ci/postgres.sh)" && eval "$pg"   # the same, but a failure stops a
#                                      # `set -e` script (eval "$(...)" hides it)
#   bash .ci/postgres.sh url           # print the export line of a running server
#   bash .ci/postgres.sh status        # exit 0 if it runs
#   bash .ci/postgres.sh stop          # stop it and delete its data
#
# Only the `export PROMPTSEARCH_TEST_POSTGRES_URL=...` line goes to stdout; all
# progress and errors go to stderr.  Installs Debian's `postgresql` package when no
# PostgreSQL is found (needs root).  Never touches a system cluster: the server gets
# its own data folder, a port of its own on 127.0.0.1, its own socket folder, and
# password authentication (the password is made up on first start).
#
# Settings (environment):
#   PROMPTSEARCH_PG_PORT  port on 127.0.0.1 (default 54329)
#   PROMPTSEARCH_PG_DIR   folder for data, log and password
#                         (default ${TMPDIR:-/tmp}/promptsearch-pg-$PORT)
#   PROMPTSEARCH_PG_DB    database to create (default promptsearch_test)
set -euo pipefail

exec 3>&1 1>&2 # stdout is for the export line only

PORT="${PROMPTSEARCH_PG_PORT:-54329}"
BASE="${PROMPTSEARCH_PG_DIR:-${TMPDIR:-/tmp}/promptsearch-pg-$PORT}"
DB="${PROMPTSEARCH_PG_DB:-promptsearch_test}"
DATA="$BASE/data"
LOG="$BASE/server.log"
PWFILE="$BASE/password"
SUPERUSER=postgres
HOST=127.0.0.1

say() { printf 'postgres.sh: %s\n' "$*" >&2; }
die() {
    say "error: $*"
    exit 1
}

find_bindir() {
    local dir
    # Newest installed major version first.
    for dir in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -t/ -k4 -V -r); do
        if [[ -x "$dir/initdb" && -x "$dir/pg_ctl" ]]; then
            echo "$dir"
            return 0
        fi
    done
    if command -v initdb >/dev/null 2>&1 && command -v pg_ctl >/dev/null 2>&1; then
        dirname "$(command -v initdb)"
        return 0
    fi
    return 1
}

install_postgres() {
    [[ "$(id -u)" == 0 ]] || die "PostgreSQL is not installed; install it (apt-get install postgresql) or run this as root"
    command -v apt-get >/dev/null 2>&1 || die "PostgreSQL is not installed and apt-get is missing; install PostgreSQL by hand"
    say "installing PostgreSQL from the Debian packages"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
}

# Run a command as the server's owner: initdb and postgres refuse to run as root.
as_owner() {
    if [[ "$(id -u)" == 0 ]]; then
        id "$SUPERUSER" >/dev/null 2>&1 || useradd --system --home-dir "$BASE" --shell /bin/false "$SUPERUSER"
        runuser -u "$SUPERUSER" -- "$@"
    else
        "$@"
    fi
}

running() {
    [[ -f "$DATA/postmaster.pid" ]] && as_owner "$BIN/pg_ctl" -D "$DATA" status >/dev/null 2>&1
}

port_busy() {
    (exec 9<>"/dev/tcp/$HOST/$PORT") 2>/dev/null
}

print_url() {
    [[ -r "$PWFILE" ]] || die "no password file $PWFILE; run '$0 stop' and start again"
    local password
    password="$(cat "$PWFILE")"
    printf 'export PROMPTSEARCH_TEST_POSTGRES_URL=postgresql+psycopg2://%s:%s@%s:%s/%s\n' \
        "$SUPERUSER" "$password" "$HOST" "$PORT" "$DB" >&3
}

psql_run() {
    PGPASSWORD="$(cat "$PWFILE")" "$BIN/psql" -h "$HOST" -p "$PORT" -U "$SUPERUSER" \
        -d postgres -v ON_ERROR_STOP=1 -qAtX "$@"
}

start() {
    if running; then
        say "reusing the server in $DATA (port $PORT)"
    else
        if port_busy; then
            die "port $PORT on $HOST is taken by another program; choose a free one with PROMPTSEARCH_PG_PORT=..."
        fi
        if [[ ! -f "$DATA/PG_VERSION" ]]; then
            say "creating a server in $DATA"
            rm -rf "$DATA"
            mkdir -p "$BASE"
            chmod 755 "$BASE" # the owner must reach $DATA; the password file stays private
            (umask 077 && head -c 18 /dev/urandom | base64 | tr '+/' 'xy' >"$PWFILE")
            mkdir -p "$DATA"
            local pwcopy="$BASE/initdb-password" # readable by the server's owner only
            (umask 077 && cp "$PWFILE" "$pwcopy")
            if [[ "$(id -u)" == 0 ]]; then
                as_owner true # creates the user if needed
                chown "$SUPERUSER" "$DATA" "$pwcopy"
            fi
            chmod 700 "$DATA"
            as_owner "$BIN/initdb" -D "$DATA" -U "$SUPERUSER" --pwfile="$pwcopy" \
                --auth=scram-sha-256 --encoding=UTF8 --locale=C.UTF-8 >/dev/null ||
                die "initdb failed"
            rm -f "$pwcopy"
            cat >>"$DATA/postgresql.conf" <<EOF
# promptsearch test server: throwaway, speed over durability
listen_addresses = '$HOST'
port = $PORT
unix_socket_directories = '$DATA'
fsync = off
synchronous_commit = off
full_page_writes = off
max_connections = 200
EOF
        fi
        touch "$LOG"
        if [[ "$(id -u)" == 0 ]]; then chown "$SUPERUSER" "$LOG"; fi
        say "starting the server on $HOST:$PORT"
        # 3>&- : the server must not inherit the caller's stdout, or "$(...)" never ends
        if ! as_owner "$BIN/pg_ctl" -D "$DATA" -l "$LOG" -w -t 60 start >/dev/null 3>&-; then
            tail -n 20 "$LOG" >&2 || true
            die "the server did not start (log above, in $LOG)"
        fi
    fi
    if [[ -z "$(psql_run -c "SELECT 1 FROM pg_database WHERE datname = '$DB'")" ]]; then
        psql_run -c "CREATE DATABASE \"$DB\"" || die "could not create database $DB"
    fi
    print_url
}

stop() {
    if running; then
        as_owner "$BIN/pg_ctl" -D "$DATA" -m fast -w stop >/dev/null
        say "stopped the server on port $PORT"
    fi
    if [[ -d "$BASE" ]]; then
        rm -rf "$BASE"
        say "removed $BASE"
    fi
}

ACTION="${1:-start}"
case "$ACTION" in
start | url | status | stop) ;;
*) die "unknown action '$ACTION'; use start, url, status or stop" ;;
esac

if ! BIN="$(find_bindir)"; then
    if [[ "$ACTION" == start ]]; then
        install_postgres
        BIN="$(find_bindir)" || die "PostgreSQL was installed but initdb is still not found"
    else
        die "PostgreSQL is not installed"
    fi
fi

case "$ACTION" in
start) start ;;
url)
    running || die "no server runs in $DATA; start one with: eval \"\$(bash $0)\""
    print_url
    ;;
status)
    if running; then
        say "running in $DATA on $HOST:$PORT"
    else
        say "not running"
        exit 1
    fi
    ;;
stop) stop ;;
esac
