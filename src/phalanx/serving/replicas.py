"""The objects a Service owns, as manifests: its replica Jobs and its ServiceRevisions (the
templates of its revisions, kept so that a canary or a rollback can create replicas of an older
one). Pure: no I/O; the Service controller stores them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from phalanx.model.service import (
    PORT_ANNOTATION,
    REVISION_LABEL,
    SERVICE_LABEL,
    ReplicaTemplate,
    ServiceSpec,
    parse_service,
    template_manifest,
)
from phalanx.model.specs import API_VERSION

SERVICE_KIND = "Service"
REVISION_KIND = "ServiceRevision"


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
    env = {
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
        "env": env,
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
