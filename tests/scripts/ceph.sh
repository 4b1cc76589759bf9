#!/usr/bin/env bash
# A private single-host Ceph 16 cluster for the ceph plugin's tests: installs
# ceph-mon, ceph-mgr, ceph-osd, ceph-common and ceph-mgr-dashboard (Debian) if missing,
# then starts on 127.0.0.1, with everything under DIR: one mon (msgr v2 on a free
# port), one mgr with the dashboard module serving its REST API over plain HTTP on a
# free port, one OSD on memstore, and a pool `medic` of size 1 holding 16 objects
# (`medic-1` ... `medic-16`, 4 KiB each). Waits until the
# cluster is HEALTH_OK with every placement group active+clean and the REST API
# answers, then prints two lines on stdout:
#
#   http://127.0.0.1:PORT          the dashboard's REST API (the plugin's origin)
#   DIR/ceph.conf                  for `ceph -c DIR/ceph.conf ...` (client.admin)
#
# The dashboard account `medic` (role administrator) has the password in
# DIR/dashboard-password.
#
#   ceph.sh [DIR]          start (or reuse) the cluster in DIR
#                          (default ${MEDIC_CACHE:-$HOME/.cache/medic}/ceph)
#   ceph.sh --stop [DIR]   stop the daemons this script started in DIR (OSD first,
#                          then mgr, then mon)
#   ceph.sh --stop-mgr [DIR]   stop only the mgr (the REST API goes away)
#   ceph.sh --stop-osd [DIR]   stop only the OSD (as an operator's restart begins)
#
# Started again, the script starts whichever daemon is not running, with its data.
#
# Why the dashboard and not the `restful` module: restful serves HTTPS only, with a
# self-signed certificate, and medic checks HTTPS origins against Mozilla's roots
# only; the dashboard can serve plain HTTP (`mgr/dashboard/ssl false`), here on
# loopback.
#
# Idempotent and safe to run concurrently: a lock file serialises callers, and
# daemons it started earlier (pid files alive) are reused. It only ever signals the
# pids in DIR's pid files, never a process found by name. Every ceph CLI call is
# bounded by `timeout` (the CLI waits forever for an absent mon or mgr).
set -euo pipefail

mode=start
case "${1:-}" in
--stop) mode=stop; shift ;;
--stop-mgr) mode=stop-mgr; shift ;;
--stop-osd) mode=stop-osd; shift ;;
esac
DIR="${1:-${MEDIC_CACHE:-$HOME/.cache/medic}/ceph}"
mkdir -p "$DIR"
DIR="$(cd "$DIR" && pwd)"
CONF="$DIR/ceph.conf"

say() { echo "ceph.sh: $*" >&2; }
# shellcheck source=server-lib.sh
. "$(dirname "$0")/server-lib.sh"

exec 9>"$DIR/.lock"
flock 9

# The daemon of kind NAME (mon, mgr, osd) this script started, if alive and still
# running on this directory's configuration.
daemon_pid() { ours_pid "$DIR/$1.pid" "$CONF"; }

stop_daemon() {
    local pid
    if pid="$(daemon_pid "$1")"; then
        stop_pid "$pid"
        kill -0 "$pid" 2>/dev/null && kill -9 "$pid" 2>/dev/null || true
        say "stopped $1 $pid"
    fi
    rm -f "$DIR/$1.pid"
}

if [ "$mode" = stop ]; then
    # The OSD first: an OSD whose mon is gone hangs in its shutdown.
    stop_daemon osd
    stop_daemon mgr
    stop_daemon mon
    exit 0
fi
if [ "$mode" = stop-mgr ]; then
    stop_daemon mgr
    exit 0
fi
if [ "$mode" = stop-osd ]; then
    stop_daemon osd
    exit 0
fi

if ! command -v ceph-mon >/dev/null || ! command -v ceph-mgr >/dev/null \
    || ! command -v ceph-osd >/dev/null || ! command -v ceph >/dev/null \
    || [ ! -d /usr/share/ceph/mgr/dashboard ]; then
    if ! command -v apt-get >/dev/null; then
        say "Ceph is not installed and there is no apt-get: install Ceph 16 (ceph-mon, ceph-mgr, ceph-osd, ceph-common, ceph-mgr-dashboard) yourself"
        exit 1
    fi
    say "installing ceph-mon ceph-mgr ceph-osd ceph-common ceph-mgr-dashboard (apt-get, ~90 s)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2
    apt-get install -y -qq ceph-mon ceph-mgr ceph-osd ceph-common ceph-mgr-dashboard >&2
fi

# `ceph` as client.admin of this cluster, bounded.
c() { timeout 20 ceph -c "$CONF" "$@"; }

