"""Airflow: drain the login queue into PostgreSQL on a schedule, with ingestor's batch mode.

The task runs `python -m ingestor run --drain` in the ingestor image as a Kubernetes pod,
locked down like the CronJob of deploy/k8s/overlays/batch. Its exit code decides what
happens next:
  0  the queue is empty and everything is committed: success;
  2  a bad setting: the task fails at once, without retries (it would fail the same way);
  3  the drain is incomplete (stopped by a signal, or messages still held by another
     consumer): the task fails and Airflow runs it again (its retries);
  1  a runtime failure: retried the same way (a lost pod or node looks like this too).
Settings come from the ConfigMap and Secret of deploy/k8s, AWS credentials from the
service account's IAM role (IRSA). This file belongs to the Airflow deployment; Airflow is
not a dependency of the ingestor package.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator
from kubernetes.client import models as k8s

try:  # Airflow 3
    from airflow.sdk import DAG
    from airflow.sdk.exceptions import AirflowException, AirflowFailException
except ImportError:  # Airflow 2.4+
    from airflow import DAG
    from airflow.exceptions import AirflowException, AirflowFailException

EXIT_CONFIG = 2  # `run --drain`: a bad setting (see the docstring for the others)


def exit_code(pod: Any, container: str) -> int | None:
    """The exit code of `container` in a finished pod, when the pod's status has one."""
    status = getattr(pod, "status", None)
    for container_status in getattr(status, "container_statuses", None) or []:
        terminated = getattr(container_status.state, "terminated", None)
        if container_status.name == container and terminated is not None:
            return int(terminated.exit_code)
    return None


class DrainPodOperator(KubernetesPodOperator):
    """KubernetesPodOperator whose failure is not retried when the drain exits 2."""

    def cleanup(self, pod: Any, remote_pod: Any, *args: Any, **kwargs: Any) -> None:
        # The provider raises AirflowException here for a failed pod; a bad setting becomes
        # AirflowFailException, which Airflow does not retry.
        try:
            super().cleanup(pod, remote_pod, *args, **kwargs)
        except AirflowException as failure:
            if exit_code(remote_pod, self.base_container_name) != EXIT_CONFIG:
                raise
            raise AirflowFailException(
                "ingestor exited 2: a setting is missing or wrong (the pod's log names it); "
                "not retried, fix the ConfigMap or Secret"
            ) from failure


with DAG(
    dag_id="ingestor_drain",
    description="SQS login events -> PostgreSQL (python -m ingestor run --drain)",
    # Hourly, like the CronJob of deploy/k8s/overlays/batch. A run ends when the queue is
    # empty.
    schedule="0 * * * *",
    start_date=datetime(2025, 1, 1, tzinfo=UTC),
    # Runs are not tied to a time slot (the queue holds whatever is waiting), so missed
    # slots are not replayed and two runs never overlap.
    catchup=False,
    max_active_runs=1,
    default_args={
        "owner": "data-platform",
        # A failed run loses nothing (SQS keeps what was not deleted). Retries run an
        # incomplete drain again and cover a lost pod or node; exit 2 is never retried.
        "retries": 2,
        "retry_delay": timedelta(minutes=5),
    },
    tags=["ingestor", "sqs", "postgres"],
) as dag:
    DrainPodOperator(
        task_id="drain_login_queue",
        name="ingestor-drain",
        namespace="ingestor",
        image="registry.example.com/ingestor:0.1.0",
        arguments=["run", "--drain"],
        env_from=[
            k8s.V1EnvFromSource(config_map_ref=k8s.V1ConfigMapEnvSource(name="ingestor-config")),
            k8s.V1EnvFromSource(secret_ref=k8s.V1SecretEnvSource(name="ingestor-secrets")),
        ],
        service_account_name="ingestor",
        # No Kubernetes API token; IRSA brings its own (deploy/k8s/base/serviceaccount.yaml).
        automount_service_account_token=False,
        # The same limits and lock-down as the CronJob's pod.
        container_resources=k8s.V1ResourceRequirements(
            requests={"cpu": "250m", "memory": "256Mi"},
            limits={"cpu": "1", "memory": "512Mi"},
        ),
        security_context=k8s.V1PodSecurityContext(
            run_as_non_root=True,
            run_as_user=10001,
            run_as_group=10001,
            seccomp_profile=k8s.V1SeccompProfile(type="RuntimeDefault"),
        ),
        container_security_context=k8s.V1SecurityContext(
            allow_privilege_escalation=False,
            read_only_root_filesystem=True,
            capabilities=k8s.V1Capabilities(drop=["ALL"]),
        ),
        # The only writable path, the root filesystem being read-only.
        volumes=[
            k8s.V1Volume(
                name="tmp",
                empty_dir=k8s.V1EmptyDirVolumeSource(medium="Memory", size_limit="16Mi"),
            )
        ],
        volume_mounts=[k8s.V1VolumeMount(name="tmp", mount_path="/tmp")],  # noqa: S108 - in the pod
        # Under the hourly schedule; on timeout the pod gets SIGTERM and hands back what it
        # holds within INGESTOR_SHUTDOWN_TIMEOUT (30 s) < the grace period (60 s).
        execution_timeout=timedelta(minutes=50),
        termination_grace_period=60,
        get_logs=True,
        on_finish_action="delete_succeeded_pod",
    )
