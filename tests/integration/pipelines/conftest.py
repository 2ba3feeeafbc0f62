"""A real server (uvicorn on a free port, the local backend with two virtual 4-GPU nodes,
real processes) for the pipeline tests, and a project directory whose modules they write;
and a real S3 server (SeaweedFS's ``weed server -s3``, built by scripts/s3server/s3server from
the Go module proxy) on free ports, skipped when it has not been built or s3fs is missing,
unless PHALANX_REQUIRE_S3=1 (CI), where that fails instead."""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import pytest
from typer.testing import CliRunner, Result

from live_server import running_server
from phalanx.cli.main import app
from phalanx.client import Client
from phalanx.testing import queue_manifests

SETUP = queue_manifests("team", cpu=16, memory="32Gi", gpu=8)


@dataclass
class PipelineServer:
    data_dir: Path
    project: Path
    artifacts: Path

    def client(self) -> Client:
        return Client(data_dir=self.data_dir)

    def cli(self, *args: str) -> Result:
        return CliRunner().invoke(app, ["--data-dir", str(self.data_dir), *args])

    def write(self, module: str, text: str) -> None:
        """Write (or rewrite) a module of the project; the next import reads it again."""
        (self.project / f"{module}.py").write_text(textwrap.dedent(text))
        sys.modules.pop(module, None)
        importlib.invalidate_caches()

    def run(self, target: str, *args: str) -> Result:
        return self.cli(
            "pipeline", "run", target, "-q", "team", "--artifacts", str(self.artifacts), *args
        )

    def get_run(self, name: str) -> dict[str, Any]:
        with self.client() as client:
            return cast(dict[str, Any], client._get(f"/pipelineruns/{name}"))

    def states(self, name: str) -> dict[str, str]:
        steps = self.get_run(name)["status"]["steps"]
        return {step: status["state"] for step, status in steps.items()}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PipelineServer]:
    tmp = tmp_path_factory.mktemp("pipelines")
    project = tmp / "project"
    project.mkdir()
    old_cwd = Path.cwd()
    os.chdir(project)  # `phalanx pipeline run` imports from, and ships, this directory
    try:
        with running_server(
            tmp,
            nodes="2x4",
            thread_name="phalanx-pipelines-server",
            router_port=None,
            # Steps import the project from this directory and write the artifact store
            # beside it, both the test's: pods run as the test's own user.
            pod_user="none",
        ) as api:
            live = PipelineServer(api.data_dir, project, tmp / "artifacts")
            with live.client() as client:
                client.apply(SETUP)
            yield live
    finally:
        os.chdir(old_cwd)
        if str(project) in sys.path:
            sys.path.remove(str(project))


REPO = Path(__file__).resolve().parents[3]
S3_BUCKET = "phalanx-artifacts"


def require_s3(what: str) -> None:
    """Skip (or, with PHALANX_REQUIRE_S3=1, fail) a test that needs the S3 server."""
    if os.environ.get("PHALANX_REQUIRE_S3") == "1":
        pytest.fail(f"an S3 server is required here: {what}")
    pytest.skip(what)


def _free_port() -> int:
    """A free port whose +10000 (SeaweedFS's gRPC port for it) is free too."""
    for _ in range(100):
        with socket.socket() as a:
            a.bind(("127.0.0.1", 0))
            port = int(a.getsockname()[1])
        if port + 10000 > 65535:
            continue
        with socket.socket() as b:
            try:
                b.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
        return port
    raise RuntimeError("no free port pair")


@contextlib.contextmanager
def s3_server(data: Path, credentials: tuple[str, str] | None = None) -> Iterator[str]:
    """Run SeaweedFS with its S3 gateway in ``data``; yield its endpoint once the bucket
    S3_BUCKET exists. With ``credentials`` (access key, secret key) the gateway refuses every
    request not signed with them; without, it takes any."""
    try:
        import s3fs
    except ImportError:
        require_s3("s3fs is not installed (pip install -e '.[pipelines]')")
    weed = (
        os.environ.get("PHALANX_S3SERVER_WEED")
        or subprocess.run(
            [str(REPO / "scripts" / "s3server" / "s3server"), "path"],
            capture_output=True,
            text=True,
            check=False,
        ).stdout.strip()
    )
    if not weed or not Path(weed).exists():
        require_s3("SeaweedFS is not built; run scripts/s3server/s3server build")
    s3, master, volume, filer = (_free_port() for _ in range(4))
    args = [
        weed,
        "server",
        f"-dir={data}",
        "-ip=127.0.0.1",
        "-ip.bind=127.0.0.1",
        f"-master.port={master}",
        f"-volume.port={volume}",
        f"-filer.port={filer}",
        "-s3",
        f"-s3.port={s3}",
        "-volume.max=4",
    ]
    key, secret = credentials or ("phalanx", "phalanx")
    if credentials is not None:
        identity = {
            "name": "phalanx",
            "credentials": [{"accessKey": key, "secretKey": secret}],
            "actions": ["Admin", "Read", "List", "Tagging", "Write"],
        }
        (data / "s3.json").write_text(json.dumps({"identities": [identity]}))
        args.append(f"-s3.config={data / 's3.json'}")
    log = (data / "weed.log").open("wb")
    server = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
    endpoint = f"http://127.0.0.1:{s3}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                fs = s3fs.S3FileSystem(
                    key=key, secret=secret, client_kwargs={"endpoint_url": endpoint}
                )
                fs.mkdir(S3_BUCKET)
                break
            except Exception:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(
                        f"weed did not serve S3: {(data / 'weed.log').read_text()[-2000:]}"
                    ) from None
                time.sleep(0.5)
        yield endpoint
    finally:
        server.terminate()
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        log.close()
