"""``ferry serve``: MLflow's scoring protocol over HTTP, for whichever version an alias names.

Endpoints (the first three as ``mlflow models serve`` has them, so its clients work as they
are): ``POST /invocations`` (JSON ``inputs`` / ``instances`` / ``dataframe_split`` /
``dataframe_records`` with optional ``params``, CSV or Parquet; answers
``{"predictions": ...}``), ``GET /ping`` and ``GET /health`` (200 while a version serves,
503 before; JSON: the version, refused versions, batch counters), ``GET /version`` (name,
version, run id, alias, when it was loaded). Every answer to ``/invocations`` names the
version that computed it in the ``X-Ferry-Model-Version`` header.

A small FastAPI app on uvicorn rather than MLflow's own server, which loads one fixed
model when it starts and runs one predict per request: see docs/serving.md.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable
from typing import Any

from ferry.errors import FerryError
from ferry.serving.batcher import Batcher
from ferry.serving.follow import Follower

log = logging.getLogger("ferry.serving")
JSON = "application/json"
BIG_BODY = 256 * 1024  # parsed in a thread above this size, so the event loop never stalls


class ServeError(FerryError):
    """``ferry serve`` cannot start: no such model, alias or version, or the port is taken."""


def create_app(follower: Follower, max_batch: int, max_wait_ms: float) -> Any:
    """The FastAPI app: the follower says which version serves, the batcher scores."""
    from contextlib import asynccontextmanager

    from fastapi import FastAPI
    from fastapi.responses import Response

    batcher = Batcher(follower.current, max_batch, max_wait_ms,
                      predict=lambda served, data, params: served.model.predict(
                          data, params=params))

    @asynccontextmanager
    async def lifespan(_app):
        await batcher.start()
        follower.start()
        yield
        follower.stop()
        await batcher.stop()

    app = FastAPI(title="ferry serve", lifespan=lifespan, docs_url=None, redoc_url=None,
                  openapi_url=None)
    app.state.batcher = batcher

    # Plain Starlette routes: the request is all they need (no FastAPI dependency
    # resolution per call, which string annotations would also confuse).
    async def invocations(request) -> Response:
        status, text, headers = await _invoke(follower, batcher, await request.body(),
                                              request.headers.get("content-type"))
        return Response(text, status, headers=headers, media_type=JSON)

    async def health(_request) -> Response:
        body = {**follower.health(), "batches": batcher.stats.as_dict()}
        return Response(_dumps(body), 200 if follower.current() else 503, media_type=JSON)

    async def version(_request) -> Response:
        served = follower.current()
        if served is None:
            return Response(_unavailable(follower), 503, media_type=JSON)
        return Response(_dumps(served.describe()), 200, media_type=JSON)

    app.add_route("/invocations", invocations, methods=["POST"])
    for path in ("/ping", "/health"):
        app.add_route(path, health, methods=["GET"])
    app.add_route("/version", version, methods=["GET"])
    return app


async def _invoke(follower: Follower, batcher: Batcher, body: bytes,
                  content_type: str | None) -> tuple[int, str, dict[str, str]]:
    """Status, JSON text and headers of one ``/invocations`` request."""
    from ferry.tracking.protocol import ProtocolError, failure, parse, render

    served = follower.current()
    if served is None:
        return 503, _unavailable(follower), {}
    try:
        if len(body) > BIG_BODY:
            parsed = await asyncio.to_thread(parse, body, content_type, served.model)
        else:
            parsed = parse(body, content_type, served.model)
        answered, out = await batcher.submit(parsed.data, parsed.params)
    except ProtocolError as exc:
        return exc.status, exc.body, {}
    except Exception as exc:  # the model refused these inputs: the client's 400
        err = failure(exc)
        log.info("invocation refused (%s): %s", err.status, err)
        return err.status, err.body, {}
    headers = {"X-Ferry-Model-Version": answered.version, "X-Ferry-Model": answered.name}
    try:
        return 200, render(out, parsed.unwrapped), headers
    except Exception as exc:
        log.exception("could not encode the predictions")
        return 500, _error("INTERNAL_ERROR", f"could not encode the predictions: {exc}"), {}


def _unavailable(follower: Follower) -> str:
    return _error("TEMPORARILY_UNAVAILABLE", f"no model version is serving yet: "
                  f"{follower.waiting}; the server reads {follower.target} again every "
                  f"{follower.poll_seconds:g} s")


def _error(code: str, message: str) -> str:
    from ferry.tracking.protocol import error_json

    return error_json(code, message)


def _dumps(body: dict) -> str:
    import json

    return json.dumps(body)


def load_follower(cfg: Any, ref: str | None, wait: bool = False) -> Follower:
    """The follower of ``ref`` (``NAME@ALIAS``, ``NAME/VERSION``; default
    ``tracking.model_name@serve.alias``, null: promotion.champion_alias) with its first
    version loaded. Nothing to serve is
    a ServeError, unless ``wait`` (an alias only): then even the first version is loaded in
    the background, and the server answers 503 until the alias names one that loads."""
    from ferry.tracking import Tracker
    from ferry.tracking.registry import parse_ref

    alias = cfg.serve.alias or cfg.promotion.champion_alias  # the alias predict also uses
    name, which = parse_ref(ref, cfg.tracking.model_name, alias) if ref else \
        (cfg.tracking.model_name, alias)
    out = Follower(Tracker(cfg).model(name), which, cfg.serve.poll_seconds)
    if wait and out.alias:
        return out  # its thread loads the first version once serving started
    out.poll()
    if out.current() is None and not (wait and out.alias):
        raise ServeError(out.waiting)
    return out


def bind(host: str, port: int) -> socket.socket:
    """The listening socket, bound before anything else so a taken port is one clear line.
    Its protocol is named (IPPROTO_TCP): asyncio disables Nagle's algorithm only on sockets
    that say so, and without that every answer waits ~40 ms for a delayed ACK."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # inherited by connections
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ServeError(f"cannot listen on {host}:{port}: {exc.strerror}; pick another "
                         "port with --port (or serve.port)") from None
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def run(follower: Follower, sock: socket.socket, max_batch: int, max_wait_ms: float,
        ready: Callable[[], None] | None = None) -> None:
    """Serve until SIGINT/SIGTERM (uvicorn stops gracefully: in-flight requests finish).
    Uvicorn logs through the root logger (the command's log file), no access log: one line
    per request would cost more than scoring it."""
    import uvicorn

    config = uvicorn.Config(create_app(follower, max_batch, max_wait_ms), log_config=None,
                            access_log=False, lifespan="on", timeout_keep_alive=30,
                            backlog=2048)
    server = uvicorn.Server(config)
    if ready is not None:
        ready()
    server.run(sockets=[sock])
