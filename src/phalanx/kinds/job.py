"""Kind Job: pod sets admitted together (a gang), with restart, failure and checkpoint
policies. Its lifecycle is the table in phalanx.model.transitions."""

from __future__ import annotations

from collections.abc import Mapping

from phalanx.kinds.registry import Kind, register
from phalanx.model.objects import JobSpec
from phalanx.model.specs import job_to_manifest, parse_job


def _spec(obj: JobSpec) -> Mapping[str, object]:
    spec = job_to_manifest(obj)["spec"]
    assert isinstance(spec, Mapping)
    return spec


JOB = register(
    Kind(
        name="Job",
        plural="jobs",
        short_names=("job", "j"),
        description="pod sets admitted all or nothing, with restart and failure policies",
        is_job=True,
        parse=parse_job,
        spec_manifest=_spec,
        # parse_job puts metadata.name into JobSpec.name only
        template_cache=256,
    )
)
