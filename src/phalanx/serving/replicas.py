"""The objects a Service owns, as manifests: its replica Jobs and its ServiceRevisions (the
templates of its revisions, kept so that a canary or a rollback can create replicas of an older
one); and, when several servers share one store, the ServiceEndpoints the leader publishes and
the ServiceLoad each follower reports. Pure: no I/O; the Service controller stores them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from phalanx.model.service import (
    PORT_ANNOTATION,
    REVISION_LABEL,
    SERVICE_LABEL,
    ReplicaTemplate,
    ServiceSpec,
    parse_service,
    template_env,
    template_manifest,
)
from phalanx.model.specs import API_VERSION

SERVICE_KIND = "Service"
REVISION_KIND = "ServiceRevision"
#: With leader election: the leader's routes, one object per Service, for the other servers.
ENDPOINTS_KIND = "ServiceEndpoints"
#: With leader election: a follower's router load and demand, one object per follower.
LOAD_KIND = "ServiceLoad"


def replica_manifest(
    name: str,
    uid: str,
    spec: ServiceSpec,
    revision: str,
    template: ReplicaTemplate,
    port: int,
    replica: str,
) -> dict[str, object]:
    """The Job of replica ``replica`` of Service ``name`` (uid ``uid``): ``template`` of
    ``revision`` listening on ``port``, owned by the Service, labelled with both, never
    restarted in place (a failed replica is replaced)."""
    env: dict[str, str] = {
        **template.env,
        "PORT": str(port),
        "PHALANX_PORT": str(port),
        "PHALANX_SERVICE": name,
        "PHALANX_REVISION": revision,
        "PHALANX_REPLICA": replica,
    }
    pod_set: dict[str, object] = {
        "name": "replica",
        "replicas": template.pods,
        "resources": template.resources.to_quantities(),
        "command": list(template.command),
        # Variables from Secrets stay references: the Job's pods resolve them at launch.
        "env": (template_env(replace(template, env=env)) if template.secret_env else env),
    }
    if template.args:
        pod_set["args"] = list(template.args)
    if template.working_dir:
        pod_set["workingDir"] = template.working_dir
    if template.image:
        pod_set["image"] = template.image
    return {
        "apiVersion": API_VERSION,
        "kind": "Job",
        "metadata": {
            "name": replica,
            "labels": {SERVICE_LABEL: name, REVISION_LABEL: revision},
            "annotations": {PORT_ANNOTATION: str(port)},
            "ownerReferences": [{"kind": SERVICE_KIND, "name": name, "uid": uid}],
        },
        "spec": {
            "queue": spec.queue,
            "priority": spec.priority,
            "restartPolicy": {"policy": "Never"},
            "podSets": [pod_set],
        },
    }


def revision_manifest(name: str, uid: str, spec: ServiceSpec, now: float) -> dict[str, Any]:
    """The ServiceRevision that remembers ``spec``'s template (named ``<name>-<revision>``)."""
    return {
        "apiVersion": API_VERSION,
        "kind": REVISION_KIND,
        "metadata": {
            "name": f"{name}-{spec.revision}",
            "labels": {SERVICE_LABEL: name, REVISION_LABEL: spec.revision},
            "ownerReferences": [{"kind": SERVICE_KIND, "name": name, "uid": uid}],
        },
        "spec": {
            "service": name,
            "revision": spec.revision,
            "template": template_manifest(spec.template),
            "port": spec.port,
            "createdAt": now,
        },
    }


def revision_template(manifest: Mapping[str, Any]) -> tuple[ReplicaTemplate, int]:
    """The template and port a ServiceRevision remembers. Raises SpecError for a stored one
    that no longer parses."""
    spec = manifest["spec"]
    probe = {
        "apiVersion": API_VERSION,
        "kind": SERVICE_KIND,
        "metadata": {"name": str(spec.get("service", "s"))},
        "spec": {"queue": "q", "template": spec["template"], "port": spec["port"]},
    }
    parsed = parse_service(probe, f"ServiceRevision {manifest['metadata']['name']}")
    return parsed.template, parsed.port


def endpoints_manifest(route_json: Mapping[str, Any]) -> dict[str, Any]:
    """The ServiceEndpoints object of one route (``endpoints.route_to_json``): what the
    leader's Service controller publishes so that every server's router can route."""
    return {
        "apiVersion": API_VERSION,
        "kind": ENDPOINTS_KIND,
        "metadata": {
            "name": str(route_json["service"]),
            "labels": {SERVICE_LABEL: str(route_json["service"])},
        },
        "spec": dict(route_json),
    }


def load_manifest(
    server: str, seq: int, at: float, samples: list[dict[str, Any]], demand: Mapping[str, float]
) -> dict[str, Any]:
    """The ServiceLoad object of server ``server`` (a follower): the load samples its router
    took since its previous write (``endpoints.load_to_json``), numbered ``seq``, and when a
    request last waited at zero per service (``demand``)."""
    return {
        "apiVersion": API_VERSION,
        "kind": LOAD_KIND,
        "metadata": {"name": server},
        "spec": {
            "server": server,
            "seq": seq,
            "at": at,
            "samples": samples,
            "demand": dict(demand),
        },
    }
