"""deploy/airflow: the DAG runs the batch mode on a schedule, retries an incomplete drain
(exit 3) and never retries a bad setting (exit 2), in a pod locked down like the CronJob's.

Airflow is not a dependency, so the DAG file is executed against small stand-ins for the
parts of Airflow and the Kubernetes client it uses. They model the behaviour the DAG relies
on, as apache-airflow-providers-cncf-kubernetes 10.x has it: the operator's `cleanup(pod,
remote_pod)` raises AirflowException for a pod that did not succeed, and the main
container is named by `base_container_name` ("base")."""

from __future__ import annotations

import importlib.util
import sys
import tomllib
import types
from datetime import timedelta
from typing import Any

import pytest

from tests.unit.deploy_files import ROOT, rendered

DAG_FILE = ROOT / "deploy" / "airflow" / "ingestor_drain_dag.py"


class AirflowException(Exception):
    pass


class AirflowFailException(AirflowException):
    """Fails the task without retries."""


class DAG:
    current: DAG | None = None

    def __init__(self, **kwargs: Any) -> None:
        self.kwargs = kwargs
        self.tasks: list[KubernetesPodOperator] = []

    def __enter__(self) -> DAG:
        DAG.current = self
        return self

    def __exit__(self, *exc: object) -> None:
        DAG.current = None


class KubernetesPodOperator:
    base_container_name = "base"

    def __init__(self, **kwargs: Any) -> None:
        self.kwargs = kwargs
        assert DAG.current is not None, "a task outside its DAG"
        DAG.current.tasks.append(self)

    def cleanup(self, pod: Any, remote_pod: Any) -> None:
        if remote_pod.status.phase != "Succeeded":
            raise AirflowException(f"Pod {pod.metadata.name} returned a failure.")


class Model:
    """A kubernetes.client model: its kind and keyword arguments."""

    def __init__(self, kind: str, **fields: Any) -> None:
        self.kind, self.fields = kind, fields


class Models(types.ModuleType):
    def __getattr__(self, kind: str) -> Any:
        return lambda **fields: Model(kind, **fields)


def module(name: str, **attributes: Any) -> types.ModuleType:
    found = types.ModuleType(name)
    found.__dict__.update(attributes)
    return found


@pytest.fixture
def dag(monkeypatch: pytest.MonkeyPatch) -> DAG:
    """The DAG file's DAG, executed against the stand-ins."""
    models = Models("kubernetes.client.models")
    stand_ins = {
        "airflow": module("airflow", DAG=DAG),
        "airflow.sdk": module("airflow.sdk", DAG=DAG),
        "airflow.sdk.exceptions": module(
            "airflow.sdk.exceptions",
            AirflowException=AirflowException,
            AirflowFailException=AirflowFailException,
        ),
        "airflow.providers.cncf.kubernetes.operators.pod": module(
            "pod", KubernetesPodOperator=KubernetesPodOperator
        ),
        "kubernetes": module("kubernetes"),
        "kubernetes.client": module("kubernetes.client", models=models),
        "kubernetes.client.models": models,
    }
    for name in (
        "airflow.providers",
        "airflow.providers.cncf",
        "airflow.providers.cncf.kubernetes",
    ):
        stand_ins[name] = module(name)
    stand_ins["airflow.providers.cncf.kubernetes.operators"] = module("operators")
    for name, stand_in in stand_ins.items():
        monkeypatch.setitem(sys.modules, name, stand_in)
    spec = importlib.util.spec_from_file_location("ingestor_drain_dag", DAG_FILE)
    assert spec is not None
    assert spec.loader is not None
    loaded = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(loaded)
    dag: DAG = loaded.dag
    return dag


def task(dag: DAG) -> KubernetesPodOperator:
    (found,) = dag.tasks
    return found


def retries(dag: DAG) -> int:
    value = task(dag).kwargs.get("retries", dag.kwargs["default_args"].get("retries", 0))
    return int(value)


