"""``hunch graph``: follower-graph analytics (``cluster``: features, K-Means, communities,
labels written back, Users dataset exported, report), ``load`` (Personalize-format CSVs into
Neo4j) and ``query`` (the analysts' Cypher queries of graph/cypher/, as a table)."""

from __future__ import annotations

import asyncio
import csv
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click

from recsys.errors import HunchError


class GraphCommandError(HunchError):
    """A graph error (unreachable Neo4j, bad input file, ...) surfaced by the CLI."""


def _k_range(value: str) -> tuple[int, int]:
    try:
        low, high = (int(part) for part in value.split(":"))
    except ValueError:
        raise click.BadParameter(f"{value!r}: write the range as LOW:HIGH, e.g. 4:30") from None
    if not 2 <= low <= high:
        raise click.BadParameter(f"{value!r}: need 2 <= LOW <= HIGH")
    return low, high


@click.group()
def graph() -> None:
    """The follower graph: clustering users and exporting their labels."""


@graph.command()
@click.option("--store", "store_kind", type=click.Choice(["memory", "neo4j"]), default="memory",
              show_default=True, help="memory loads --follows into this process; neo4j uses "
              "HUNCH_NEO4J_URI/USER/PASSWORD.")
@click.option("--follows", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="follows.csv (FOLLOWER_ID, FOLLOWEE_ID, TIMESTAMP).")
@click.option("--load", is_flag=True, help="With --store neo4j: load --follows into Neo4j first.")
@click.option("--k", type=click.IntRange(min=2), help="Number of K-Means clusters.")
@click.option("--k-range", default="4:30", show_default=True,
              help="LOW:HIGH range to choose k from when --k is not given.")
@click.option("--method", type=click.Choice(["leiden", "louvain", "both"]), default="both",
              show_default=True, help="Community detection; with both, the higher modularity wins.")
@click.option("--engine", type=click.Choice(["auto", "gds", "python"]), default="auto",
              show_default=True, help="auto uses GDS when Neo4j has the plugin.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path),
              default=Path("graph-report"), show_default=True,
              help="Where users.csv, users.schema.json, report.json and plots go.")
@click.option("--users-csv", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="An existing users.csv whose other columns are kept.")
@click.option("--ground-truth", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="ground_truth.json with planted communities: the report adds NMI.")
@click.option("--seed", default=0, show_default=True, type=int)
def cluster(store_kind: str, follows: Path | None, load: bool, k: int | None, k_range: str,
            method: str, engine: str, out_dir: Path, users_csv: Path | None,
            ground_truth: Path | None, seed: int) -> None:
    """Cluster users by whom they follow, write CLUSTER/COMMUNITY labels back to the
    graph store and export them as the Users dataset."""
    from graph.analytics import ClusterOptions
    from graph.errors import GraphError

    options = ClusterOptions(
        k=k, k_range=_k_range(k_range),
        methods=("leiden", "louvain") if method == "both" else (method,), seed=seed,
    )
    try:
        _check_users_csv(users_csv or out_dir / "users.csv")
        summary = asyncio.run(_run(store_kind, follows, load, engine, options, out_dir,
                                   users_csv, ground_truth))
    except GraphError as exc:
        raise GraphCommandError(str(exc)) from exc
    km = summary["kmeans"]
    click.echo(
        f"{summary['users']} users, {summary['follows']} follows, engine {summary['engine']}: "
        f"K-Means k={km['k']} (silhouette {km['silhouette']}, modularity {km['modularity']}); "
        f"{summary['community_method']} communities "
        f"{summary['communities'][summary['community_method']]['count']} "
        f"(modularity {summary['communities'][summary['community_method']]['modularity']})"
    )
    if km.get("note"):
        click.echo(f"note: {km['note']}")
    if summary.get("nmi"):
        click.echo(f"NMI against the ground truth: {summary['nmi']}")
    click.echo(f"wrote {out_dir}/users.csv, users.schema.json, report.json and plots")


