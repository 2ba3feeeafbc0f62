"""Secrets through the API: applied (JSON or YAML), listed and read masked — keys and sizes,
never a value, plain or base64 — refused without the value echoed, and deleted."""

from __future__ import annotations

import base64

import httpx

VALUE = "api-s3cret-0b9e44"
ENCODED = base64.b64encode(VALUE.encode()).decode()


def secret(**spec: object) -> dict[str, object]:
    return {
        "apiVersion": "phalanx.dev/v1alpha1",
        "kind": "Secret",
        "metadata": {"name": "db", "labels": {"team": "a"}},
        "spec": spec,
    }


def test_secrets_are_shown_masked(http: httpx.Client) -> None:
    applied = http.post("/api/v1/apply", json={"manifests": [secret(stringData={"pw": VALUE})]})
    assert applied.status_code == 200, applied.text
    assert VALUE not in applied.text
    for response in (http.get("/api/v1/secrets"), http.get("/api/v1/secrets/db")):
        assert response.status_code == 200
        assert VALUE not in response.text and ENCODED not in response.text
    one = http.get("/api/v1/secrets/db").json()
    assert one["spec"] == {"type": "Opaque", "data": {"pw": f"<hidden> ({len(VALUE)} bytes)"}}
    assert one["metadata"]["labels"] == {"team": "a"}
    assert [s["name"] for s in http.get("/api/v1/secrets").json()] == ["db"]
    assert http.get("/api/v1/secrets/nope").status_code == 404
    assert http.delete("/api/v1/secrets/db").status_code == 204
    assert http.get("/api/v1/secrets").json() == []


def test_a_refused_secret_does_not_echo_its_value(http: httpx.Client) -> None:
    bad = secret(data={"pw": VALUE + "!"}, password=VALUE)  # not base64; an unknown field
    response = http.post("/api/v1/apply", json={"manifests": [bad]})
    assert response.status_code == 400
    assert VALUE not in response.text
    assert "spec.data.pw" in response.text and "spec.password" in response.text
