"""Kind Service: replicas of a template behind the router, autoscaled, rolled out by
revision, with an optional traffic split. Each replica is a Job the Service owns (see
phalanx.serving.controller)."""

from __future__ import annotations

from collections.abc import Mapping

from phalanx.kinds.registry import Kind, register
from phalanx.model.service import ServiceSpec, parse_service, service_to_manifest


def _spec(obj: ServiceSpec) -> Mapping[str, object]:
    spec = service_to_manifest(obj)["spec"]
    assert isinstance(spec, Mapping)
    return spec


SERVICE = register(
    Kind(
        name="Service",
        plural="services",
        short_names=("service", "svc"),
        description="replicas of a server behind the router: autoscaled, revisions, canaries",
        parse=parse_service,
        spec_manifest=_spec,
    )
)
