"""The embedded follower graph keeps the API's follows across a restart: the in-memory
graph is rebuilt at every start, and an acknowledged follow or unfollow was gone
(helper-59's walkthrough of the demo)."""

from __future__ import annotations

import asyncio

from gateway.services import Services
from tests.gateway.test_app import settings  # noqa: F401 - the fixture


def _restarted(settings) -> Services:  # noqa: F811
    services = Services(settings)
    asyncio.run(services.start())
    return services


def test_follows_and_unfollows_survive_a_restart_over_the_follows_file(settings):  # noqa: F811
    path = settings.home / "follows.csv"
    path.write_text("FOLLOWER_ID,FOLLOWEE_ID,TIMESTAMP\nann,bob,1700000000\n"
                    "ann,cat,1700000000\n")
    settings = settings.model_copy(update={"follows_path": path})
    first = _restarted(settings)
    try:
        assert asyncio.run(first.followees("ann")) == ["bob", "cat"]
        asyncio.run(first.follow("ann", "dan"))
        assert asyncio.run(first.unfollow("ann", "bob")) is True  # listed in the file
        asyncio.run(first.follow("eve", "ann"))
        asyncio.run(first.unfollow("eve", "ann"))
        assert asyncio.run(first.unfollow("eve", "zed")) is False  # nothing to undo
    finally:
        asyncio.run(first.close())

    second = _restarted(settings)
    try:
        assert asyncio.run(second.followees("ann")) == ["cat", "dan"]
        assert asyncio.run(second.followees("eve")) == []
    finally:
        asyncio.run(second.close())


def test_polls_authored_are_known_to_the_graph_without_a_follows_file(settings):  # noqa: F811
    """The in-network source reads followees' polls from the graph: their authorship is
    loaded at start whether the follows come from a file or from the journal."""
    services = _restarted(settings)  # the fixture's home has no follows.csv
    try:
        asyncio.run(services.follow("reader", "a1"))
        polls = asyncio.run(services.graph.polls_by_authors(["a1"], 5))
        assert len(polls) == 5 and all(p.startswith("p") for p in polls), polls
    finally:
        asyncio.run(services.close())
