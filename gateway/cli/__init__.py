"""The ``hunch`` command line. Each command group lives in its own module here.

Bad input exits non-zero with one line that says what to fix; a traceback means a bug.
"""

from __future__ import annotations

import errno
import sys

import click

from graph.errors import GraphError
from recsys.errors import HunchError


class _HunchGroup(click.Group):
    """Turns the engine's typed errors into one-line messages and exit code 2; so too
    what the operating system refuses (a directory where a file should be, no
    permission, a full disk) and an invalid HUNCH_* setting, which are the user's to
    fix, not bugs."""

    def invoke(self, ctx: click.Context):
        from pydantic import ValidationError
        from pydantic_settings import SettingsError

        try:
            return super().invoke(ctx)
        except (HunchError, GraphError) as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(2)
        except OSError as exc:
            # errno None: not the system's refusal (a library's own OSError). EPIPE: the
            # reader went away (`hunch ... | head`), which click ends quietly (exit 1);
            # "error: Broken pipe" on the terminal was noise.
            if exc.errno is None or exc.errno == errno.EPIPE:
                raise
            where = f": {exc.filename}" if exc.filename else ""
            click.echo(f"error: {exc.strerror}{where}", err=True)
            sys.exit(2)
        except (SettingsError, ValidationError) as exc:
            click.echo(f"error: invalid setting: {_one_line(exc)} (HUNCH_* settings are "
                       "listed in README.md; a list or mapping setting is JSON, e.g. "
                       "HUNCH_EVENT_TYPES='[\"HUNCH\", \"COMMENT\"]')", err=True)
            sys.exit(2)


def _one_line(exc: Exception) -> str:
    return " ".join(str(exc).split())[:500]


@click.group(cls=_HunchGroup, context_settings={"help_option_names": ["-h", "--help"]})
def cli() -> None:
    """Hunch feed engine: data, training, the follower graph and the feed server."""


def _register() -> None:
    # Imported here so that `import gateway.cli` stays free of side effects elsewhere.
    from gateway.cli import data, demo

    cli.add_command(data.data)
    from gateway.cli import neo4j
    cli.add_command(neo4j.neo4j)
    cli.add_command(demo.demo)
    from gateway.cli.evaluate import evaluate as evaluate_command
    cli.add_command(evaluate_command)
    from gateway.cli.public_data import convert_friends, convert_ratings, convert_sequences
    data.data.add_command(convert_ratings)
    data.data.add_command(convert_friends)
    data.data.add_command(convert_sequences)
    from gateway.cli.graph import graph as graph_command
    cli.add_command(graph_command)
    from gateway.cli import recipes
    cli.add_command(recipes.train)
    cli.add_command(recipes.recommend)
    from gateway.cli.personalize import personalize as personalize_command
    cli.add_command(personalize_command)
    from gateway.cli import serve
    cli.add_command(serve.serve)
    cli.add_command(serve.token)
    cli.add_command(serve.export_schema)
    from gateway.cli import analyze
    cli.add_command(analyze.analyze)
    cli.add_command(analyze.tune)
    cli.add_command(analyze.report)
    from gateway.cli import db
    cli.add_command(db.db)


_register()


def main() -> None:
    cli(prog_name="hunch")
