#!/usr/bin/env bash
# The README's test command: install everything, start a real Neo4j, run the whole suite.
# Runs on a fresh machine with only Python 3.11, Java 17 and Maven (as root, for apt).
set -euo pipefail
cd "$(dirname "$0")/.."

python3 -m pip install --quiet --disable-pip-version-check -e '.[dev]'

# Redis backs multi-host feed sessions; its tests start their own server from this binary.
if ! command -v redis-server >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null
  else
    echo "redis-server missing: install it (e.g. apt-get install redis-server)" >&2
  fi
fi

# PostgreSQL backs the several-hosts event store; its tests start throwaway clusters
# (tests/servers.py) from the server binaries, which Debian keeps in /usr/lib/postgresql.
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 && ! command -v initdb >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
  else
    echo "PostgreSQL missing: install it (e.g. apt-get install postgresql)" >&2
  fi
fi

# Chromium runs the browser checks (CORS is enforced by browsers only).
if ! command -v chromium >/dev/null 2>&1 && ! command -v chromium-browser >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  else
    echo "chromium missing: install it (e.g. apt-get install chromium)" >&2
  fi
fi

# Tests that need Neo4j fail (not skip) when CI=true, so CI must have a server.
eval "$(bash scripts/neo4j-for-tests.sh env)"  # HUNCH_NEO4J_* for the tests
bash scripts/neo4j-for-tests.sh start
trap 'bash scripts/neo4j-for-tests.sh stop || true' EXIT

# pytest exits 5 when it collected nothing: that is a failure too (set -e).
python3 -m pytest "$@"
