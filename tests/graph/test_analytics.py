"""The Python clustering path on a planted follow graph, end to end against the real
InMemoryGraphStore, real files on disk and the real `hunch graph cluster` command."""

from __future__ import annotations

import asyncio
import csv
import json
import socket
from pathlib import Path

import matplotlib.image
import numpy as np
import pytest
from click.testing import CliRunner

from graph.analytics import (
    KNOWN_USER_FIELDS,
    ClusterOptions,
    InvalidUsersDataset,
    analyze_edges,
    cluster_store,
    export_users_dataset,
    plant_follow_graph,
)
from graph.memory_store import InMemoryGraphStore
from graph.store import Follow, Labels

PLANTED_COMMUNITIES = 8


@pytest.fixture(scope="module")
def planted():
    return plant_follow_graph(n_users=2_000, n_communities=PLANTED_COMMUNITIES, seed=3)


@pytest.fixture(scope="module")
def chosen_over_range(planted):
    follows, truth = planted
    return analyze_edges(follows, ClusterOptions(k_range=(4, 12)), ground_truth=truth)


def test_communities_recover_the_planted_partition(chosen_over_range):
    nmi = chosen_over_range.summary["nmi"]
    assert nmi["community"] >= 0.9
    assert nmi["leiden"] >= 0.9 and nmi["louvain"] >= 0.9
    communities = chosen_over_range.summary["communities"]
    chosen = chosen_over_range.summary["community_method"]
    assert communities[chosen]["modularity"] == max(c["modularity"] for c in communities.values())


def test_k_is_chosen_over_the_range_with_modularity_beside_silhouette(chosen_over_range):
    km = chosen_over_range.summary["kmeans"]
    assert set(km["silhouette_by_k"]) == {str(k) for k in range(4, 13)}
    assert set(km["modularity_by_k"]) == set(km["silhouette_by_k"])
    # The planted number of communities is the answer on this graph.
    assert km["k"] == PLANTED_COMMUNITIES
    assert chosen_over_range.summary["nmi"]["cluster"] >= 0.9
    assert km["modularity"] > 0.5


def test_kmeans_with_a_given_k_returns_k_clusters(planted):
    follows, _ = planted
    outcome = analyze_edges(follows, ClusterOptions(k=5, methods=("leiden",)))
    clusters = {lab.cluster for lab in outcome.labels.values()} - {"none"}
    assert clusters == {f"c{i}" for i in range(5)}
    assert outcome.summary["kmeans"]["chosen_by"] == "given"
    sizes = outcome.summary["kmeans"]["sizes"]
    assert sizes["c0"] == max(sizes.values())  # c0 names the largest cluster


def test_small_components_share_the_label_none():
    follows, _ = plant_follow_graph(n_users=400, n_communities=3, seed=1)
    follows = follows + [("pair-a", "pair-b"), ("pair-b", "pair-a")]
    outcome = analyze_edges(follows, ClusterOptions(k=3, methods=("leiden",)))
    assert outcome.labels["pair-a"] == Labels("none", "none")
    assert outcome.labels["u0"].community.startswith("m")
    assert outcome.summary["users_labelled_none"] == 2


def test_structural_features_alone_do_not_find_communities(planted, chosen_over_range):
    """Why K-Means gets the embedding: roles (degrees, betweenness, clustering) carry no
    community, and the labels' modularity shows it (docs/evidence-methods.md)."""
    follows, _ = planted
    roles = analyze_edges(follows, ClusterOptions(k=8, methods=("leiden",), feature_set="all"))
    place = chosen_over_range.summary["kmeans"]
    assert place["k"] == roles.summary["kmeans"]["k"]
    assert place["modularity"] > roles.summary["kmeans"]["modularity"]


@pytest.fixture(scope="module")
def pipeline_run(planted, tmp_path_factory):
    """One run of the whole pipeline against the in-memory store: (outcome, stored labels,
    output directory)."""
    follows, _ = planted
    out = tmp_path_factory.mktemp("cluster")
    store = InMemoryGraphStore()

    async def go():
        await store.upsert_follows(Follow(a, b, 1_700_000_000) for a, b in follows)
        await store.upsert_users(["lurker"])
        outcome = await cluster_store(store, out, ClusterOptions(k=PLANTED_COMMUNITIES))
        return outcome, await store.labels()

    outcome, stored = asyncio.run(go())
    return outcome, stored, out


