#!/usr/bin/env bash
# A private etcd for the etcd plugin's tests: installs etcd-server/etcd-client (Debian)
# if missing, starts a single member on 127.0.0.1 at free client and peer ports with
# its data dir and pid file under DIR, waits until it answers `/health`, and prints
# its client URL (`http://127.0.0.1:PORT`, the only line on stdout). The v3 JSON
# gateway is on the client port. Needs flock and curl besides etcd.
#
#   etcd.sh [DIR]        start (or reuse) the member in DIR
#                        (default ${MEDIC_CACHE:-$HOME/.cache/medic}/etcd)
#   etcd.sh --stop [DIR] stop the member this script started in DIR
#   etcd.sh --join URL DIR  add a learner to the cluster of the member at URL
#                        (`etcdctl member add --learner`) and start it in DIR
#
# Started again after a stop, the member comes back on the same ports with its data
# (a real restart), unless a port was taken meanwhile.
#
# Idempotent and safe to run concurrently: a lock file serialises callers, and a
# member it started earlier (pid file alive, answering) is reused. It only ever
# signals the pid in DIR's pid file, never a process found by name.
set -euo pipefail

stop=false
join=""
if [ "${1:-}" = "--stop" ]; then
    stop=true
    shift
elif [ "${1:-}" = "--join" ]; then
    join="${2:?--join needs the client URL of a member of the cluster}"
    shift 2
fi
DIR="${1:-${MEDIC_CACHE:-$HOME/.cache/medic}/etcd}"
mkdir -p "$DIR"
DIR="$(cd "$DIR" && pwd)"
PIDFILE="$DIR/etcd.pid"
LOG="$DIR/etcd.log"

say() { echo "etcd.sh: $*" >&2; }
# shellcheck source=server-lib.sh
. "$(dirname "$0")/server-lib.sh"

exec 9>"$DIR/.lock"
flock 9

# Ours only if it is an etcd whose data dir is this directory's.
running_pid() { ours_pid "$PIDFILE" "--data-dir $DIR/data"; }

if $stop; then
    if pid="$(running_pid)"; then
        stop_pid "$pid"
        say "stopped etcd $pid"
    fi
    rm -f "$PIDFILE"
    exit 0
fi

if ! command -v etcd >/dev/null || ! command -v etcdctl >/dev/null; then
    if ! command -v apt-get >/dev/null; then
        say "etcd is not installed and there is no apt-get: install etcd 3.4+ (etcd, etcdctl) yourself"
        exit 1
    fi
    say "installing etcd-server and etcd-client (apt-get)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2
    apt-get install -y -qq etcd-server etcd-client >&2
fi

healthy() {
    [ -s "$DIR/url" ] || return 1
    curl -fsS --max-time 2 "$(cat "$DIR/url")/health" 2>/dev/null | grep -q '"health":"true"'
}

if pid="$(running_pid)"; then
    for _ in $(seq 1 50); do
        healthy && { cat "$DIR/url"; exit 0; }
        sleep 0.2
    done
    say "etcd $pid does not answer; restarting it"
    kill -9 "$pid" 2>/dev/null || true
fi

# A member started here before comes back on its ports with its data (a restart, as
# an operator does it); otherwise a fresh cluster on free ports.
client=""
peer=""
if [ -s "$DIR/ports" ] && [ -d "$DIR/data/member" ]; then
    read -r client peer <"$DIR/ports"
    if ! port_free "$client" || ! port_free "$peer"; then
        say "ports $client/$peer are taken; starting a fresh member"
        client=""
    fi
fi
if [ -z "$client" ]; then
    client="$(free_port)" || { say "found no free port"; exit 1; }
    peer="$(free_port)" || { say "found no free port"; exit 1; }
    [ "$client" != "$peer" ] || peer=$((client + 1))
    # The old data recorded the old peer URL: a new cluster needs fresh data.
    rm -rf "$DIR/data" "$DIR/name"
fi
fresh=""
[ -d "$DIR/data/member" ] || fresh=yes
# Another process may take a free port between the check above and etcd's bind: a
# fresh member (not a restart, not a learner already added under its peer URL) then
# starts again on other ports.
for attempt in 1 2 3 4 5; do
echo "$client $peer" >"$DIR/ports"
url="http://127.0.0.1:$client"
rm -f "$PIDFILE" "$DIR/url"
name=medic-test
initial=(--initial-cluster "medic-test=http://127.0.0.1:$peer" --initial-cluster-state new)
if [ -n "$join" ] && [ ! -d "$DIR/data/member" ]; then
    name="learner-$client"
    added="$(ETCDCTL_API=3 etcdctl --endpoints "$join" --command-timeout=10s member add "$name" \
        --learner --peer-urls="http://127.0.0.1:$peer")" || { say "etcdctl member add failed"; exit 1; }
    cluster="$(echo "$added" | sed -n 's/^ETCD_INITIAL_CLUSTER="\(.*\)"$/\1/p')"
    initial=(--initial-cluster "$cluster" --initial-cluster-state existing)
    echo "$name" >"$DIR/name"
elif [ -s "$DIR/name" ]; then
    name="$(cat "$DIR/name")"
fi
log_from=$(($(stat -c %s "$LOG" 2>/dev/null || echo 0) + 1))
# Its own session, so a test process's end (or Ctrl-C) does not take it along; not
# holding the lock (fd 9) or any pipe of the caller.
setsid etcd --name "$name" --data-dir "$DIR/data" \
    --listen-client-urls "$url" --advertise-client-urls "$url" \
    --listen-peer-urls "http://127.0.0.1:$peer" --initial-advertise-peer-urls "http://127.0.0.1:$peer" \
    "${initial[@]}" \
    --quota-backend-bytes 268435456 \
    </dev/null >>"$LOG" 2>&1 9>&- &
echo $! >"$PIDFILE"
echo "$url" >"$DIR/url"
for _ in $(seq 1 150); do
    healthy && break
    kill -0 "$(cat "$PIDFILE")" 2>/dev/null || break
    sleep 0.2
done
healthy && break
if [ -n "$fresh" ] && [ -z "$join" ] && [ "$attempt" -lt 5 ] \
    && tail -c +"$log_from" "$LOG" | grep -q 'address already in use'; then
    say "a port was taken before etcd could bind it; trying other ports"
    kill -9 "$(cat "$PIDFILE")" 2>/dev/null || true
    rm -rf "$DIR/data" "$DIR/name"
    client="$(free_port)" || { say "found no free port"; exit 1; }
    peer="$(free_port)" || { say "found no free port"; exit 1; }
    [ "$client" != "$peer" ] || peer=$((client + 1))
    continue
fi
break
done
if ! healthy; then
    say "etcd did not answer within 30 s; the end of $LOG:"
    tail -20 "$LOG" >&2
    exit 1
fi
say "etcd $(cat "$PIDFILE") on $url (data in $DIR)"
echo "$url"
