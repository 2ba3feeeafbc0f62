"""Local pods kept away from the control plane (real control plane, local backend, real
processes run as the pod user): a pod cannot read the API token, the database, the Secrets
key, another job's log or launch record, or the server's environment; it can write its own
working and checkpoint directories. The data directory's files are private (0600).

Runs as root (CI does): the pods run as the dedicated pod user (created if missing, as
``phalanx up`` does). As any other user pods cannot be run as someone else, so there is
nothing to test: skipped, saying so.
"""

from __future__ import annotations

import json
import os
import stat
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from phalanx.api.server import load_or_create_token
from phalanx.backends.local.backend import LocalBackend
from phalanx.backends.local.isolation import (
    DEFAULT_POD_USER,
    PodUser,
    can_reach,
    resolve_pod_user,
    secure_data_dir,
)
from phalanx.backends.local.nodes import parse_nodes_option
from phalanx.controllers.plane import ControlPlane, ControlPlaneConfig
from phalanx.store import open_store
from phalanx.testing import queue_manifests

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        os.geteuid() != 0,
        reason="pods run as another user only when the server runs as root; as "
        f"uid {os.geteuid()} they run as this user, so there is no isolation to test",
    ),
]

VICTIM_LOG = "victim-log-line-5d1e"
VICTIM_SECRET = "victim-secret-value-77aa"
SERVER_ONLY = "server-only-environment-3c9f"

#: What the attacking pod tries; each line of its output is one {what: result} in JSON.
PROBE = """
import json, os, sys
data_dir, victim = sys.argv[1], sys.argv[2]
def attempt(what, fn):
    try:
        out = fn()
        print(json.dumps({what: "read:" + str(out)[:200]}))
    except OSError as exc:
        print(json.dumps({what: "denied:" + exc.__class__.__name__}))
def read(path):
    with open(path, "rb") as f:
        return f.read()
attempt("token", lambda: read(os.path.join(data_dir, "token")))
attempt("database", lambda: read(os.path.join(data_dir, "phalanx.db")))
attempt("secrets-key", lambda: read(os.path.join(data_dir, "secrets.key")))
attempt("list-data-dir", lambda: os.listdir(data_dir))
attempt("list-pods", lambda: os.listdir(os.path.join(data_dir, "pods")))
attempt("victim-log", lambda: read(os.path.join(data_dir, "pods", victim, "output.log")))
attempt("victim-launch", lambda: read(os.path.join(data_dir, "pods", victim, "launch.json")))
attempt("server-environ", lambda: read("/proc/%d/environ" % os.getppid()))
attempt("own-work-dir", lambda: open("written", "w").write("x"))
ckpt = os.environ["PHALANX_CHECKPOINT_DIR"]
attempt("own-checkpoint", lambda: open(os.path.join(ckpt, "written"), "w").write("x"))
print(json.dumps({"uid": os.getuid(), "env-leak": os.environ.get("PHALANX_SERVER_ONLY", "")}))
"""


#: The interpreter pods run (set by the pod_user fixture).
PYTHON = [sys.executable]


@pytest.fixture
def pod_user(monkeypatch: pytest.MonkeyPatch) -> PodUser:
    monkeypatch.delenv("PHALANX_POD_USER", raising=False)  # tests/conftest.py sets none
    user = resolve_pod_user(None)  # root: the dedicated user, created if missing
    assert user is not None and user.name == DEFAULT_POD_USER and user.uid != 0
    PYTHON[0] = pod_python(user)
    return user


@pytest.fixture
def data_dir(pod_user: PodUser) -> Iterator[Path]:
    # Not under pytest's tmp_path (0700 parents): the pod root would move out to
    # /var/lib/phalanx-pods; a directory the pod user can reach keeps it in place.
    path = Path(tempfile.mkdtemp(prefix="phalanx-isolation-", dir="/tmp"))
    path.chmod(0o711)
    umask = os.umask(0o022)
    try:
        secure_data_dir(path, is_shared_with_pods=True)
        yield path
    finally:
        os.umask(umask)


def pod_python(user: PodUser) -> str:
    """An interpreter the pod user can run: this one, unless it lies somewhere the user
    cannot reach (a pyenv under /root), then the system's."""
    for candidate in (os.path.realpath(sys.executable), "/usr/bin/python3"):
        path = Path(os.path.realpath(candidate))
        if path.exists() and can_reach(path.parent, user) and path.stat().st_mode & 0o001:
            return candidate
    pytest.skip(f"no Python interpreter the pod user {user.name} can execute")


def job(name: str, script: str, *args: str, env: list[dict[str, object]] | None = None) -> dict:
    return {
        "apiVersion": "phalanx.dev/v1alpha1",
        "kind": "Job",
        "metadata": {"name": name},
        "spec": {
            "queue": "q",
            "podSets": [
                {
                    "name": "main",
                    "command": [PYTHON[0], "-c", script, *args],
                    "resources": {"cpu": 1, "memory": "64Mi"},
                    "env": env or [],
                }
            ],
        },
    }


