"""A Service's replica template may read variables from Secrets
(``env[].valueFrom.secretKeyRef``), resolved as for a Job's pods when each replica launches:
the value reaches the replica's process and nothing else (the Service, its revisions, the
replica Jobs, the API's answer, describe). A changed reference is a new revision."""

from __future__ import annotations

import json
import time

import pytest
from service_harness import ServingHarness, get, service_manifest

from phalanx.api.services import service_out
from phalanx.cli.service import describe_service

pytestmark = pytest.mark.integration

VALUE = "s3rv1ng-Secret-4d1e"


def secret(name: str, value: str) -> dict[str, object]:
    return {
        "apiVersion": "phalanx.dev/v1alpha1",
        "kind": "Secret",
        "metadata": {"name": name},
        "spec": {"stringData": {"token": value}},
    }


def from_secret(name: str) -> list[dict[str, object]]:
    return [
        {"name": "MODE", "value": "plain"},
        {"name": "VERSION", "valueFrom": {"secretKeyRef": {"name": name, "key": "token"}}},
    ]


def test_a_secret_reaches_the_replica_and_nothing_else(serving: ServingHarness) -> None:
    serving.plane.apply([secret("model-key", VALUE), secret("other-key", "other-value")])
    serving.plane.apply([service_manifest("keyed", minReplicas=1, env=from_secret("model-key"))])
    view = serving.wait_ready("keyed", 1)
    first_revision = view.revision

    # the replica's process has the value (service_replica.py answers $VERSION)
    conn = serving.connection()
    deadline = time.monotonic() + 5
    status, data = get(conn, "/keyed/")
    while status != 200 and time.monotonic() < deadline:
        time.sleep(0.05)
        status, data = get(conn, "/keyed/")
    conn.close()
    assert status == 200 and data["version"] == VALUE

    # nothing else has it: the Service, its revision, the replica Job, the API, describe
    out = service_out(serving.view("keyed"))
    text = json.dumps(out)
    assert VALUE not in text
    assert VALUE not in describe_service(out, time.time())
    template = out["revisions"][0]["template"]
    assert {
        "name": "VERSION",
        "valueFrom": {"secretKeyRef": {"name": "model-key", "key": "token"}},
    } in template["env"]
    for obj in serving.store.list_objects("ServiceRevision"):
        assert VALUE not in repr(obj.manifest)
    replica = serving.store.get_job(view.replicas[0].name)
    assert replica is not None and VALUE not in repr(replica)
    assert all(VALUE not in repr(p.env) for p in serving.store.pods())
    env = replica.manifest["spec"]["podSets"][0]["env"]
    assert {"name": "MODE", "value": "plain"} in env

    # another Secret is another template: a new revision, rolled out
    serving.plane.apply([service_manifest("keyed", minReplicas=1, env=from_secret("other-key"))])
    serving.wait(
        "the new revision ready",
        lambda: (
            serving.view("keyed").revision != first_revision
            and [r.revision for r in serving.view("keyed").replicas if r.phase == "Ready"]
            == [serving.view("keyed").revision]
        ),
    )
    conn = serving.connection()
    deadline = time.monotonic() + 5
    _, data = get(conn, "/keyed/")
    while data.get("version") != "other-value" and time.monotonic() < deadline:
        time.sleep(0.05)
        _, data = get(conn, "/keyed/")
    conn.close()
    assert data["version"] == "other-value"
