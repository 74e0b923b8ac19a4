"""Trust boundaries of the Kubernetes manifests, checked without a cluster (docs/security.md).

The NetworkPolicies of k8s/networkpolicy.yaml are evaluated by a small model of Kubernetes'
NetworkPolicy semantics (a connection needs the source's egress AND the destination's ingress to allow
it; a pod no policy selects for a direction is open in that direction; rules are unions) over the pods
our manifests and the work pool's job template really create, with their real labels.
"""

from __future__ import annotations

import ipaddress
import json
import re
from dataclasses import dataclass, field
from typing import Any

import pytest
import yaml
from deploy_support import REPO, load_yaml_docs

K8S = REPO / "k8s"
NAMESPACE = "clientes-ingest"
TEMPLATE = json.loads((REPO / "deployments/k8s-base-job-template.json").read_text(encoding="utf-8"))
OBJECTS = [doc for path in sorted(K8S.glob("*.yaml")) if path.name != "kustomization.yaml"
           for doc in load_yaml_docs(path)]
POLICIES = [o for o in OBJECTS if o["kind"] == "NetworkPolicy"]
WORKLOADS = {o["metadata"]["name"]: o for o in OBJECTS if o["kind"] in {"Deployment", "StatefulSet", "Job"}}
AUTH_KEY = "PREFECT_API_AUTH_STRING"


# ------------------------------------------------------------------------------ the policy model


@dataclass(frozen=True)
class Endpoint:
    name: str
    ip: str
    namespace: str | None = None  # None: outside the cluster
    labels: dict[str, str] = field(default_factory=dict, hash=False)

    @property
    def namespace_labels(self) -> dict[str, str]:
        return {"kubernetes.io/metadata.name": self.namespace} if self.namespace else {}


