"""``ferry serve``: the registered model over HTTP (MLflow's scoring protocol), following an
alias, with dynamic batching (see ferry/serving/ and docs/serving.md)."""

from __future__ import annotations

from typing import Annotated

import typer

from ferry.cli import output
from ferry.cli.app import ConfigOpt, SetOpt, app, load

ServeModelOpt = Annotated[str | None, typer.Option(
    "--model", help="NAME@ALIAS (followed: a new version is loaded when the alias moves) or "
    "NAME/VERSION (fixed). Default: tracking.model_name@serve.alias (null: "
    "promotion.champion_alias).")]


@app.command()
def serve(config: ConfigOpt = None, set_: SetOpt = None, model: ServeModelOpt = None,
          host: Annotated[str | None, typer.Option(help="Interface to listen on "
                                                   "(default: serve.host).")] = None,
          port: Annotated[int | None, typer.Option(min=1, max=65535, help="Port (default: "
                                                   "serve.port).")] = None,
          wait: Annotated[bool, typer.Option("--wait", help="Start even before the alias "
                                             "names a loadable version: answer 503 until it "
                                             "does (what `ferry stack up` runs).")] = False
          ) -> None:
    """Serve a registered model: POST /invocations as `mlflow models serve` does, GET /health,
    /version. Concurrent requests are batched; when the alias moves, the new version is
    loaded in the background and swapped in without failing a request."""
    from ferry.serving import server

    cfg = load(config, set_)
    host, port = host or cfg.serve.host, port or cfg.serve.port
    sock = server.bind(host, port)  # a taken port fails before minutes of loading
    follower = server.load_follower(cfg, model, wait)
    served = follower.current()
    what = f"{follower.registry.name} version {served.version}" if served else \
        f"{follower.target}, no version yet (503 until one loads)"
    following = f"; following @{follower.alias} every {cfg.serve.poll_seconds:g} s" \
        if follower.alias else " (fixed version)"
    shown = f"[{host}]" if ":" in host else host

    def ready() -> None:
        output.line(f"ferry serve: {what}{following}; POST http://{shown}:{port}/invocations"
                    " (Ctrl-C stops it)", "green")

    server.run(follower, sock, cfg.serve.max_batch, cfg.serve.max_wait_ms, ready)