def _check_users_csv(path: Path) -> None:
    """The users.csv whose rows and columns `cluster` keeps (--users-csv, else the one
    already in --out) must pass `hunch data import` under the schema cluster writes for
    it, or the exported users.csv would not: checked before anything is clustered."""
    if not path.exists():
        return
    from graph.analytics import LABEL_FIELDS, USERS_SCHEMA, _read_users, _users_schema
    from recsys.datasets import file_problems
    from recsys.schemas import schema_from_avro

    try:
        header, _ = _read_users(path)
    except (UnicodeDecodeError, csv.Error) as exc:
        raise GraphCommandError(f"{path}: unreadable users file ({exc}); save it as UTF-8 "
                                "CSV") from None
    header += [name for name in LABEL_FIELDS if name not in header]
    schema = schema_from_avro("users", _users_schema(header, path.parent / USERS_SCHEMA),
                              source=str(path.parent / USERS_SCHEMA))
    problems = file_problems(path, schema, key="USER_ID")
    if problems:
        shown = problems[:20]
        more = f"\n... and {len(problems) - len(shown)} more" if len(problems) > 20 else ""
        raise GraphCommandError(
            f"{len(problems)} problem(s) in {path}, which `hunch graph cluster` would merge "
            "into the users.csv it writes (and `hunch data import` would refuse); nothing "
            "was clustered:\n" + "\n".join(shown) + more)


async def _run(store_kind, follows, load, engine, options, out_dir, users_csv, ground_truth):
    from rich.console import Console

    from graph.analytics import (
        GraphAnalyticsError,
        cluster_store,
        load_ground_truth,
        read_follows_csv,
    )
    from graph.store import Follow

    console = Console(stderr=True)
    if store_kind == "neo4j" and follows is not None and not load:
        # Read and then ignored, the file looked clustered while Neo4j's graph was.
        raise GraphAnalyticsError(
            "--follows with --store neo4j needs --load to load the file into Neo4j first; "
            "without --follows, the graph Neo4j already holds is clustered")
    truth = load_ground_truth(ground_truth) if ground_truth else None
    rows = read_follows_csv(follows) if follows else None
    if rows == []:
        raise GraphAnalyticsError(f"{follows}: no follows after the header; add rows "
                                  "FOLLOWER_ID,FOLLOWEE_ID,TIMESTAMP")
    with console.status("starting") as status:
        def progress(step: str) -> None:
            console.log(step)
            status.update(step)

        if store_kind == "memory":
            if engine == "gds":
                raise GraphAnalyticsError("--engine gds needs --store neo4j")
            if rows is None:
                raise GraphAnalyticsError(
                    "the in-process store starts empty: pass --follows follows.csv"
                )
            from graph.memory_store import InMemoryGraphStore

            store = InMemoryGraphStore()
            await store.upsert_follows(Follow(a, b, t) for a, b, t in rows)
            outcome = await cluster_store(store, out_dir, options, users_csv, truth, progress)
            return outcome.summary

        from graph.gds import GdsUnavailable, cluster_in_gds, gds_version, neo4j_settings, open_driver
        from graph.neo4j_store import Neo4jGraphStore

        settings = neo4j_settings()
        # Reachability first, so an unreachable server fails before anything is written.
        driver = await asyncio.to_thread(open_driver, settings.uri, settings.user, settings.password)
        store = Neo4jGraphStore(settings.uri, settings.user, settings.password)
        try:
            if load:
                if rows is None:
                    raise GraphAnalyticsError("--load needs --follows follows.csv")
                progress(f"loading {len(rows)} follows into Neo4j")
                await store.ensure_schema()
                await store.upsert_follows(Follow(a, b, t) for a, b, t in rows)
            version = await asyncio.to_thread(gds_version, driver) if engine != "python" else None
            if engine == "gds" and version is None:
                raise GdsUnavailable(
                    f"Neo4j at {settings.uri} has no GDS plugin (gds.version() failed): "
                    "install it or use --engine python"
                )
            if version is not None:
                progress(f"GDS {version} found: running inside Neo4j")
                outcome = await cluster_in_gds(store, driver, out_dir, options, users_csv, truth,
                                               progress)
            else:
                outcome = await cluster_store(store, out_dir, options, users_csv, truth, progress)
            return outcome.summary
        finally:
            driver.close()
            await store.close()


