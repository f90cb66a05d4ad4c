"""`hunch serve --workers 2` logs every worker's lines as JSON on stderr. uvicorn spawns
its workers afresh, and the logging set up in the parent never reached them: a worker's
start, warnings and errors were lost (or plain text through Python's last resort)."""

from __future__ import annotations

import json
import time

from tests.integration.conftest import Server


def _json_lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def test_each_worker_logs_json_lines(home):
    server = Server(home, workers=2).start()
    try:
        deadline = time.time() + 120  # both workers up: each logs "gateway ready"
        while True:
            lines = _json_lines(server.log.read_text())
            ready = [line for line in lines if line.get("msg") == "gateway ready"]
            if len(ready) >= 2 or time.time() > deadline:
                break
            time.sleep(0.5)
    finally:
        server.stop()
    assert len(ready) == 2, server.log.read_text()[-3000:]
    assert all(line["level"] == "info" and line["logger"] == "gateway" for line in ready)
    # nothing on stderr but JSON lines (no plain text from a last-resort handler)
    text = server.log.read_text()
    assert [line for line in text.splitlines() if line and not line.startswith("{")] == []
