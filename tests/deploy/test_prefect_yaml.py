"""Contract tests of prefect.yaml: the deployments it declares really fit the flow, the work pools,
the job template and the image.

The flow is read by AST (no import, no Prefect server); schedules are checked with Prefect's own
schedule models and cronsim; the document itself with the model `prefect deploy` parses it with.
"""

from __future__ import annotations

import ast
import datetime as dt
import json
import zoneinfo
from typing import Any

import pytest
from cronsim import CronSim
from deploy_support import (
    REPO,
    SECRET_KEY,
    final_stage_env,
    final_workdir,
    flow_def,
    flow_name,
)

# The brief's limits; the request covers the measured ~205 MiB of a flow-run pod (docs/scaling.md).
K8S_RESOURCES = {"cpu_request": "100m", "memory_request": "224Mi", "cpu_limit": "200m", "memory_limit": "256Mi"}
EXPECTED_POOLS = {
    "ingest-clientes/k8s": "kubernetes-pool",
    "ingest-clientes/local": "local-process",
    "recover-abandoned-jobs/k8s": "kubernetes-pool",
    "recover-abandoned-jobs/local": "local-process",
    "clientes-snapshot-ready/k8s": "kubernetes-pool",
    "clientes-snapshot-ready/local": "local-process",
    "purge-old-jobs/k8s": "kubernetes-pool",
    "purge-old-jobs/local": "local-process",
}
ENTRYPOINTS = {"ingest-clientes": "flows/ingest.py:ingest_clientes",
               "recover-abandoned-jobs": "flows/recover.py:recover_abandoned_jobs",
               "clientes-snapshot-ready": "flows/snapshot.py:clientes_snapshot_ready",
               "purge-old-jobs": "flows/purge.py:purge_old_jobs"}
K8S = ("ingest-clientes/k8s", "recover-abandoned-jobs/k8s", "clientes-snapshot-ready/k8s", "purge-old-jobs/k8s")
LOCAL = ("ingest-clientes/local", "recover-abandoned-jobs/local", "clientes-snapshot-ready/local",
         "purge-old-jobs/local")
DOWNSTREAM = ("clientes-snapshot-ready/k8s", "clientes-snapshot-ready/local")
DAILY_SOURCE = "s3://clientes-ingest/incoming/CLIENTES_IN_{MMYY}.dat"


def _flow_params(node: ast.FunctionDef | ast.AsyncFunctionDef) -> tuple[set[str], set[str]]:
    """All parameter names and the required ones (without default)."""
    args = node.args
    positional = [*args.posonlyargs, *args.args]
    required = {a.arg for a in positional[: len(positional) - len(args.defaults)]}
    required |= {a.arg for a, d in zip(args.kwonlyargs, args.kw_defaults, strict=True) if d is None}
    return {a.arg for a in [*positional, *args.kwonlyargs]}, required


def _job_template_variables() -> dict[str, Any]:
    template = json.loads((REPO / "deployments/k8s-base-job-template.json").read_text(encoding="utf-8"))
    return template["variables"]["properties"]


def test_prefect_deploy_accepts_the_file(prefect_yaml: dict[str, Any]) -> None:
    from prefect.cli.deploy._models import PrefectYamlModel  # what `prefect deploy` validates with

    model = PrefectYamlModel.model_validate(prefect_yaml)
    assert [d.name for d in model.deployments] == ["k8s", "local"] * 4


def test_deployments_and_pools(deployments: dict[str, dict[str, Any]]) -> None:
    assert {name: d["work_pool"]["name"] for name, d in deployments.items()} == EXPECTED_POOLS


def test_work_pools_are_shared_through_yaml_anchors(prefect_yaml: dict[str, Any]) -> None:
    # An alias loads as the very same object as its anchor.
    pools = prefect_yaml["definitions"]["work_pools"]
    for deployment in prefect_yaml["deployments"]:
        assert deployment["work_pool"] is pools["kubernetes" if deployment["name"] == "k8s" else "local"]


@pytest.mark.parametrize("name", sorted(EXPECTED_POOLS))
def test_entrypoint_is_the_named_flow(deployments: dict[str, dict[str, Any]], name: str) -> None:
    # Deployment names are addressed as <flow name>/<deployment name>, e.g. ingest-clientes/k8s.
    entrypoint = deployments[name]["entrypoint"]
    assert entrypoint == ENTRYPOINTS[name.split("/")[0]]
    assert flow_name(entrypoint) == name.split("/")[0]


