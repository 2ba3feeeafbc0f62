"""The Python SDK (phalanx.client) against the real app in-process, plus server discovery and
transport failures (kept here with the API tests they share fixtures with)."""

from __future__ import annotations

import json
import socket
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from phalanx.client import (
    DEFAULT_URL,
    ApiError,
    Client,
    JobFinishedError,
    ServerUnavailableError,
    locate_server,
)

MakeJob = Callable[..., dict[str, object]]


def test_apply_wait_and_logs(client: Client, setup_yaml: str, make_job: MakeJob) -> None:
    assert [r["action"] for r in client.apply_yaml(setup_yaml, source="setup.yaml")] == [
        "created",
        "created",
    ]
    outcome = client.apply([make_job("hello", "print('hi there')")], source="hello.json")
    assert outcome == [{"kind": "Job", "name": "hello", "action": "created", "warnings": []}]

    job = client.wait_for("hello", "Succeeded", timeout_s=20)
    assert job["phase"] == "Succeeded"
    assert client.logs("hello")["data"] == "hi there\n"
    assert "".join(client.follow_logs("hello", poll_s=0.01)) == "hi there\n"
    assert [j["name"] for j in client.jobs()] == ["hello"]
    assert client.queue("team-a")["name"] == "team-a"
    assert [f["name"] for f in client.flavors()] == ["default"]
    assert [n["name"] for n in client.nodes()] == ["node-0", "node-1"]
    assert client.node("node-1")["name"] == "node-1"
    assert client.health()["status"] == "ok"
    assert client.version()["api_version"] == "phalanx.dev/v1alpha1"


def test_apply_a_file_path(client: Client, setup_yaml: str, tmp_path: Path) -> None:
    path = tmp_path / "setup.yaml"
    path.write_text(setup_yaml)
    assert [r["kind"] for r in client.apply(path)] == ["ResourceFlavor", "Queue"]
    assert [r["action"] for r in client.apply_file(str(path))] == ["unchanged", "unchanged"]


def test_follow_logs_waits_for_the_output_to_end(
    client: Client, setup_yaml: str, make_job: MakeJob
) -> None:
    client.apply_yaml(setup_yaml)
    code = "import time\nfor i in range(3):\n    print('step', i, flush=True)\n    time.sleep(0.2)"
    client.apply([make_job("steps", code)])
    assert "".join(client.follow_logs("steps", poll_s=0.05)) == "step 0\nstep 1\nstep 2\n"


def test_wait_for_a_phase_the_job_will_never_reach(
    client: Client, setup_yaml: str, make_job: MakeJob
) -> None:
    client.apply_yaml(setup_yaml)
    client.apply([make_job("fails", "raise SystemExit(3)")])
    with pytest.raises(JobFinishedError, match='job "fails" finished as Failed'):
        client.wait_for("fails", "Succeeded", timeout_s=20)


def test_wait_for_times_out(client: Client, setup_yaml: str, make_job: MakeJob) -> None:
    client.apply_yaml(setup_yaml)
    client.apply([make_job("sleeper", "import time; time.sleep(60)")])
    with pytest.raises(TimeoutError, match='job "sleeper" is still'):
        client.wait_for("sleeper", "Succeeded", timeout_s=0.3)
    assert client.cancel("sleeper")["phase"] == "Cancelled"


def test_api_errors_carry_status_code_and_details(client: Client, make_job: MakeJob) -> None:
    with pytest.raises(ApiError) as not_found:
        client.job("nope")
    assert (not_found.value.status, not_found.value.code) == (404, "NotFound")
    assert not_found.value.message == 'job "nope" not found'

    bad = make_job("bad", "pass")
    bad["spec"]["queue"] = ""  # type: ignore[index]
    with pytest.raises(ApiError) as invalid:
        client.apply([bad], source="bad.yaml")
    assert (invalid.value.status, invalid.value.code) == (400, "SpecInvalid")
    assert invalid.value.source == "bad.yaml"
    assert [d["path"] for d in invalid.value.details] == ["spec.queue"]

    with pytest.raises(ApiError) as bad_yaml:
        client.apply_yaml("a: [", source="x.yaml")
    assert bad_yaml.value.code == "BadRequest"
    assert bad_yaml.value.message.startswith("x.yaml:1:5: invalid YAML")


