"""deploy/k8s: each overlay rendered by `kubectl kustomize`, every built-in object valid for
current Kubernetes (kubernetes-validate, strict), the KEDA and prometheus-operator objects
valid against their own CRD schemas (vendored in tests/data), and the objects consistent
with each other, the Dockerfile, the rules and the service's settings."""

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
    OVERLAYS,
    PROMETHEUS,
    dockerfile,
    env_values,
    rendered,
    yaml_document,
)

# The oldest Kubernetes these manifests are meant for (native sidecars need 1.29, the
# Job's podFailurePolicy is on by default from 1.26), and the newest kubernetes-validate knows.
KUBERNETES_VERSIONS = sorted({"1.30", major_minor(kubernetes_validate.latest_version())})
# Custom resources: the vendored CRD and the version of it the manifests use.
CRDS = {
    "ScaledObject": ("keda.sh_scaledobjects.yaml", "v1alpha1"),
    "TriggerAuthentication": ("keda.sh_triggerauthentications.yaml", "v1alpha1"),
    "PodMonitor": ("monitoring.coreos.com_podmonitors.yaml", "v1"),
    "PrometheusRule": ("monitoring.coreos.com_prometheusrules.yaml", "v1"),
}
# What each overlay must render, beyond the base (ServiceAccount, ConfigMap, NetworkPolicy)
# and the monitoring component (PodMonitor, PrometheusRule).
OVERLAY_KINDS = {
    "service": {"Deployment", "Service", "PodDisruptionBudget", "ScaledObject"}
    | {"TriggerAuthentication"},
    "batch": {"CronJob"},
    "sidecar": {"Deployment"},
}
SHARED_KINDS = {"ServiceAccount", "ConfigMap", "NetworkPolicy", "PodMonitor", "PrometheusRule"}
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
# Exit codes of `run --drain` (PRODUCT.md section 5).
EXIT_CONFIG, EXIT_DRAIN_INCOMPLETE = 2, 3
CONTAINER = "ingestor"


def all_objects() -> list[tuple[str, dict[str, Any]]]:
    return [(overlay, obj) for overlay in OVERLAYS for obj in rendered(overlay)]


def object_id(item: tuple[str, dict[str, Any]]) -> str:
    overlay, obj = item
    return f"{overlay}:{obj['kind']}/{obj['metadata']['name']}"


def one(overlay: str, kind: str) -> dict[str, Any]:
    (found,) = [obj for obj in rendered(overlay) if obj["kind"] == kind]
    return found


def pod_template(obj: dict[str, Any]) -> dict[str, Any]:
    spec = obj["spec"]
    template: dict[str, Any] = (spec.get("jobTemplate", {}).get("spec") or spec)["template"]
    return template


def ingestor_pods(overlay: str) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """(pod template, the ingestor container) of every workload in an overlay that runs it,
    as a container or as a native sidecar."""
    found = []
    for obj in rendered(overlay):
        if obj["kind"] not in ("Deployment", "CronJob"):
            continue
        template = pod_template(obj)
        spec = template["spec"]
        for container in spec["containers"] + spec.get("initContainers", []):
            if container["name"] == CONTAINER:
                found.append((template, container))
    return found


def config() -> dict[str, str]:
    data: dict[str, str] = yaml_document(K8S / "base" / "configmap.yaml")["data"]
    return data


def trigger() -> dict[str, Any]:
    (found,) = one("service", "ScaledObject")["spec"]["triggers"]
    return found


