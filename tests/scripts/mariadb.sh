#!/usr/bin/env bash
# A private MariaDB for the sql tests: installs mariadb-server/client (Debian) if
# missing, starts `mariadbd` on 127.0.0.1 at a free port with its datadir, socket and
# pid file under DIR, waits until it answers, creates the test users, and prints the
# port (the only line on stdout).
#
#   mariadb.sh [DIR]        start (or reuse) the instance in DIR
#                           (default ${MEDIC_CACHE:-$HOME/.cache/medic}/mariadb)
#   mariadb.sh --stop [DIR] stop the instance this script started in DIR
#
# Options in DIR/extra.cnf (if present) are appended to the server's [mariadbd]
# section (tests/scripts/mariadb-pair.sh puts replication settings there).
#
# Idempotent and safe to run concurrently: a lock file serialises callers, and an
# instance it started earlier (pid file alive, answering) is reused. It only ever
# signals the pid in DIR's pid file, never a process found by name.
#
# Users (passwords are test fixtures, not secrets):
#   medic_test    / medic-test-pw-7f3a    ALL on *.* (creates the tests' databases)
#   medic_limited / medic-limited-pw-2c9e SELECT on medic_limited.* only
set -euo pipefail

stop=false
if [ "${1:-}" = "--stop" ]; then
    stop=true
    shift
fi
DIR="${1:-${MEDIC_CACHE:-$HOME/.cache/medic}/mariadb}"
mkdir -p "$DIR"
DIR="$(cd "$DIR" && pwd)"
PIDFILE="$DIR/mariadbd.pid"
SOCKET="$DIR/mariadbd.sock"
CNF="$DIR/my.cnf"
LOG="$DIR/mariadbd.log"

say() { echo "mariadb.sh: $*" >&2; }
# shellcheck source=server-lib.sh
. "$(dirname "$0")/server-lib.sh"

exec 9>"$DIR/.lock"
flock 9

# Ours only if it is a mariadbd started with this directory's config.
running_pid() { ours_pid "$PIDFILE" "--defaults-file=$CNF"; }

if $stop; then
    if pid="$(running_pid)"; then
        stop_pid "$pid"
        say "stopped mariadbd $pid"
    fi
    exit 0
fi

find_bin() {
    command -v "$1" 2>/dev/null || { [ -x "/usr/sbin/$1" ] && echo "/usr/sbin/$1"; } || true
}

if [ -z "$(find_bin mariadbd)" ] || [ -z "$(find_bin mariadb-admin)" ]; then
    if ! command -v apt-get >/dev/null; then
        say "mariadbd is not installed and there is no apt-get: install MariaDB (mariadbd, mariadb-install-db, mariadb-admin, mariadb) yourself"
        exit 1
    fi
    say "installing mariadb-server and mariadb-client (apt-get, ~40 s)"
    # Never start the distribution's own service: only our private instance runs.
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2
    apt-get install -y -qq mariadb-server mariadb-client >&2
fi
MARIADBD="$(find_bin mariadbd)"
INSTALL_DB="$(find_bin mariadb-install-db)"
ADMIN="$(find_bin mariadb-admin)"
CLIENT="$(find_bin mariadb)"

ping() { "$ADMIN" --no-defaults --socket="$SOCKET" -uroot --connect-timeout=2 ping >/dev/null 2>&1; }

if pid="$(running_pid)" && ping; then
    cat "$DIR/port"
    exit 0
fi
if pid="$(running_pid)"; then
    # Ours but not answering (still starting, or wedged): give it a moment, then
    # replace it.
    for _ in $(seq 1 50); do
        ping && { cat "$DIR/port"; exit 0; }
        sleep 0.2
    done
    say "mariadbd $pid does not answer; restarting it"
    kill -9 "$pid" 2>/dev/null || true
fi

