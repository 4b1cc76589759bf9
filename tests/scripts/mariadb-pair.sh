#!/usr/bin/env bash
# A private GTID-replicated MariaDB pair for the mysql plugin's black-box tests: a
# primary in DIR/primary and a replica in DIR/replica, each started by mariadb.sh (so
# installed if missing, on a free 127.0.0.1 port, stopped by its pid file), with
# log-bin, binlog-format ROW, log-slave-updates, gtid-strict-mode and distinct
# server-ids; users created on the primary (and replicated); the replica pointed at
# the primary with MASTER_USE_GTID=slave_pos, read-only (in its config), and caught
# up. A server stopped by pid and started again keeps its port. Prints
# "PRIMARY_PORT REPLICA_PORT" (the only line on stdout).
#
#   mariadb-pair.sh DIR         start (or reuse) the pair in DIR
#   mariadb-pair.sh --stop DIR  stop both servers this script started in DIR
#
# Idempotent: a running pair is reused; replication is only set up on a replica that
# has none. Users (test fixtures, not secrets):
#   medic / medic-admin-pw-41d2   ALL on *.* (the plans' administrative user)
#   repl  / medic-repl-pw-9b07    REPLICATION SLAVE (the replica's connection)
#   app   / medic-app-pw-5e18     SELECT, INSERT, UPDATE, DELETE, CREATE, DROP on app.*
#                                 (test writes: read_only stops it, unlike root/medic)
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"

stop=false
if [ "${1:-}" = "--stop" ]; then
    stop=true
    shift
fi
[ -n "${1:-}" ] || { echo "usage: mariadb-pair.sh [--stop] DIR" >&2; exit 2; }
mkdir -p "$1"
DIR="$(cd "$1" && pwd)"
say() { echo "mariadb-pair.sh: $*" >&2; }

if $stop; then
    bash "$HERE/mariadb.sh" --stop "$DIR/replica"
    bash "$HERE/mariadb.sh" --stop "$DIR/primary"
    exit 0
fi

for side in primary replica; do
    mkdir -p "$DIR/$side"
    id=1
    [ "$side" = replica ] && id=2
    cat >"$DIR/$side/extra.cnf" <<EOF
server-id = $id
log-bin = $side-bin
binlog-format = ROW
log-slave-updates
gtid-strict-mode = 1
gtid-domain-id = 0
EOF
    # A replica comes back read-only after a restart, as configured replicas do.
    if [ "$side" = replica ]; then
        echo "read-only = 1" >>"$DIR/$side/extra.cnf"
    fi
done

primary_port="$(bash "$HERE/mariadb.sh" "$DIR/primary")"
replica_port="$(bash "$HERE/mariadb.sh" "$DIR/replica")"

sql() {
    local side="$1"
    shift
    mariadb --no-defaults --socket="$DIR/$side/mariadbd.sock" -uroot --batch --skip-column-names "$@"
}

sql primary <<'SQL'
CREATE USER IF NOT EXISTS 'medic'@'%' IDENTIFIED BY 'medic-admin-pw-41d2';
GRANT ALL PRIVILEGES ON *.* TO 'medic'@'%' WITH GRANT OPTION;
CREATE USER IF NOT EXISTS 'repl'@'%' IDENTIFIED BY 'medic-repl-pw-9b07';
GRANT REPLICATION SLAVE ON *.* TO 'repl'@'%';
CREATE DATABASE IF NOT EXISTS app;
CREATE USER IF NOT EXISTS 'app'@'%' IDENTIFIED BY 'medic-app-pw-5e18';
GRANT SELECT, INSERT, UPDATE, DELETE, CREATE, DROP ON app.* TO 'app'@'%';
SQL

if [ -z "$(sql replica -e 'SHOW SLAVE STATUS')" ]; then
    # From the primary's first transaction: the replica's own binlog (empty: the
    # test users are not binlogged) is discarded and gtid_slave_pos is empty, not the
    # primary's current position (which would skip the users created above).
    sql replica <<SQL
RESET MASTER;
SET GLOBAL gtid_slave_pos = '';
CHANGE MASTER TO MASTER_HOST = '127.0.0.1', MASTER_PORT = $primary_port,
  MASTER_USER = 'repl', MASTER_PASSWORD = 'medic-repl-pw-9b07',
  MASTER_USE_GTID = slave_pos, MASTER_CONNECT_RETRY = 1;
START SLAVE;
SQL
fi

target="$(sql primary -e 'SELECT @@global.gtid_binlog_pos')"
reached="$(sql replica -e "SELECT MASTER_GTID_WAIT('$target', 30)")"
if [ "$reached" != 0 ]; then
    say "the replica did not reach the primary's position $target within 30 s:"
    sql replica -e 'SHOW SLAVE STATUS\G' >&2 || true
    exit 1
fi
say "primary 127.0.0.1:$primary_port, replica 127.0.0.1:$replica_port (GTID $target)"
echo "$primary_port $replica_port"
