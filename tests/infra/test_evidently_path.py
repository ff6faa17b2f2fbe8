"""The Evidently UI in the infra files reads the workspace the monitoring code writes: one source, Settings."""

from __future__ import annotations

from pathlib import Path

from recflow.settings import Settings


def _workspace_arg(command: list[str]) -> str:
    return command[command.index("--workspace") + 1]


def test_compose_mounts_the_workspace_the_code_writes(compose):
    service = compose["services"]["evidently-ui"]
    home = service["environment"]["RECFLOW_HOME"]
    assert _workspace_arg(service["command"]) == str(Settings(home=Path(home)).evidently_dir)
    assert any(v.endswith(":/data") for v in service["volumes"])  # the home's volume is there


def test_kubernetes_mounts_the_workspace_the_code_writes(k8s_docs):
    config = next(
        d for _, d in k8s_docs if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "recflow-config"
    )
    deployment = next(
        d for _, d in k8s_docs if d["kind"] == "Deployment" and d["metadata"]["name"] == "evidently-ui"
    )
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert {"configMapRef": {"name": "recflow-config"}} in container["envFrom"]
    expected = Settings(home=Path(config["data"]["RECFLOW_HOME"])).evidently_dir
    assert _workspace_arg(container["command"]) == str(expected)
    mounts = [m["mountPath"] for m in container["volumeMounts"]]
    assert any(expected.is_relative_to(m) for m in mounts)


def test_the_monitoring_code_writes_where_settings_say(tiny_settings):
    from monitoring.workspace import open_project, workspace_dir

    assert workspace_dir(tiny_settings) == tiny_settings.evidently_dir == tiny_settings.home / "evidently"
    open_project(tiny_settings)
    assert any(tiny_settings.evidently_dir.iterdir())
