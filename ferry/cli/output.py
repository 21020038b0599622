"""What the terminal shows: Ferry's own lines, and everything else in a log file.

By default the console gets the ``ferry`` logger's lines (a step's result, one line per
training epoch, the result block) and nothing of the tools underneath: their logs and Python
warnings go to ``.ferry/logs/<time>-<pid>.log``, which a failure points to. ``--verbose`` puts
those on stderr too. A terminal additionally gets progress bars; a file or CI log does not.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from pathlib import Path

import typer

LOG_DIR = Path(".ferry/logs")
FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
_state: dict[str, object] = {"verbose": False, "file": None}


def setup(verbose: bool) -> None:
    """Route logs before Prefect, MLflow or DVC are imported (Prefect leaves a root logger
    with handlers of ours alone; MLflow is told not to install its own handler)."""
    os.environ["MLFLOW_CONFIGURE_LOGGING"] = "false"
    _state["verbose"] = verbose
    root = logging.getLogger()
    root.setLevel(logging.INFO)
    for handler in list(root.handlers):
        if getattr(handler, "_ferry", False):  # an earlier command in this process
            root.removeHandler(handler)
            handler.close()
    path = _log_file()
    if path is not None:
        _add(root, logging.FileHandler(path, encoding="utf-8"), FORMAT)
        _state["file"] = path
    if verbose:
        _add(root, logging.StreamHandler(sys.stderr), FORMAT).addFilter(
            lambda r: not r.name.startswith("ferry"))
    ferry = logging.getLogger("ferry")
    ferry.setLevel(logging.INFO)
    if not any(getattr(h, "_ferry", False) for h in ferry.handlers):
        _add(ferry, _Console(), "%(message)s")
    logging.captureWarnings(True)
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per API call: noise even there


class _Console(logging.StreamHandler):
    """Writes to whatever ``sys.stdout`` is at the time (tests and redirections swap it)."""

    def __init__(self) -> None:
        super().__init__(sys.stdout)

    @property  # type: ignore[override]
    def stream(self):
        return sys.stdout

    @stream.setter
    def stream(self, value) -> None:
        pass


def _add(logger: logging.Logger, handler: logging.Handler, fmt: str) -> logging.Handler:
    handler.setFormatter(logging.Formatter(fmt, "%H:%M:%S"))
    handler._ferry = True  # type: ignore[attr-defined]
    logger.addHandler(handler)
    return handler


def _log_file() -> Path | None:
    try:
        LOG_DIR.mkdir(parents=True, exist_ok=True)
    except OSError:  # a read-only project: no log file, the console still works
        return None
    return LOG_DIR / f"{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.log"


def verbose() -> bool:
    return bool(_state["verbose"])


def log_file() -> Path | None:
    return _state["file"]  # type: ignore[return-value]


def line(text: str = "", color: str | None = None) -> None:
    """One line of a command's result (stdout)."""
    typer.secho(text, fg=color)


def table(rows: list[dict], columns: tuple[str, ...]) -> None:
    """A plain-text table (the same figures as the CSV logged to MLflow)."""
    def cell(value) -> str:
        if isinstance(value, int):
            return f"{value:,}"
        if isinstance(value, float):
            return f"{value:.4f}"
        return "" if value is None else str(value)

    widths = [max(len(c), *(len(cell(r.get(c))) for r in rows)) for c in columns]
    line("  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)))
    for row in rows:
        line("  ".join(cell(row.get(c)).ljust(w) for c, w in zip(columns, widths, strict=True)))
