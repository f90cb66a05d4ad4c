"""A daily quota over real HTTP: ``hunch serve --workers 2`` on the default session
store (SQLite), one user's follows spread over both workers, and a restart of the
server on the same HUNCH_HOME."""

from __future__ import annotations

from pathlib import Path

from prometheus_client.multiprocess import MultiProcessCollector

from tests.integration.conftest import Server, token

FOLLOW = 'mutation($u: ID!) { follow(userId: $u) { __typename } }'
QUOTA = 3


def _follows_per_worker(home: Path) -> dict[str, float]:
    """Follow mutations each worker answered (pid: count), from its own files of
    metrics under HUNCH_HOME/metrics-workers (HUNCH_METRICS_ACROSS_WORKERS): the ones
    it carried out (their latency) and the ones it refused (RATE_LIMITED errors; this
    server answers no other request that is refused so)."""
    served: dict[str, float] = {}
    for path in (home / "metrics-workers").glob("*.db"):
        pid = path.stem.rsplit("_", 1)[1]
        for metric in MultiProcessCollector.merge([str(path)], accumulate=True):
            for sample in metric.samples:
                if ((sample.name == "hunch_graphql_operation_seconds_count"
                     and sample.labels.get("operation") == "follow")
                        or (sample.name == "hunch_graphql_errors_total"
                            and sample.labels.get("code") == "RATE_LIMITED")):
                    served[pid] = served.get(pid, 0.0) + sample.value
    return served


def _kind(response) -> str:
    body = response.json()
    if body.get("errors"):
        error = body["errors"][0]
        assert "too many follows and unfollows today" in error["message"], body
        return error["extensions"]["code"]
    return body["data"]["follow"]["__typename"]


def test_a_daily_quota_holds_across_two_workers_and_a_restart(home):
    """Per worker, each of N workers let a user make the whole quota and a restart
    forgot every count. Each request below is a new connection, which either worker
    may take: it goes on until both have answered more than the quota's worth, so
    per-worker counting would have let 2x through."""
    env = {"HUNCH_FOLLOW_CHANGES_PER_DAY": str(QUOTA), "HUNCH_METRICS_ACROSS_WORKERS": "true"}
    user = "quota-http-churner"
    srv = Server(home, workers=2, **env).start()
    try:
        answers = []
        for k in range(200):
            answers.append(_kind(srv.gql(FOLLOW, {"u": f"quota-followee-{k}"}, token(user))))
            served = _follows_per_worker(home)
            if len(served) == 2 and min(served.values()) > QUOTA:
                break
        assert len(served) == 2 and min(served.values()) > QUOTA, (
            f"the follows never reached both workers: {served}")
        assert answers[:QUOTA] == ["FollowChanged"] * QUOTA, answers
        assert set(answers[QUOTA:]) == {"RATE_LIMITED"}, answers
        # another user is not held back by this one
        assert _kind(srv.gql(FOLLOW, {"u": "quota-followee-0"},
                             token("quota-http-other"))) == "FollowChanged"
    finally:
        srv.stop()
    restarted = Server(home, workers=2, **env).start()
    try:
        for k in range(4):  # whichever worker answers, the count survived the restart
            assert _kind(restarted.gql(FOLLOW, {"u": f"quota-again-{k}"},
                                       token(user))) == "RATE_LIMITED"
        assert (home / "quotas.sqlite3").exists()
    finally:
        restarted.stop()
