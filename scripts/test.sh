#!/usr/bin/env bash
# Installs (if needed), lints, type-checks and runs the whole test suite inside a private network namespace that has
# only loopback (docs/architecture.md#network-namespaces: WebRTC stacks would otherwise use this machine's real interfaces).
# Extra arguments go to pytest, e.g. scripts/test.sh tests/unit -q
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --test
.venv/bin/ruff check .
# Type check ([tool.mypy] in pyproject.toml: which packages, strict on the pure cores); incremental
# through .mypy_cache, so a repeat run takes about a second.
.venv/bin/mypy
mkdir -p artifacts
# pytest exits 5 when no test was collected: that is a failure here too.
exec unshare -n sh -c 'ip link set lo up && exec .venv/bin/python -m pytest -p no:cacheprovider "$@"' sh "${@:--q}"