def finished_pod(phase: str, exit_code: int) -> types.SimpleNamespace:
    terminated = types.SimpleNamespace(exit_code=exit_code)
    state = types.SimpleNamespace(terminated=terminated)
    base = types.SimpleNamespace(name="base", state=state)
    sidecar = types.SimpleNamespace(name="istio-proxy", state=state)
    status = types.SimpleNamespace(phase=phase, container_statuses=[sidecar, base])
    return types.SimpleNamespace(
        metadata=types.SimpleNamespace(name="ingestor-drain"), status=status
    )


def plain(value: Any) -> Any:
    """Models as the Kubernetes API writes them: camelCase keys, nothing unset."""
    if isinstance(value, Model):
        return {camel(k): plain(v) for k, v in value.fields.items() if v is not None}
    if isinstance(value, list):
        return [plain(item) for item in value]
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    return value


def camel(name: str) -> str:
    first, *rest = name.split("_")
    return first + "".join(word.capitalize() for word in rest)


def cronjob_pod() -> dict[str, Any]:
    (cronjob,) = [obj for obj in rendered("batch") if obj["kind"] == "CronJob"]
    spec: dict[str, Any] = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    return spec


def test_dag_drains_the_queue_hourly_with_retries(dag: DAG) -> None:
    assert dag.kwargs["dag_id"] == "ingestor_drain"
    assert dag.kwargs["schedule"] == "0 * * * *"
    assert dag.kwargs["max_active_runs"] == 1
    assert task(dag).kwargs["arguments"] == ["run", "--drain"]
    assert retries(dag) >= 1
    # Under the hourly schedule, and the pod may finish its shutdown.
    assert task(dag).kwargs["execution_timeout"] < timedelta(hours=1)
    assert (
        task(dag).kwargs["termination_grace_period"]
        == cronjob_pod()["terminationGracePeriodSeconds"]
    )


def test_a_bad_setting_fails_without_retries(dag: DAG) -> None:
    pod = finished_pod("Failed", 2)
    with pytest.raises(AirflowFailException, match="exited 2"):
        task(dag).cleanup(pod, pod)


@pytest.mark.parametrize("exit_code", [3, 1])
def test_an_incomplete_drain_or_a_failure_is_retried(dag: DAG, exit_code: int) -> None:
    pod = finished_pod("Failed", exit_code)
    with pytest.raises(AirflowException) as failure:
        task(dag).cleanup(pod, pod)
    assert not isinstance(failure.value, AirflowFailException)
    assert retries(dag) >= 1


def test_a_drained_queue_succeeds(dag: DAG) -> None:
    pod = finished_pod("Succeeded", 0)
    task(dag).cleanup(pod, pod)


def test_pod_is_locked_down_like_the_cronjobs(dag: DAG) -> None:
    kwargs = task(dag).kwargs
    spec = cronjob_pod()
    (container,) = spec["containers"]
    assert plain(kwargs["container_resources"]) == container["resources"]
    assert plain(kwargs["security_context"]) == spec["securityContext"]
    assert plain(kwargs["container_security_context"]) == container["securityContext"]
    assert plain(kwargs["volumes"]) == spec["volumes"]
    assert plain(kwargs["volume_mounts"]) == container["volumeMounts"]
    assert kwargs["automount_service_account_token"] is spec["automountServiceAccountToken"]
    assert kwargs["service_account_name"] == spec["serviceAccountName"]
    assert plain(kwargs["env_from"]) == container["envFrom"]


def test_airflow_is_not_a_dependency_of_the_package() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    requirements = list(project["dependencies"])
    for extra in project.get("optional-dependencies", {}).values():
        requirements.extend(extra)
    assert not [r for r in requirements if "airflow" in r.lower()]
    for source in (ROOT / "ingestor").rglob("*.py"):
        assert "airflow" not in source.read_text(encoding="utf-8"), source
