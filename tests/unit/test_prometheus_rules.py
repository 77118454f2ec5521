"""deploy/prometheus/rules.yaml, checked by the tool Prometheus users run: `promtool check
rules`, and `promtool test rules` on tests/prometheus/rules_test.yaml, which feeds synthetic
series and says when each alert must fire and resolve. The PrometheusRule manifest for
prometheus-operator must carry the same groups."""

from __future__ import annotations

from typing import Any

from tests.unit.deploy_files import K8S, PROMETHEUS, ROOT, run_tool, tool, yaml_document

RULES = PROMETHEUS / "rules.yaml"
RULE_TESTS = ROOT / "tests" / "prometheus" / "rules_test.yaml"
PROMETHEUS_RULE = K8S / "components" / "monitoring" / "prometheusrule.yaml"


def rules(kind: str) -> list[dict[str, Any]]:
    """The rules of one kind ("alert" or "record") in the rule file."""
    groups = yaml_document(RULES)["groups"]
    return [rule for group in groups for rule in group["rules"] if kind in rule]


def test_rule_file_passes_promtool_check() -> None:
    output = run_tool(tool("promtool"), "check", "rules", str(RULES))
    assert f"SUCCESS: {len(rules('alert')) + len(rules('record'))} rules found" in output


def test_alerts_fire_and_resolve_when_the_tests_say() -> None:
    output = run_tool(tool("promtool"), "test", "rules", str(RULE_TESTS))
    assert "SUCCESS" in output


def test_every_alert_is_tested_on_both_edges() -> None:
    # Each alert needs an evaluation where it fires and one where it does not; the edges
    # themselves (one minute apart) are what the test file's comments explain.
    checks = [
        check
        for case in yaml_document(RULE_TESTS)["tests"]
        for check in case.get("alert_rule_test", [])
    ]
    for alert in (rule["alert"] for rule in rules("alert")):
        outcomes = {bool(c["exp_alerts"]) for c in checks if c["alertname"] == alert}
        assert outcomes == {True, False}, f"{alert}: not tested firing and not firing"


def test_every_alert_says_what_to_do() -> None:
    for rule in rules("alert"):
        assert rule["labels"]["severity"] in ("warning", "critical"), rule["alert"]
        assert rule["annotations"]["summary"], rule["alert"]
        assert rule["annotations"]["description"], rule["alert"]


def test_prometheusrule_manifest_is_generated_from_the_rule_file() -> None:
    generated = run_tool("sh", str(PROMETHEUS / "prometheusrule.sh"))
    assert PROMETHEUS_RULE.read_text(encoding="utf-8") == generated, (
        "prometheusrule.yaml is out of date: run `make prometheusrule`"
    )
    assert yaml_document(PROMETHEUS_RULE)["spec"]["groups"] == yaml_document(RULES)["groups"]