@pytest.mark.parametrize("name", sorted(EXPECTED_POOLS))
def test_parameters_are_flow_parameters(deployments: dict[str, dict[str, Any]], name: str) -> None:
    deployment = deployments[name]
    params, required = _flow_params(flow_def(deployment["entrypoint"])[0])
    assert set(deployment.get("parameters") or {}) <= params
    for schedule in deployment.get("schedules") or []:
        given = {**(deployment.get("parameters") or {}), **(schedule.get("parameters") or {})}
        assert set(given) <= params, f"unknown parameters {set(given) - params}"
        assert required <= set(given), f"a scheduled run would lack {required - set(given)}"


def test_daily_schedule(deployments: dict[str, dict[str, Any]]) -> None:
    from prefect.client.schemas.schedules import CronSchedule

    (schedule,) = deployments["ingest-clientes/k8s"]["schedules"]
    assert schedule["active"] is True
    CronSchedule(cron=schedule["cron"], timezone=schedule["timezone"])  # Prefect's own validation
    tz = zoneinfo.ZoneInfo(schedule["timezone"])
    assert schedule["timezone"] == "America/Argentina/Buenos_Aires"
    start = dt.datetime(2025, 4, 30, 12, 0, tzinfo=tz)
    runs = [run for run, _ in zip(CronSim(schedule["cron"], start), range(2), strict=False)]
    assert runs == [dt.datetime(2025, 5, 1, 6, 0, tzinfo=tz), dt.datetime(2025, 5, 2, 6, 0, tzinfo=tz)]
    assert schedule["parameters"] == {"source": DAILY_SOURCE}


def test_scheduled_source_resolves_to_the_months_file(deployments: dict[str, dict[str, Any]]) -> None:
    from clientes_ingest.staging import resolve_source

    source = deployments["ingest-clientes/k8s"]["schedules"][0]["parameters"]["source"]
    # 06:00 in Buenos Aires on 1 May 2025 is 09:00 UTC, the run's scheduled start time.
    when = dt.datetime(2025, 5, 1, 9, 0, tzinfo=dt.UTC)
    assert resolve_source(source, when) == "s3://clientes-ingest/incoming/CLIENTES_IN_0525.dat"


def test_recovery_runs_every_30_minutes_and_starts_runs_of_the_k8s_deployment(
    deployments: dict[str, dict[str, Any]]
) -> None:
    from prefect.client.schemas.schedules import IntervalSchedule

    recovery = deployments["recover-abandoned-jobs/k8s"]
    (schedule,) = recovery["schedules"]
    assert schedule["active"] is True
    assert IntervalSchedule(interval=schedule["interval"]).interval == dt.timedelta(minutes=30)
    # The runs it starts are of a deployment declared here, on the same pool and image.
    assert recovery["parameters"] == {"deployment": "ingest-clientes/k8s"}
    assert recovery["parameters"]["deployment"] in deployments
    assert recovery["work_pool"] is deployments["ingest-clientes/k8s"]["work_pool"]
    assert recovery["concurrency_limit"] == {"limit": 1, "collision_strategy": "CANCEL_NEW"}


def test_purge_runs_weekly_before_the_daily_load_with_the_configured_retention(
    deployments: dict[str, dict[str, Any]]
) -> None:
    from prefect.client.schemas.schedules import CronSchedule

    purge = deployments["purge-old-jobs/k8s"]
    (schedule,) = purge["schedules"]
    assert schedule["active"] is True and "parameters" not in schedule
    CronSchedule(cron=schedule["cron"], timezone=schedule["timezone"])
    tz = zoneinfo.ZoneInfo(schedule["timezone"])
    start = dt.datetime(2025, 5, 1, 12, 0, tzinfo=tz)  # a Thursday
    runs = [run for run, _ in zip(CronSim(schedule["cron"], start), range(2), strict=False)]
    assert runs == [dt.datetime(2025, 5, 4, 3, 0, tzinfo=tz), dt.datetime(2025, 5, 11, 3, 0, tzinfo=tz)]
    # No older_than: the flow uses CLIENTES_RETENTION (default 30d), so the age is configured in one place.
    assert purge["parameters"] == {}
    assert purge["concurrency_limit"] == {"limit": 1, "collision_strategy": "CANCEL_NEW"}
    assert purge["work_pool"] is deployments["ingest-clientes/k8s"]["work_pool"]


