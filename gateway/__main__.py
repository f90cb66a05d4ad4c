"""``python -m gateway ...`` is the ``hunch`` command (handy where console scripts are
not on PATH, e.g. right after a pyenv install)."""

from gateway.cli import main

main()
