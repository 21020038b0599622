"""The Typer application and what every command shares: the config options and the global
``--verbose`` switch. Commands live in ``training``, ``data`` and ``ops``; ``main`` runs them.

The CLI is the top layer: it may import flows (and so Prefect); nothing in the library
imports it. Heavy imports happen inside commands, so ``ferry --help`` stays fast.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(help="Ferry: adapt pretrained models to your data, with receipts.",
                  no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False,
                  context_settings={"help_option_names": ["-h", "--help"]})
data_app = typer.Typer(help="Build, split and version datasets.", no_args_is_help=True)
stack_app = typer.Typer(help="The team stack as local processes: Postgres, MLflow server, "
                        "Prefect server (with its UI), worker (see docker/compose.yaml).",
                        no_args_is_help=True)
app.add_typer(data_app, name="data")
app.add_typer(stack_app, name="stack")

ConfigOpt = Annotated[Path | None, typer.Option("--config", "-c", help="YAML config file "
                      "(default: configs/default.yaml, else built-in defaults).")]
SetOpt = Annotated[list[str] | None, typer.Option("--set", help="Override a config key, e.g. "
                   "--set train.lr=3e-5 (repeatable).")]


@app.callback()
def options(verbose: Annotated[bool, typer.Option(
        "--verbose", "-v", help="Also show other tools' logs and full tracebacks (they always "
        "go to the command's log file under .ferry/logs/).")] = False) -> None:
    """Ferry: adapt pretrained models to your data, with receipts."""
    from ferry.cli import output

    output.setup(verbose)


def load(config: Path | None, overrides: list[str] | None):
    """The run's config: file + overrides (a ConfigError names the bad keys)."""
    from ferry.config import load_config

    return load_config(config, overrides or [])
