"""The GPU work-pool setups under deploy/ are consistent with the flows they run.

There is no Kubernetes cluster or Docker engine here: these tests check what can go wrong
without one (a variable the job manifest uses but does not define, a GPU count that does
not reach the pod, a deployment pointing at a flow or member deployment that does not exist).
"""

from __future__ import annotations

import ast
import json
from pathlib import Path

import yaml
from prefect.utilities.templating import apply_values, find_placeholders

ROOT = Path(__file__).parents[2]


def _template() -> dict:
    return json.loads((ROOT / "deploy" / "k8s-gpu-job-template.json").read_text())


def _deployments(path: Path) -> list[dict]:
    return yaml.safe_load(path.read_text(encoding="utf-8"))["deployments"]


def _flow_name(entrypoint: str) -> str:
    """The @flow(name=...) of ``file.py:function``, read from the source."""
    file, func = entrypoint.split(":")
    tree = ast.parse((ROOT / file).read_text(encoding="utf-8"))
    node = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == func)
    call = next(d for d in node.decorator_list if isinstance(d, ast.Call))
    return next(k.value.value for k in call.keywords if k.arg == "name")


def test_k8s_template_defines_every_variable_it_uses_and_requests_the_gpus():
    template = _template()
    used = {p.name for p in find_placeholders(json.dumps(template["job_configuration"]))}
    defined = set(template["variables"]["properties"])
    assert used <= defined, used - defined
    defaults = {k: v.get("default") for k, v in template["variables"]["properties"].items()}
    job = apply_values(template["job_configuration"], {**defaults, "gpus": 4, "command":
                                                        "prefect flow-run execute"})
    pod = job["job_manifest"]["spec"]["template"]["spec"]
    resources = pod["containers"][0]["resources"]
    assert resources["requests"]["nvidia.com/gpu"] == resources["limits"]["nvidia.com/gpu"] == 4
    mounts = {m["mountPath"] for m in pod["containers"][0]["volumeMounts"]}
    assert mounts == {"/ferry", "/dev/shm"}
    assert job["env"]["FERRY_PROJECT_DIR"] == "/ferry"


def test_gpu_deployments_point_at_real_flows_and_matching_gpu_counts():
    deployments = _deployments(ROOT / "deploy" / "prefect.gpu.yaml")
    names = {(_flow_name(d["entrypoint"]), d["name"]) for d in deployments}
    for d in deployments:
        overrides = (d.get("parameters") or {}).get("overrides", [])
        for item in overrides:
            key, _, value = item.partition("=")
            if key == "sweep.deployment":  # the member deployment is defined alongside
                assert tuple(value.split("/")) in names, value
            if key == "distributed.nproc":
                assert d["work_pool"]["job_variables"]["gpus"] == int(value)
        if d["work_pool"]["name"] == "ferry-gpu-docker":
            kwargs = d["work_pool"]["job_variables"]["container_create_kwargs"]
            assert kwargs["device_requests"][0]["capabilities"] == [["gpu"]]


def test_local_prefect_yaml_has_the_sweep_member_deployment():
    deployments = {d["name"]: d for d in _deployments(ROOT / "prefect.yaml")}
    member = deployments["sweep-member"]
    assert _flow_name(member["entrypoint"]) == "ferry-sweep-member"
    assert "schedules" not in member
