#!/usr/bin/env bash
# Installs (if needed) and runs the server: scripts/serve.sh [diemcau serve options]
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec .venv/bin/diemcau serve "$@"
