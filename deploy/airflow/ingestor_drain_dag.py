"""Airflow: drain the login queue into PostgreSQL on a schedule, with ingestor's batch mode.

The task runs `python -m ingestor run --drain` in the ingestor image as a Kubernetes pod:
it empties the queue, commits, deletes and exits 0 (1 if something failed, and the task
fails). Settings come from the ConfigMap and Secret of deploy/k8s, AWS credentials from the
service account's IAM role (IRSA). This file belongs to the Airflow deployment; Airflow is
not a dependency of the ingestor package.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator
from kubernetes.client import models as k8s

try:  # Airflow 3
    from airflow.sdk import DAG
except ImportError:  # Airflow 2.4+
    from airflow import DAG

with DAG(
    dag_id="ingestor_drain",
    description="SQS login events -> PostgreSQL (python -m ingestor run --drain)",
    # Hourly, like deploy/k8s/cronjob.yaml. A run ends when the queue is empty.
    schedule="0 * * * *",
    start_date=datetime(2025, 1, 1, tzinfo=UTC),
    # Runs are not tied to a time slot (the queue holds whatever is waiting), so missed
    # slots are not replayed and two runs never overlap.
    catchup=False,
    max_active_runs=1,
    default_args={
        "owner": "data-platform",
        # A failed run loses nothing (SQS keeps what was not deleted). Retries cover a
        # lost pod or node; a setting or privilege error fails again and needs a person.
        "retries": 2,
        "retry_delay": timedelta(minutes=5),
    },
    tags=["ingestor", "sqs", "postgres"],
) as dag:
    KubernetesPodOperator(
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
        # Under the hourly schedule; on timeout the pod gets SIGTERM and hands back what it
        # holds within INGESTOR_SHUTDOWN_TIMEOUT (30 s) < the grace period (60 s).
        execution_timeout=timedelta(minutes=50),
        termination_grace_period=60,
        get_logs=True,
        on_finish_action="delete_succeeded_pod",
    )
