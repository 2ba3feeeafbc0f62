"""Transport: a server bound to an address other than loopback speaks HTTPS (a self-signed
pair made on first start) and the client trusts it through server.json; ``--insecure``
serves plain HTTP; half a certificate pair is refused."""

from __future__ import annotations

import json
import logging
import ssl
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import httpx
import pytest

from phalanx.api.server import ApiServer, ServerError, ServerSettings
from phalanx.client import Client

pytestmark = pytest.mark.integration


@contextmanager
def running(settings: ServerSettings) -> Iterator[ApiServer]:
    server = ApiServer(settings)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.own_info_path.exists():  # written once it serves
        assert time.monotonic() < deadline, "the server did not start"
        time.sleep(0.05)
    try:
        yield server
    finally:
        server.request_stop()
        thread.join(timeout=30)


def settings(data_dir: Path, **kw: object) -> ServerSettings:
    return ServerSettings(
        data_dir=data_dir,
        nodes="1x1",
        host="0.0.0.0",
        port=0,
        router_port=None,
        **kw,  # type: ignore[arg-type]
    )


def test_non_loopback_bind_serves_https_with_a_self_signed_pair(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("PHALANX_SERVER", "PHALANX_TOKEN", "PHALANX_CA_FILE"):
        monkeypatch.delenv(name, raising=False)
    with running(settings(tmp_path)) as server:
        assert server.url.startswith("https://127.0.0.1:")
        info = json.loads((tmp_path / "server.json").read_text())
        assert info["ca_file"] == str(tmp_path / "tls.crt")
        assert (tmp_path / "tls.key").stat().st_mode & 0o077 == 0
        # The CLI's client finds the server, its token and the certificate to trust.
        with Client(data_dir=tmp_path) as client:
            assert client.whoami()["role"] == "admin"
        # Without the certificate the connection is refused; plain HTTP gets no answer.
        with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
            httpx.get(f"{server.url}/healthz")
        with pytest.raises(httpx.HTTPError):
            httpx.get(server.url.replace("https://", "http://") + "/healthz", timeout=3)
        # Tokens are needed as on loopback; a stranger learns only the status.
        trusted = ssl.create_default_context(cafile=str(tmp_path / "tls.crt"))
        anonymous = httpx.get(f"{server.url}/healthz", verify=trusted)
        assert anonymous.json() == {"status": "ok"}
        jobs = httpx.get(f"{server.url}/api/v1/jobs", verify=trusted)
        assert jobs.status_code == 401
    # The pair is reused at the next start.
    made = (tmp_path / "tls.crt").read_bytes()
    with running(settings(tmp_path)):
        assert (tmp_path / "tls.crt").read_bytes() == made


def test_insecure_serves_plain_http_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING), running(settings(tmp_path, insecure=True)) as server:
        assert server.url.startswith("http://")
        assert httpx.get(f"{server.url}/healthz").json() == {"status": "ok"}
    assert any("--insecure" in r.getMessage() for r in caplog.records)
    assert not (tmp_path / "tls.crt").exists()


def test_loopback_stays_plain_and_half_a_pair_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ServerError, match="--tls-cert and --tls-key go together"):
        ApiServer(settings(tmp_path, tls_cert=tmp_path / "x.crt"))
    loopback = ServerSettings(data_dir=tmp_path, nodes="1x1", port=0, router_port=None)
    with running(loopback) as server:
        assert server.url.startswith("http://127.0.0.1:")


def test_the_router_beside_the_api_serves_https_with_the_same_pair(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("PHALANX_SERVER", "PHALANX_TOKEN", "PHALANX_CA_FILE"):
        monkeypatch.delenv(name, raising=False)
    with running(replace(settings(tmp_path), router_port=0)) as server:
        assert server.router_url.startswith("https://127.0.0.1:")
        trusted = ssl.create_default_context(cafile=str(tmp_path / "tls.crt"))
        answer = httpx.get(f"{server.router_url}/no-such-service/", verify=trusted)
        assert answer.status_code == 404 and "no-such-service" in answer.text
        with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
            httpx.get(f"{server.router_url}/")
        with pytest.raises(httpx.HTTPError):
            httpx.get(server.router_url.replace("https://", "http://") + "/", timeout=3)
