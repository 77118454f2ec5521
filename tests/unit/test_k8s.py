"""deploy/k8s: every built-in manifest valid for current Kubernetes (kubernetes-validate,
strict), the KEDA objects valid against KEDA's own CRD schemas (vendored in tests/data),
and the files consistent with each other, the Dockerfile and the service's settings."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
from kubernetes_validate.utils import major_minor

from ingestor.errors import ConfigError
from ingestor.settings import Settings, env_name, load_settings
from tests.conftest import TEST_KEY
from tests.unit.deploy_files import (
    DATA,
    DEFAULT_SHUTDOWN_TIMEOUT,
    K8S,
    dockerfile,
    env_values,
    yaml_document,
    yaml_documents,
)

# The oldest Kubernetes these manifests are meant for, and the newest the installed
# kubernetes-validate knows.
KUBERNETES_VERSIONS = sorted({"1.30", major_minor(kubernetes_validate.latest_version())})
KEDA_CRDS = {
    "ScaledObject": "keda.sh_scaledobjects.yaml",
    "TriggerAuthentication": "keda.sh_triggerauthentications.yaml",
}
# Trigger metadata is a free map of strings in the CRD; these are the aws-sqs-queue
# scaler's parameters (KEDA 2.x docs), so a misspelt one fails here instead of being ignored.
SQS_SCALER_PARAMETERS = {
    "queueURL",
    "queueURLFromEnv",
    "queueLength",
    "activationQueueLength",
    "awsRegion",
    "awsEndpoint",
    "scaleOnInFlight",
    "scaleOnDelayed",
}
SECRET_SETTINGS = {"INGESTOR_DATABASE_URL", "INGESTOR_HMAC_KEY"}
# Settings of the metrics server, which this checkout's Settings may not know yet.
METRICS_SETTINGS = {"INGESTOR_METRICS_PORT", "INGESTOR_METRICS_HOST"}

MANIFESTS = sorted(path for path in K8S.glob("*.yaml") if path.name != "kustomization.yaml")


def documents() -> list[tuple[Path, dict[str, Any]]]:
    return [(path, document) for path in MANIFESTS for document in yaml_documents(path)]


def builtin() -> list[tuple[Path, dict[str, Any]]]:
    return [(p, d) for p, d in documents() if not d["apiVersion"].startswith("keda.sh/")]


def one(kind: str) -> dict[str, Any]:
    (found,) = [document for _, document in documents() if document["kind"] == kind]
    return found


def pod_specs() -> dict[str, dict[str, Any]]:
    """The pod templates of the Deployment and the CronJob."""
    deployment, cronjob = one("Deployment"), one("CronJob")
    return {
        "Deployment": deployment["spec"]["template"]["spec"],
        "CronJob": cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"],
    }


def container(kind: str) -> dict[str, Any]:
    (found,) = pod_specs()[kind]["containers"]
    return found


def config() -> dict[str, str]:
    data: dict[str, str] = one("ConfigMap")["data"]
    return data


def trigger() -> dict[str, Any]:
    (found,) = one("ScaledObject")["spec"]["triggers"]
    return found


# --- schemas ----------------------------------------------------------------------------


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize(
    ("path", "document"), builtin(), ids=[f"{p.name}:{d['kind']}" for p, d in builtin()]
)
def test_builtin_manifest_is_valid(path: Path, document: dict[str, Any], version: str) -> None:
    kubernetes_validate.validate(document, version, strict=True)


def test_strict_validation_catches_unknown_fields() -> None:
    deployment = copy.deepcopy(one("Deployment"))
    deployment["spec"]["template"]["spec"]["containers"][0]["livenessProbe"]["httpGet"]["prot"] = 1
    with pytest.raises(kubernetes_validate.ValidationError, match="prot"):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSIONS[0], strict=True)


def closed(schema: dict[str, Any]) -> dict[str, Any]:
    """The CRD's schema with unknown fields refused, as the API server's strict field
    validation does (plain JSON Schema would accept them silently)."""
    result = dict(schema)
    if "properties" in result:
        result["properties"] = {name: closed(sub) for name, sub in result["properties"].items()}
        if not result.get("x-kubernetes-preserve-unknown-fields"):
            result.setdefault("additionalProperties", False)
    for key in ("items", "additionalProperties"):
        if isinstance(result.get(key), dict):
            result[key] = closed(result[key])
    for key in ("anyOf", "allOf", "oneOf"):
        if key in result:
            result[key] = [closed(sub) for sub in result[key]]
    return result


def crd_validator(kind: str) -> jsonschema.Draft7Validator:
    crd = yaml_document(DATA / KEDA_CRDS[kind])
    assert crd["spec"]["names"]["kind"] == kind
    (version,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1alpha1"]
    return jsonschema.Draft7Validator(closed(version["schema"]["openAPIV3Schema"]))


def crd_errors(document: dict[str, Any]) -> list[str]:
    validator = crd_validator(document["kind"])
    return [
        f"{'/'.join(map(str, error.absolute_path))}: {error.message}"
        for error in validator.iter_errors(document)
    ]


@pytest.mark.parametrize("kind", sorted(KEDA_CRDS))
def test_keda_object_matches_the_crd(kind: str) -> None:
    document = one(kind)
    assert document["apiVersion"] == "keda.sh/v1alpha1"
    assert crd_errors(document) == []


def test_keda_schema_catches_mistakes() -> None:
    scaled = copy.deepcopy(one("ScaledObject"))
    scaled["spec"]["minReplicas"] = 1  # not a field: minReplicaCount
    scaled["spec"]["triggers"][0]["metadata"]["queueLength"] = 10_000  # must be a string
    found = crd_errors(scaled)
    assert any("minReplicas" in error for error in found), found
    assert any("queueLength" in error for error in found), found
    auth = copy.deepcopy(one("TriggerAuthentication"))
    auth["spec"]["podIdentity"]["provider"] = "aws-kiam"  # removed from KEDA
    assert crd_errors(auth)


def test_scaledobject_rules_beyond_the_schema() -> None:
    spec = one("ScaledObject")["spec"]
    # The CRD's CEL rule, which JSON Schema cannot express.
    assert spec.get("minReplicaCount", 0) <= spec.get("maxReplicaCount", 100)
    assert trigger()["type"] == "aws-sqs-queue"
    assert set(trigger()["metadata"]) <= SQS_SCALER_PARAMETERS


# --- consistency -------------------------------------------------------------------------


def test_kustomization_lists_every_manifest_but_the_example_secret() -> None:
    kustomization = yaml_document(K8S / "kustomization.yaml")
    listed = kustomization["resources"]
    assert len(listed) == len(set(listed))
    assert set(listed) == {p.name for p in MANIFESTS} - {"secret.example.yaml"}
    images = {image["name"] for image in kustomization.get("images", [])}
    assert images == {container(kind)["image"].rsplit(":", 1)[0] for kind in pod_specs()}


def test_every_manifest_says_why() -> None:
    for path in [*MANIFESTS, K8S / "kustomization.yaml"]:
        assert path.read_text(encoding="utf-8").startswith("#"), f"{path.name}: no comment"


def test_probes_and_scraping_use_the_metrics_port() -> None:
    deployment = one("Deployment")
    main = container("Deployment")
    ports = {port["name"]: port["containerPort"] for port in main["ports"]}
    port = int(config()["INGESTOR_METRICS_PORT"])
    assert ports == {"metrics": port}
    assert env_values(dockerfile()[-1])["INGESTOR_METRICS_PORT"] == str(port)
    for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
        request = main[probe]["httpGet"]
        assert request["path"] == path
        assert request["port"] in ("metrics", port)
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/port"] == str(port)
    assert annotations["prometheus.io/path"] == "/metrics"


def test_grace_period_exceeds_the_shutdown_timeout() -> None:
    timeout = float(config().get("INGESTOR_SHUTDOWN_TIMEOUT", DEFAULT_SHUTDOWN_TIMEOUT))
    for kind, spec in pod_specs().items():
        assert spec["terminationGracePeriodSeconds"] > timeout, kind


def test_pods_run_locked_down_as_the_image_user() -> None:
    user = next(i for i in reversed(dockerfile()[-1]) if i.keyword == "USER").arguments
    uid = int(user.split(":")[0])
    for kind, spec in pod_specs().items():
        assert spec["securityContext"]["runAsNonRoot"] is True, kind
        assert spec["securityContext"]["runAsUser"] == uid, kind
        assert spec["serviceAccountName"] == one("ServiceAccount")["metadata"]["name"]
        context = container(kind)["securityContext"]
        assert context["readOnlyRootFilesystem"] is True, kind
        assert context["allowPrivilegeEscalation"] is False, kind
        assert context["capabilities"]["drop"] == ["ALL"], kind
        resources = container(kind)["resources"]
        assert {"cpu", "memory"} <= set(resources["requests"]), kind
        assert "memory" in resources["limits"], kind


def test_pods_read_the_configmap_and_the_secret() -> None:
    secret = yaml_document(K8S / "secret.example.yaml")
    for kind in pod_specs():
        sources = container(kind)["envFrom"]
        assert {s["configMapRef"]["name"] for s in sources if "configMapRef" in s} == {
            one("ConfigMap")["metadata"]["name"]
        }
        assert {s["secretRef"]["name"] for s in sources if "secretRef" in s} == {
            secret["metadata"]["name"]
        }
    assert container("Deployment")["image"] == container("CronJob")["image"]


def test_scaledobject_scales_the_deployment_with_irsa() -> None:
    target = one("ScaledObject")["spec"]["scaleTargetRef"]
    assert target.get("kind", "Deployment") == "Deployment"
    assert target.get("apiVersion", "apps/v1") == "apps/v1"
    assert target["name"] == one("Deployment")["metadata"]["name"]
    assert "replicas" not in one("Deployment")["spec"], "KEDA owns the replica count"
    auth = one("TriggerAuthentication")
    assert trigger()["authenticationRef"]["name"] == auth["metadata"]["name"]
    assert auth["spec"]["podIdentity"]["provider"] == "aws"
    role = one("ServiceAccount")["metadata"]["annotations"]["eks.amazonaws.com/role-arn"]
    assert re.fullmatch(r"arn:aws:iam::\d{12}:role/[\w+=,.@/-]+", role), role


def test_scaler_reads_the_service_queue() -> None:
    metadata = trigger()["metadata"]
    queue_url = config()["INGESTOR_QUEUE_URL"]
    assert metadata["queueURL"] == queue_url
    region = re.fullmatch(r"https://sqs\.([a-z0-9-]+)\.amazonaws\.com/\d{12}/[\w-]+", queue_url)
    assert region, queue_url
    assert metadata["awsRegion"] == config()["AWS_REGION"] == region[1]


def test_scaling_target_covers_what_one_pod_holds() -> None:
    metadata = trigger()["metadata"]
    settings = config()
    held = (
        int(settings["INGESTOR_BUFFER_MESSAGES"])
        + int(settings["INGESTOR_WRITERS"]) * int(settings["INGESTOR_BATCH_SIZE"])
        + 10 * int(settings["INGESTOR_RECEIVERS"])
    )
    assert metadata["scaleOnInFlight"] == "true"
    # With in-flight messages counted, a smaller target makes busy pods ask for more pods.
    assert int(metadata["queueLength"]) >= held
    # Scaled to zero, a single message must wake a consumer.
    assert int(metadata["activationQueueLength"]) == 0


def test_cronjob_runs_the_drain_mode_once_at_a_time() -> None:
    cronjob = one("CronJob")
    assert container("CronJob")["args"][:2] == ["run", "--drain"]
    assert container("Deployment")["args"] == ["run"]
    assert cronjob["spec"]["concurrencyPolicy"] == "Forbid"
    job = cronjob["spec"]["jobTemplate"]["spec"]
    assert job["activeDeadlineSeconds"] > 0
    assert job["backoffLimit"] >= 1
    assert pod_specs()["CronJob"]["restartPolicy"] in ("Never", "OnFailure")
    minute, hour = cronjob["spec"]["schedule"].split()[:2]
    if minute.isdigit() and hour == "*":  # hourly: a run ends before the next one is due
        assert job["activeDeadlineSeconds"] < 3600


def test_pdb_covers_the_service_pods_only() -> None:
    selector = one("PodDisruptionBudget")["spec"]["selector"]["matchLabels"]
    service_labels = one("Deployment")["spec"]["template"]["metadata"]["labels"]
    drain_labels = one("CronJob")["spec"]["jobTemplate"]["spec"]["template"]["metadata"]
    assert selector.items() <= service_labels.items()
    assert not selector.items() <= drain_labels["labels"].items()
    assert "maxUnavailable" in one("PodDisruptionBudget")["spec"]


def test_configmap_holds_valid_non_secret_settings(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    data = config()
    assert all(isinstance(value, str) for value in data.values())
    assert not SECRET_SETTINGS & set(data)
    known = {env_name(field) for field in Settings.model_fields} | METRICS_SETTINGS
    unknown = {name for name in data if name.startswith("INGESTOR_")} - known
    assert not unknown, f"not settings of the service: {unknown}"
    monkeypatch.chdir(tmp_path)  # no .env here
    for name, value in data.items():
        monkeypatch.setenv(name, value)
    settings = load_settings(hmac_key=TEST_KEY, database_url="postgresql://u@db:5432/x")
    assert settings.queue_url == data["INGESTOR_QUEUE_URL"]
    assert settings.shutdown_timeout == float(data["INGESTOR_SHUTDOWN_TIMEOUT"])


def test_example_secret_is_refused_by_the_service(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    secret = yaml_document(K8S / "secret.example.yaml")
    assert set(secret["stringData"]) == SECRET_SETTINGS
    assert "example" in (K8S / "secret.example.yaml").read_text(encoding="utf-8").lower()
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("INGESTOR_HMAC_KEY", raising=False)
    # The placeholder key is too short on purpose: applied by mistake, nothing starts.
    with pytest.raises(ConfigError, match="INGESTOR_HMAC_KEY"):
        load_settings(hmac_key=secret["stringData"]["INGESTOR_HMAC_KEY"])


def test_readme_iam_policy_grants_what_the_service_calls() -> None:
    readme = (K8S.parent / "README.md").read_text(encoding="utf-8")
    (block,) = re.findall(r"```json\n(.*?)```", readme, re.S)
    (statement,) = json.loads(block)["Statement"]
    assert statement["Effect"] == "Allow"
    assert set(statement["Action"]) == {
        "sqs:ReceiveMessage",
        "sqs:DeleteMessage",
        "sqs:ChangeMessageVisibility",
        "sqs:GetQueueAttributes",
        "sqs:GetQueueUrl",
    }
    queue = config()["INGESTOR_QUEUE_URL"].rsplit("/", 2)
    assert statement["Resource"] == f"arn:aws:sqs:{config()['AWS_REGION']}:{queue[1]}:{queue[2]}"
