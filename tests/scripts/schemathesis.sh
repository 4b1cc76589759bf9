#!/usr/bin/env bash
# Installs schemathesis (the OpenAPI fuzzer, from PyPI) into a virtualenv outside the
# clone, once per machine, and prints the path of its `schemathesis` executable.
# Idempotent: a complete install leaves a marker; anything else is rebuilt.
set -euo pipefail
VERSION=4.32.5
VENV="${MEDIC_CACHE:-$HOME/.cache/medic}/schemathesis-$VERSION"
if [ -f "$VENV/.complete" ] && [ -x "$VENV/bin/schemathesis" ]; then
    echo "$VENV/bin/schemathesis"
    exit 0
fi
PY=$(command -v python3 || true)
if [ -z "$PY" ]; then
    echo "schemathesis.sh: python3 is needed to install schemathesis: apt-get install -y python3 python3-venv" >&2
    exit 1
fi
rm -rf "$VENV"
"$PY" -m venv "$VENV" >&2
"$VENV/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$VERSION" >&2
touch "$VENV/.complete"
echo "$VENV/bin/schemathesis"
