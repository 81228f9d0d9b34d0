#!/usr/bin/env bash
# Sets up .venv/ and runs the demo site with runbokeh on http://localhost:5006/
# (SQLite, in-memory channel layer, BokehJS served by the site itself). Extra arguments
# go to runbokeh, e.g. scripts/demo.sh --port 5100.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup-venv.sh
.venv/bin/python manage.py migrate --noinput >/dev/null
exec .venv/bin/python manage.py runbokeh "$@"
