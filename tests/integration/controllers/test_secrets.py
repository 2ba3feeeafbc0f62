"""Secrets end to end (real control plane, SQLite store, local backend, real processes): the
value reaches the pod's environment and nothing else — not the stored manifest, the database
file, the job's pods, events or the control plane's log; a missing Secret or key fails the
pod as the application's fault, naming the secret and key, and frees its devices."""

from __future__ import annotations

import base64
import logging
import stat
from pathlib import Path

import pytest
from harness import Harness, job_manifest, queue_manifests

from phalanx.controllers.secrets import KEY_FILE, masked_manifest

pytestmark = pytest.mark.integration

VALUE = "s3cr3t-Value-7f2b9c"


def secret(name: str = "db", **data: str) -> dict[str, object]:
    return {
        "apiVersion": "phalanx.dev/v1alpha1",
        "kind": "Secret",
        "metadata": {"name": name},
        "spec": {"stringData": data or {"password": VALUE}},
    }


def with_env(manifest: dict[str, object], *env: dict[str, object]) -> dict[str, object]:
    manifest["spec"]["podSets"][0]["env"] = list(env)  # type: ignore[index]
    return manifest


def ref(var: str, name: str = "db", key: str = "password", **extra: object) -> dict[str, object]:
    return {"name": var, "valueFrom": {"secretKeyRef": {"name": name, "key": key, **extra}}}


PRINT_ENV = "import os; print('GOT', os.environ.get('PASSWORD', 'unset'))"


def test_the_value_reaches_the_pod_and_nothing_else(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    h = harness
    caplog.set_level(logging.DEBUG)
    h.plane.apply([*queue_manifests(gpus=2), secret()])
    h.plane.apply([with_env(job_manifest("use", PRINT_ENV), ref("PASSWORD"))])
    h.run_until(lambda: h.phase("use") == "Succeeded")
    assert f"GOT {VALUE}" in h.logs("use")

    stored = h.plane.store.get_object("Secret", "db")
    assert stored is not None
    text = repr(stored.manifest)
    assert VALUE not in text and base64.b64encode(VALUE.encode()).decode() not in text
    assert stored.manifest["spec"]["keys"] == {"password": len(VALUE)}
    for path in h.data_dir.glob("phalanx.db*"):
        raw = path.read_bytes()
        assert VALUE.encode() not in raw and base64.b64encode(VALUE.encode()) not in raw
    job = h.job("use")
    assert VALUE not in repr(job)  # pods' env, events, reasons
    assert all(VALUE not in repr(p.env) for p in h.plane.store.pods())
    assert VALUE not in caplog.text
    assert masked_manifest(stored.manifest)["spec"] == {
        "type": "Opaque",
        "data": {"password": f"<hidden> ({len(VALUE)} bytes)"},
    }
    key = h.data_dir / KEY_FILE
    assert stat.S_IMODE(key.stat().st_mode) == 0o600


def test_applying_the_same_secret_again_is_unchanged_and_a_new_value_is_used(
    harness: Harness,
) -> None:
    h = harness
    h.plane.apply([*queue_manifests(gpus=2), secret()])
    again = h.plane.apply([secret()])
    assert [r.action for r in again] == ["unchanged"]
    changed = h.plane.apply([secret(password="other-value")])
    assert [r.action for r in changed] == ["configured"]
    h.plane.apply([with_env(job_manifest("use", PRINT_ENV), ref("PASSWORD"))])
    h.run_until(lambda: h.phase("use") == "Succeeded")
    assert "GOT other-value" in h.logs("use")


@pytest.mark.parametrize(
    ("secret_name", "key", "reason"),
    [
        pytest.param("nope", "password", "SecretNotFound", id="missing-secret"),
        pytest.param("db", "nokey", "SecretKeyNotFound", id="missing-key"),
    ],
)
def test_a_missing_secret_or_key_fails_the_pod_not_the_node(
    harness: Harness, secret_name: str, key: str, reason: str
) -> None:
    h = harness
    h.plane.apply([*queue_manifests(gpus=2), secret()])
    h.plane.apply(
        [with_env(job_manifest("bad", PRINT_ENV, gpus=2), ref("PASSWORD", secret_name, key))]
    )
    h.run_until(lambda: h.phase("bad") == "Failed")
    job = h.job("bad")
    assert {p.reason for p in job.pods} == {reason}
    facts = job.reason_facts
    assert (facts["secret"], facts["key"], facts["variable"]) == (secret_name, key, "PASSWORD")
    assert facts["cause"] == "Application"
    assert secret_name in job.message or secret_name in str(facts["pod_message"])
    nodes = [n.name for n in h.plane.backend.nodes()]
    assert all(not h.plane.lifecycle.health.get(n).failures for n in nodes)
    # the devices are free: a job needing both GPUs of a node runs next
    h.plane.apply([job_manifest("next", "print('ok')", gpus=2)])
    h.run_until(lambda: h.phase("next") == "Succeeded")


def test_an_optional_reference_to_nothing_leaves_the_variable_unset(harness: Harness) -> None:
    h = harness
    h.plane.apply(queue_manifests(gpus=2))
    h.plane.apply(
        [with_env(job_manifest("opt", PRINT_ENV), ref("PASSWORD", "nope", optional=True))]
    )
    h.run_until(lambda: h.phase("opt") == "Succeeded")
    assert "GOT unset" in h.logs("opt")


def test_deleting_a_secret_in_use_fails_the_next_launch(harness: Harness) -> None:
    """Allowed, as Kubernetes allows it: running pods keep their environment; the next
    launch of a pod that refers to it fails naming the secret."""
    h = harness
    h.plane.apply([*queue_manifests(gpus=2), secret()])
    h.plane.delete("secret", "db")
    assert h.plane.store.get_object("Secret", "db") is None
    h.plane.apply([with_env(job_manifest("late", PRINT_ENV), ref("PASSWORD"))])
    h.run_until(lambda: h.phase("late") == "Failed")
    assert h.job("late").reason_facts["secret"] == "db"


def test_a_secret_survives_a_restart_with_the_same_key_file(tmp_path: Path) -> None:
    h = Harness(tmp_path, "1x1")
    h.plane.apply([*queue_manifests(gpus=1), secret()])
    h.restart()
    h.plane.apply([with_env(job_manifest("after", PRINT_ENV), ref("PASSWORD"))])
    h.run_until(lambda: h.phase("after") == "Succeeded")
    assert f"GOT {VALUE}" in h.logs("after")
    h.plane.store.close()