def run_until(plane: ControlPlane, name: str, phase: str, timeout_s: float = 20) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        plane.tick()
        if plane.get_job(name).phase.value == phase:
            return
        time.sleep(0.05)
    job_view = plane.get_job(name)
    raise AssertionError(f"{name}: {job_view.phase.value} {job_view.message}")


def test_a_pod_cannot_read_the_control_plane_or_another_job(
    data_dir: Path, pod_user: PodUser, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PHALANX_SERVER_ONLY", SERVER_ONLY)
    assert can_reach(data_dir, pod_user)
    load_or_create_token(data_dir)
    store = open_store(None, data_dir)
    backend = LocalBackend(data_dir, parse_nodes_option("1x0"), pod_user=pod_user)
    plane = ControlPlane(store, backend, ControlPlaneConfig(data_dir, tick_s=0.05))
    try:
        secret = {
            "apiVersion": "phalanx.dev/v1alpha1",
            "kind": "Secret",
            "metadata": {"name": "victim"},
            "spec": {"stringData": {"v": VICTIM_SECRET}},
        }
        plane.apply([*queue_manifests(gpu=0, cpu=8), secret])
        ref = {"name": "S", "valueFrom": {"secretKeyRef": {"name": "victim", "key": "v"}}}
        plane.apply([job("victim", f"print({VICTIM_LOG!r})", env=[ref])])
        run_until(plane, "victim", "Succeeded")
        (victim_pod,) = plane.get_job("victim").pods
        victim_id = victim_pod.pod_id
        assert VICTIM_LOG in plane.read_logs("victim")[0].decode()

        plane.apply([job("attacker", PROBE, str(data_dir), victim_id)])
        run_until(plane, "attacker", "Succeeded")
        lines = plane.read_logs("attacker")[0].decode().splitlines()
        seen: dict[str, object] = {}
        for line in lines:
            if line.startswith("{"):
                seen.update(json.loads(line))
        assert seen["uid"] == pod_user.uid
        for what in (
            "token",
            "database",
            "secrets-key",
            "list-data-dir",
            "list-pods",
            "victim-log",
            "victim-launch",
            "server-environ",
        ):
            assert str(seen[what]).startswith("denied:"), (what, seen[what])
        assert seen["own-work-dir"] == "read:1" and seen["own-checkpoint"] == "read:1"
        assert seen["env-leak"] == ""
        text = "\n".join(lines)
        assert VICTIM_LOG not in text and VICTIM_SECRET not in text

        for name in ("token", "phalanx.db", "secrets.key"):
            assert stat.S_IMODE((data_dir / name).stat().st_mode) == 0o600, name
        assert stat.S_IMODE((data_dir / "pods").stat().st_mode) == 0o700
        assert stat.S_IMODE((data_dir / "pods" / victim_id).stat().st_mode) == 0o700
        assert stat.S_IMODE(data_dir.stat().st_mode) == 0o711
        work = data_dir / "work" / victim_id
        assert (work.stat().st_uid, stat.S_IMODE(work.stat().st_mode)) == (pod_user.uid, 0o700)
    finally:
        backend.close()
        store.close()


def test_the_pod_root_moves_out_of_a_data_dir_the_pod_user_cannot_reach(
    tmp_path: Path, pod_user: PodUser
) -> None:
    """Under pytest's tmp_path (parents 0700) the pod user cannot pass: pods get a root of
    their own under /var/lib/phalanx-pods, and checkpoints are linked from the data dir."""
    hidden = tmp_path / "data"
    hidden.mkdir()
    assert not can_reach(hidden, pod_user)
    store = open_store(None, hidden)
    backend = LocalBackend(hidden, parse_nodes_option("1x0"), pod_user=pod_user)
    plane = ControlPlane(store, backend, ControlPlaneConfig(hidden, tick_s=0.05))
    try:
        plane.apply(queue_manifests(gpu=0, cpu=8))
        script = (
            "import os; p = os.environ['PHALANX_CHECKPOINT_DIR']; "
            "open(os.path.join(p, 'mark'), 'w').write('1'); print(p, os.getuid())"
        )
        plane.apply([job("moved", script)])
        run_until(plane, "moved", "Succeeded")
        out = plane.read_logs("moved")[0].decode().split()
        assert out[0].startswith("/var/lib/phalanx-pods/") and int(out[1]) == pod_user.uid
        assert (hidden / "checkpoints").is_symlink()
        assert list((hidden / "checkpoints").glob("*/mark"))  # the control plane sees it
    finally:
        backend.close()
        store.close()
