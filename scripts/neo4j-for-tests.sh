#!/usr/bin/env bash
# A Neo4j 5.26 (GDS + APOC) for the test suite, on its own port and data directory so
# that tests never wipe a developer's graph on 7687.
#
#   eval "$(bash scripts/neo4j-for-tests.sh env)"   # export HUNCH_NEO4J_* for pytest
#   bash scripts/neo4j-for-tests.sh start           # build if needed, start, wait for Bolt
#   bash scripts/neo4j-for-tests.sh stop
#   bash scripts/neo4j-for-tests.sh status
#
# Honours HUNCH_NEO4J_URI / _HOME / _PASSWORD / _USER when already set; the first start
# on a fresh machine downloads ~150 MB from Maven Central (a couple of minutes).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

# 7688: beside the developer default 7687, so both can run at once.
export HUNCH_NEO4J_URI="${HUNCH_NEO4J_URI:-bolt://127.0.0.1:7688}"
export HUNCH_NEO4J_USER="${HUNCH_NEO4J_USER:-neo4j}"
export HUNCH_NEO4J_PASSWORD="${HUNCH_NEO4J_PASSWORD:-hunch-test-password}"
export HUNCH_NEO4J_HOME="${HUNCH_NEO4J_HOME:-.neo4j/test}"
PYTHON="${PYTHON:-python3}"

case "${1:-}" in
  env)
    for name in HUNCH_NEO4J_URI HUNCH_NEO4J_USER HUNCH_NEO4J_PASSWORD HUNCH_NEO4J_HOME; do
      printf 'export %s=%q\n' "$name" "${!name}"
    done
    ;;
  start)  exec "$PYTHON" -m graph.server start ;;
  stop)   exec "$PYTHON" -m graph.server stop ;;
  status) exec "$PYTHON" -m graph.server status ;;
  *)
    echo "usage: $0 env|start|stop|status" >&2
    exit 2
    ;;
esac
