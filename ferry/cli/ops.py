"""Commands that run services or join others: the team stack, schedules, multi-machine DDP."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ferry.cli import output
from ferry.cli.app import app, stack_app

StackHome = Annotated[Path, typer.Option(help="Where the services keep their data.")]


@stack_app.command("up")
def stack_up(home: StackHome = Path(".ferry/stack"), postgres_port: int = 55432,
             mlflow_port: int = 5000, prefect_port: int = 4200, serve_port: int = 5080) -> None:
    """Start Postgres, `mlflow server`, `prefect server start` (with its UI), a worker and
    `ferry serve` (following @champion) on 127.0.0.1."""
    from ferry import stack

    s = stack.up(home, stack.Ports(postgres_port, mlflow_port, prefect_port, serve_port))
    output.line(f"stack up ({', '.join(f'{k} pid {v}' for k, v in s.pids.items())})", "green")
    for key, value in s.client_env().items():
        output.line(f"export {key}={value}")
    output.line(f"MLflow UI: {s.mlflow_uri} (user admin, MLFLOW_TRACKING_PASSWORD); Prefect UI: "
                f"http://127.0.0.1:{s.ports.prefect} (password: PREFECT_API_AUTH_STRING)")
    output.line(f"serving @champion: POST {s.serve_url}/invocations (GET /health, /version; "
                "503 until a version is champion)")
    output.line("then: FERRY_PROJECT_DIR=$PWD prefect deploy --all   (stop: ferry stack down)")


@stack_app.command("down")
def stack_down(home: StackHome = Path(".ferry/stack")) -> None:
    """Stop every service of the stack by its recorded process id."""
    from ferry import stack

    stopped = stack.down(home)
    output.line(f"stopped: {', '.join(stopped) or 'nothing was running'}")


@app.command()
def schedule(port: int = 4200) -> None:
    """Run prefect.yaml's schedules here: a local Prefect server (with UI), its deployments
    and a worker; Ctrl-C stops them."""
    from ferry import stack

    stack.schedule(Path.cwd(), port)


@app.command()
def join(spec: Annotated[Path, typer.Argument(help="The ddp-spec.json machine 0 wrote, or the "
                                              "shared checkpoints folder (joins the newest "
                                              "unfinished one, waiting for it).")],
         node_rank: Annotated[int, typer.Option("--node-rank", min=1, help="This machine's "
                                                "rank, 1..nnodes-1.")]) -> None:
    """Join a multi-machine fine-tune started by `ferry run` on machine 0."""
    from ferry.transfer import distributed

    raise typer.Exit(distributed.join(spec, node_rank))
