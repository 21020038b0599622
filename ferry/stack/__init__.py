"""The team stack without Docker: Postgres, an MLflow server, a Prefect server (with its UI)
and a worker, as processes on loopback, each with its own data directory under
``.ferry/stack/``; and ``schedule``, the one-machine variant (server, deployments, worker).

The same services, ports and environment as ``docker/compose.yaml``, so what a test proves
here holds for the containers. One module per concern, re-exported here so callers keep
writing ``from ferry import stack`` then ``stack.up(...)``:

- ``state``: what a stack is (ports, recorded process ids, credentials) and its state file;
- ``processes``: starting, probing and stopping service processes (whole process groups);
- ``services``: each service's command and environment, ``up`` and ``down``;
- ``deployments``: ``prefect deploy`` against a stack, and ``schedule``.

Prefect and MLflow are driven as subprocesses, never imported: ``ferry stack`` stays fast
and this package stays free of their import cost.
"""

from ferry.stack.deployments import deploy, schedule
from ferry.stack.processes import alive as _alive
from ferry.stack.processes import free_port
from ferry.stack.processes import http_ok as _http_ok
from ferry.stack.services import down, prefect_ui_env, up
from ferry.stack.state import CREDENTIALS, POOL, STATE, Ports, Stack, StackError, credentials, load

__all__ = ["CREDENTIALS", "POOL", "STATE", "Ports", "Stack", "StackError", "_alive",
           "_http_ok", "credentials", "deploy", "down", "free_port", "load", "prefect_ui_env",
           "schedule", "up"]
