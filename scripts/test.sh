#!/usr/bin/env bash
# Sets up everything the tests need on a fresh Debian machine and runs the whole suite:
# Debian's chromium, redis-server, nginx, openssl (test certificates) and nodejs (runs
# autoload.js in the security tests), installed when missing (needs root); .venv/
# with the project and its test extras, then `ruff check` and pytest. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
missing=()
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || missing+=(nginx)
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
command -v node >/dev/null 2>&1 || missing+=(nodejs)
if [ ${#missing[@]} -gt 0 ]; then
    echo "Installing Debian packages: ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
bash scripts/setup-venv.sh test
# Lint first, as CI does: --no-fix because pyproject's fix = true would rewrite files here.
.venv/bin/ruff check --no-fix .
exec .venv/bin/python -m pytest "$@"