api_up() {
    [ -s "$DIR/api" ] || return 1
    # 401 (no token) is the API's answer too: it is up.
    local code
    code="$(curl -sS --max-time 2 -o /dev/null -w '%{http_code}' "$(cat "$DIR/api")/api/health/minimal" 2>/dev/null || true)"
    [ "$code" = 401 ] || [ "$code" = 200 ]
}

# Every placement group active+clean.
settled() {
    local pgs
    pgs="$(c pg stat --format json 2>/dev/null)" || return 1
    python3 - "$pgs" <<'EOF' || return 1
import json, sys
s = json.loads(sys.argv[1])
by_state = s.get("pg_summary", s).get("num_pg_by_state", [])
total = s.get("pg_summary", s).get("num_pgs", 0)
clean = sum(x["num"] for x in by_state if x["name"] == "active+clean")
sys.exit(0 if total > 0 and clean == total else 1)
EOF
}

start_mon() {
    setsid ceph-mon -c "$CONF" -i a -f </dev/null >>"$DIR/log/mon.out" 2>&1 9>&- &
    echo $! >"$DIR/mon.pid"
}
start_mgr() {
    setsid ceph-mgr -c "$CONF" -i x -f </dev/null >>"$DIR/log/mgr.out" 2>&1 9>&- &
    echo $! >"$DIR/mgr.pid"
}
start_osd() {
    setsid ceph-osd -c "$CONF" -i 0 -f </dev/null >>"$DIR/log/osd.out" 2>&1 9>&- &
    echo $! >"$DIR/osd.pid"
}

# Retries COMMAND until it succeeds or SECONDS of wall-clock time have passed (a
# single try may itself take up to 20 s: the CLI waits for an absent mon).
wait_for() { # SECONDS WHAT COMMAND...
    local seconds="$1" what="$2"
    shift 2
    local until=$((SECONDS + seconds))
    while [ "$SECONDS" -lt "$until" ]; do
        "$@" && return 0
        sleep 0.25
    done
    say "$what did not happen within $seconds s; logs in $DIR/log"
    tail -n 15 "$DIR/log/"*.log >&2 2>/dev/null || true
    return 1
}

mon_up() { timeout 10 ceph -c "$CONF" mon stat >/dev/null 2>&1; }
# The mon could not bind its port (taken since the free-port check).
mon_bind_failed() { grep -q "unable to bind monitor" "$DIR/log/mon.a.log" 2>/dev/null; }
osd_up() { c osd dump --format json 2>/dev/null | grep -q '"up":1'; }

