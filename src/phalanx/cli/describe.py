"""``phalanx describe``: a job, queue, flavor or node in full, laid out like
``kubectl describe``.

Pure functions of the client's JSON and ``now`` (epoch seconds); no I/O.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping, Sequence
from datetime import datetime

from phalanx.cli.doctor import is_overloaded, start_text
from phalanx.cli.tables import (
    NONE,
    format_age,
    format_duration,
    humanize_memory,
    render_table,
)
from phalanx.client import (
    DeviceInfo,
    EstimateInfo,
    FlavorInfo,
    JobInfo,
    MetadataInfo,
    NodeInfo,
    QueueInfo,
)
from phalanx.model.resources import GPU_MILLI_PER_DEVICE, MEMORY, RESOURCE_NAMES

_LABEL_WIDTH = 14


def _field(label: str, value: object, indent: int = 0) -> str:
    """``label: value``, values lined up; a label too long for the column keeps one space."""
    return f"{' ' * indent}{label + ':':<{_LABEL_WIDTH - indent - 1}} {value}"


def _indented(text: str, spaces: int = 2) -> str:
    return "\n".join(" " * spaces + line if line else line for line in text.splitlines())


def format_devices(devices: Sequence[DeviceInfo]) -> str:
    """Return GPU devices as ``0,1`` (whole) or ``0(0.5)`` (a share of one)."""
    parts = []
    for device in devices:
        if device["milli"] >= GPU_MILLI_PER_DEVICE:
            parts.append(str(device["index"]))
        else:
            parts.append(f"{device['index']}({device['milli'] / GPU_MILLI_PER_DEVICE:g})")
    return ",".join(parts) or NONE


def _moment(at: float | None, now: float) -> str:
    if at is None:
        return NONE
    stamp = datetime.fromtimestamp(at).astimezone().strftime("%Y-%m-%d %H:%M:%S %Z")
    return f"{stamp} ({format_age(now - at)} ago)"


def _iso(at: float) -> str:
    return datetime.fromtimestamp(at).astimezone().isoformat(timespec="seconds")


def _mapping(value: object) -> Mapping[str, object]:
    return value if isinstance(value, Mapping) else {}


def _sequence(value: object) -> Sequence[object]:
    return value if isinstance(value, list | tuple) else ()


def _listed(label: str, items: Sequence[str]) -> list[str]:
    """Return ``Label: first`` and the other items aligned under it (kubectl's lists)."""
    items = list(items) or [NONE]
    return [_field(label, items[0]), *(" " * _LABEL_WIDTH + item for item in items[1:])]


def _metadata_lines(metadata: MetadataInfo) -> list[str]:
    """Return the labels, annotations and owners of an object, kubectl style."""
    lines = _listed("Labels", [f"{k}={v}" for k, v in sorted(metadata["labels"].items())])
    lines += _listed(
        "Annotations", [f"{k}: {v}" for k, v in sorted(metadata["annotations"].items())]
    )
    owners = [f"{o['kind']}/{o['name']}" for o in metadata["ownerReferences"]]
    if owners:
        lines += _listed("Controlled By", owners)
    return lines


def _object_lines(metadata: MetadataInfo, now: float, *, with_created: bool = True) -> list[str]:
    """Return the identity lines below the metadata: UID, revision and generation, and
    when it was created."""
    lines = [
        _field("UID", metadata["uid"] or NONE),
        _field("Revision", f"{metadata['resourceVersion']} (generation {metadata['generation']})"),
    ]
    if with_created:
        try:
            created = datetime.fromisoformat(metadata["creationTimestamp"]).timestamp()
        except ValueError:
            lines.append(_field("Created", metadata["creationTimestamp"] or NONE))
        else:
            lines.append(_field("Created", _moment(created, now)))
    return lines


def _spec_lines(manifest: Mapping[str, object]) -> list[str]:
    """Return the job spec summary: gang, topology, limits, restart policy, pod sets."""
    spec = _mapping(manifest.get("spec"))
    lines = []
    if "minAvailable" in spec:
        lines.append(_field("Min Available", spec["minAvailable"]))
    topology = _mapping(spec.get("topology"))
    if topology:
        lines.append(_field("Topology", f"{topology.get('key')} ({topology.get('mode')})"))
    if spec.get("maxRuntime") is not None:
        lines.append(_field("Max Runtime", spec["maxRuntime"]))
    restart = _mapping(spec.get("restartPolicy"))
    if restart:
        policy = str(restart.get("policy", "Never"))
        if policy != "Never":
            policy += (
                f" (max {restart.get('maxRestarts')} restarts, backoff {restart.get('backoff')})"
            )
        lines.append(_field("Restart", policy))
    rows = []
    for item in _sequence(spec.get("podSets")):
        pod_set = _mapping(item)
        resources = _mapping(pod_set.get("resources"))
        command = [str(part) for part in _sequence(pod_set.get("command"))]
        command += [str(part) for part in _sequence(pod_set.get("args"))]
        rows.append(
            [
                str(pod_set.get("name", "")),
                str(pod_set.get("replicas", "")),
                str(resources.get("cpu", "0")),
                str(resources.get("memory", "0")),
                str(resources.get("nvidia.com/gpu", "0")),
                shlex.join(command).replace("\n", "\\n") if command else NONE,
            ]
        )
    lines.append("Pod Sets:")
    lines.append(
        _indented(render_table(["NAME", "REPLICAS", "CPU", "MEMORY", "GPU", "COMMAND"], rows))
    )
    return lines


def describe_job(job: JobInfo, now: float, estimate: EstimateInfo | None = None) -> str:
    """Return ``describe job``: spec summary, status with the full reason (and, pending, the
    start ``estimate``), pods of every attempt, timings with durations, and events with
    ages."""
    request = job["request"]
    total = ", ".join(f"{k}={v}" for k, v in request.items()) or NONE
    lines = [
        _field("Name", job["name"]),
        *_metadata_lines(job["metadata"]),
        *_object_lines(job["metadata"], now, with_created=False),
        _field("Queue", job["queue"]),
        _field("Priority", job["priority"]),
        _field("Pods", f"{job['pod_count']} (total request: {total})"),
        *_spec_lines(job["manifest"]),
        "Status:",
        _field("Phase", job["phase"], 2),
    ]
    if job["reason_code"]:
        lines.append(_field("Reason", job["reason_code"], 2))
    if job["message"]:
        lines.append(_field("Message", job["message"], 2))
    if estimate is not None:
        after = f" (after {', '.join(estimate['after'])} end)" if estimate["after"] else ""
        lines.append(_field("Estimated start", f"{start_text(estimate)}{after}", 2))
        if is_overloaded(estimate):
            load = estimate["higher_priority_load"]
            lines.append(
                _field(
                    "Start later",
                    f"while higher-priority work keeps coming: lately it asks {load:g}× what "
                    "the cluster serves",
                    2,
                )
            )
    lines += [
        _field("Flavor", job["flavor"] or NONE, 2),
        _field("Attempt", f"{job['attempt']} (restarts: {job['restarts']})", 2),
    ]
    progress = job.get("progress")
    if progress:
        if progress["step"] is not None:
            in_all = progress.get("total_steps")
            of = f" of {in_all}" if in_all is not None else ""
            end_at = progress.get("expected_end_at")
            ends = ""
            if end_at is not None and job["phase"] == "Running":
                ends = (
                    f"; ends in {format_age(end_at - now)} at this pace"
                    if end_at > now
                    else "; ends now"
                )
            lines.append(
                _field(
                    "Progress",
                    f"step {progress['step']}{of} ({_moment(progress['reported_at'], now)}){ends}",
                    2,
                )
            )
        if progress["checkpoint_step"] is not None:
            where = f", {progress['checkpoint_path']}" if progress["checkpoint_path"] else ""
            lines.append(
                _field(
                    "Checkpoint",
                    f"step {progress['checkpoint_step']}{where} ({_moment(progress['checkpoint_at'], now)})",
                    2,
                )
            )
    lines += [
        "Timings:",
        _field("Created", _moment(job["created_at"], now), 2),
        _field("Admitted", _moment(job["admitted_at"], now), 2),
        _field("Started", _moment(job["started_at"], now), 2),
        _field("Finished", _moment(job["finished_at"], now), 2),
    ]
    admitted_or_now = job["admitted_at"] if job["admitted_at"] is not None else now
    lines.append(_field("Queued For", format_duration(admitted_or_now - job["created_at"]), 2))
    if job["started_at"] is not None:
        end = job["finished_at"] if job["finished_at"] is not None else now
        lines.append(_field("Ran For", format_duration(end - job["started_at"]), 2))
    lines.append("Pods:")
    if job["pods"]:
        rows = [
            [
                pod["name"],
                str(pod["attempt"]),
                pod["node"] or NONE,
                format_devices(pod["devices"]),
                pod["phase"],
                "" if pod["exit_code"] is None else str(pod["exit_code"]),
                pod["reason"],
            ]
            for pod in job["pods"]
        ]
        headers = ["NAME", "ATTEMPT", "NODE", "DEVICES", "PHASE", "EXIT", "REASON"]
        lines.append(_indented(render_table(headers, rows)))
    else:
        lines.append(f"  {NONE}")
    lines.append("Events:")
    if job["events"]:
        rows = [
            [e["type"], e["reason"], format_age(now - e["at"]), e["message"]] for e in job["events"]
        ]
        lines.append(_indented(render_table(["TYPE", "REASON", "AGE", "MESSAGE"], rows)))
    else:
        lines.append(f"  {NONE}")
    return "\n".join(lines)


def describe_queue(queue: QueueInfo, now: float) -> str:
    """Return ``describe queue``: metadata, cohort, weight and preemption policy, job counts,
    and quota per flavor and resource (nominal, borrowing and lending limits, in use)."""
    spec = _mapping(queue["manifest"].get("spec"))
    preemption = _mapping(spec.get("preemption"))
    lines = [
        _field("Name", queue["name"]),
        *_metadata_lines(queue["metadata"]),
        *_object_lines(queue["metadata"], now),
        _field("Cohort", queue["cohort"] or NONE),
        _field("Weight", spec.get("weight", 1)),
        _field(
            "Preemption",
            f"within queue {preemption.get('withinQueue', NONE)}, "
            f"reclaim within cohort {preemption.get('reclaimWithinCohort', NONE)}",
        ),
        _field("Jobs", f"{queue['pending']} pending, {queue['admitted']} admitted"),
        "Quota:",
    ]
    used = {u["flavor"]: u["used"] for u in queue["usage"]}
    rows = []
    for item in _sequence(spec.get("flavors")):
        flavor = _mapping(item)
        name = str(flavor.get("name", ""))
        for resource, quota in _mapping(flavor.get("resources")).items():
            limits = _mapping(quota)
            amount_used = used.get(name, {}).get(resource, "0")
            if resource == MEMORY:
                amount_used = humanize_memory(amount_used)
            rows.append(
                [
                    name,
                    resource,
                    amount_used,
                    str(limits.get("nominal", "0")),
                    str(limits.get("borrowingLimit", NONE)),
                    str(limits.get("lendingLimit", NONE)),
                ]
            )
    if rows:
        headers = ["FLAVOR", "RESOURCE", "USED", "NOMINAL", "BORROWING-LIMIT", "LENDING-LIMIT"]
        lines.append(_indented(render_table(headers, rows)))
    else:
        lines.append(f"  {NONE}")
    return "\n".join(lines)


def describe_flavor(flavor: FlavorInfo, now: float) -> str:
    """Return ``describe flavor``: metadata and the node labels that select its nodes."""
    lines = [
        _field("Name", flavor["name"]),
        *_metadata_lines(flavor["metadata"]),
        *_object_lines(flavor["metadata"], now),
        *_listed("Node Labels", [f"{k}={v}" for k, v in sorted(flavor["node_labels"].items())]),
    ]
    return "\n".join(lines)


def describe_node(node: NodeInfo, now: float | None = None) -> str:
    """Return ``describe node``: state (with the quarantine's evidence), labels, taints,
    capacity against use, GPUs, pods."""
    lines = [
        _field("Name", node["name"]),
        _field("Ready", "True" if node["is_ready"] else "False"),
        _field("Quarantined", "True" if node["is_quarantined"] else "False"),
    ]
    quarantine = node.get("quarantine")
    if quarantine:
        until = quarantine["until"]
        lines.append(_field("Reason", quarantine["reason"], 2))
        if until is not None:
            left = f" (in {format_duration(max(0.0, until - now))})" if now is not None else ""
            lines.append(
                _field("Until", f"{_iso(until)}{left}; or `phalanx node release {node['name']}`", 2)
            )
    failures = node.get("failures") or []
    if failures:
        lines.append("Node-side failures:")
        rows = [
            [_iso(f["at"]), f["job"], str(f["attempt"]), f["pod"], f["reason"]] for f in failures
        ]
        lines.append(_indented(render_table(["AT", "JOB", "ATTEMPT", "POD", "REASON"], rows)))
    lines.append(_field("GPU Model", node["gpu_model"] or NONE))
    lines += _listed("Labels", [f"{k}={v}" for k, v in sorted(node["labels"].items())])
    lines += _listed("Taints", [f"{t['key']}={t['value']}:{t['effect']}" for t in node["taints"]])
    rows = []
    for resource in RESOURCE_NAMES:
        total = node["allocatable"].get(resource, "0")
        used = node["used"].get(resource, "0")
        if resource == MEMORY:
            total, used = humanize_memory(total), humanize_memory(used)
        rows.append([resource, total, used])
    lines.append("Resources:")
    lines.append(_indented(render_table(["RESOURCE", "ALLOCATABLE", "USED"], rows)))
    lines.append("GPUs:")
    if node["gpus"]:
        gpu_rows = [
            [
                str(g["index"]),
                g["model"] or NONE,
                humanize_memory(g["memory"]) if g["memory"] != "0" else "",
                f"{g['used_milli'] / GPU_MILLI_PER_DEVICE:g}",
                g["uuid"],
            ]
            for g in node["gpus"]
        ]
        headers = ["INDEX", "MODEL", "MEMORY", "USED", "UUID"]
        lines.append(_indented(render_table(headers, gpu_rows)))
    else:
        lines.append(f"  {NONE}")
    lines.append("Pods:")
    lines += [f"  {pod}" for pod in node["pods"]] or [f"  {NONE}"]
    return "\n".join(lines)
