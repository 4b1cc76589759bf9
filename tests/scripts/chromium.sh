#!/usr/bin/env bash
# Headless Chromium for the web UI's end-to-end tests (ui/e2e): installs Debian's
# `chromium` package if /usr/bin/chromium is missing, then prints its path (the only
# line on stdout). Idempotent; a lock file serialises concurrent callers (apt holds its
# own lock too, but two callers would both run `apt-get update`).
#
#   chromium.sh          install if missing, print the executable's path
set -euo pipefail

BIN="${MEDIC_CHROMIUM:-/usr/bin/chromium}"
say() { echo "chromium.sh: $*" >&2; }

if [ ! -x "$BIN" ]; then
    LOCK="${MEDIC_CACHE:-$HOME/.cache/medic}/chromium.lock"
    mkdir -p "$(dirname "$LOCK")"
    exec 9>"$LOCK"
    flock 9
    if [ ! -x "$BIN" ]; then
        if ! command -v apt-get >/dev/null; then
            say "no $BIN and no apt-get to install it: install Chromium and set MEDIC_CHROMIUM to its path"
            exit 1
        fi
        sudo=""
        [ "$(id -u)" -eq 0 ] || sudo="sudo"
        say "installing Debian's chromium (apt-get; a minute or two the first time)"
        $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
        $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >&2
    fi
fi
if [ ! -x "$BIN" ]; then
    say "$BIN is still missing after installing the chromium package"
    exit 1
fi
echo "$BIN"