# Creates a fresh cluster; fails (status 3) when a port it picked was taken before the
# daemon bound it, so the caller can try other ports.
create() {
    # A fresh cluster: configuration, keys, mon store, OSD, dashboard. Daemons of a
    # creation that failed half-way go first.
    stop_daemon osd
    stop_daemon mgr
    stop_daemon mon
    rm -rf "$DIR/mon" "$DIR/mgr" "$DIR/osd" "$DIR/run" "$DIR/log" "$DIR"/*.keyring "$DIR/api"
    mkdir -p "$DIR/mgr" "$DIR/osd" "$DIR/run" "$DIR/log"
    mon_port="$(free_port)" || { say "found no free port"; exit 1; }
    api_port="$(free_port)" || { say "found no free port"; exit 1; }
    fsid="$(cat /proc/sys/kernel/random/uuid)"
    cat >"$CONF" <<EOF
[global]
fsid = $fsid
mon host = v2:127.0.0.1:$mon_port
public addr = 127.0.0.1
auth cluster required = cephx
auth service required = cephx
auth client required = cephx
run dir = $DIR/run
log file = $DIR/log/\$name.log
osd pool default size = 1
osd pool default min size = 1
osd pool default pg autoscale mode = off
osd crush chooseleaf type = 0
mon allow pool size one = true
mon warn on pool no redundancy = false
mon allow pool delete = true
# A shared build machine's disk may be fuller than Ceph likes; the test cluster
# holds almost nothing, and a mon that shuts itself down at 5% free helps no one.
mon data avail warn = 2
mon data avail crit = 1
auth allow insecure global id reclaim = false
mon warn on insecure global id reclaim allowed = false
mon warn on insecure global id reclaim = false
mgr initial modules = dashboard
[mon.a]
mon data = $DIR/mon
keyring = $DIR/mon/keyring
[mgr.x]
mgr data = $DIR/mgr
keyring = $DIR/mgr/keyring
[osd.0]
osd data = $DIR/osd
keyring = $DIR/osd/keyring
osd objectstore = memstore
memstore device bytes = 536870912
# memstore writes its contents to the data dir only at a clean unmount, which the
# default fast shutdown skips: a restarted OSD would come back empty.
osd fast shutdown = false
[client]
keyring = $DIR/admin.keyring
admin socket =
EOF
    ceph-authtool --create-keyring "$DIR/mon.keyring" --gen-key -n mon. --cap mon 'allow *' >/dev/null
    ceph-authtool --create-keyring "$DIR/admin.keyring" --gen-key -n client.admin \
        --cap mon 'allow *' --cap osd 'allow *' --cap mds 'allow *' --cap mgr 'allow *' >/dev/null
    ceph-authtool "$DIR/mon.keyring" --import-keyring "$DIR/admin.keyring" >/dev/null
    monmaptool --create --clobber --fsid "$fsid" --addv a "[v2:127.0.0.1:$mon_port]" "$DIR/monmap" >/dev/null
    timeout 60 ceph-mon -c "$CONF" --mkfs -i a --monmap "$DIR/monmap" --keyring "$DIR/mon.keyring" \
        >>"$DIR/log/mon.out" 2>&1
    cp "$DIR/mon.keyring" "$DIR/mon/keyring"
    start_mon
    mon_up_or_unbound() { mon_bind_failed || mon_up; }
    wait_for 30 "the mon answering" mon_up_or_unbound
    if mon_bind_failed; then
        stop_daemon mon
        exit 3
    fi

    c auth get-or-create mgr.x mon 'allow profile mgr' osd 'allow *' mds 'allow *' >"$DIR/mgr/keyring"
    c config set mgr mgr/dashboard/ssl false --force
    c config set mgr mgr/dashboard/server_addr 127.0.0.1 --force
    c config set mgr mgr/dashboard/server_port "$api_port" --force
    echo "http://127.0.0.1:$api_port" >"$DIR/api"
    start_mgr

    uuid="$(cat /proc/sys/kernel/random/uuid)"
    id="$(c osd new "$uuid")"
    [ "$id" = 0 ] || { say "the new OSD got id $id, expected 0"; exit 1; }
    c auth get-or-create osd.0 mon 'allow profile osd' mgr 'allow profile osd' osd 'allow *' \
        >"$DIR/osd/keyring"
    timeout 60 ceph-osd -c "$CONF" -i 0 --mkfs --osd-uuid "$uuid" >>"$DIR/log/osd.out" 2>&1
    start_osd
    wait_for 60 "the OSD coming up" osd_up

    if ! wait_for 60 "the dashboard's REST API answering" api_up; then
        if grep -q "Address already in use\|port .* already in use\|OSError" "$DIR/log/mgr.x.log" 2>/dev/null; then
            stop_daemon osd; stop_daemon mgr; stop_daemon mon
            exit 3
        fi
        exit 1
    fi
    password="medic-Dash-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')"
    printf '%s' "$password" >"$DIR/dashboard-password"
    # The mgr publishes a module's commands a moment after the module serves.
    add_user() { c dashboard ac-user-create medic -i "$DIR/dashboard-password" administrator >/dev/null 2>&1; }
    wait_for 60 "the dashboard's commands" add_user
    c osd pool create medic 8 8 >&2
    c osd pool application enable medic rados >&2
    # Some data, so placement groups hold objects through an OSD's restart or out/in.
    head -c 4096 /dev/urandom >"$DIR/object"
    for i in $(seq 1 16); do
        timeout 20 rados -c "$CONF" -p medic put "medic-$i" "$DIR/object"
    done
    echo "$fsid" >"$DIR/created"
}

if [ ! -s "$DIR/created" ]; then
    for attempt in 1 2 3 4 5; do
        # A subshell of its own with errexit in force (not in a tested context,
        # where bash would ignore errexit).
        set +e
        (
            set -e
            create
        )
        status=$?
        set -e
        [ "$status" = 0 ] && break
        if [ "$status" = 3 ] && [ "$attempt" -lt 5 ]; then
            say "a port was taken before a daemon could bind it; trying other ports"
            continue
        fi
        exit 1
    done
else
    # The cluster exists: start whichever daemon is not running (mon, mgr, OSD).
    daemon_pid mon >/dev/null || start_mon
    wait_for 30 "the mon answering" mon_up
    daemon_pid mgr >/dev/null || start_mgr
    daemon_pid osd >/dev/null || start_osd
    wait_for 60 "the OSD coming up" osd_up
    wait_for 60 "the dashboard's REST API answering" api_up
fi

wait_for 90 "all placement groups active+clean" settled
say "ceph cluster $(cat "$DIR/created") up: mon $(cat "$DIR/mon.pid"), mgr $(cat "$DIR/mgr.pid"), osd $(cat "$DIR/osd.pid"); REST API $(cat "$DIR/api")"
cat "$DIR/api"
echo "$CONF"
