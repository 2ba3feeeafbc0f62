"""Kind ResourceFlavor: a kind of node, selected by labels (``nvidia.com/gpu.product: H100``)."""

from __future__ import annotations

from collections.abc import Mapping

from phalanx.kinds.registry import Kind, register
from phalanx.model.objects import ResourceFlavor
from phalanx.model.specs import flavor_to_manifest, parse_flavor


def _spec(obj: ResourceFlavor) -> Mapping[str, object]:
    spec = flavor_to_manifest(obj)["spec"]
    assert isinstance(spec, Mapping)
    return spec


FLAVOR = register(
    Kind(
        name="ResourceFlavor",
        plural="resourceflavors",
        short_names=("flavor", "flavors", "rf"),
        description="a kind of node, selected by node labels; queues give quota per flavor",
        parse=parse_flavor,
        spec_manifest=_spec,
    )
)
