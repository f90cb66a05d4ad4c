#!/usr/bin/env bash
# The README's test command: install everything, start a real Neo4j, run the whole suite.
# Runs on a fresh machine with only Python 3.11, Java 17 and Maven.
set -euo pipefail
cd "$(dirname "$0")/.."

python3 -m pip install --quiet --disable-pip-version-check -e '.[dev]'

# Tests that need Neo4j fail (not skip) when CI=true, so CI must have a server.
if [ -f scripts/neo4j-for-tests.sh ]; then
  bash scripts/neo4j-for-tests.sh start
  trap 'bash scripts/neo4j-for-tests.sh stop || true' EXIT
fi

# pytest exits 5 when it collected nothing: that is a failure too (set -e).
python3 -m pytest "$@"
