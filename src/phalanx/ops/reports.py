"""The doctor's and the estimates' answers as JSON, for the API and the MCP server.

``doctor_report(plane, kind, name)`` observes the control plane, estimates start times (the
evidence of jobs that wait their turn), runs the analyzers and keeps what concerns the target:
everything, or one job, node, queue, Service or PipelineRun. ``estimates_report(plane)`` lists every pending job's
estimate. Raises NotFoundError for an unknown target and ValueError for an unknown kind.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace

from phalanx.controllers.errors import NotFoundError
from phalanx.controllers.plane import ControlPlane
from phalanx.ops.doctor import (
    DoctorSettings,
    diagnose,
    diagnose_job,
    diagnose_node,
    diagnose_queue,
    diagnose_run,
    diagnose_service,
)
from phalanx.ops.estimates import Estimate, WhatIf, estimate_plane
from phalanx.ops.observation import Observation, observe

#: Kinds the doctor looks at one object of, by every name each answers to.
DOCTOR_KINDS: Mapping[str, str] = {
    "job": "job",
    "jobs": "job",
    "node": "node",
    "nodes": "node",
    "queue": "queue",
    "queues": "queue",
    "service": "service",
    "services": "service",
    "svc": "service",
    "pipelinerun": "pipelinerun",
    "pipelineruns": "pipelinerun",
    "run": "pipelinerun",
}


def doctor_kind(kind: str) -> str:
    """``job``, ``node``, ``queue``, ``service`` or ``pipelinerun`` for any of their names.
    Raises ValueError naming the kinds the doctor knows."""
    try:
        return DOCTOR_KINDS[kind.lower()]
    except KeyError:
        raise ValueError(
            f"the doctor looks at jobs, nodes, queues, services and pipeline runs, not "
            f"{kind!r}: use `phalanx doctor job|node|queue|service|pipelinerun NAME`, or "
            "`phalanx doctor` for everything"
        ) from None


def _with_estimates(obs: Observation, estimates: Mapping[str, Estimate]) -> Observation:
    return replace(
        obs,
        estimates={
            name: (e.start_at, e.waits_on, e.higher_priority_load) for name, e in estimates.items()
        },
    )


def doctor_report(
    plane: ControlPlane,
    kind: str = "",
    name: str = "",
    settings: DoctorSettings | None = None,
) -> dict[str, object]:
    """``{target, checked_at, findings: [Finding.to_dict()]}``; see the module docstring."""
    obs = observe(plane)
    target = ""
    if kind:
        kind = doctor_kind(kind)
        target = f"{kind}/{name}"
        if kind == "job":
            plane.queries.get_job(name)  # NotFoundError for an unknown job
            if obs.job(name) is None:  # ended long ago: look at it all the same
                obs = observe(plane, jobs=[name])
        elif kind == "node" and obs.node(name) is None:
            raise NotFoundError("node", name)
        elif kind == "queue" and name not in obs.queue_specs:
            raise NotFoundError("queue", name)
        elif kind == "service" and all(s.name != name for s in obs.services):
            raise NotFoundError("service", name)
        elif kind == "pipelinerun" and all(r.name != name for r in obs.runs):
            raise NotFoundError("pipelinerun", name)
    obs = _with_estimates(obs, estimate_plane(plane))
    if kind == "job":
        findings = diagnose_job(obs, name, settings)
    elif kind == "node":
        findings = diagnose_node(obs, name, settings)
    elif kind == "queue":
        findings = diagnose_queue(obs, name, settings)
    elif kind == "service":
        findings = diagnose_service(obs, name, settings)
    elif kind == "pipelinerun":
        findings = diagnose_run(obs, name, settings)
    else:
        findings = diagnose(obs, settings)
    return {
        "target": target,
        "checked_at": obs.now,
        "findings": [f.to_dict() for f in findings],
    }


def parse_what_if(queue_gpus: Sequence[str] = (), drain: Sequence[str] = ()) -> WhatIf | None:
    """A WhatIf from ``QUEUE=GPUS`` items and node names; None when both are empty. Raises
    ValueError naming an item that is not ``QUEUE=GPUS``."""
    gpus: dict[str, float] = {}
    for item in queue_gpus:
        name, sep, value = item.partition("=")
        try:
            if not sep or not name:
                raise ValueError
            gpus[name] = float(value)
            if gpus[name] < 0:
                raise ValueError
        except ValueError:
            raise ValueError(
                f"what-if queue_gpus {item!r}: expected QUEUE=GPUS, e.g. team-a=16"
            ) from None
    if not gpus and not drain:
        return None
    return WhatIf(gpus, frozenset(drain))


def estimates_report(plane: ControlPlane, what_if: WhatIf | None = None) -> list[dict[str, object]]:
    """Every pending job's estimate: ``{job, queue, start_at, wait_s, waits_on, after,
    higher_priority_load}``, in
    the order they are expected to start (unknown last); with ``what_if``, as they would be
    after that change. Raises ValueError for a what-if naming an unknown queue or node."""
    now = plane.clock()
    estimates = estimate_plane(plane, what_if=what_if)
    queues = {j.name: j.queue for j in plane.queries.list_jobs() if j.name in estimates}
    ordered = sorted(
        estimates.values(),
        key=lambda e: (e.start_at is None, e.start_at or 0.0, e.job),
    )
    return [
        {
            "job": e.job,
            "queue": queues.get(e.job, ""),
            "start_at": e.start_at,
            "wait_s": e.wait_s(now),
            "waits_on": e.waits_on,
            "after": list(e.after),
            "higher_priority_load": e.higher_priority_load,
        }
        for e in ordered
    ]
