#!/usr/bin/env bash
# Sets up a new machine for Cadenza: system tools (Java 17, Maven, Go, chromium) if
# missing, the Python virtualenv with every package, Kafka's jars and the FerretDB
# binary in the cache. Safe to run again: each step is skipped when already done.
#
# The virtualenv gets exactly the versions in requirements.lock (hash-checked), then Cadenza
# itself, editable and with no dependencies of its own: the tested install is the installed
# one. The lock is written by `make lock` (infra/lock.sh); see README "Dependencies".
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3}"
VENV="${VENV:-.venv}"
PIP_VERSION="26.3"  # pip itself is pinned too: raise it on purpose, like a lock upgrade
LOCK="requirements.lock"
BUILD_LOCK="requirements-build.lock"  # setuptools/wheel that build Cadenza (and any sdist)

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
py="$VENV/bin/python"
"$py" -c 'import platform, sys
if sys.version_info[:2] != (3, 11) or sys.platform != "linux" or platform.machine() != "x86_64":
    print("bootstrap: warning: requirements.lock is resolved for CPython 3.11 on Linux x86_64, not",
          platform.python_version(), sys.platform, platform.machine(), file=sys.stderr)'

# Checks the venv against the lock: exits 1 when a locked package is missing or at another
# version; with "report", also names the packages the lock does not (installed by hand?).
check_venv() {
  "$py" - "$LOCK" "${1:-}" <<'PY'
import re
import sys
from importlib import metadata


def norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


with open(sys.argv[1]) as f:
    locked = {norm(m[1]): m[2] for line in f if (m := re.match(r"([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)", line))}
installed = {norm(d.metadata["Name"]): d.version for d in metadata.distributions() if d.metadata["Name"]}
wrong = sorted(
    f"{name} {installed.get(name)} (locked {want})" for name, want in locked.items() if installed.get(name) != want
)
extra = sorted(set(installed) - set(locked) - {"pip", "setuptools", "wheel", "cadenza"})
if sys.argv[2] == "report":
    if extra:
        print(f"bootstrap: not in {sys.argv[1]} (installed by hand?): {', '.join(extra)}", file=sys.stderr)
    if wrong:
        print(f"bootstrap: not as locked: {', '.join(wrong)}", file=sys.stderr)
sys.exit(1 if wrong else 0)
PY
}

# Skipped when the venv already holds this lock: the stamp records what was installed, and the
# check catches a package changed by hand since.
stamp="$VENV/.cadenza-lock"
want="pip==$PIP_VERSION $(cat "$LOCK" "$BUILD_LOCK" pyproject.toml | sha256sum | cut -d' ' -f1)"
if [ "$(cat "$stamp" 2>/dev/null)" = "$want" ] && check_venv; then
  echo "bootstrap: $VENV already has $LOCK"
else
  rm -f "$stamp"
  [ "$("$py" -m pip --version | cut -d' ' -f2)" = "$PIP_VERSION" ] \
    || "$py" -m pip install -q --disable-pip-version-check "pip==$PIP_VERSION"
  echo "bootstrap: installing $LOCK into $VENV"
  "$py" -m pip install -q --require-hashes --build-constraint "$BUILD_LOCK" -r "$LOCK"
  "$py" -m pip install -q --no-deps --build-constraint "$BUILD_LOCK" -e .
  check_venv report
  echo "$want" > "$stamp"
fi

"$VENV/bin/cadenza" stack prepare
# librosa's numba kernels, compiled once by one process before tests or the ETL run
# several at once (concurrent compiles can corrupt numba's cache: etl.features.warm_up).
"$VENV/bin/python" -c 'from etl.features import warm_up; warm_up()'
echo "bootstrap: done ($VENV ready)"