def test_labels_are_written_to_the_store_and_exported(pipeline_run):
    outcome, stored, tmp_path = pipeline_run
    assert stored == outcome.labels
    assert stored["lurker"] == Labels("none", "none")  # a user who follows nobody
    assert stored["u1"].cluster.startswith("c") and stored["u1"].community.startswith("m")
    with (tmp_path / "users.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert {r["USER_ID"] for r in rows} == set(stored)
    assert {r["USER_ID"]: (r["CLUSTER"], r["COMMUNITY"]) for r in rows} == {
        u: (lab.cluster, lab.community) for u, lab in stored.items()
    }


def test_report_has_numbers_and_readable_plots(pipeline_run):
    _, _, tmp_path = pipeline_run
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["engine"] == "python"
    assert report["users"] == 2_000  # users in the follow graph
    assert report["users_labelled"] == 2_001  # and the lurker, who follows nobody
    assert 0 < report["kmeans"]["silhouette"] <= 1
    assert 0 < report["communities"]["leiden"]["modularity"] < 1
    assert sum(report["community_sizes"].values()) == report["users_labelled"]
    assert report["community_sizes"]["none"] == report["users_labelled_none"] >= 1
    assert report["timings_s"]["total"] > 0
    for name in ("cluster_sizes.png", "silhouette_by_k.png", "projection.png"):
        image = matplotlib.image.imread(tmp_path / name)
        assert image.shape[0] > 100 and image.shape[1] > 100
        assert np.ptp(image) > 0  # something was drawn


def test_export_merges_an_existing_users_csv_and_schema_is_valid(tmp_path):
    from recsys.schemas import USERS, schema_from_avro

    existing = tmp_path / "in" / "users.csv"
    existing.parent.mkdir()
    existing.write_text("USER_ID,AGE,LOCALE,CLUSTER,COMMUNITY\nu1,34,en_GB,old,old\nu2,,fr_FR,,\n")
    labels = {"u1": Labels("c0", "m1"), "u3": Labels("c2", "m0")}
    out = tmp_path / "out"
    path = export_users_dataset(labels, out, users_csv=existing)
    with path.open() as fh:
        reader = csv.DictReader(fh)
        assert reader.fieldnames == ["USER_ID", "AGE", "LOCALE", "CLUSTER", "COMMUNITY"]
        rows = {r["USER_ID"]: r for r in reader}
    assert rows["u1"] == {"USER_ID": "u1", "AGE": "34", "LOCALE": "en_GB", "CLUSTER": "c0", "COMMUNITY": "m1"}
    assert (rows["u2"]["LOCALE"], rows["u2"]["CLUSTER"]) == ("fr_FR", "none")
    assert rows["u3"]["CLUSTER"] == "c2" and rows["u3"]["AGE"] == ""
    avro = json.loads((out / "users.schema.json").read_text())
    assert avro["namespace"] == "com.amazonaws.personalize.schema"
    schema = schema_from_avro("users", avro)  # raises on an invalid Personalize schema
    assert schema == USERS
    assert [f for f in out.iterdir() if f.name.startswith(".")] == []  # no temp files left


def test_known_user_fields_match_the_engine_schema():
    from recsys.schemas import USERS

    for name, avro in KNOWN_USER_FIELDS.items():
        assert USERS.field(name).to_avro() == avro


def test_export_refuses_more_metadata_than_personalize_allows(tmp_path):
    (tmp_path / "users.csv").write_text("USER_ID,A,B,C,D,E\nu1,1,2,3,4,5\n")
    with pytest.raises(InvalidUsersDataset, match="at most 5"):
        export_users_dataset({"u1": Labels("c0", "m0")}, tmp_path)
    assert (tmp_path / "users.csv").read_text().startswith("USER_ID,A,B")  # untouched


def _write_follows(path: Path, follows) -> None:
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["FOLLOWER_ID", "FOLLOWEE_ID", "TIMESTAMP"])
        w.writerows((a, b, 1_700_000_000) for a, b in follows)


