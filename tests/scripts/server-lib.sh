# Shared by the scripts that start the tests' real servers (mariadb.sh, etcd.sh):
# ports on 127.0.0.1 and the one process a script may signal. Sourced, not run.

# Whether nothing accepts connections on 127.0.0.1:PORT.
port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# Prints a port nothing accepts on, the first of a random walk over 20000-49999;
# fails after 50 tries. (Another process may still take it before the server binds:
# callers retry on "address already in use".)
free_port() {
    local candidate
    for _ in $(seq 1 50); do
        candidate=$((20000 + RANDOM % 30000))
        if port_free "$candidate"; then
            echo "$candidate"
            return 0
        fi
    done
    return 1
}

# Prints the pid in PIDFILE if that process is alive and its command line holds
# MARKER (its data dir or config file): a pid reused by another program is not ours.
ours_pid() {
    local pidfile="$1" marker="$2" pid
    [ -s "$pidfile" ] || return 1
    pid="$(cat "$pidfile")"
    if kill -0 "$pid" 2>/dev/null && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q -- "$marker"; then
        echo "$pid"
        return 0
    fi
    return 1
}

# Sends PID a TERM and waits up to 10 s for it to end.
stop_pid() {
    kill "$1"
    for _ in $(seq 1 100); do
        kill -0 "$1" 2>/dev/null || break
        sleep 0.1
    done
}
