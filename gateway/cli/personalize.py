"""``hunch personalize``: send Amazon Personalize what an outage kept from it (replay),
write the items it imports (export-items)."""

from __future__ import annotations

import time
from datetime import datetime, timezone
from pathlib import Path

import click

from gateway.settings import load_settings
from recsys.errors import HunchError


@click.group()
def personalize() -> None:
    """Amazon Personalize, the production backend (HUNCH_PERSONALIZE_*)."""


def _moment(value: str, name: str) -> int:
    """Epoch seconds, or an ISO 8601 time (UTC when it names no zone)."""
    try:
        return int(float(value))
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(f"{value!r} is neither epoch seconds nor an ISO 8601 time",
                                 param_hint=name) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return int(moment.timestamp())


@personalize.command()
@click.option("--since", required=True, help="Start of the window: epoch seconds or ISO 8601 "
              "(UTC unless it names a zone), e.g. the time the outage began.")
@click.option("--until", default=None, help="End of the window (exclusive); default: now.")
@click.option("--dry-run", is_flag=True, help="Count what would be sent; send nothing.")
def replay(since: str, until: str | None, dry_run: bool) -> None:
    """Send the event tracker the interactions stored in a window, as the gateway would
    have: after an outage whose copies failed or were dropped
    (hunch_fallbacks_total{source="personalize-events"},
    hunch_events_not_forwarded_total{reason="queue-full"}). Amazon ignores event ids it
    already has, so a window that partly arrived is safe to send again. Repeats of a
    user's type on a poll stay out (HUNCH_PERSONALIZE_FORWARD_REPEATS), impression-only
    events too. Exits 1 when Amazon refused any call."""
    from recsys.backends import PersonalizeEventSink, make_clients
    from recsys.backends.amazon_copy import replay as replay_window
    from recsys.event_stores import open_event_store

    settings = load_settings()
    start = _moment(since, "--since")
    end = _moment(until, "--until") if until is not None else int(time.time()) + 1
    if end <= start:
        raise click.BadParameter(f"the window is empty: --until {end} is not after --since "
                                 f"{start}", param_hint="--until")
    config = settings.personalize_config()
    if not config.tracking_id:
        raise HunchError("no event tracker: set HUNCH_PERSONALIZE_TRACKING_ID (and the "
                         "region, HUNCH_PERSONALIZE_REGION) to replay events")
    _, events_client = make_clients(config)
    sink = PersonalizeEventSink(config, events_client)
    store = open_event_store(settings.event_store_url)
    try:
        counts = replay_window(
            store, sink, settings.event_rules(), start, end,
            forward_repeats=settings.personalize_forward_repeats, dry_run=dry_run,
            on_failure=lambda user, exc: click.echo(
                f"could not send events of {user!r}: {type(exc).__name__}: {exc}", err=True))
    finally:
        store.close()
    verb = "would send" if dry_run else "sent"
    click.echo(f"{verb} {counts.sent:,} events of {counts.users:,} users stored from "
               f"{start} to {end}; left out {counts.repeats:,} repeats (a user's type on a "
               f"poll heard before); {counts.failed:,} refused")
    if counts.failed:
        raise SystemExit(1)


@personalize.command("export-items")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
def export_items(directory: Path) -> None:
    """Write the stored polls to DIRECTORY as Amazon's Items dataset imports them:
    items.csv and items.schema.json with one textual field, POLL_TEXT (the question,
    options, description, option descriptions and comments joined, cut at 20,000
    characters, comments first). Create Amazon's Items dataset from this schema: its
    Items dataset takes one textual field, not the local engine's five. The
    interactions.csv and users.csv of `hunch data export` are Amazon's as they are."""
    from recsys.amazon_items import export_amazon_items
    from recsys.datasets import ExportFailed
    from recsys.event_stores import open_event_store, store_exists

    settings = load_settings()
    if not store_exists(settings.event_store_url):
        raise ExportFailed(f"no event store at {settings.event_store_url}: nothing to "
                           "export (check HUNCH_HOME or HUNCH_STORE_URL)")
    with open_event_store(settings.event_store_url) as store:
        export = export_amazon_items(store.items(), directory)
    click.echo(export.describe())
