#!/usr/bin/env bash
# Sets up a new machine for Cadenza: system tools (Java 17, Maven, Go, chromium) if
# missing, the Python virtualenv with every package, Kafka's jars and the FerretDB
# binary in the cache. Safe to run again: each step is skipped when already done.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3}"
VENV="${VENV:-.venv}"

apt_install() {
  if command -v apt-get >/dev/null 2>&1; then
    local sudo=""
    [ "$(id -u)" -ne 0 ] && sudo="sudo"
    echo "bootstrap: apt-get install $*"
    $sudo apt-get update -qq || true
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "$@" >/dev/null
  else
    echo "bootstrap: please install: $* (no apt-get here)" >&2
    exit 1
  fi
}

command -v java >/dev/null 2>&1 || apt_install openjdk-17-jre-headless
command -v mvn  >/dev/null 2>&1 || apt_install maven
command -v go   >/dev/null 2>&1 || apt_install golang
# Debian's chromium drives the browser tests (never a downloaded browser build).
[ -e /usr/bin/chromium ] || apt_install chromium

"$PYTHON" -c 'import sys; assert sys.version_info >= (3, 11), "Python 3.11+ needed"'
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --upgrade pip
"$VENV/bin/python" -m pip install -q -e ".[dev]"
"$VENV/bin/cadenza" stack prepare
# librosa's numba kernels, compiled once by one process before tests or the ETL run
# several at once (concurrent compiles can corrupt numba's cache: etl.features.warm_up).
"$VENV/bin/python" -c 'from etl.features import warm_up; warm_up()'
echo "bootstrap: done ($VENV ready)"
