"""The Secret kind: data (base64) and stringData, validation that never echoes a value,
secretKeyRef in pod env, and the key file of controllers/secrets.py (mode 0600, sealing
and opening, rotation with two keys)."""

from __future__ import annotations

import base64
import stat
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from phalanx import kinds
from phalanx.controllers.secrets import SecretVault, load_or_create_keys
from phalanx.model.objects import SecretKeyRef
from phalanx.model.specs import SpecError
from phalanx.store import open_store


def secret(spec: dict[str, object], name: str = "db") -> dict[str, object]:
    return {
        "apiVersion": "phalanx.dev/v1alpha1",
        "kind": "Secret",
        "metadata": {"name": name},
        "spec": spec,
    }


def test_string_data_is_folded_into_data_and_wins() -> None:
    parsed = kinds.parse(
        secret(
            {"data": {"a": base64.b64encode(b"x").decode(), "b": "eQ=="}, "stringData": {"b": "z"}}
        )
    )
    assert parsed.obj.data == {"a": b"x", "b": b"z"}
    assert parsed.manifest["spec"] == {"type": "Opaque", "data": {"a": "eA==", "b": "eg=="}}
    assert "x" not in repr(parsed.obj) and "keys=['a', 'b']" in repr(parsed.obj)


@pytest.mark.parametrize(
    ("spec", "path"),
    [
        pytest.param({"data": {"k": "not base64!"}}, "spec.data.k", id="bad-base64"),
        pytest.param({"data": {"bad/key": "eA=="}}, "spec.data.bad/key", id="bad-key"),
        pytest.param({"stringData": {"k": 5}}, "spec.stringData.k", id="not-text"),
        pytest.param({"stringData": {"k": "x" * (1024 * 1024 + 1)}}, "spec.data", id="too-big"),
        pytest.param({"value": "x"}, "spec.value", id="unknown-field"),
    ],
)
def test_bad_secrets_are_rejected_naming_the_field_not_the_value(
    spec: dict[str, object], path: str
) -> None:
    with pytest.raises(SpecError) as caught:
        kinds.parse(secret(spec))
    assert path in [e.path for e in caught.value.errors]
    assert "not base64!" not in str(caught.value)


SENTINEL = "sentinel-value-91f3"


@pytest.mark.parametrize(
    ("manifest", "path"),
    [
        pytest.param(
            {**secret({}), "data": {"k": SENTINEL}}, "data", id="kubernetes-style-top-level"
        ),
        pytest.param(secret({"password": SENTINEL}), "spec.password", id="unknown-spec-field"),
        pytest.param(secret({"data": SENTINEL}), "spec.data", id="data-not-a-mapping"),
        pytest.param(secret({"stringData": [SENTINEL]}), "spec.stringData", id="list"),
        pytest.param({**secret({}), "spec": SENTINEL}, "spec", id="spec-not-a-mapping"),
        pytest.param({**secret({}), "extra": SENTINEL}, "extra", id="unknown-top-level"),
    ],
)
def test_errors_never_echo_a_value(manifest: dict[str, object], path: str) -> None:
    with pytest.raises(SpecError) as caught:
        kinds.parse(manifest)
    assert path in [e.path for e in caught.value.errors]
    assert SENTINEL not in str(caught.value) and SENTINEL not in repr(caught.value.errors)


def test_secret_key_refs_in_env_round_trip_and_are_validated() -> None:
    job = {
        "apiVersion": "phalanx.dev/v1alpha1",
        "kind": "Job",
        "metadata": {"name": "j"},
        "spec": {
            "queue": "q",
            "podSets": [
                {
                    "command": ["x"],
                    "env": [
                        {"name": "A", "value": "1"},
                        {"name": "P", "valueFrom": {"secretKeyRef": {"name": "db", "key": "pw"}}},
                        {
                            "name": "O",
                            "valueFrom": {
                                "secretKeyRef": {"name": "db", "key": "o", "optional": True}
                            },
                        },
                    ],
                }
            ],
        },
    }
    parsed = kinds.parse(job)
    pod_set = parsed.obj.pod_sets[0]
    assert pod_set.env == {"A": "1"}
    assert pod_set.secret_env == {
        "P": SecretKeyRef("db", "pw"),
        "O": SecretKeyRef("db", "o", is_optional=True),
    }
    assert kinds.parse(parsed.manifest).obj == parsed.obj
    bad = [
        {"name": "P", "value": "x", "valueFrom": {"secretKeyRef": {"name": "db", "key": "k"}}},
        {"name": "Q", "valueFrom": {"secretKeyRef": {"name": "DB", "key": "k/1"}}},
        {"name": "R", "valueFrom": {"configMapKeyRef": {}}},
    ]
    job["spec"]["podSets"][0]["env"] = bad  # type: ignore[index]
    with pytest.raises(SpecError) as caught:
        kinds.parse(job)
    paths = {e.path for e in caught.value.errors}
    assert "spec.podSets[0].env[0].valueFrom" in paths
    assert {
        "spec.podSets[0].env[1].valueFrom.secretKeyRef.name",
        "spec.podSets[0].env[1].valueFrom.secretKeyRef.key",
        "spec.podSets[0].env[2].valueFrom.configMapKeyRef",
    } <= paths


def test_the_key_file_is_private_and_created_once(tmp_path: Path) -> None:
    path = tmp_path / "d" / "secrets.key"
    first = load_or_create_keys(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_or_create_keys(path) == first
    path.write_text("not a key\n")
    with pytest.raises(ValueError, match="not a Fernet key"):
        load_or_create_keys(path)


def test_sealed_secrets_open_and_rotate_to_a_new_key(tmp_path: Path) -> None:
    store = open_store(None, tmp_path)
    try:
        vault = SecretVault(store, tmp_path / "secrets.key")
        parsed = kinds.parse(secret({"stringData": {"pw": "hunter2"}}))
        sealed = vault.seal(parsed.manifest)
        assert "hunter2" not in repr(sealed)
        store.apply([("Secret", "db", sealed)], [], 1.0)
        old_key = (tmp_path / "secrets.key").read_bytes().strip()
        new_key = Fernet.generate_key()
        (tmp_path / "secrets.key").write_bytes(new_key + b"\n" + old_key + b"\n")
        rotated = SecretVault(store, tmp_path / "secrets.key")
        assert rotated.rotate() == 1
        (tmp_path / "secrets.key").write_bytes(new_key + b"\n")  # the old key removed
        opened = SecretVault(store, tmp_path / "secrets.key").get("db")
        assert opened is not None and opened.data == {"pw": b"hunter2"}
    finally:
        store.close()
