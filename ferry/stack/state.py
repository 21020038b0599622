"""What a running stack is: its ports, the process ids it recorded, its credentials.

Kept apart from the code that starts processes so that clients (``client_env``), the CLI and
tests can read a stack's state without touching any process.
"""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ferry.errors import FerryError

STATE = "stack.json"
CREDENTIALS = "credentials.json"
POOL = "ferry"


class StackError(FerryError):
    """A service of the stack did not start, or the stack is already up / not up."""


@dataclass
class Ports:
    """Loopback ports (compose publishes the same ones on 127.0.0.1)."""

    postgres: int = 55432
    mlflow: int = 5000
    prefect: int = 4200
    serve: int = 5080  # `ferry serve`: the champion over HTTP (serve.port's default)


@dataclass
class Stack:
    """Where a running stack lives and how to reach it."""

    home: str
    ports: Ports = field(default_factory=Ports)
    pids: dict[str, int] = field(default_factory=dict)
    postgres_data: str = ""

    @property
    def mlflow_uri(self) -> str:
        return f"http://127.0.0.1:{self.ports.mlflow}"

    @property
    def prefect_url(self) -> str:
        """The Prefect server's root: its UI (the API lives under ``/api``)."""
        return f"http://127.0.0.1:{self.ports.prefect}"

    @property
    def serve_url(self) -> str:
        """``ferry serve``: POST ``/invocations``, GET ``/health`` and ``/version``."""
        return f"http://127.0.0.1:{self.ports.serve}"

    @property
    def prefect_api(self) -> str:
        return f"{self.prefect_url}/api"

    def database(self, name: str, driver: str = "postgresql") -> str:
        return f"{driver}://ferry@127.0.0.1:{self.ports.postgres}/{name}"

    def client_env(self) -> dict[str, str]:
        """What a process needs to use this stack (the worker gets exactly this): URLs and
        the credentials from the stack's own credentials file (never from the repo)."""
        creds = credentials(Path(self.home))
        return {"MLFLOW_TRACKING_URI": self.mlflow_uri, "PREFECT_API_URL": self.prefect_api,
                "FERRY_TUNE_STORAGE": self.database("optuna"),  # ferry tune's studies
                "MLFLOW_TRACKING_USERNAME": creds["mlflow_user"],
                "MLFLOW_TRACKING_PASSWORD": creds["mlflow_password"],
                "PREFECT_API_AUTH_STRING": creds["prefect_auth"]}


def credentials(home: Path) -> dict[str, str]:
    """The stack's credentials, generated on first use into ``home/credentials.json``
    (mode 600, under the git-ignored .ferry/): MLflow's basic-auth admin and Prefect's API
    auth string (also the Prefect UI's login). Set FERRY_MLFLOW_PASSWORD /
    FERRY_PREFECT_PASSWORD to choose them."""
    path = home / CREDENTIALS
    if path.is_file():
        return json.loads(path.read_text(encoding="utf-8"))
    home.mkdir(parents=True, exist_ok=True)
    creds = {"mlflow_user": "admin",
             "mlflow_password": os.environ.get("FERRY_MLFLOW_PASSWORD") or
             secrets.token_urlsafe(18),
             "prefect_auth": "ferry:" + (os.environ.get("FERRY_PREFECT_PASSWORD") or
                                         secrets.token_urlsafe(18))}
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump(creds, handle)
    return creds


def save(stack: Stack) -> None:
    """Record the stack (ports, pids) after every change, so ``down`` can stop what ``up``
    started even when ``up`` died half-way."""
    path = Path(stack.home) / STATE
    path.write_text(json.dumps(asdict(stack), indent=2), encoding="utf-8")


def load(home: Path) -> Stack | None:
    path = home / STATE
    if not path.is_file():
        return None
    raw = json.loads(path.read_text(encoding="utf-8"))
    return Stack(home=raw["home"], ports=Ports(**raw["ports"]), pids=raw["pids"],
                 postgres_data=raw.get("postgres_data", ""))