@pytest.mark.parametrize("name", LOCAL)
def test_local_deployments_have_no_schedule(deployments: dict[str, dict[str, Any]], name: str) -> None:
    # The compose stack starts runs from the webhook and the SQS trigger only; recovery runs on demand.
    assert deployments[name]["schedules"] == []


@pytest.mark.parametrize("name", K8S)
def test_k8s_job_variables(deployments: dict[str, dict[str, Any]], name: str) -> None:
    variables = deployments[name]["work_pool"]["job_variables"]
    assert {k: variables[k] for k in K8S_RESOURCES} == K8S_RESOURCES
    # The image, service account and Secret are fixed in the job template (test_k8s_manifests), not here.
    assert not {"image", "namespace", "service_account_name", "env_from_secret", "env"} & set(variables)


def test_k8s_job_variables_exist_in_the_job_template(deployments: dict[str, dict[str, Any]]) -> None:
    # The template refuses undeclared variables (additionalProperties: false): `prefect deploy` would fail.
    variables = deployments["ingest-clientes/k8s"]["work_pool"]["job_variables"]
    assert set(variables) <= set(_job_template_variables())


def test_local_job_variables_exist_for_process_workers(deployments: dict[str, dict[str, Any]]) -> None:
    from prefect.workers.process import ProcessWorker

    template = ProcessWorker.get_default_base_job_template()
    for name in LOCAL:
        assert set(deployments[name]["work_pool"].get("job_variables") or {}) <= set(
            template["variables"]["properties"]
        )


def test_pull_steps_point_at_the_code_in_the_image(deployments: dict[str, dict[str, Any]]) -> None:
    import prefect.deployments.steps as steps
    workdir = final_workdir()
    expected_dirs = {**dict.fromkeys(K8S, workdir), **dict.fromkeys(LOCAL, "{{ $CLIENTES_PROJECT_DIR }}")}
    assert set(expected_dirs) == set(deployments)
    for name, expected in expected_dirs.items():
        (step,) = deployments[name]["pull"]
        ((function, kwargs),) = step.items()
        assert function == "prefect.deployments.steps.set_working_directory"
        assert callable(steps.set_working_directory)
        assert kwargs == {"directory": expected}
    # The local deployment's variable is set by the image to the same directory.
    assert final_stage_env()["CLIENTES_PROJECT_DIR"] == workdir


def test_no_build_or_push_steps(prefect_yaml: dict[str, Any]) -> None:
    # No Docker here or in CI: the image is built separately (docs/kubernetes.md).
    assert not prefect_yaml.get("build")
    assert not prefect_yaml.get("push")
    for deployment in prefect_yaml["deployments"]:
        assert not deployment.get("build") and not deployment.get("push")


def _walk(node: Any, path: str = "") -> list[tuple[str, Any]]:
    if isinstance(node, dict):
        return [item for k, v in node.items() for item in _walk(v, f"{path}.{k}")]
    if isinstance(node, list):
        return [item for i, v in enumerate(node) for item in _walk(v, f"{path}[{i}]")]
    return [(path, node)]


def test_no_secret_values(prefect_yaml: dict[str, Any]) -> None:
    # Secrets reach runs through the Kubernetes Secret (env_from_secret) or the worker's env.
    leaves = _walk(prefect_yaml)
    assert not [path for path, _ in leaves if SECRET_KEY.search(path.rsplit(".", 1)[-1])]
    assert not [path for path, value in leaves if isinstance(value, str) and "://" in value and "@" in value]


@pytest.mark.parametrize("name", DOWNSTREAM)
def test_downstream_hook_triggers_on_each_completed_job(deployments: dict[str, dict[str, Any]], name: str) -> None:
    from prefect.events import DeploymentEventTrigger

    from clientes_ingest.job_events import COMPLETED

    (declared,) = deployments[name]["triggers"]
    trigger = DeploymentEventTrigger.model_validate(declared)  # what `prefect deploy` builds from it
    assert trigger.enabled and trigger.expect == {COMPLETED}
    assert trigger.match.root == {"prefect.resource.id": "clientes.job.*"}
    assert trigger.posture == "Reactive" and trigger.threshold == 1
    # The run gets the job id from the event's payload (an int, see job_events.job_counts).
    assert trigger.parameters == {"job_id": "{{ event.payload.job_id }}"}
    params, required = _flow_params(flow_def(deployments[name]["entrypoint"])[0])
    assert required == {"job_id"} == set(trigger.parameters)
    assert deployments[name]["schedules"] == []