def test_cli_cluster_with_the_memory_store(planted, tmp_path):
    from gateway.cli import cli

    follows, truth = planted
    _write_follows(tmp_path / "follows.csv", follows)
    (tmp_path / "ground_truth.json").write_text(json.dumps({"communities": truth}))
    out = tmp_path / "report"
    result = CliRunner().invoke(cli, [
        "graph", "cluster", "--follows", str(tmp_path / "follows.csv"), "--k", "8",
        "--ground-truth", str(tmp_path / "ground_truth.json"), "--out", str(out),
    ])
    assert result.exit_code == 0, result.output
    report = json.loads((out / "report.json").read_text())
    assert report["nmi"]["community"] >= 0.9
    assert (out / "users.csv").exists() and (out / "users.schema.json").exists()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_cli_with_unreachable_neo4j_says_so_and_writes_nothing(tmp_path, monkeypatch):
    from gateway.cli import cli

    monkeypatch.setenv("HUNCH_NEO4J_URI", f"bolt://127.0.0.1:{_free_port()}")
    out = tmp_path / "report"
    result = CliRunner().invoke(cli, ["graph", "cluster", "--store", "neo4j", "--out", str(out)])
    assert result.exit_code == 2
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "unreachable" in lines[0]
    assert not out.exists()


def test_cli_refuses_a_follows_file_neo4j_would_ignore(tmp_path):
    """With --store neo4j and no --load, --follows was read and then ignored: the graph
    Neo4j held was clustered while the user believed their file was."""
    from gateway.cli import cli

    follows = tmp_path / "follows.csv"
    follows.write_text("FOLLOWER_ID,FOLLOWEE_ID,TIMESTAMP\nu1,u2,1700000000\n")
    out = tmp_path / "report"
    result = CliRunner().invoke(cli, ["graph", "cluster", "--store", "neo4j", "--follows",
                                      str(follows), "--out", str(out)])
    assert result.exit_code == 2, result.output
    assert "needs --load" in result.output
    assert not out.exists()


# -- graphs without cluster structure -------------------------------------------------------

def _clique(n: int) -> list[tuple[str, str]]:
    return [(f"k{a}", f"k{b}") for a in range(n) for b in range(n) if a != b]


def _star(leaves: int) -> list[tuple[str, str]]:
    return [pair for i in range(1, leaves + 1) for pair in (("hub", f"x{i}"), (f"x{i}", "hub"))]


def test_choose_k_gives_one_cluster_when_every_k_has_negative_modularity():
    from graph.clustering import ONE_CLUSTER, choose_k

    k, how = choose_k({4: 0.3, 5: 0.2}, {4: -0.18, 5: -0.21})
    assert k == ONE_CLUSTER
    assert "no cluster structure" in how and "k=4" in how
    assert choose_k({4: 0.3, 5: 0.2}, {4: 0.0, 5: -0.1})[0] == 4  # 0 still keeps the floor


@pytest.mark.parametrize("follows", [_clique(8), _star(6)], ids=["clique8", "star6"])
def test_a_graph_without_cluster_structure_gets_one_cluster_and_a_note(follows):
    outcome = analyze_edges(follows, ClusterOptions())
    km = outcome.summary["kmeans"]
    assert km["k"] == 1 and km["modularity"] == 0.0 and km["silhouette"] == 0.0
    assert "no cluster structure" in km["note"]
    assert all(m < 0 for m in km["modularity_by_k"].values())  # the evidence stays reported
    assert {lab.cluster for lab in outcome.labels.values()} == {"c0"}


