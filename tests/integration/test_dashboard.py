"""deploy/grafana/ingestor.json and deploy/prometheus/rules.yaml against the service itself:
every panel has a title and a unit, every PromQL expression parses (promtool, through a
generated rule file), and every metric they read is one a running service exports, taken
from a live /metrics scrape (never from a list kept here, so a renamed metric fails)."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from ingestor.demo.synthetic import generate
from ingestor.settings import Settings
from ingestor.source.sqs import SqsQueue
from tests.integration.test_metrics import running_service, service_settings
from tests.unit.deploy_files import PROMETHEUS, ROOT, run_tool, tool, yaml_document

pytestmark = pytest.mark.integration

DASHBOARD = ROOT / "deploy" / "grafana" / "ingestor.json"
RULES = PROMETHEUS / "rules.yaml"
# Grafana's variables, as a query would see them with "All" selected.
VARIABLES = {"$namespace": ".*", "$job": ".*", "$__rate_interval": "5m"}
# Series the rules read that come from elsewhere: Prometheus' own `up`, and the DLQ depth
# from CloudWatch through an exporter (YACE).
EXTERNAL = {"up", "aws_sqs_approximate_number_of_messages_visible_maximum"}
# Words of PromQL that look like metric names.
KEYWORDS = {"and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring"}
# How each metric type appears as samples.
SUFFIXES = {
    "counter": ("_total",),
    "histogram": ("_bucket", "_sum", "_count"),
    "summary": ("", "_sum", "_count"),
    "info": ("_info",),
}


def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return loaded


def panels() -> list[dict[str, Any]]:
    return list(dashboard()["panels"])


def expressions() -> dict[str, str]:
    """Every panel query, by panel id and refId, with the variables filled in."""
    found = {}
    for panel in panels():
        for target in panel["targets"]:
            expr = target["expr"]
            for variable, value in VARIABLES.items():
                expr = expr.replace(variable, value)
            assert "$" not in expr, f"{panel['title']}: unknown variable in {expr}"
            found[f"panel{panel['id']}_{target['refId']}"] = expr
    return found


def metric_names(expr: str) -> set[str]:
    """The metric names an expression selects: identifiers that are not function calls,
    keywords, label names (in {...} or by/on/... lists) or durations ([5m])."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    text = re.sub(r"\{[^}]*\}|\[[^\]]*\]", " ", text)
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    names = re.findall(r"(?<![\w:.])([a-zA-Z_:][\w:]*)(?![\w:])(?!\s*\()", text)
    return set(names) - KEYWORDS


def recorded() -> dict[str, str]:
    groups = yaml_document(RULES)["groups"]
    return {rule["record"]: rule["expr"] for g in groups for rule in g["rules"] if "record" in rule}


def raw_metrics(expr: str) -> set[str]:
    """The scraped metrics behind an expression, recording rules followed to their source."""
    rules = recorded()
    found = set()
    for name in metric_names(expr):
        found |= raw_metrics(rules[name]) if name in rules else {name}
    return found


def exported(text: str) -> set[str]:
    """The sample names a /metrics page declares, whether or not it has samples yet (a
    labelled counter nothing incremented has only its # TYPE line)."""
    names = set()
    for family in text_string_to_metric_families(text):
        names.add(family.name)
        names.update(family.name + suffix for suffix in SUFFIXES.get(family.type, ()))
        names.update(sample.name for sample in family.samples)
    return names


# --- the dashboard on its own ------------------------------------------------------------


def test_every_panel_has_a_title_a_unit_and_a_query() -> None:
    assert panels()
    for panel in panels():
        assert panel["title"].strip(), panel["id"]
        assert panel["fieldConfig"]["defaults"]["unit"], panel["title"]
        assert panel["description"], panel["title"]
        assert panel["targets"], panel["title"]
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        refs = [target["refId"] for target in panel["targets"]]
        assert len(refs) == len(set(refs)), panel["title"]


def test_panels_do_not_overlap() -> None:
    cells: set[tuple[int, int]] = set()
    for panel in panels():
        box = panel["gridPos"]
        assert box["x"] + box["w"] <= 24, panel["title"]
        mine = {
            (x, y)
            for x in range(box["x"], box["x"] + box["w"])
            for y in range(box["y"], box["y"] + box["h"])
        }
        assert not cells & mine, panel["title"]
        cells |= mine


def test_every_query_parses(tmp_path: Path) -> None:
    # promtool has no "parse this expression" command: each query becomes a recording rule.
    rules = [{"record": f"dashboard:{name}", "expr": expr} for name, expr in expressions().items()]
    path = tmp_path / "dashboard-rules.yaml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    output = run_tool(tool("promtool"), "check", "rules", str(path))
    assert f"SUCCESS: {len(rules)} rules found" in output


def test_the_name_reader_sees_what_a_query_selects() -> None:
    expr = (
        'histogram_quantile(0.99, sum by (le, job) (rate(a_bucket{x="b c"}[5m]))) > 3 '
        "and on (job) b_total offset 5m or c:rate5m unless max without (x) (d)"
    )
    assert metric_names(expr) == {"a_bucket", "b_total", "c:rate5m", "d"}


# --- against a running service -------------------------------------------------------------


async def scrape_after_some_traffic(settings: Settings, sqs_queue: SqsQueue) -> str:
    """/metrics of a service that has loaded and rejected a few messages."""
    async with running_service(settings) as endpoints:
        events = generate(200, seed=5, junk_rate=0.1, repeat_rate=0)
        sent = len(await sqs_queue.send([event.body for event in events]))
        await endpoints.until("ingestor_messages_deleted_total", sent)
        return (await endpoints.status("/metrics"))[1]


async def test_dashboard_and_rules_read_only_metrics_the_service_exports(
    make_settings: Callable[..., Settings], sqs_queue: SqsQueue
) -> None:
    text = await scrape_after_some_traffic(service_settings(make_settings), sqs_queue)
    exports = exported(text)
    assert "ingestor_messages_received_total" in exports  # the scrape is the service's
    used = {name: raw_metrics(expr) for name, expr in expressions().items()}
    for variable in dashboard()["templating"]["list"]:
        if variable["type"] == "query":  # label_values(metric{...}, label)
            query = re.fullmatch(
                r"label_values\(([\w:]+)(\{[^}]*\})?, *\w+\)", variable["definition"]
            )
            assert query, variable["definition"]
            used[variable["name"]] = {query[1]}
    groups = yaml_document(RULES)["groups"]
    for rule in (r for g in groups for r in g["rules"]):
        used[rule.get("alert") or rule["record"]] = raw_metrics(rule["expr"]) - EXTERNAL
    missing = {name: names - exports for name, names in used.items() if names - exports}
    assert not missing, f"not exported by the service: {missing}"
    # Every recording rule is read by the dashboard or an alert (none is dead weight).
    read = set().union(*(metric_names(e) for e in expressions().values()))
    read |= {n for g in groups for r in g["rules"] if "alert" in r for n in metric_names(r["expr"])}
    assert set(recorded()) <= read, set(recorded()) - read
