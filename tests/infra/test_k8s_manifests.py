"""Kubernetes manifests: offline schema validation, the work pool's job template, probes, autoscaling."""

from __future__ import annotations

import copy
import json

import kubernetes_validate
import pytest
from prefect.utilities.templating import apply_values

K8S_VERSION = "1.30"


def _kind(docs, kind: str) -> list[dict]:
    return [d for _, d in docs if d["kind"] == kind]


def _by_name(docs, kind: str, name: str) -> dict:
    found = [d for d in _kind(docs, kind) if d["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind} {name!r}, found {len(found)}"
    return found[0]


def test_every_manifest_validates_against_the_kubernetes_schema(k8s_docs):
    kinds = set()
    for path, doc in k8s_docs:
        try:
            kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
        except kubernetes_validate.ValidationError as e:
            pytest.fail(f"{path.name}: {doc['kind']} {doc['metadata'].get('name')}: {e.message}")
        kinds.add(doc["kind"])
    assert {"Deployment", "Service", "HorizontalPodAutoscaler", "ConfigMap", "Job", "StatefulSet"} <= kinds


def test_the_validator_rejects_a_broken_manifest(k8s_docs):
    """The schemas ship with the package (no network) and a misspelt field fails strict validation."""
    doc = copy.deepcopy(_by_name(k8s_docs, "Deployment", "recommender"))
    doc["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = doc["spec"]["template"]["spec"][
        "containers"
    ][0].pop("readinessProbe")
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def test_every_object_is_in_the_recflow_namespace(k8s_docs):
    for path, doc in k8s_docs:
        if doc["kind"] != "Namespace":
            assert doc["metadata"].get("namespace") == "recflow", f"{path.name}: {doc['metadata']['name']}"


def test_bentoml_deployment_probes_and_autoscaler(k8s_docs):
    deployment = _by_name(k8s_docs, "Deployment", "recommender")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": 3000}
    assert container["livenessProbe"]["httpGet"] == {"path": "/livez", "port": 3000}
    assert {"containerPort": 3000, "name": "http"} in container["ports"]
    assert container["resources"]["requests"]["cpu"], "the HPA's CPU target needs a CPU request"
    key = [e for e in container["env"] if e["name"] == "RECFLOW_SERVING__API_KEY"]
    assert key and key[0]["valueFrom"]["secretKeyRef"]["name"] == "recflow-secrets"

    service = _by_name(k8s_docs, "Service", "recommender")
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
    assert service["spec"]["ports"][0]["targetPort"] == 3000

    hpa = _by_name(k8s_docs, "HorizontalPodAutoscaler", "recommender")
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "recommender",
    }
    assert 1 <= hpa["spec"]["minReplicas"] < hpa["spec"]["maxReplicas"]


def test_services_select_the_pods_of_their_workload(k8s_docs):
    pods = [
        d["spec"]["template"]["metadata"]["labels"]
        for d in _kind(k8s_docs, "Deployment") + _kind(k8s_docs, "StatefulSet")
    ]
    for service in _kind(k8s_docs, "Service"):
        selector = service["spec"]["selector"]
        assert any(selector.items() <= labels.items() for labels in pods), service["metadata"]["name"]


def test_config_maps_and_secrets_referenced_by_pods_exist(k8s_docs):
    config_maps = {d["metadata"]["name"] for d in _kind(k8s_docs, "ConfigMap")}
    claims = {d["metadata"]["name"] for d in _kind(k8s_docs, "PersistentVolumeClaim")}
    for doc in _kind(k8s_docs, "Deployment") + _kind(k8s_docs, "StatefulSet") + _kind(k8s_docs, "Job"):
        spec = doc["spec"]["template"]["spec"]
        for container in spec["containers"]:
            for source in container.get("envFrom", []):
                assert source["configMapRef"]["name"] in config_maps
            for env in container.get("env", []):
                ref = env.get("valueFrom", {}).get("secretKeyRef")
                assert ref is None or ref["name"] == "recflow-secrets", "secrets come from recflow-secrets"
                assert "value" in env or ref, env
        for volume in spec.get("volumes", []):
            if "persistentVolumeClaim" in volume:
                assert volume["persistentVolumeClaim"]["claimName"] in claims
            if "configMap" in volume:
                assert volume["configMap"]["name"] in config_maps


def test_no_literal_secret_in_the_manifests(k8s_docs):
    assert not _kind(k8s_docs, "Secret"), "secrets are created with kubectl, never committed"
    for _, doc in k8s_docs:
        if doc["kind"] == "ConfigMap":
            for key in doc["data"]:
                assert not any(w in key.upper() for w in ("PASSWORD", "API_KEY", "SECRET", "DATABASE_URL"))


def _work_pool_template(k8s_docs) -> dict:
    config_map = _by_name(k8s_docs, "ConfigMap", "prefect-work-pool")
    return json.loads(config_map["data"]["base-job-template.json"])


def test_work_pool_job_template_renders_to_a_valid_job(k8s_docs):
    """Render the base job template with Prefect's own templating, as the Kubernetes worker does."""
    template = _work_pool_template(k8s_docs)
    variables = template["variables"]["properties"]
    values = {k: v["default"] for k, v in variables.items() if "default" in v}
    values |= {
        "name": "flow-run-abc",
        "labels": {"prefect.io/flow-run-id": "abc"},
        "env": {"RECFLOW_DATA__N_USERS": "30000"},
        "command": "prefect flow-run execute",
    }
    config = apply_values(template["job_configuration"], values)
    manifest = config["job_manifest"]
    # the worker turns the `env` mapping into a list and splits the command into args
    container = manifest["spec"]["template"]["spec"]["containers"][0]
    container["env"] = [{"name": k, "value": v} for k, v in container["env"].items()]
    container["args"] = container["args"].split()
    # Prefect's Kubernetes worker insists on these two pod-spec keys (its base manifest check); the API
    # server drops them as unknown fields, so strict validation sees the Job without them.
    pod_spec = manifest["spec"]["template"]["spec"]
    assert (pod_spec.pop("parallelism"), pod_spec.pop("completions")) == (1, 1)
    kubernetes_validate.validate(manifest, K8S_VERSION, strict=True)

    assert manifest["metadata"]["namespace"] == "recflow"
    assert container["image"] == "recflow:0.1.0"
    assert {"configMapRef": {"name": "recflow-config"}} in container["envFrom"]
    assert {"name": "recflow-home", "mountPath": "/data"} in container["volumeMounts"]
    service_accounts = {d["metadata"]["name"] for d in _kind(k8s_docs, "ServiceAccount")}
    assert manifest["spec"]["template"]["spec"]["serviceAccountName"] in service_accounts


def test_work_pool_is_created_and_polled_as_kubernetes(k8s_docs):
    job = _by_name(k8s_docs, "Job", "prefect-work-pool-create")
    command = job["spec"]["template"]["spec"]["containers"][0]["command"]
    assert command[:4] == ["prefect", "work-pool", "create", "recflow-k8s"]
    assert command[command.index("--type") + 1] == "kubernetes"
    worker = _by_name(k8s_docs, "Deployment", "prefect-worker")
    (container,) = worker["spec"]["template"]["spec"]["containers"]
    assert container["command"][container["command"].index("--pool") + 1] == "recflow-k8s"
    assert container["image"].endswith("-kubernetes"), "the Kubernetes worker needs prefect-kubernetes"
    assert worker["spec"]["template"]["spec"]["serviceAccountName"] == "prefect-worker"
    role = _by_name(k8s_docs, "Role", "prefect-worker")
    assert any("jobs" in r["resources"] and "create" in r["verbs"] for r in role["rules"])