def _matches(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    assert set(selector) <= {"matchLabels"}, f"the model knows matchLabels only: {selector}"
    return selector.get("matchLabels", {}).items() <= labels.items()


def _peer_matches(peer: dict[str, Any], policy_namespace: str, endpoint: Endpoint) -> bool:
    if "ipBlock" in peer:
        address = ipaddress.ip_address(endpoint.ip)
        block = peer["ipBlock"]
        return address in ipaddress.ip_network(block["cidr"]) and not any(
            address in ipaddress.ip_network(cidr) for cidr in block.get("except", []))
    if endpoint.namespace is None:
        return False
    if "namespaceSelector" in peer:
        if not _matches(peer["namespaceSelector"], endpoint.namespace_labels):
            return False
    elif endpoint.namespace != policy_namespace:
        return False
    return _matches(peer.get("podSelector", {}), endpoint.labels)


def _port_matches(rule: dict[str, Any], port: int, protocol: str) -> bool:
    ports = rule.get("ports")
    return not ports or any(p.get("protocol", "TCP") == protocol and p["port"] == port for p in ports)


def _direction_allows(pod: Endpoint, other: Endpoint, port: int, protocol: str, direction: str) -> bool:
    if pod.namespace != NAMESPACE:
        return True  # not ours: the model assumes nothing restricts it
    selecting = [p for p in POLICIES if direction in p["spec"]["policyTypes"]
                 and _matches(p["spec"]["podSelector"], pod.labels)]
    if not selecting:
        return True
    key, peers_key = ("egress", "to") if direction == "Egress" else ("ingress", "from")
    for policy in selecting:
        for rule in policy["spec"].get(key, []):
            peers = rule.get(peers_key)
            if (not peers or any(_peer_matches(peer, NAMESPACE, other) for peer in peers)) and _port_matches(
                    rule, port, protocol):
                return True
    return False


def allowed(source: Endpoint, destination: Endpoint, port: int, protocol: str = "TCP") -> bool:
    return (_direction_allows(source, destination, port, protocol, "Egress")
            and _direction_allows(destination, source, port, protocol, "Ingress"))


def _pod(name: str, labels: dict[str, str], number: int) -> Endpoint:
    return Endpoint(name, f"10.244.0.{number}", NAMESPACE, labels)


def _workload_pod(name: str, number: int) -> Endpoint:
    return _pod(name, WORKLOADS[name]["spec"]["template"]["metadata"]["labels"], number)


PODS = {
    "worker": _workload_pod("prefect-worker", 2),
    "server": _workload_pod("prefect-server", 3),
    "api": _workload_pod("clientes-ingest-api", 4),
    "trigger": _workload_pod("clientes-ingest-trigger", 5),
    "mssql": _workload_pod("mssql", 6),
    "schema": _workload_pod("clientes-ingest-schema", 7),
    "deploy": _workload_pod("prefect-deploy", 8),
    "flow": _pod("flow-run", TEMPLATE["job_configuration"]["job_manifest"]["spec"]["template"]["metadata"]["labels"],
                 9),
    "stranger": _pod("stranger", {"app": "debug"}, 10),  # any other pod of the namespace
}
OTHER_NAMESPACE = Endpoint("other-namespace", "10.244.1.2", "team-b", {"app.kubernetes.io/name": "prefect-server"})
KUBE_DNS = Endpoint("kube-dns", "10.244.2.2", "kube-system", {"k8s-app": "kube-dns"})
S3 = Endpoint("s3.amazonaws.com", "52.216.8.10")
INTERNET = Endpoint("internet", "203.0.113.9")
METADATA = Endpoint("instance metadata", "169.254.169.254")
VPC_HOST = Endpoint("a private VPC host", "10.20.30.40")
KUBE_API = Endpoint("kubernetes API", "10.96.0.1")

ALLOWED = [
    *[(PODS[p], PODS["server"], 4200) for p in ("worker", "api", "trigger", "flow", "deploy")],
    *[(PODS[p], PODS["mssql"], 1433) for p in ("api", "trigger", "flow", "schema")],
    *[(PODS[p], S3, 443) for p in ("api", "trigger", "flow")],
    (PODS["worker"], KUBE_API, 443),
    (INTERNET, PODS["api"], 8000),
    (OTHER_NAMESPACE, PODS["api"], 8000),
]
DENIED = [
    # The Prefect server (blocks hold the database URL and AWS keys): only our clients.
    *[(source, PODS["server"], 4200) for source in (PODS["stranger"], PODS["mssql"], PODS["schema"], OTHER_NAMESPACE,
                                                      INTERNET)],
    (PODS["api"], PODS["server"], 8080),
    # SQL Server: only the pods that load or register jobs.
    *[(PODS[p], PODS["mssql"], 1433) for p in ("stranger", "worker", "deploy", "server")],
    (OTHER_NAMESPACE, PODS["mssql"], 1433),
    (INTERNET, PODS["mssql"], 1433),
    # Flow-run pods: nowhere else (no metadata service, no private hosts, no other ports, no API server).
    *[(PODS["flow"], target, port) for target, port in ((METADATA, 80), (METADATA, 443), (VPC_HOST, 443),
                                                          (INTERNET, 80), (INTERNET, 22), (KUBE_API, 443),
                                                          (PODS["api"], 8000), (PODS["trigger"], 9100),
                                                          (PODS["worker"], 8080))],
    # Pods with no reason to leave the cluster do not.
    *[(PODS[p], INTERNET, 443) for p in ("server", "mssql", "schema", "deploy", "stranger")],
    *[(PODS[p], KUBE_API, 443) for p in ("api", "trigger", "server", "deploy")],
    # Nothing but the API is reachable from outside the namespace.
    *[(INTERNET, PODS[p], port) for p, port in (("worker", 8080), ("trigger", 9100), ("flow", 8080))],
    (PODS["stranger"], PODS["api"], 9999),
]


def _id(case: tuple[Endpoint, Endpoint, int]) -> str:
    return f"{case[0].name}->{case[1].name}:{case[2]}"


@pytest.mark.parametrize("case", ALLOWED, ids=[_id(c) for c in ALLOWED])
def test_network_policies_allow_the_flows_the_pipeline_needs(case: tuple[Endpoint, Endpoint, int]) -> None:
    assert allowed(*case)


@pytest.mark.parametrize("case", DENIED, ids=[_id(c) for c in DENIED])
def test_network_policies_deny_everything_else(case: tuple[Endpoint, Endpoint, int]) -> None:
    assert not allowed(*case)


@pytest.mark.parametrize("name", sorted(PODS))
def test_every_pod_resolves_names(name: str) -> None:
    assert allowed(PODS[name], KUBE_DNS, 53, "UDP") and allowed(PODS[name], KUBE_DNS, 53, "TCP")
    assert not allowed(PODS[name], KUBE_DNS, 80)


def test_the_namespace_denies_by_default() -> None:
    default = [p for p in POLICIES if p["spec"]["podSelector"] == {}
               and set(p["spec"]["policyTypes"]) == {"Ingress", "Egress"}]
    assert default and not any(p["spec"].get("ingress") or p["spec"].get("egress") for p in default)
    # The model is not vacuous: without the policies every pair above would be allowed.
    saved = list(POLICIES)
    POLICIES.clear()
    try:
        assert all(allowed(*case) for case in DENIED)
    finally:
        POLICIES.extend(saved)


# ------------------------------------------------------------------------- Prefect server auth


def _env(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {var["name"]: var for var in container.get("env", [])}


def _secret_keys(name: str) -> set[str]:
    (secret,) = [o for o in OBJECTS if o["kind"] == "Secret" and o["metadata"]["name"] == name]
    return set(secret.get("stringData", {}))


def _reads_auth_string_from_a_secret(container: dict[str, Any]) -> bool:
    var = _env(container).get(AUTH_KEY)
    if var is not None:
        assert "value" not in var, "the auth string must come from a Secret"
        ref = var["valueFrom"]["secretKeyRef"]
        return ref["key"] in _secret_keys(ref["name"])
    return any("secretRef" in source and AUTH_KEY in _secret_keys(source["secretRef"]["name"])
               for source in container.get("envFrom", []))


def test_installed_prefect_has_server_basic_auth() -> None:
    import prefect
    from prefect.settings import PREFECT_API_AUTH_STRING, PREFECT_SERVER_API_AUTH_STRING

    assert PREFECT_SERVER_API_AUTH_STRING.name == "PREFECT_SERVER_API_AUTH_STRING"
    assert PREFECT_API_AUTH_STRING.name == AUTH_KEY
    # The server image runs the version the tests (and the dev stack's real server) use.
    (container,) = WORKLOADS["prefect-server"]["spec"]["template"]["spec"]["containers"]
    assert container["image"] == f"prefecthq/prefect:{prefect.__version__}-python3.11"


def test_prefect_server_requires_the_auth_string_from_the_secret() -> None:
    (container,) = WORKLOADS["prefect-server"]["spec"]["template"]["spec"]["containers"]
    ref = _env(container)["PREFECT_SERVER_API_AUTH_STRING"]["valueFrom"]["secretKeyRef"]
    assert ref == {"name": "clientes-ingest-secrets", "key": AUTH_KEY}
    assert AUTH_KEY in _secret_keys("clientes-ingest-secrets")
    # Its probes hit the one route Prefect leaves open under auth.
    assert container["readinessProbe"]["httpGet"]["path"] == "/api/health"


@pytest.mark.parametrize("name", ["prefect-worker", "clientes-ingest-api", "clientes-ingest-trigger", "prefect-deploy"])
def test_every_prefect_client_sends_the_auth_string(name: str) -> None:
    labels = WORKLOADS[name]["spec"]["template"]["metadata"]["labels"]
    assert labels.get("clientes-ingest/prefect-client") == "true"
    containers = WORKLOADS[name]["spec"]["template"]["spec"]["containers"]
    assert all(_reads_auth_string_from_a_secret(c) for c in containers), name


def test_flow_run_pods_send_the_auth_string() -> None:
    (container,) = TEMPLATE["job_configuration"]["job_manifest"]["spec"]["template"]["spec"]["containers"]
    assert _reads_auth_string_from_a_secret(container)


def test_prefect_clients_are_exactly_the_labelled_pods() -> None:
    clients = {name for name, w in WORKLOADS.items()
               if w["spec"]["template"]["metadata"]["labels"].get("clientes-ingest/prefect-client") == "true"}
    assert clients == {"prefect-worker", "clientes-ingest-api", "clientes-ingest-trigger", "prefect-deploy"}


# ----------------------------------------------------------------------- pod hardening, images

# The one container that keeps a writable root filesystem, and why (the manifest says it too).
WRITABLE_ROOT = {("mssql", "mssql"): "SQL Server on Linux writes outside /var/opt/mssql at start-up"}
# Exact versions: a release (x.y.z, optionally with a variant suffix) or a SQL Server cumulative update.
EXACT_TAG = r"(\d+\.\d+\.\d+([-.][\w.-]+)?|\d{4}-CU\d+-ubuntu-\d+\.\d+)"


def _pod_specs() -> list[tuple[str, dict[str, Any]]]:
    specs = [(name, w["spec"]["template"]["spec"]) for name, w in WORKLOADS.items()]
    return [*specs, ("flow-run", TEMPLATE["job_configuration"]["job_manifest"]["spec"]["template"]["spec"])]


@pytest.mark.parametrize(("name", "spec"), _pod_specs(), ids=[n for n, _ in _pod_specs()])
def test_root_filesystems_are_read_only_and_scratch_space_is_bounded(name: str, spec: dict[str, Any]) -> None:
    for container in [*spec.get("initContainers", []), *spec["containers"]]:
        read_only = container["securityContext"].get("readOnlyRootFilesystem")
        if (name, container["name"]) in WRITABLE_ROOT:
            assert read_only is False, "say so explicitly where the root filesystem stays writable"
        else:
            assert read_only is True, f"{name}/{container['name']}"
    for volume in spec.get("volumes", []):
        if "emptyDir" in volume:
            assert volume["emptyDir"].get("sizeLimit"), f"{name}: emptyDir {volume['name']} has no sizeLimit"
    assert spec.get("automountServiceAccountToken") is False or name == "prefect-worker"


def test_prefect_server_writes_only_to_its_volumes() -> None:
    (container,) = WORKLOADS["prefect-server"]["spec"]["template"]["spec"]["containers"]
    env = {var["name"]: var.get("value") for var in container["env"]}
    mounts = [m["mountPath"] for m in container["volumeMounts"]]
    assert env["PREFECT_HOME"].startswith("/data/")  # its database
    assert any(env["PREFECT_UI_STATIC_DIRECTORY"].startswith(m + "/") for m in mounts)  # the UI it writes


def _all_images() -> list[tuple[str, str]]:
    images = [(f"k8s:{name}", c["image"]) for name, spec in _pod_specs()
              for c in [*spec.get("initContainers", []), *spec["containers"]]]
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text(encoding="utf-8"))
    images += [(f"compose:{name}", s["image"]) for name, s in compose["services"].items()
               if s.get("image") and not s.get("build")]
    dockerfile = (REPO / "Dockerfile").read_text(encoding="utf-8")
    images += [("Dockerfile", m) for m in re.findall(r"^ARG PYTHON_IMAGE=(\S+)$", dockerfile, re.MULTILINE)]
    return images


@pytest.mark.parametrize(("where", "image"), _all_images(), ids=[f"{w}={i}" for w, i in _all_images()])
def test_images_are_pinned_to_an_exact_version_or_digest(where: str, image: str) -> None:
    name, _, tag = image.partition("@")[0].rpartition(":")
    assert name and tag, f"{where}: {image} has no tag"
    assert "@sha256:" in image or re.fullmatch(EXACT_TAG, tag), f"{where}: {image} is a floating tag"


@pytest.mark.parametrize("floating", ["prefecthq/prefect:3-python3.11", "mcr.microsoft.com/mssql/server:2022-latest",
                                      "motoserver/moto:latest", "python:3.11-slim-bookworm", "redis:7"])
def test_the_pin_check_refuses_floating_tags(floating: str) -> None:
    with pytest.raises(AssertionError):
        test_images_are_pinned_to_an_exact_version_or_digest("example", floating)