def test_cli_cluster_on_a_clique_writes_one_cluster_and_says_why(tmp_path):
    from gateway.cli import cli

    _write_follows(tmp_path / "follows.csv", _clique(8))
    out = tmp_path / "report"
    result = CliRunner().invoke(cli, ["graph", "cluster", "--follows",
                                      str(tmp_path / "follows.csv"), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "K-Means k=1" in result.output and "no cluster structure" in result.output
    with (out / "users.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 8 and {r["CLUSTER"] for r in rows} == {"c0"}
    assert json.loads((out / "report.json").read_text())["kmeans"]["k"] == 1


def test_a_second_run_keeps_the_groups_names(planted, tmp_path):
    """helper-64: the algorithms number their groups anew each run, so an unchanged graph
    gave 562 of 2,003 users another CLUSTER (u0000: c9, then c5). Each group now keeps
    the name of the previous run's group it shares most users with (the store's labels,
    or the users.csv being merged), whatever numbering the algorithms chose."""
    import copy

    from graph.analytics import align_labels, finish

    follows, _ = planted
    out = tmp_path / "cluster"

    async def first_run():
        store = InMemoryGraphStore()
        await store.upsert_follows(Follow(a, b, 1_700_000_000) for a, b in follows)
        return await cluster_store(store, out, ClusterOptions(k=PLANTED_COMMUNITIES)), store

    first, store = asyncio.run(first_run())

    def renumbered() -> object:
        """The same groups as a later run may number them: every name moved by one."""
        clusters = sorted({lab.cluster for lab in first.labels.values()} - {"none"})
        communities = sorted({lab.community for lab in first.labels.values()} - {"none"})
        shift = {**{c: clusters[(i + 1) % len(clusters)] for i, c in enumerate(clusters)},
                 **{m: communities[(i + 1) % len(communities)]
                    for i, m in enumerate(communities)}, "none": "none"}
        outcome = copy.deepcopy(first)
        outcome.labels = {u: Labels(shift[lab.cluster], shift[lab.community])
                          for u, lab in first.labels.items()}
        assert sum(outcome.labels[u] == first.labels[u] for u in first.labels) < 100
        return outcome

    # Through the store's labels (Neo4j keeps them), then through users.csv alone (a
    # fresh in-memory store, as `hunch graph cluster --follows` builds each run).
    fresh = InMemoryGraphStore()
    asyncio.run(fresh.upsert_follows(Follow(a, b, 1_700_000_000) for a, b in follows))
    for again_store in (store, fresh):
        outcome = renumbered()
        asyncio.run(finish(again_store, outcome, out, None))
        assert outcome.labels == first.labels
    # The matching itself: a swapped numbering is undone, a new group gets a free name.
    previous = {"u1": Labels("c0", "m0"), "u2": Labels("c0", "m0"), "u3": Labels("c1", "m1")}
    swapped = {"u1": Labels("c1", "m1"), "u2": Labels("c1", "m1"), "u3": Labels("c0", "m0"),
               "u4": Labels("c2", "none")}
    assert align_labels(swapped, previous) == {
        "u1": Labels("c0", "m0"), "u2": Labels("c0", "m0"), "u3": Labels("c1", "m1"),
        "u4": Labels("c2", "none")}
    assert align_labels({"u9": Labels("c0", "m3")}, previous) == {"u9": Labels("c2", "m2")}


@pytest.mark.parametrize("column", ["cluster", "Community", "CLUSTER_"])
def test_a_users_column_personalize_takes_for_a_label_is_refused_before_clustering(
        tmp_path, column):
    """helper-75: a users.csv with a `cluster` column got CLUSTER beside it: two labels
    per user locally, and a schema Amazon refuses ("Schema fields must have unique
    alphanumeric names")."""
    from gateway.cli import cli

    follows = tmp_path / "follows.csv"
    users = [f"{g}{i}" for g in "xy" for i in range(6)]
    follows.write_text("FOLLOWER_ID,FOLLOWEE_ID,TIMESTAMP\n" + "".join(
        f"{a},{b},1700000000\n" for a in users for b in users if a != b and a[0] == b[0]))
    users_csv = tmp_path / "in" / "users.csv"
    users_csv.parent.mkdir()
    users_csv.write_text(f"USER_ID,{column}\n" + "".join(f"{u},old\n" for u in users))
    out = tmp_path / "out"
    result = CliRunner().invoke(cli, ["graph", "cluster", "--follows", str(follows),
                                      "--users-csv", str(users_csv), "--out", str(out)])
    assert result.exit_code == 2, result.output
    assert f"rename or drop {column!r}" in result.stderr, result.stderr
    assert not out.exists()
