"""A web page on another origin calls the gateway from a real browser (headless Chromium,
which enforces CORS as every browser does): served when its origin is listed in
HUNCH_CORS_ORIGINS, refused by the browser when it is not. Node's fetch, which the other
client tests use, does not enforce CORS at all, so only a browser can tell."""

from __future__ import annotations

import functools
import html
import http.server
import json
import re
import shutil
import subprocess
import threading
from pathlib import Path

import pytest

from gateway.app import cors_origins
from gateway.settings import Settings
from recsys.errors import HunchError
from tests.conftest import require_or_skip
from tests.integration.conftest import Server, _free_port, _user, token

FEED = "query { feed(first: 5) { edges { cursor node { id } } } }"

# The page asks for a feed page with the user's token and JSON (both need a preflight),
# then writes what it got (or the browser's error) into the body for --dump-dom.
PAGE = """<!doctype html><html><body><script>
fetch(%(url)s, {method: "POST", body: JSON.stringify({query: %(query)s}),
                headers: {"content-type": "application/json",
                          "authorization": "Bearer " + %(token)s,
                          "apollographql-client-name": "hunch-web"}})
  .then(r => r.json())
  .then(j => document.body.setAttribute("data-result", JSON.stringify(j)))
  .catch(e => document.body.setAttribute("data-error", String(e)));
</script></body></html>"""


@pytest.fixture(scope="module")
def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    require_or_skip(found is not None, "chromium is needed for the browser checks "
                                       "(scripts/test.sh installs it with apt)")
    return found


class _Site:
    """A static web site on its own origin (127.0.0.1 and a port of its own)."""

    def __init__(self, root: Path):
        self.port = _free_port()
        handler = functools.partial(_QuietHandler, directory=str(root))
        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


def _open(chromium: str, url: str, profile: Path) -> dict:
    """What the page wrote once its script settled (virtual time lets headless Chromium
    wait for the requests before it dumps the page)."""
    done = subprocess.run(
        [chromium, "--headless=new", "--no-sandbox", "--disable-gpu",
         f"--user-data-dir={profile}", "--virtual-time-budget=20000", "--dump-dom", url],
        capture_output=True, text=True, timeout=120)
    body = re.search(r"<body([^>]*)>", done.stdout)
    assert body, f"no page from chromium: {done.stdout[-500:]} {done.stderr[-1500:]}"
    attributes = dict(re.findall(r'(data-\w+)="([^"]*)"', body.group(1)))
    return {name: html.unescape(value) for name, value in attributes.items()}


def test_a_listed_origin_gets_the_feed_and_others_are_refused_by_the_browser(
        chromium, home, tmp_path):
    allowed, other = tmp_path / "allowed", tmp_path / "other"
    sites = [_Site(allowed), _Site(other)]
    server = Server(home, HUNCH_CORS_ORIGINS=json.dumps([sites[0].origin])).start()
    try:
        page = PAGE % {"url": json.dumps(f"{server.url}/graphql"),
                       "query": json.dumps(FEED), "token": json.dumps(token(_user(home)))}
        for root in (allowed, other):
            root.mkdir()
            (root / "index.html").write_text(page)

        served = _open(chromium, f"{sites[0].origin}/index.html", tmp_path / "profile-1")
        assert "data-error" not in served, served
        edges = json.loads(served["data-result"])["data"]["feed"]["edges"]
        assert len(edges) == 5 and len({e["cursor"] for e in edges}) == 5

        refused = _open(chromium, f"{sites[1].origin}/index.html", tmp_path / "profile-2")
        assert refused == {"data-error": "TypeError: Failed to fetch"}, refused
    finally:
        server.stop()
        for site in sites:
            site.close()


@pytest.mark.parametrize("origin", ["https://hunch.app/", "hunch.app", "https://hunch.app/feed",
                                    "https://hunch.app?x=1"])
def test_an_origin_written_so_that_no_browser_would_send_it_is_refused(origin, tmp_path):
    with pytest.raises(HunchError, match="not an origin"):
        cors_origins(Settings(home=tmp_path, cors_origins=[origin]))
    assert cors_origins(Settings(home=tmp_path, cors_origins=["https://hunch.app:8443", "*"]))
