"""Routes of Services and of the router: ``/api/v1/services`` (list, one with its replicas,
revisions and the autoscaler's decisions, promote, rollback) and ``/api/v1/routes`` (what a
standalone ``phalanx router`` reads, and where it reports load and demand).

Thin: each route calls one method of the ServiceController (phalanx.serving.controller) and
turns its view into JSON here. Must not import client or cli.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from fastapi import APIRouter, Body, Query

from phalanx.api.errors import BAD_REQUEST, ApiRequestError
from phalanx.controllers.plane import ControlPlane
from phalanx.serving.controller import ServiceController
from phalanx.serving.endpoints import load_from_json, route_to_json
from phalanx.serving.views import ServiceView

API_PREFIX = "/api/v1"
#: The most load samples one POST /routes/load may carry.
MAX_SAMPLES = 10_000


def service_out(view: ServiceView) -> dict[str, Any]:
    """The JSON of one Service: its manifest, then what the controller knows of it."""
    spec = view.spec
    return {
        "name": view.name,
        "uid": view.uid,
        "manifest": dict(view.manifest),
        "created_at": view.created_at,
        "queue": spec.queue if spec else "",
        "revision": view.revision,
        "url": view.url,
        "route": {
            "pathPrefix": spec.route_prefix if spec else "",
            "hosts": list(spec.hosts) if spec else [],
        },
        "min_replicas": spec.min_replicas if spec else 0,
        "max_replicas": spec.max_replicas if spec else 0,
        "desired": view.desired,
        "ready": view.ready,
        "replicas": [
            {
                "name": r.name,
                "revision": r.revision,
                "phase": r.phase,
                "url": r.url,
                "created_at": r.created_at,
                "reason": dict(r.reason) if r.reason is not None else None,
                "draining": r.is_draining,
            }
            for r in view.replicas
        ],
        "revisions": [
            {
                "name": rev.name,
                "created_at": rev.created_at,
                "template": dict(rev.template),
                "desired": rev.desired,
                "replicas": rev.replicas,
                "ready": rev.ready,
                "percent": rev.percent,
                "latest": rev.is_latest,
            }
            for rev in view.revisions
        ],
        "decisions": [
            {"at": d.at, "replicas": d.replicas, "code": d.code, "reason": d.reason}
            for d in view.decisions
        ],
        "rollout_waiting": view.waiting,
        "error": view.error,
        "events": [
            {
                "at": e.at,
                "type": e.type,
                "reason": e.reason,
                "message": e.message,
                "facts": dict(e.facts),
            }
            for e in view.events
        ],
    }


def services_router(plane: ControlPlane) -> APIRouter:
    """The routes above, for the Service controller in ``plane.reconcilers`` (added if
    missing)."""
    controller = ServiceController.attach(plane)
    router = APIRouter(prefix=API_PREFIX, tags=["services"])

    @router.get("/services", summary="List Services with their replicas and revisions")
    def list_services() -> list[dict[str, Any]]:
        return [service_out(v) for v in controller.views()]

    @router.get(
        "/services/{name}",
        summary="One Service: replicas, revisions, traffic, the autoscaler's last decisions",
    )
    def get_service(name: str) -> dict[str, Any]:
        return service_out(controller.view(name))

    @router.post(
        "/services/{name}/promote",
        summary="Send all traffic to a revision (default: the template's), ending a canary",
    )
    def promote_service(
        name: str, revision: str | None = Query(default=None, max_length=64)
    ) -> dict[str, Any]:
        return service_out(controller.promote(name, revision))

    @router.post(
        "/services/{name}/rollback",
        summary="Go back to a revision (default: the one before the template's)",
    )
    def rollback_service(
        name: str, revision: str | None = Query(default=None, max_length=64)
    ) -> dict[str, Any]:
        return service_out(controller.rollback(name, revision))

    @router.get("/routes", summary="The router's routes: services, ready replicas, traffic")
    def list_routes() -> list[dict[str, Any]]:
        return [route_to_json(r) for r in controller.routes()]

    @router.post(
        "/routes/load",
        status_code=204,
        summary="A router reports load samples and services that a request waits for",
    )
    def report_load(body: dict[str, Any] = Body(...)) -> None:  # noqa: B008
        samples = body.get("samples", [])
        demand = body.get("demand", [])
        if not isinstance(samples, Sequence) or not isinstance(demand, Sequence):
            raise ApiRequestError(400, BAD_REQUEST, "samples and demand must be lists")
        if len(samples) > MAX_SAMPLES:
            raise ApiRequestError(
                400, BAD_REQUEST, f"at most {MAX_SAMPLES} samples per request; send fewer"
            )
        parsed = []
        for i, item in enumerate(samples):
            try:
                if not isinstance(item, Mapping):
                    raise TypeError("not an object")
                parsed.append(load_from_json(item))
            except (KeyError, TypeError, ValueError) as exc:
                raise ApiRequestError(
                    400,
                    BAD_REQUEST,
                    f"samples[{i}]: {exc}; expected service, at, inFlight, waiting, requestsTotal",
                ) from exc
        controller.report(parsed)
        for service in demand[:1000]:
            controller.demand(str(service))

    return router
