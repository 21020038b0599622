"""The ``ferry`` command line (Typer): ``app`` holds the commands, ``main`` runs them."""

from ferry.cli.main import main

__all__ = ["main"]
