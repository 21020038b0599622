"""The ``ferry`` entry point: offline switches, the commands, and what a failure looks like.

A user's mistake (a typo in a command or option, a bad config key, bad data) is one line
saying what is wrong and one saying what to do, exit code 2, never a traceback; an
unexpected failure names the log file that holds the traceback (``--verbose`` prints it).
"""

from __future__ import annotations

import sys

import typer

# Each command module registers its commands on import; this order is the order of --help.
from ferry.cli import init, output, training, tuning  # noqa: F401

# isort: split
from ferry.cli import scoring, serve  # noqa: F401

# isort: split
from ferry.cli import data, ops  # noqa: F401
from ferry.cli.app import app
from ferry.errors import FerryError


def main(argv: list[str] | None = None) -> None:
    """Run the command line ``argv`` (default: sys.argv); a failure exits with its status,
    success returns (so tests and other Python callers can run commands in-process)."""
    from typer._click.exceptions import ClickException, UsageError

    from ferry.env import apply_offline_defaults

    apply_offline_defaults()
    try:
        app(args=argv, standalone_mode=False, prog_name="ferry")
    except FerryError as exc:
        _fail(str(exc))
    except UsageError as exc:
        hint = exc.ctx.get_usage() if exc.ctx else "Usage: ferry [OPTIONS] COMMAND [ARGS]..."
        name = exc.ctx.command_path if exc.ctx else "ferry"
        typer.secho(f"error: {exc.format_message()}", fg="red", err=True)
        typer.echo(f"{hint}\nTry '{name} --help' for help.", err=True)
        sys.exit(2)
    except ClickException as exc:
        _fail(exc.format_message())
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except (typer.Abort, KeyboardInterrupt):
        typer.secho("aborted", fg="red", err=True)
        sys.exit(130)
    except Exception as exc:
        if output.verbose():
            raise
        import logging

        logging.getLogger("ferry.cli").error("unexpected failure", exc_info=True)
        where = output.log_file()
        _fail(f"{type(exc).__name__}: {str(exc)[:500]}", code=1,
              hint=f"the traceback is in {where}; run again with --verbose to see it here"
              if where else "run again with --verbose to see the traceback")


def _fail(message: str, code: int = 2, hint: str | None = None) -> None:
    typer.secho(f"error: {message}", fg="red", err=True)
    if hint:
        typer.echo(hint, err=True)
    sys.exit(code)


if __name__ == "__main__":
    main()
