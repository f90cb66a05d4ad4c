"""The ``hunch`` command line. Each command group lives in its own module here.

Bad input exits non-zero with one line that says what to fix; a traceback means a bug.
"""

from __future__ import annotations

import sys

import click

from recsys.errors import HunchError


class _HunchGroup(click.Group):
    """Turns the engine's typed errors into one-line messages and exit code 2."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except HunchError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(2)


@click.group(cls=_HunchGroup, context_settings={"help_option_names": ["-h", "--help"]})
def cli() -> None:
    """Hunch feed engine: data, training, the follower graph and the feed server."""


def _register() -> None:
    # Imported here so that `import gateway.cli` stays free of side effects elsewhere.
    from gateway.cli import data, demo

    cli.add_command(data.data)
    cli.add_command(demo.demo)


_register()


def main() -> None:
    cli(prog_name="hunch")
