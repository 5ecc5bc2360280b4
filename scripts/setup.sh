#!/usr/bin/env bash
# Installs what diemcau needs on a fresh Debian machine (idempotent): Debian packages, a venv
# in .venv, and the project with its test extras. Usage: scripts/setup.sh [--test]
set -euo pipefail
cd "$(dirname "$0")/.."

want_test=0
[ "${1:-}" = "--test" ] && want_test=1

python=${PYTHON:-python3}
# gcc + python3-dev: the optional compiled fan-out (sfu/_fanout.c); without them the install
# still succeeds and forwarding runs in pure Python.
apt_packages=(iproute2 gcc python3-dev)
"$python" -m venv --help >/dev/null 2>&1 || apt_packages+=(python3-venv)
[ "$want_test" = 1 ] && apt_packages+=(chromium firefox-esr util-linux redis-server coturn postgresql)  # redis: tests/cluster; coturn: TURN browser test; postgresql: the --store tests (tests/pgproc.py)
missing=()
for pkg in "${apt_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ "${#missing[@]}" -gt 0 ]; then
  sudo_cmd=""
  [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq "${missing[@]}" >/dev/null
fi

[ -x .venv/bin/python ] || "$python" -m venv .venv
# Install only when the project's requirements changed since the last install (or the extras
# grew): a server start then prints only the server's own lines.
extras=""
[ "$want_test" = 1 ] && extras="[test]"
stamp=.venv/.diemcau-installed
# The compiled helpers' C sources count too: a changed one must be built again.
want="$(find sfu loadtest -maxdepth 1 -name '*.[ch]' | sort | xargs cat pyproject.toml constraints.txt | sha256sum | cut -d' ' -f1) $extras"
have="$(cat "$stamp" 2>/dev/null || true)"
if [ "$have" != "$want" ] && ! { [ -z "$extras" ] && [ "$have" = "${want}[test]" ]; }; then
  echo "Installing diemcau into .venv (first start or changed requirements)..."
  log=.venv/pip-install.log
  if .venv/bin/python -m pip install -q --upgrade pip >"$log" 2>&1 \
     && .venv/bin/python -m pip install -q -c constraints.txt -e ".$extras" >>"$log" 2>&1; then
    echo "$want" > "$stamp"
  else
    tail -n 30 "$log"; echo "pip install failed (full log: $log)" >&2; exit 1
  fi
fi
.venv/bin/python -c "import aiortc, aiohttp, msgspec" # fail here, not later, if pip failed
.venv/bin/python -c "import sfu.native as n, sys; n.native_available() or sys.stderr.write(
    'note: sfu._fanout was not built (gcc, python3-dev?): forwarding runs in pure Python\\n')"