def matches(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return selector.items() <= labels.items()


# --- schemas ----------------------------------------------------------------------------


def builtin() -> list[tuple[str, dict[str, Any]]]:
    return [item for item in all_objects() if item[1]["kind"] not in CRDS]


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("item", builtin(), ids=object_id)
def test_builtin_object_is_valid(item: tuple[str, dict[str, Any]], version: str) -> None:
    kubernetes_validate.validate(item[1], version, strict=True)


def test_strict_validation_catches_unknown_fields() -> None:
    deployment = copy.deepcopy(one("service", "Deployment"))
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
    filename, version_name = CRDS[kind]
    crd = yaml_document(DATA / filename)
    assert crd["spec"]["names"]["kind"] == kind
    (version,) = [v for v in crd["spec"]["versions"] if v["name"] == version_name]
    return jsonschema.Draft7Validator(closed(version["schema"]["openAPIV3Schema"]))


def crd_errors(document: dict[str, Any]) -> list[str]:
    kind = document["kind"]
    group = yaml_document(DATA / CRDS[kind][0])["spec"]["group"]
    assert document["apiVersion"] == f"{group}/{CRDS[kind][1]}"
    return [
        f"{'/'.join(map(str, error.absolute_path))}: {error.message}"
        for error in crd_validator(kind).iter_errors(document)
    ]


def custom() -> list[tuple[str, dict[str, Any]]]:
    return [item for item in all_objects() if item[1]["kind"] in CRDS]


@pytest.mark.parametrize("item", custom(), ids=object_id)
def test_custom_resource_matches_its_crd(item: tuple[str, dict[str, Any]]) -> None:
    assert crd_errors(item[1]) == []


def test_every_vendored_crd_is_used() -> None:
    assert {obj["kind"] for _, obj in custom()} == set(CRDS)


def test_crd_schemas_catch_mistakes() -> None:
    scaled = copy.deepcopy(one("service", "ScaledObject"))
    scaled["spec"]["minReplicas"] = 1  # not a field: minReplicaCount
    scaled["spec"]["triggers"][0]["metadata"]["queueLength"] = 10_000  # must be a string
    found = crd_errors(scaled)
    assert any("minReplicas" in error for error in found), found
    assert any("queueLength" in error for error in found), found
    auth = copy.deepcopy(one("service", "TriggerAuthentication"))
    auth["spec"]["podIdentity"]["provider"] = "aws-kiam"  # removed from KEDA
    assert crd_errors(auth)
    monitor = copy.deepcopy(one("service", "PodMonitor"))
    monitor["spec"]["podMetricsEndpoints"][0]["portName"] = "metrics"  # not a field: port
    monitor["spec"]["podMetricsEndpoints"][0]["relabelings"][0]["action"] = "rename"
    found = crd_errors(monitor)
    assert any("portName" in error for error in found), found
    assert any("action" in error for error in found), found
    rule = copy.deepcopy(one("service", "PrometheusRule"))
    rule["spec"]["groups"][1]["rules"][0]["for"] = "ten minutes"  # not a duration
    assert any("for" in error for error in crd_errors(rule))


def test_scaledobject_rules_beyond_the_schema() -> None:
    spec = one("service", "ScaledObject")["spec"]
    # The CRD's CEL rule, which JSON Schema cannot express.
    assert spec.get("minReplicaCount", 0) <= spec.get("maxReplicaCount", 100)
    assert trigger()["type"] == "aws-sqs-queue"
    assert set(trigger()["metadata"]) <= SQS_SCALER_PARAMETERS


# --- what each overlay holds -------------------------------------------------------------


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_renders_the_base_its_workload_and_monitoring(overlay: str) -> None:
    kinds = [obj["kind"] for obj in rendered(overlay)]
    assert len(kinds) == len(set(kinds)), kinds
    assert set(kinds) == SHARED_KINDS | OVERLAY_KINDS[overlay]
    assert ingestor_pods(overlay), "no pod runs the ingestor"


def test_every_manifest_says_why() -> None:
    for path in sorted(K8S.rglob("*.yaml")):
        assert path.read_text(encoding="utf-8").startswith("#"), f"{path}: no comment"


def test_the_example_secret_is_never_applied() -> None:
    for overlay in OVERLAYS:
        assert "Secret" not in {obj["kind"] for obj in rendered(overlay)}


def test_one_image_for_every_ingestor_container() -> None:
    (image,) = yaml_document(K8S / "components" / "image" / "kustomization.yaml")["images"]
    expected = f"{image['newName']}:{image['newTag']}"
    for overlay in OVERLAYS:
        for _, container in ingestor_pods(overlay):
            assert container["image"] == expected, overlay


# --- the ingestor's pods -----------------------------------------------------------------


def pods() -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    return [(o, t, c) for o in OVERLAYS for t, c in ingestor_pods(o)]


def test_metrics_port_is_the_configured_one_everywhere() -> None:
    port = int(config()["INGESTOR_METRICS_PORT"])
    assert env_values(dockerfile()[-1])["INGESTOR_METRICS_PORT"] == str(port)
    for overlay, _, container in pods():
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        assert ports == {"metrics": port}, overlay


def test_probes_use_the_metrics_port() -> None:
    expected = {
        "livenessProbe": "/healthz",
        "readinessProbe": "/readyz",
        "startupProbe": "/healthz",
    }
    for overlay, _, container in pods():
        for probe, path in expected.items():
            if probe in container:
                assert container[probe]["httpGet"] == {"path": path, "port": "metrics"}, overlay
    (service,) = ingestor_pods("service")
    assert {"livenessProbe", "readinessProbe"} <= set(service[1])


def test_grace_period_exceeds_the_shutdown_timeout() -> None:
    timeout = float(config().get("INGESTOR_SHUTDOWN_TIMEOUT", DEFAULT_SHUTDOWN_TIMEOUT))
    for overlay, template, _ in pods():
        assert template["spec"]["terminationGracePeriodSeconds"] > timeout, overlay


def test_pods_run_locked_down_as_the_image_user_without_an_api_token() -> None:
    user = next(i for i in reversed(dockerfile()[-1]) if i.keyword == "USER").arguments
    uid = int(user.split(":")[0])
    for overlay, template, container in pods():
        spec = template["spec"]
        merged = {**spec.get("securityContext", {}), **container["securityContext"]}
        assert merged["runAsNonRoot"] is True, overlay
        assert merged["runAsUser"] == uid, overlay
        assert merged["seccompProfile"] == {"type": "RuntimeDefault"}, overlay
        assert merged["allowPrivilegeEscalation"] is False, overlay
        assert merged["readOnlyRootFilesystem"] is True, overlay
        assert merged["capabilities"] == {"drop": ["ALL"]}, overlay
        assert spec["serviceAccountName"] == one(overlay, "ServiceAccount")["metadata"]["name"]
        assert spec["automountServiceAccountToken"] is False, overlay
        assert container["resources"]["requests"], overlay
        assert container["resources"]["limits"]["memory"], overlay
    assert one("service", "ServiceAccount")["automountServiceAccountToken"] is False


def test_the_only_writable_path_is_a_small_tmp() -> None:
    for overlay, template, container in pods():
        (mount,) = container["volumeMounts"]
        assert mount["mountPath"] == "/tmp", overlay
        (volume,) = [v for v in template["spec"]["volumes"] if v["name"] == mount["name"]]
        assert volume["emptyDir"]["sizeLimit"], overlay


def test_settings_come_from_the_configmap_and_the_secret() -> None:
    secret = yaml_document(K8S / "base" / "secret.example.yaml")
    for overlay, _, container in pods():
        sources = container["envFrom"]
        assert {s["configMapRef"]["name"] for s in sources if "configMapRef" in s} == {
            one(overlay, "ConfigMap")["metadata"]["name"]
        }
        assert {s["secretRef"]["name"] for s in sources if "secretRef" in s} == {
            secret["metadata"]["name"]
        }


# --- service overlay ---------------------------------------------------------------------


def test_scaledobject_scales_the_deployment_with_irsa() -> None:
    deployment = one("service", "Deployment")
    target = one("service", "ScaledObject")["spec"]["scaleTargetRef"]
    assert target.get("kind", "Deployment") == "Deployment"
    assert target.get("apiVersion", "apps/v1") == "apps/v1"
    assert target["name"] == deployment["metadata"]["name"]
    assert "replicas" not in deployment["spec"], "KEDA owns the replica count"
    auth = one("service", "TriggerAuthentication")
    assert trigger()["authenticationRef"]["name"] == auth["metadata"]["name"]
    assert auth["spec"]["podIdentity"]["provider"] == "aws"
    role = one("service", "ServiceAccount")["metadata"]["annotations"]
    assert re.fullmatch(
        r"arn:aws:iam::\d{12}:role/[\w+=,.@/-]+", role["eks.amazonaws.com/role-arn"]
    )


def test_scaler_reads_the_queue_named_once() -> None:
    metadata = trigger()["metadata"]
    queue_url = config()["INGESTOR_QUEUE_URL"]
    assert metadata["queueURL"] == queue_url
    region = re.fullmatch(r"https://sqs\.([a-z0-9-]+)\.amazonaws\.com/\d{12}/[\w-]+", queue_url)
    assert region, queue_url
    assert metadata["awsRegion"] == config()["AWS_REGION"] == region[1]
    # Named in base/configmap.yaml only: the overlay's replacements copy it.
    holders = [p for p in K8S.rglob("*.yaml") if queue_url in p.read_text(encoding="utf-8")]
    assert holders == [K8S / "base" / "configmap.yaml"], holders


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


def test_pdb_and_service_cover_the_service_pods() -> None:
    labels = pod_template(one("service", "Deployment"))["metadata"]["labels"]
    pdb = one("service", "PodDisruptionBudget")["spec"]
    assert matches(pdb["selector"]["matchLabels"], labels)
    assert "maxUnavailable" in pdb
    service = one("service", "Service")["spec"]
    assert matches(service["selector"], labels)
    assert service["clusterIP"] == "None"
    assert [(p["port"], p["targetPort"]) for p in service["ports"]] == [
        (int(config()["INGESTOR_METRICS_PORT"]), "metrics")
    ]


# --- batch overlay -----------------------------------------------------------------------


def test_cronjob_runs_the_drain_once_at_a_time() -> None:
    cronjob = one("batch", "CronJob")
    (service,) = ingestor_pods("service")
    ((template, container),) = ingestor_pods("batch")
    assert container["args"][:2] == ["run", "--drain"]
    assert service[1]["args"] == ["run"]
    assert cronjob["spec"]["concurrencyPolicy"] == "Forbid"
    assert not cronjob["spec"].get("suspend", False)
    job = cronjob["spec"]["jobTemplate"]["spec"]
    assert job["activeDeadlineSeconds"] > 0
    minute, hour = cronjob["spec"]["schedule"].split()[:2]
    if minute.isdigit() and hour == "*":  # hourly: a run ends before the next one is due
        assert job["activeDeadlineSeconds"] < 3600
    assert template["spec"]["restartPolicy"] == "Never"  # required by podFailurePolicy


def failure_action(job: dict[str, Any], exit_code: int | None, condition: str = "") -> str:
    """What the Job's podFailurePolicy does with a pod that failed so: the first rule that
    matches, as the Job controller picks it; "Count" when none does."""
    for rule in job["podFailurePolicy"]["rules"]:
        codes = rule.get("onExitCodes")
        if codes and exit_code is not None and codes.get("containerName") in (None, CONTAINER):
            hit = exit_code in codes["values"]
            if hit == (codes["operator"] == "In"):
                return str(rule["action"])
        for pattern in rule.get("onPodConditions", []):
            if pattern["type"] == condition and pattern.get("status", "True") == "True":
                return str(rule["action"])
    return "Count"


def test_cronjob_failure_policy_follows_the_exit_codes() -> None:
    job = one("batch", "CronJob")["spec"]["jobTemplate"]["spec"]
    # A bad setting is never retried.
    assert failure_action(job, EXIT_CONFIG) == "FailJob"
    # An incomplete drain runs again, within the retry budget.
    assert failure_action(job, EXIT_DRAIN_INCOMPLETE) == "Count"
    assert job["backoffLimit"] >= 1
    # An evicted pod (node drain) does not use up that budget, whatever it exited with.
    assert failure_action(job, None, "DisruptionTarget") == "Ignore"
    # A runtime failure is retried like an incomplete drain.
    assert failure_action(job, 1) == "Count"


# --- sidecar overlay ---------------------------------------------------------------------


def test_sidecar_is_a_native_sidecar_beside_the_application() -> None:
    ((template, sidecar),) = ingestor_pods("sidecar")
    spec = template["spec"]
    assert sidecar in spec["initContainers"]
    assert sidecar["restartPolicy"] == "Always"
    assert sidecar["args"] == ["run"]
    applications = [c["name"] for c in spec["containers"]]
    assert applications
    assert CONTAINER not in applications
    # Its own probes: it starts before the application, is restarted on its own, and
    # does not take the application's pod out of its Service.
    assert {"startupProbe", "livenessProbe"} <= set(sidecar)
    assert "readinessProbe" not in sidecar
    # Only the sidecar gets the AWS role.
    skipped = template["metadata"]["annotations"]["eks.amazonaws.com/skip-containers"]
    assert set(skipped.split(",")) == set(applications)


# --- scraping and inbound traffic ---------------------------------------------------------


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_podmonitor_scrapes_every_ingestor_pod_as_job_ingestor(overlay: str) -> None:
    monitor = one(overlay, "PodMonitor")["spec"]
    (endpoint,) = monitor["podMetricsEndpoints"]
    assert endpoint["path"] == "/metrics"
    for template, container in ingestor_pods(overlay):
        assert matches(monitor["selector"]["matchLabels"], template["metadata"]["labels"])
        assert endpoint["port"] in {p["name"] for p in container["ports"]}
    # The job the rules' IngestorNotReady looks for.
    (relabel,) = [r for r in endpoint["relabelings"] if r.get("targetLabel") == "job"]
    rules = (PROMETHEUS / "rules.yaml").read_text(encoding="utf-8")
    assert f'up{{job="{relabel["replacement"]}"}}' in rules


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_networkpolicy_admits_only_the_scraper_to_the_metrics_port(overlay: str) -> None:
    policy = one(overlay, "NetworkPolicy")["spec"]
    assert policy["policyTypes"] == ["Ingress"]
    for template, _ in ingestor_pods(overlay):
        assert matches(policy["podSelector"]["matchLabels"], template["metadata"]["labels"])
    port = int(config()["INGESTOR_METRICS_PORT"])
    to_metrics = [rule for rule in policy["ingress"] if port in {p["port"] for p in rule["ports"]}]
    (scraper,) = to_metrics
    assert scraper["ports"] == [{"protocol": "TCP", "port": port}]
    (source,) = scraper["from"]
    assert source["namespaceSelector"]["matchLabels"]
    assert source["podSelector"]["matchLabels"]
    # Any other rule (the sidecar's application) names its ports (the metrics one is above).
    for rule in policy["ingress"]:
        assert rule.get("ports"), f"{overlay}: a rule that opens every port"


def test_pods_keep_the_annotations_of_annotation_based_scraping() -> None:
    port = config()["INGESTOR_METRICS_PORT"]
    for overlay in ("service", "batch"):
        ((template, _),) = ingestor_pods(overlay)
        annotations = template["metadata"]["annotations"]
        assert annotations["prometheus.io/scrape"] == "true"
        assert annotations["prometheus.io/port"] == port
        assert annotations["prometheus.io/path"] == "/metrics"


# --- settings ----------------------------------------------------------------------------


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
    path = K8S / "base" / "secret.example.yaml"
    secret = yaml_document(path)
    assert set(secret["stringData"]) == SECRET_SETTINGS
    assert "example" in path.read_text(encoding="utf-8").lower()
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
