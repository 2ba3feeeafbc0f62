"""A real server (uvicorn on a free port, local backend, real processes): the doctor and the
estimates from the CLI, and /metrics scraped by a real Prometheus (Debian's ``prometheus``)
that answers PromQL about the running workload."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client
from typer.testing import CliRunner, Result

from phalanx.api.server import ApiServer, ServerSettings
from phalanx.cli.main import app
from phalanx.client import Client
from prometheus_process import bearer_scrape, running_prometheus

SETUP = [
    {
        "apiVersion": "phalanx.dev/v1alpha1",
        "kind": "ResourceFlavor",
        "metadata": {"name": "default"},
        "spec": {},
    },
    {
        "apiVersion": "phalanx.dev/v1alpha1",
        "kind": "Queue",
        "metadata": {"name": "team-a"},
        "spec": {
            "flavors": [
                {"name": "default", "resources": {"cpu": 4, "memory": "4Gi", "nvidia.com/gpu": 4}}
            ]
        },
    },
]


def sleeper(name: str, gpus: int, runtime: str) -> dict[str, object]:
    return {
        "apiVersion": "phalanx.dev/v1alpha1",
        "kind": "Job",
        "metadata": {"name": name},
        "spec": {
            "queue": "team-a",
            "maxRuntime": runtime,
            "podSets": [
                {
                    "name": "worker",
                    "replicas": 1,
                    "command": [sys.executable, "-c", "import time; time.sleep(600)"],
                    "resources": {"cpu": "100m", "memory": "64Mi", "nvidia.com/gpu": gpus},
                }
            ],
        },
    }


#: A job that prints secrets to its log (masked in MCP's log_tail).
TALKER: dict[str, object] = {
    "apiVersion": "phalanx.dev/v1alpha1",
    "kind": "Job",
    "metadata": {"name": "talker"},
    "spec": {
        "queue": "team-a",
        "podSets": [
            {
                "name": "worker",
                "replicas": 1,
                "command": [
                    sys.executable,
                    "-c",
                    "import os\n"
                    "print('starting with API_TOKEN=tok-123456789 and the db')\n"
                    "print('Authorization: Bearer abcdefghijklmnop')\n"
                    "print('password is', os.environ['DB_PASSWORD'])\n"
                    "print('step 100 loss 0.25')",
                ],
                "env": {"DB_PASSWORD": "hunter2-very-secret"},
                "resources": {"cpu": "100m", "memory": "64Mi", "nvidia.com/gpu": 0},
            }
        ],
    },
}


@dataclass
class Live:
    data_dir: Path
    url: str

    def client(self) -> Client:
        return Client(data_dir=self.data_dir)

    def cli(self, *args: str) -> Result:
        return CliRunner().invoke(app, ["--data-dir", str(self.data_dir), *args])


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    """A server with team-a's 4 GPUs held by ``holder`` (maxRuntime 10m) and ``waiter``
    (2 GPUs) waiting on the quota."""
    tmp = tmp_path_factory.mktemp("live")
    names = ("PHALANX_SERVER", "PHALANX_TOKEN", "PHALANX_DATA_DIR", "XDG_RUNTIME_DIR")
    old = {k: os.environ.pop(k, None) for k in names}
    os.environ["XDG_RUNTIME_DIR"] = str(tmp / "run")
    api = ApiServer(
        ServerSettings(data_dir=tmp / "data", nodes="1x4", port=0, log_level="warning", tick_s=0.05)
    )
    thread = threading.Thread(target=api.run, name="phalanx-ops-server", daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not (tmp / "data" / "server.json").exists():
        assert time.monotonic() < deadline, "the server did not start"
        time.sleep(0.01)
    live = Live(api.data_dir, api.url)
    try:
        with live.client() as client:
            client.apply([*SETUP, sleeper("holder", 4, "10m")])
            client.wait_for("holder", ("Running",), timeout_s=20, poll_s=0.05)
            client.apply([sleeper("waiter", 2, "5m"), TALKER])
            client.wait_for("talker", ("Succeeded",), timeout_s=20, poll_s=0.05)
            deadline = time.monotonic() + 10
            while client.job("waiter")["reason_code"] != "QuotaExceeded":
                assert time.monotonic() < deadline, client.job("waiter")
                time.sleep(0.05)
        yield live
    finally:
        with live.client() as client:
            for job in client.jobs():
                if not job["is_finished"]:
                    client.cancel(job["name"])
            client.wait_for("holder", ("Cancelled",), timeout_s=15, poll_s=0.05)
        api.request_stop()
        thread.join(timeout=15)
        for key, value in old.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def test_cli_doctor_names_the_cause(live: Live) -> None:
    result = live.cli("doctor")
    assert result.exit_code == 0, result.output
    assert "WARNING  QuotaExhausted  queue/team-a  (affects job/waiter)" in result.stdout
    assert 'holders=["holder"]' in result.stdout
    assert "fix: wait for holder to finish" in result.stdout
    one = live.cli("doctor", "job", "waiter", "-o", "json")
    assert one.exit_code == 0, one.output
    report = json.loads(one.stdout)
    assert report["target"] == "job/waiter"
    assert [(f["code"], f["object"]) for f in report["findings"]] == [
        ("QuotaExhausted", "queue/team-a")
    ]
    fine = live.cli("doctor", "job", "holder")
    assert fine.stdout.strip() == "No problems found in job/holder."
    bad = live.cli("doctor", "pod", "x")
    assert bad.exit_code == 1
    assert "the doctor looks at jobs, nodes, queues, services and pipeline runs, not 'pod'" in (
        bad.stderr
    )
    missing = live.cli("doctor", "job")
    assert missing.exit_code == 1
    assert "phalanx doctor job NAME" in missing.stderr
    no_service = live.cli("doctor", "service", "web")
    assert no_service.exit_code == 1 and "web" in no_service.stderr


def test_cli_shows_start_estimates(live: Live) -> None:
    wide = live.cli("get", "jobs", "-o", "wide")
    assert wide.exit_code == 0, wide.output
    header, *rows = wide.stdout.splitlines()
    assert header.split()[-1] == "START"
    by_name = {row.split()[0]: row for row in rows}
    assert by_name["holder"].split()[-1] == "-"
    assert by_name["waiter"].split()[-2] == "in"  # "in 9m…" : holder's maxRuntime 10m
    assert by_name["waiter"].split()[-1].startswith(("9m", "10m"))
    described = live.cli("describe", "job", "waiter")
    assert described.exit_code == 0, described.output
    line = next(x for x in described.stdout.splitlines() if "Estimated start" in x)
    assert "(after holder end)" in line


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_prometheus_scrapes_the_server_and_answers_promql(live: Live, tmp_path: Path) -> None:
    target = live.url.removeprefix("http://").rstrip("/")
    scrape = bearer_scrape("phalanx", target, live.data_dir / "token")
    with running_prometheus(tmp_path, [scrape]) as prometheus:
        answers = {
            'phalanx_queue_usage{queue="team-a",resource="nvidia.com/gpu"}': 4.0,
            'sum(phalanx_pending_jobs{reason="QuotaExceeded"})': 1.0,
            'phalanx_node_gpus_allocated{node="node-0"}': 4.0,
            'up{job="phalanx"}': 1.0,
        }
        got: dict[str, float | None] = {}
        deadline = time.monotonic() + 60
        with httpx.Client(base_url=prometheus.url, timeout=5) as http:
            while time.monotonic() < deadline:
                for query in answers:
                    try:
                        response = http.get("/api/v1/query", params={"query": query})
                        body = response.json()
                    except (httpx.HTTPError, ValueError):
                        break  # still starting (no listener yet, or 503 while it loads)
                    result = body["data"]["result"]
                    got[query] = float(result[0]["value"][1]) if result else None
                if got == answers:
                    break
                time.sleep(0.5)
        assert got == answers, prometheus.log_tail()


# ---- MCP, through the SDK's own client, over both transports ----

READ_TOOLS = {
    "list_jobs",
    "describe_job",
    "list_queues",
    "describe_queue",
    "list_nodes",
    "describe_node",
    "why_pending",
    "doctor",
    "start_estimates",
    "job_events",
    "log_tail",
    "what_if",
    "list_services",
    "describe_service",
    "list_pipeline_runs",
    "describe_pipeline_run",
}


async def _exercise(session: ClientSession) -> None:
    await session.initialize()
    tools = {t.name: t for t in (await session.list_tools()).tools}
    assert set(tools) == READ_TOOLS  # no cancel_job without --allow-write
    assert all(t.annotations and t.annotations.readOnlyHint for t in tools.values())
    why = (await session.call_tool("why_pending", {"job": "waiter"})).structuredContent
    assert why is not None
    assert why["reason_code"] == "QuotaExceeded"
    assert why["estimate"]["waits_on"] == "QuotaExceeded"
    assert why["estimate"]["after"] == ["holder"]
    assert [(f["code"], f["object"]) for f in why["findings"]] == [
        ("QuotaExhausted", "queue/team-a")
    ]
    doctor = (await session.call_tool("doctor", {})).structuredContent
    assert doctor is not None and len(doctor["findings"]) == 1
    listed = await session.call_tool("list_jobs", {"phase": "pending"})
    assert listed.structuredContent is not None
    assert [j["name"] for j in listed.structuredContent["result"]] == ["waiter"]
    tail = await session.call_tool("log_tail", {"job": "talker", "lines": 10})
    text = tail.content[0].text  # type: ignore[union-attr]
    assert "step 100 loss 0.25" in text
    for secret in ("tok-123456789", "abcdefghijklmnop", "hunter2-very-secret"):
        assert secret not in text
    assert "API_TOKEN=****" in text
    missing = await session.call_tool("describe_job", {"name": "nope"})
    assert missing.isError
    services = (await session.call_tool("list_services", {})).structuredContent
    assert services == {"result": []}
    no_run = await session.call_tool("describe_pipeline_run", {"name": "nope"})
    assert no_run.isError


def test_mcp_over_stdio(live: Live) -> None:
    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "phalanx.cli", "--data-dir", str(live.data_dir), "mcp"],
        env={"PATH": os.environ.get("PATH", ""), "HOME": os.environ.get("HOME", "/tmp")},
    )

    async def main() -> None:
        async with stdio_client(params) as (read, write), ClientSession(read, write) as session:
            await _exercise(session)

    asyncio.run(main())


def test_mcp_over_streamable_http_with_write_tools(live: Live, tmp_path: Path) -> None:
    port = _free_port()
    log = (tmp_path / "mcp.log").open("w")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "phalanx.cli",
            "--data-dir",
            str(live.data_dir),
            "mcp",
            "--transport",
            "http",
            "--port",
            str(port),
            "--allow-write",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", port)) == 0:
                    break
            assert time.monotonic() < deadline and proc.poll() is None, (
                tmp_path / "mcp.log"
            ).read_text()
            time.sleep(0.1)

        async def main() -> None:
            url = f"http://127.0.0.1:{port}/mcp"
            async with (
                streamable_http_client(url) as (read, write, _),
                ClientSession(read, write) as session,
            ):
                await session.initialize()
                tools = {t.name: t for t in (await session.list_tools()).tools}
                assert set(tools) == READ_TOOLS | {"cancel_job"}
                cancel = tools["cancel_job"].annotations
                assert cancel is not None and cancel.destructiveHint and not cancel.readOnlyHint
                estimates = (await session.call_tool("start_estimates", {})).structuredContent
                assert estimates is not None
                assert [e["job"] for e in estimates["result"]] == ["waiter"]
                # What if the only node were drained: the waiter would never start.
                what_if = await session.call_tool("what_if", {"drain_nodes": ["node-0"]})
                assert what_if.structuredContent is not None
                [answer] = what_if.structuredContent["result"]
                assert answer["job"] == "waiter"
                assert answer["wait_s_now"] > 60
                assert answer["wait_s_then"] is None

        asyncio.run(main())
    finally:
        proc.terminate()
        proc.wait(timeout=15)
        log.close()


def test_mcp_refuses_to_listen_beyond_loopback(live: Live) -> None:
    result = live.cli("mcp", "--transport", "http", "--host", "0.0.0.0")
    assert result.exit_code == 1
    assert "loopback only" in result.stderr


# ---- phalanx ask ----


def test_ask_without_a_model_runs_the_doctor_on_what_the_question_names(live: Live) -> None:
    env = {"PHALANX_ASK_URL": ""}
    named = CliRunner().invoke(
        app, ["--data-dir", str(live.data_dir), "ask", "why is waiter still pending?"], env=env
    )
    assert named.exit_code == 0, named.output
    assert "No model configured" in named.stdout
    assert "findings in job/waiter" in named.stdout
    assert "QuotaExhausted  queue/team-a  (affects job/waiter)" in named.stdout
    as_json = live.cli("ask", "what about job/holder, node-0 and job/nope?", "-o", "json")
    assert as_json.exit_code == 0, as_json.output
    reports = json.loads(as_json.stdout)["reports"]
    assert [r["target"] for r in reports] == ["job/holder", "job/nope", "node/node-0"]
    assert reports[0]["findings"] == [] and reports[2]["findings"] == []
    assert "nope" in reports[1]["error"]
    everything = live.cli("ask", "anything wrong?", "-o", "json")
    (report,) = json.loads(everything.stdout)["reports"]
    assert report["target"] == "" and [f["code"] for f in report["findings"]] == ["QuotaExhausted"]


def _openai_or_skip() -> None:
    try:
        import openai  # noqa: F401
    except ImportError:
        if os.environ.get("PHALANX_REQUIRE_OPENAI") == "1":
            pytest.fail("the openai package is required here (pip install -e '.[ask]')")
        pytest.skip("no openai package (the `ask` extra)")


ASK_KEY = "sk-ask-test-0b9f1c2d3e4f5a6b"


def _connections_to(port: int) -> int:
    """How many of this process's open TCP sockets are connected to 127.0.0.1:``port``
    (Linux: the socket inodes of /proc/self/fd against /proc/net/tcp)."""
    inodes = set()
    for fd in Path("/proc/self/fd").iterdir():
        try:
            target = str(fd.readlink())
        except OSError:
            continue  # closed since listed
        if target.startswith("socket:["):
            inodes.add(target[len("socket:[") : -1])
    remote = f"0100007F:{port:04X}"
    rows = [line.split() for line in Path("/proc/net/tcp").read_text("ascii").splitlines()[1:]]
    return sum(1 for row in rows if row[2] == remote and row[9] in inodes)


def test_ask_with_a_model_over_an_openai_compatible_server_never_shows_the_key(
    live: Live, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    """The transport and the key's masking, against phalanx's OpenAI-compatible simulator
    (it answers with the last message in echo mode and makes no tool calls)."""
    _openai_or_skip()
    from phalanx.testing.llmsim import start_llm_sims

    caplog.set_level(logging.DEBUG)
    env = {"PHALANX_ASK_KEY": ASK_KEY, "OPENAI_LOG": "debug"}
    with start_llm_sims(1, model="ops-sim", engine="phalanx", extra_args=["--mode=echo"]) as sims:
        result = CliRunner().invoke(
            app,
            [
                "--data-dir",
                str(live.data_dir),
                "ask",
                "why is waiter pending?",
                "--model-url",
                sims[0].url,
                "-o",
                "json",
            ],
            env=env,
        )
        # The command closed its model client: no connection outlives it (left to the
        # garbage collector, its socket was reported unclosed at some later point).
        assert _connections_to(httpx.URL(sims[0].url).port or 80) == 0
    assert result.exit_code == 0, result.output
    answer = json.loads(result.stdout)
    assert answer["model"] == "ops-sim"  # the server's first model, asked over /v1/models
    # echoed as the simulator's tokens: our question reached it
    assert answer["answer"].split() == ["why", "is", "waiter", "pending", "?"]
    assert answer["calls"] == [] and answer["rounds"] == 1
    # a server that is not there: a one-line error, still without the key
    port = _free_port()
    down = CliRunner().invoke(
        app,
        [
            "--data-dir",
            str(live.data_dir),
            "ask",
            "hi",
            "--model-url",
            f"http://127.0.0.1:{port}",
            "--model",
            "m",
        ],
        env=env,
    )
    assert down.exit_code == 1 and "the model server failed" in down.stderr
    seen = result.output + down.output + caplog.text + "".join(capfd.readouterr())
    assert "/v1/chat/completions" in caplog.text  # the client's debug log was captured
    assert ASK_KEY not in seen


def test_ask_with_a_model_that_calls_tools(live: Live) -> None:
    """llm-d-inference-sim answers tool definitions with tool calls (random arguments from
    each tool's schema); run only where it is built (scripts/llmsim/llmsim)."""
    _openai_or_skip()
    from phalanx.testing.llmsim import LLMSimUnavailableError, start_llm_sims

    try:
        sims_context = start_llm_sims(1, model="ops-sim", engine="llm-d")
        sims = sims_context.__enter__()
    except LLMSimUnavailableError as exc:
        if os.environ.get("PHALANX_REQUIRE_LLMSIM") == "1":
            pytest.fail(str(exc))
        pytest.skip(str(exc))
    try:
        result = live.cli(
            "ask",
            "why is waiter pending?",
            "--model-url",
            sims[0].url,
            "--require-tool",
            "-o",
            "json",
        )
    finally:
        sims_context.__exit__(None, None, None)
    assert result.exit_code == 0, result.output
    answer = json.loads(result.stdout)
    assert answer["calls"], answer
    assert {c["tool"] for c in answer["calls"]} <= READ_TOOLS
    assert answer["rounds"] >= 2 and answer["answer"]
