"""Every ``ferry ...`` command line in the README's and docs/' code blocks parses with the CLI,
and the config keys it sets exist: the documentation and the tool cannot drift apart again.

Parsing builds each command's click context (options, arguments, sub-commands) without
running it; a line with ``-c``/``--set`` also loads that config, so a renamed key fails here.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
from typer.main import get_command

import ferry.cli.main  # noqa: F401  (registers the commands)
from ferry.cli.app import app
from ferry.config import load_config

REPO = Path(__file__).parents[2]
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
FENCE = re.compile(r"^```(?:bash|sh|shell|console)\n(.*?)^```", re.S | re.M)  # shell only
PROMPT = re.compile(r"^(?:\$ )?(?:[A-Z_]+=\S+ )*(?:\.venv/bin/)?(ferry\s.*)$")


def command_lines() -> list[tuple[str, str]]:
    """(where, command line) of each ferry invocation in a fenced block."""
    found = []
    for doc in DOCS:
        text = doc.read_text(encoding="utf-8")
        for block in FENCE.findall(text):
            joined = block.replace("\\\n", " ")
            for line in joined.splitlines():
                match = PROMPT.match(line.strip())
                if match:
                    command = match.group(1).split(" #")[0].strip()
                    found.append((f"{doc.relative_to(REPO)}: {command}", command))
    return found


def parse(args: list[str]):
    """The innermost click context of a command line (raises UsageError as the CLI would;
    ``--help`` parses too, and says so by returning None)."""
    from typer.exceptions import Exit

    try:
        return _contexts(args)
    except Exit:
        return None


def _contexts(args: list[str]):
    ctx = get_command(app).make_context("ferry", list(args))
    while hasattr(ctx.command, "resolve_command"):
        rest = [*ctx._protected_args, *ctx.args]
        if not rest:
            break
        name, sub, rest = ctx.command.resolve_command(ctx, rest)
        ctx = sub.make_context(name, rest, parent=ctx)
    return ctx


LINES = command_lines()


def test_the_docs_show_the_commands_a_newcomer_needs():
    shown = {shlex.split(cmd)[1] for _, cmd in LINES}
    assert {"run", "validate", "sweep", "promote", "data", "stack"} <= shown, shown
    assert len(LINES) >= 15


@pytest.mark.parametrize(("where", "command"), LINES, ids=[w for w, _ in LINES])
def test_documented_command_parses(where, command, monkeypatch):
    monkeypatch.chdir(REPO)
    ctx = parse(shlex.split(command)[1:])
    params = ctx.params if ctx else {}
    config = params.get("config")
    if "set_" in params and (config is None or Path(config).is_file()):  # a user's own
        load_config(config, params["set_"] or [])  # config file (docs) is only parsed


def test_parsing_rejects_what_the_cli_rejects():
    from typer._click.exceptions import UsageError

    for bad in (["runn"], ["run", "--bogus"], ["data", "add", "a", "b"]):
        with pytest.raises(UsageError):
            parse(bad)