def test_wrong_token_is_unauthorized(
    app_transport: Callable[..., httpx.BaseTransport], app: object, tmp_path: Path
) -> None:
    with (
        Client(
            server="http://phalanx.test",
            token="wrong",
            data_dir=tmp_path,
            transport=app_transport(app),
        ) as sdk,
        pytest.raises(ApiError) as exc,
    ):
        sdk.jobs()
    assert (exc.value.status, exc.value.code) == (401, "Unauthorized")


def unused_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_connection_refused_is_server_unavailable(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{unused_port()}"
    with Client(server=url, data_dir=tmp_path) as sdk, pytest.raises(ServerUnavailableError) as exc:
        sdk.jobs()
    assert str(exc.value) == f"cannot reach the phalanx server at {url}; start it with `phalanx up`"


def test_a_timeout_is_server_unavailable(tmp_path: Path) -> None:
    def hang(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("timed out", request=request)

    with (
        Client(
            server="http://slow.test",
            data_dir=tmp_path,
            transport=httpx.MockTransport(hang),
            timeout_s=2,
        ) as sdk,
        pytest.raises(ServerUnavailableError, match="did not answer within 2s"),
    ):
        sdk.health()


def test_an_error_body_that_is_not_ours_still_becomes_an_api_error(tmp_path: Path) -> None:
    def proxy(request: httpx.Request) -> httpx.Response:
        return httpx.Response(502, text="<html>bad gateway</html>")

    with (
        Client(
            server="http://proxy.test", data_dir=tmp_path, transport=httpx.MockTransport(proxy)
        ) as sdk,
        pytest.raises(ApiError) as exc,
    ):
        sdk.jobs()
    assert (exc.value.status, exc.value.code) == (502, "HTTP502")
    assert "bad gateway" in exc.value.message


# -- discovery ----------------------------------------------------------------------------------


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in ("PHALANX_SERVER", "PHALANX_TOKEN", "PHALANX_DATA_DIR", "XDG_DATA_HOME"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def write_server_json(data_dir: Path, url: str, token: str = "file-token") -> None:
    data_dir.mkdir(parents=True, exist_ok=True)
    (data_dir / "token").write_text(token + "\n")
    (data_dir / "server.json").write_text(
        json.dumps({"url": url, "pid": 1, "token_file": str(data_dir / "token")})
    )


def test_discovery_reads_server_json(clean_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    write_server_json(tmp_path, "http://127.0.0.1:9999")
    location = locate_server(data_dir=tmp_path)
    assert (location.url, location.token) == ("http://127.0.0.1:9999", "file-token")


def test_discovery_prefers_arguments_then_environment(
    clean_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    write_server_json(tmp_path, "http://127.0.0.1:9999")
    clean_env.setenv("PHALANX_SERVER", "http://127.0.0.1:7777/")
    clean_env.setenv("PHALANX_TOKEN", "env-token")
    assert locate_server(data_dir=tmp_path).url == "http://127.0.0.1:7777"
    assert locate_server(data_dir=tmp_path).token == "env-token"
    explicit = locate_server("http://127.0.0.1:5555", "arg-token", tmp_path)
    assert (explicit.url, explicit.token) == ("http://127.0.0.1:5555", "arg-token")


def test_discovery_uses_the_data_dir_env(clean_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    write_server_json(tmp_path / "data", "http://127.0.0.1:9999")
    clean_env.setenv("PHALANX_DATA_DIR", str(tmp_path / "data"))
    assert locate_server().url == "http://127.0.0.1:9999"


def test_discovery_defaults_without_a_server(clean_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    location = locate_server(data_dir=tmp_path)
    assert (location.url, location.token) == (DEFAULT_URL, None)


def test_the_local_token_is_never_sent_to_another_host(
    clean_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    write_server_json(tmp_path, "http://127.0.0.1:9999")
    assert locate_server("https://phalanx.example.com", data_dir=tmp_path).token is None
    assert locate_server("http://localhost:8470", data_dir=tmp_path).token == "file-token"
