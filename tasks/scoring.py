"""Scoring tasks: score a batch (one library call), and close the drift loop by starting the
retrain deployment through the Prefect API.

Starting the retrain never fails the scoring: the batch is scored, written and logged
whatever happens next. Without a Prefect server (ephemeral mode) there are no deployments,
so the task says so in one line and what to run instead.
"""

import logging

from prefect import task

from ferry import steps
from ferry.config import FerryConfig

log = logging.getLogger("ferry.scoring")


@task(name="score_batch")
def score_batch(cfg: FerryConfig, input_path: str, model: str | None,
                out: str | None) -> dict:
    """Validate, score, write the Parquet file, test drift, log the scoring run."""
    from ferry.serving.batch import score

    return score(cfg, input_path, model, out).model_dump()


@task(name="start_retrain")
def start_retrain(cfg: FerryConfig, config: str | None, overrides: list[str],
                  result: dict) -> dict:
    """Start ``monitor.retrain_deployment`` with the drift as its reason; don't wait for it."""
    from ferry.serving.drift import retrain_request

    request = retrain_request(cfg, config, overrides, result)
    outcome = _start(request)
    log.info("retrain: %s", outcome["line"])
    return outcome


def _start(request: dict) -> dict:
    """The flow run it created, or why none was (no server, no such deployment)."""
    from prefect.deployments import run_deployment
    from prefect.exceptions import ObjectNotFound
    from prefect.settings import PREFECT_API_URL

    name, api = request["name"], PREFECT_API_URL.value()
    if not api:
        return {"started": False, "line": f"not started: no Prefect server (ephemeral mode has "
                f"no deployments) for {name}; run `ferry schedule` or use the team stack "
                "(`ferry stack up`, PREFECT_API_URL), then score again"}
    try:
        run = run_deployment(name, parameters=request["parameters"], timeout=0,
                             flow_run_name=request["flow_run_name"], tags=request["tags"],
                             idempotency_key=request["idempotency_key"], as_subflow=False)
    except ObjectNotFound:
        return {"started": False, "line": f"not started: no deployment {name} on {api}; "
                "deploy prefect.yaml (`ferry schedule`, or `prefect deploy --all`) or set "
                "monitor.retrain_deployment"}
    except Exception as exc:  # server down, refused credentials...: the batch is scored anyway
        return {"started": False, "line": f"not started: {name} on {api} failed: "
                f"{type(exc).__name__}: {str(exc)[:300]}"}
    return {"started": True, "flow_run_id": str(run.id), "flow_run_name": run.name,
            "line": f"started {name} flow run {run.name!r} ({run.id}) on {api}"}


@task(name="tag_reason", retries=2, retry_delay_seconds=2)
def tag_reason(cfg: FerryConfig, run_id: str, reason: str) -> None:
    """Record on the training run why this retrain was started."""
    steps.run_log(cfg, run_id).tags({"ferry.retrain_reason": reason[:5000]})