# -- hunch graph load ------------------------------------------------------------------

# Rows of interactions.csv held at once: engagements stream into Neo4j in chunks this big,
# so a file of millions of events loads in bounded memory (the store batches each chunk).
LOAD_CHUNK_ROWS = 50_000
# Personalize's EVENT_TYPE column is optional; without it every event is of this one type.
DEFAULT_EVENT_TYPE = "INTERACTION"


# Problems listed in a refusal, as `hunch data import` lists them; the rest are counted.
MAX_SHOWN_LOAD_PROBLEMS = 20
MAX_EVENT_TYPE_CHARS = 256


class _Problems:
    """``file:line: reason`` of one file, listed together: nothing is loaded on any."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.shown: list[str] = []
        self.total = 0

    def add(self, line: int, reason: str) -> None:
        self.total += 1
        if len(self.shown) < MAX_SHOWN_LOAD_PROBLEMS:
            self.shown.append(f"{self.path}:{line}: {reason}")

    def raise_any(self) -> None:
        if self.total:
            more = (f"\n... and {self.total - len(self.shown)} more"
                    if self.total > len(self.shown) else "")
            raise GraphCommandError(f"{self.total} problem(s) in {self.path}, nothing was "
                                    "loaded:\n" + "\n".join(self.shown) + more)


def _csv_rows(path: Path, required: tuple[str, ...], what: str,
              problems: _Problems) -> Iterator[tuple[int, dict]]:
    """(line number, row) of a CSV, after checking its header names ``required``; a
    line that is not UTF-8, unreadable quoting or a row without one field per column
    is a problem (and no row)."""
    from hunchio.lines import NotUtf8, utf8_lines

    def not_utf8(at: NotUtf8) -> None:
        problems.add(at.line, f"not UTF-8 (byte 0x{at.byte:02x} at byte {at.position} of "
                              "the line); save the file as UTF-8")

    try:
        with path.open("rb") as fh:  # decoded line by line; a BOM is no column
            reader = csv.DictReader(utf8_lines(fh, not_utf8))
            try:
                missing = [c for c in required if c not in (reader.fieldnames or [])]
                if missing and not problems.total:
                    raise GraphCommandError(
                        f"{path}: missing column(s) {missing}; a {what} file needs "
                        f"{', '.join(required)}")
                for row in reader:
                    line = reader.line_num
                    if None in row or None in row.values():
                        problems.add(line, f"expected {len(reader.fieldnames)} fields "
                                           f"({','.join(reader.fieldnames)})")
                        continue
                    yield line, row
            except csv.Error as exc:
                problems.add(reader.line_num, f"unreadable CSV ({exc}); check the quoting")
    except OSError as exc:
        raise GraphCommandError(f"{path}: cannot read the {what} file ({exc})") from exc


def _check_id(problems: _Problems, line: int, column: str, value: str, *,
              bar: bool = True) -> bool:
    """The API's id rules (as follows.csv and `hunch data import` apply them): an id the
    graph holds is one a user or poll of the event store can have ('|' in user ids only)."""
    from graph._validation import user_id_problem

    reason = user_id_problem(column, value)
    if reason is None and not bar and "|" in value:
        reason = f"{column} {value[:40]!r} contains '|', which only user ids may hold"
    if reason:
        problems.add(line, reason)
    return reason is None


def _epoch(problems: _Problems, line: int, column: str, text: str, *,
           required: bool) -> int | None:
    """Epoch seconds of a real date (as `hunch data import` reads them); empty is 0 where
    the column is optional."""
    from graph._validation import timestamp_problem

    if not text and not required:
        return 0
    value, reason = timestamp_problem(column, text)
    if reason:
        problems.add(line, reason)
    return value


def _read_polls(path: Path) -> tuple[list, int]:
    """Authored polls of items.csv, and how many rows had no AUTHOR_ID (skipped)."""
    from graph.store import PollAuthorship

    problems = _Problems(path)
    polls, authorless = [], 0
    for line, row in _csv_rows(path, ("ITEM_ID", "AUTHOR_ID"), "items", problems):
        ok = _check_id(problems, line, "ITEM_ID", row["ITEM_ID"], bar=False)
        if not row["AUTHOR_ID"]:
            authorless += 1
            continue
        ok = _check_id(problems, line, "AUTHOR_ID", row["AUTHOR_ID"]) and ok
        created = _epoch(problems, line, "CREATION_TIMESTAMP",
                         row.get("CREATION_TIMESTAMP") or "", required=False)
        if ok and created is not None:
            polls.append(PollAuthorship(row["ITEM_ID"], row["AUTHOR_ID"], created))
    problems.raise_any()
    return polls, authorless


def _engagements(path: Path, problems: _Problems) -> Iterator:
    from graph.store import Engagement

    for line, row in _csv_rows(path, ("USER_ID", "ITEM_ID", "TIMESTAMP"), "interactions",
                               problems):
        ok = _check_id(problems, line, "USER_ID", row["USER_ID"])
        ok = _check_id(problems, line, "ITEM_ID", row["ITEM_ID"], bar=False) and ok
        at = _epoch(problems, line, "TIMESTAMP", row["TIMESTAMP"], required=True)
        # Stored stripped and upper-case, as the import and recordInteraction store it:
        # " hunch " was an ENGAGED type of its own that `event_types=HUNCH` never counted.
        event_type = (row.get("EVENT_TYPE") or "").strip().upper() or DEFAULT_EVENT_TYPE
        if len(event_type) > MAX_EVENT_TYPE_CHARS:
            problems.add(line, f"EVENT_TYPE is {len(event_type)} characters long; at most "
                               f"{MAX_EVENT_TYPE_CHARS}")
            ok = False
        if ok and at is not None:
            yield Engagement(row["USER_ID"], row["ITEM_ID"], event_type, at)


def _check_interactions(path: Path) -> None:
    """Every row of interactions.csv checked before any is loaded (streamed: the file
    may hold millions): a bad row on line 2,000,000 left the first chunks loaded."""
    problems = _Problems(path)
    for _ in _engagements(path, problems):
        pass
    problems.raise_any()


def _engagement_chunks(path: Path) -> Iterator[list]:
    """interactions.csv (checked by :func:`_check_interactions`) in chunks."""
    problems = _Problems(path)
    chunk = []
    for engagement in _engagements(path, problems):
        chunk.append(engagement)
        if len(chunk) >= LOAD_CHUNK_ROWS:
            yield chunk
            chunk = []
    if chunk:
        yield chunk
    problems.raise_any()  # the file changed since it was checked


@graph.command()
@click.option("--interactions", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="interactions.csv (USER_ID, ITEM_ID, TIMESTAMP, EVENT_TYPE): ENGAGED edges.")
@click.option("--follows", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="follows.csv (FOLLOWER_ID, FOLLOWEE_ID, TIMESTAMP): FOLLOWS edges.")
@click.option("--items", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="items.csv (ITEM_ID, AUTHOR_ID, CREATION_TIMESTAMP): AUTHORED edges.")
def load(interactions: Path | None, follows: Path | None, items: Path | None) -> None:
    """Load Personalize-format CSVs into Neo4j (HUNCH_NEO4J_URI/USER/PASSWORD).

    Upserts, never deletes: loading the same files again adds back every follow they
    list, also one a user has undone through the API since (Neo4j keeps no record of
    unfollows). Load a file once, into a new graph; the live graph is Neo4j's. Cluster
    and community labels come from `hunch graph cluster --store neo4j`.
    """
    if not (interactions or follows or items):
        raise click.UsageError("give at least one of --interactions, --follows, --items")
    from graph.errors import GraphError

    try:
        written, counts = asyncio.run(_load(interactions, follows, items))
    except GraphError as exc:
        raise GraphCommandError(str(exc)) from exc
    click.echo(", ".join(f"{n:,} {what}" for what, n in written.items()) + " loaded; graph now "
               "holds " + ", ".join(f"{n:,} {what}" for what, n in counts.items()))


async def _load(interactions: Path | None, follows: Path | None,
                items: Path | None) -> tuple[dict[str, int], dict[str, int]]:
    from graph.analytics import GraphAnalyticsError, read_follows_csv
    from graph.neo4j_store import Neo4jGraphStore
    from graph.store import Follow

    # Files are read before anything is written where they fit in memory, so a bad row
    # in items.csv or follows.csv leaves the graph as it was.
    polls, authorless = _read_polls(items) if items else ([], 0)
    if interactions:
        _check_interactions(interactions)
    try:
        follow_rows = read_follows_csv(follows) if follows else []
    except GraphAnalyticsError as exc:
        raise GraphCommandError(str(exc)) from exc
    if authorless:
        click.echo(f"{items}: {authorless} item(s) without AUTHOR_ID skipped", err=True)

    store = Neo4jGraphStore.from_env()
    written: dict[str, int] = {}
    try:
        await store.ensure_schema()
        if items:
            written["polls"] = await store.upsert_polls(polls)
        if follows:
            written["follows"] = await store.upsert_follows(
                Follow(a, b, t) for a, b, t in follow_rows)
        if interactions:
            written["engagements"] = 0
            for chunk in _engagement_chunks(interactions):
                written["engagements"] += await store.upsert_engagements(chunk)
        counts = await store.counts()
    finally:
        await store.close()
    return written, counts


# -- hunch graph export-follows ----------------------------------------------------------

@graph.command("export-follows")
@click.option("--out", "out_csv", required=True,
              type=click.Path(dir_okay=False, path_type=Path), help="follows.csv to write.")
@click.option("--store", "store_kind", type=click.Choice(["neo4j", "memory"]), default=None,
              help="The live graph to read [default: HUNCH_GRAPH_STORE].")
def export_follows(out_csv: Path, store_kind: str | None) -> None:
    """Write the live follower graph as follows.csv (FOLLOWER_ID, FOLLOWEE_ID, TIMESTAMP).

    The follows users made and undid through the API are in the live graph only: a file
    exported before them is stale, and `hunch graph load` or `hunch analyze follow-impact
    --follows` of it would bring back what users undid. neo4j: the server's FOLLOWS
    edges; memory: this host's HUNCH_FOLLOWS_PATH with its follow journal applied, as a
    worker builds its graph at start."""
    from gateway.settings import load_settings

    settings = load_settings()
    kind = store_kind or settings.graph_store
    if kind == "neo4j":
        from graph.errors import GraphError
        from graph.neo4j_store import Neo4jGraphStore

        async def read() -> list:
            store = Neo4jGraphStore.from_env()
            try:
                return await store.follows()
            finally:
                await store.close()

        try:
            rows = [(f.follower, f.followee, f.timestamp) for f in asyncio.run(read())]
        except GraphError as exc:
            raise GraphCommandError(str(exc)) from exc
    else:
        rows = _journalled_follows(settings)
    from graph.analytics import _atomic_write

    def write(fh) -> None:
        writer = csv.writer(fh)
        writer.writerow(["FOLLOWER_ID", "FOLLOWEE_ID", "TIMESTAMP"])
        writer.writerows(sorted(rows))

    out_csv.parent.mkdir(parents=True, exist_ok=True)
    # Replaced whole (temp file, fsync, rename): --out is often HUNCH_FOLLOWS_PATH itself,
    # which was truncated first, so a full disk or a Ctrl-C midway lost every follow it
    # held, and a worker starting meanwhile read half a graph.
    _atomic_write(out_csv, write)
    click.echo(f"wrote {len(rows):,} follows to {out_csv}")


def _journalled_follows(settings) -> list[tuple[str, str, int]]:
    """HUNCH_FOLLOWS_PATH's follows with the follow journal's changes applied."""
    from graph.analytics import GraphAnalyticsError, read_follows_csv
    from graph.follow_journal import FollowJournal

    pairs: dict[tuple[str, str], int] = {}
    path = settings.follows_path
    if path is not None and path.exists():
        try:
            pairs = {(a, b): int(t) for a, b, t in read_follows_csv(path)}
        except GraphAnalyticsError as exc:
            raise GraphCommandError(str(exc)) from exc
    journal_path = Path(settings.home) / "follows-journal.sqlite3"
    if journal_path.exists():
        journal = FollowJournal(journal_path)
        try:
            _, changes = journal.changes_since(0)
        finally:
            journal.close()
        for a, b, following, at in changes:
            if following:
                pairs[(a, b)] = at
            else:
                pairs.pop((a, b), None)
    return [(a, b, t) for (a, b), t in pairs.items()]


async def load_follows_if_empty(follows: Path, items: Path) -> dict[str, int] | None:
    """Load ``follows`` and ``items`` into Neo4j when it holds no follow yet (what `hunch
    demo` does on Neo4j); None when it holds some: loading again would bring back the
    follows users have undone since."""
    from graph.neo4j_store import Neo4jGraphStore

    store = Neo4jGraphStore.from_env()
    try:
        if (await store.counts())["follows"]:
            return None
    finally:
        await store.close()
    written, _ = await _load(None, follows, items)
    return written


# -- hunch graph query -----------------------------------------------------------------

def _param(values: tuple[str, ...]) -> dict[str, str]:
    out = {}
    for value in values:
        key, sep, text = value.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{value!r}: write it as NAME=VALUE, e.g. limit=5",
                                     param_hint="--param")
        out[key.strip()] = text
    return out


@graph.command()
@click.argument("name", required=False)
@click.option("--param", "-p", "params", multiple=True, metavar="NAME=VALUE",
              help="A query parameter; repeat for more. Lists: a,b,c. null: no value.")
@click.option("--json", "as_json", is_flag=True, help="Print rows as JSON lines, not a table.")
def query(name: str | None, params: tuple[str, ...], as_json: bool) -> None:
    """Run the analysts' Cypher query NAME against Neo4j (HUNCH_NEO4J_URI/USER/PASSWORD)
    and print its rows. Without NAME, list the queries and their parameters.
    See docs/analyst-queries.md."""
    from rich.console import Console
    from rich.table import Table

    from graph.analyst_queries import load_query, query_names, run_query
    from graph.errors import GraphError
    from graph.gds import neo4j_settings, open_driver

    console = Console()
    try:
        if name is None:
            table = Table("query", "question", "parameters", show_lines=True)
            for query_name in query_names():
                q = load_query(query_name)
                table.add_row(query_name, q.question, "\n".join(
                    f"{p.name} ({p.kind}{'' if p.required else f', default {_cell(p.default)}'})"
                    for p in q.parameters))
            console.print(table)
            return
        bound = load_query(name).bind(_param(params))  # bad input fails before connecting
        settings = neo4j_settings()
        driver = open_driver(settings.uri, settings.user, settings.password)
        try:
            result = run_query(driver, name, bound)
        finally:
            driver.close()
    except GraphError as exc:
        raise GraphCommandError(str(exc)) from exc
    if as_json:
        for row in result.rows:
            click.echo(json.dumps(row, default=str))
        return
    table = Table(title=f"{name} ({len(result.rows)} rows)")
    for column in result.columns:
        # Fold rather than cut with an ellipsis: a truncated user id is a wrong user id.
        table.add_column(column, overflow="fold")
    for row in result.rows:
        table.add_row(*(_cell(row[c]) for c in result.columns))
    console.print(table)


def _cell(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, list):
        return ", ".join(str(v) for v in value)
    return str(value)