# A free port: the one this instance had before (a restart keeps its address), else
# the first of a random walk that nothing accepts on.
pick_port() {
    port=""
    if [ -s "$DIR/port" ] && port_free "$(cat "$DIR/port")"; then
        port="$(cat "$DIR/port")"
    fi
    [ -n "$port" ] || port="$(free_port)" || { say "found no free port"; exit 1; }
}

write_cnf() {
    cat >"$CNF" <<EOF
[mariadbd]
datadir = $DIR/data
socket = $SOCKET
pid-file = $PIDFILE
port = $port
bind-address = 127.0.0.1
skip-name-resolve
innodb-buffer-pool-size = 32M
performance-schema = OFF
innodb-lock-wait-timeout = 2
log-error = $LOG
# Its own: concurrent bootstraps sharing /tmp have failed on each other's temporary tables.
tmpdir = $DIR/tmp
EOF
    # Extra server options a caller left in DIR (mariadb-pair.sh: server-id, binlog, GTID).
    if [ -s "$DIR/extra.cnf" ]; then
        cat "$DIR/extra.cnf" >>"$CNF"
    fi
}

pick_port
write_cnf
mkdir -p "$DIR/tmp"
if [ ! -d "$DIR/data/mysql" ]; then
    rm -rf "$DIR/data"
    "$INSTALL_DB" --defaults-file="$CNF" --user=root \
        --auth-root-authentication-method=normal --skip-test-db >"$DIR/install.log" 2>&1 || {
        say "mariadb-install-db failed; see $DIR/install.log"
        tail -20 "$DIR/install.log" >&2
        exit 1
    }
fi

# A port found free can be taken by another starting server before this one binds
# it (many tests start servers at once): then it exits at once, and a new port is tried.
started=false
for attempt in 1 2 3; do
    rm -f "$PIDFILE" "$SOCKET"
    logged="$(wc -l <"$LOG" 2>/dev/null || echo 0)"
    # Its own session, so a test process's end (or Ctrl-C) does not take it along.
    # Not holding the lock (fd 9) or any pipe of the caller.
    setsid "$MARIADBD" --defaults-file="$CNF" --user=root </dev/null >>"$LOG" 2>&1 9>&- &
    child=$!
    for _ in $(seq 1 150); do
        if ping; then
            started=true
            break
        fi
        kill -0 "$child" 2>/dev/null || break
        sleep 0.2
    done
    $started && break
    if [ "$attempt" -lt 3 ] && tail -n +"$((logged + 1))" "$LOG" | grep -q "already in use"; then
        say "port $port was taken before mariadbd bound it; trying another"
        rm -f "$DIR/port"
        pick_port
        write_cnf
        continue
    fi
    break
done
if ! $started; then
    say "mariadbd did not answer within 30 s; the end of $LOG:"
    tail -20 "$LOG" >&2
    exit 1
fi
echo "$port" >"$DIR/port"

"$CLIENT" --no-defaults --socket="$SOCKET" -uroot <<'SQL'
-- Not binlogged: each server of a replicated pair creates them itself, and a
-- replica's own GTIDs would be errant transactions.
SET SESSION sql_log_bin = 0;
CREATE USER IF NOT EXISTS 'medic_test'@'%' IDENTIFIED BY 'medic-test-pw-7f3a';
ALTER USER 'medic_test'@'%' IDENTIFIED BY 'medic-test-pw-7f3a';
GRANT ALL PRIVILEGES ON *.* TO 'medic_test'@'%';
CREATE DATABASE IF NOT EXISTS medic_limited;
CREATE USER IF NOT EXISTS 'medic_limited'@'%' IDENTIFIED BY 'medic-limited-pw-2c9e';
ALTER USER 'medic_limited'@'%' IDENTIFIED BY 'medic-limited-pw-2c9e';
GRANT SELECT ON medic_limited.* TO 'medic_limited'@'%';
SQL

say "mariadbd $(cat "$PIDFILE") on 127.0.0.1:$port (data in $DIR)"
echo "$port"
