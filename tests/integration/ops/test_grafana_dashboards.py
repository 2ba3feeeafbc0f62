"""The Grafana dashboards (deploy/grafana/*.json) against a real Prometheus (Debian's
``prometheus``) scraping a real server: every PromQL expression of every panel, and every
template variable's ``label_values`` query, returns data."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from live_server import admin_client, python_job, running_server
from phalanx.api.server import ApiServer
from phalanx.testing import queue_manifests
from prometheus_process import bearer_scrape, running_prometheus

pytestmark = pytest.mark.integration

DASHBOARDS = sorted((Path(__file__).parents[3] / "deploy" / "grafana").glob("*.json"))
#: What Grafana puts in place of the dashboards' variables: every value, and a rate window
#: that holds several scrapes at the test's 1 s interval.
VARIABLES = {"$queue": ".+", "$node": ".+", "$__rate_interval": "15s"}


SETUP = [
    *queue_manifests("team-a", cpu=4, memory="4Gi", gpu=4),
    # holder runs, holding the queue's quota; done finishes (an outcome); waiter waits on the
    # quota (a pending reason).
    python_job("holder", "import time; time.sleep(600)", queue="team-a", gpus=4),
    python_job("done", "print('ok')", queue="team-a"),
    python_job("waiter", "pass", queue="team-a", gpus=2),
]


def expressions() -> list[tuple[str, str, str]]:
    """(dashboard file, panel title, expression) of every panel target."""
    out = []
    for path in DASHBOARDS:
        for panel in json.loads(path.read_text())["panels"]:
            out += [(path.name, panel["title"], t["expr"]) for t in panel.get("targets", [])]
    return out


def variable_queries() -> list[tuple[str, str, str]]:
    """(dashboard file, metric, label) of every ``label_values(metric, label)`` variable."""
    out = []
    for path in DASHBOARDS:
        for variable in json.loads(path.read_text())["templating"]["list"]:
            if variable["type"] != "query":
                continue
            match = re.fullmatch(r"label_values\((\w+), *(\w+)\)", variable["query"]["query"])
            assert match, variable
            out.append((path.name, match[1], match[2]))
    return out


def test_the_dashboards_are_well_formed() -> None:
    assert [p.name for p in DASHBOARDS] == ["phalanx-cluster.json", "phalanx-nodes.json"]
    uids = [json.loads(p.read_text())["uid"] for p in DASHBOARDS]
    assert len(set(uids)) == len(uids)
    for path in DASHBOARDS:
        panels = json.loads(path.read_text())["panels"]
        assert len({p["id"] for p in panels}) == len(panels), path
        for panel in panels:
            assert panel["targets"], (path.name, panel["title"])
            assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
    exprs = [e for _, _, e in expressions()]
    used = {m for e in exprs for m in re.findall(r"\bphalanx_\w+", e)}
    # every series /metrics exports appears in some panel
    exported = set(re.findall(r'"(phalanx_\w+)"', _metrics_source()))
    counters = {
        "phalanx_scheduling_cycles",
        "phalanx_reconciler_seconds",
        "phalanx_reconciler_runs",
        "phalanx_reconciler_errors",
        "phalanx_service_responses",
    }
    expected = {f"{m}_total" if m in counters else m for m in exported}
    expected = {m if m != "phalanx_admission_latency_seconds" else f"{m}_bucket" for m in expected}
    assert expected - used == set()


def _metrics_source() -> str:
    return (Path(__file__).parents[3] / "src" / "phalanx" / "ops" / "metrics.py").read_text()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiServer]:
    tmp = tmp_path_factory.mktemp("grafana")
    with (
        running_server(tmp, nodes="1x4", thread_name="phalanx-grafana-server") as api,
        admin_client(api) as http,
    ):
        try:
            http.post("/api/v1/apply", json={"manifests": SETUP}).raise_for_status()
            deadline = time.monotonic() + 20
            while not (
                http.get("/api/v1/jobs/holder").json()["phase"] == "Running"
                and http.get("/api/v1/jobs/done").json()["phase"] == "Succeeded"
                and http.get("/api/v1/jobs/waiter").json()["reason_code"] == "QuotaExceeded"
            ):
                assert time.monotonic() < deadline, http.get("/api/v1/jobs").text
                time.sleep(0.05)
            yield api
        finally:
            for name in ("holder", "waiter"):
                http.post(f"/api/v1/jobs/{name}/cancel")


@pytest.fixture
def prometheus(server: ApiServer, tmp_path: Path) -> Iterator[httpx.Client]:
    target = server.url.removeprefix("http://")
    scrape = bearer_scrape("phalanx", target, server.data_dir / "token")
    with (
        running_prometheus(tmp_path, [scrape]) as prometheus,
        httpx.Client(base_url=prometheus.url, timeout=5) as http,
    ):
        yield http


def _query(http: httpx.Client, expr: str) -> list[object] | None:
    """The result of an instant query, or None while Prometheus starts or the query fails."""
    try:
        response = http.get("/api/v1/query", params={"query": expr})
    except httpx.HTTPError:
        return None
    if response.status_code == 503:  # "Service Unavailable" in plain text until it is ready
        return None
    body = response.json()
    if body.get("status") != "success":
        return None
    result: list[object] = body["data"]["result"]
    return result


def test_every_dashboard_expression_returns_data(prometheus: httpx.Client) -> None:
    pending = {(name, title, expr): _substitute(expr) for name, title, expr in expressions()}
    errors: dict[str, str] = {}
    deadline = time.monotonic() + 90
    while pending and time.monotonic() < deadline:
        for key, expr in list(pending.items()):
            result = _query(prometheus, expr)
            if result:
                del pending[key]
        if pending:
            time.sleep(1)
    for key, expr in pending.items():
        response = prometheus.get("/api/v1/query", params={"query": expr}).json()
        errors[f"{key[0]} / {key[1]}: {expr}"] = json.dumps(response)[:300]
    assert errors == {}
    for name, metric, label in variable_queries():
        values = prometheus.get(f"/api/v1/label/{label}/values", params={"match[]": metric}).json()[
            "data"
        ]
        assert values, (name, metric, label)


def _substitute(expr: str) -> str:
    for name, value in VARIABLES.items():
        expr = expr.replace(name, value)
    assert "$" not in expr, expr
    return expr
