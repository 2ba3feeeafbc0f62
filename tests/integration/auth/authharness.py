"""Helpers of the auth tests: a real ControlPlane (SQLite store, local backend with virtual nodes) served by
the real app in-process, the admin token, and users of every role with their tokens."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass

import httpx
from fastapi import FastAPI

from asgi_client import app_client
from phalanx.auth import AuditLog, Identity
from phalanx.controllers.plane import ControlPlane

ADMIN_TOKEN = "bootstrap-admin-token"
PYTHON = sys.executable

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
            ],
            "access": {"users": ["alice"], "groups": ["ml"]},
        },
    },
    {
        "apiVersion": "phalanx.dev/v1alpha1",
        "kind": "Queue",
        "metadata": {"name": "shared"},
        "spec": {
            "flavors": [
                {"name": "default", "resources": {"cpu": 4, "memory": "4Gi", "nvidia.com/gpu": 4}}
            ]
        },
    },
]


def job(name: str, queue: str, code: str = "print('hello')") -> dict[str, object]:
    """A one-pod Job whose pod runs ``python -c code`` with a secret-looking env value."""
    return {
        "apiVersion": "phalanx.dev/v1alpha1",
        "kind": "Job",
        "metadata": {"name": name},
        "spec": {
            "queue": queue,
            "podSets": [
                {
                    "name": "worker",
                    "replicas": 1,
                    "resources": {"cpu": "100m", "memory": "64Mi", "nvidia.com/gpu": 1},
                    "command": [PYTHON, "-c", code],
                    "env": [{"name": "API_KEY", "value": "s3cret-value"}],
                }
            ],
        },
    }


class Clock:
    """A clock tests move by hand (token expiry)."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


@dataclass
class Site:
    """The app with its plane, identity, audit log, and a client per user."""

    app: FastAPI
    plane: ControlPlane
    identity: Identity
    audit: AuditLog
    clock: Clock

    def client(self, token: str | None) -> httpx.Client:
        return app_client(self.app, token)

    def user(self, name: str, role: str, groups: tuple[str, ...] = ()) -> httpx.Client:
        """Create the user through the API (as the admin), and a client with a new token."""
        with self.client(ADMIN_TOKEN) as admin:
            created = admin.post(
                "/api/v1/users", json={"name": name, "role": role, "groups": list(groups)}
            )
            assert created.status_code == 201, created.text
            made = admin.post("/api/v1/tokens", json={"user": name, "name": "test"})
            assert made.status_code == 201, made.text
        return self.client(made.json()["token"])


def wait_phase(
    http: httpx.Client, name: str, phases: tuple[str, ...], timeout_s: float = 20
) -> dict[str, object]:
    deadline = time.monotonic() + timeout_s
    while True:
        body: dict[str, object] = http.get(f"/api/v1/jobs/{name}").json()
        if body.get("phase") in phases:
            return body
        assert time.monotonic() < deadline, f"{name} stayed {body.get('phase')}: {body}"
        time.sleep(0.05)
