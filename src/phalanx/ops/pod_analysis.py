"""Runtime analyzers of the doctor that read pods and devices: Kubernetes pods that never
start (image pulls, config errors, no reason at all), and GPUs that measured utilisation
shows idle (NVML or DCGM, gpu_usage.py). Pure functions of an ``Observation``; doctor.py
runs them with the others.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from phalanx.controllers.views import EventView, JobView
from phalanx.model.objects import JobPhase, PodPhase
from phalanx.model.reasons import ReasonCode
from phalanx.model.resources import GPU
from phalanx.ops.findings import Finding, FindingCode, Severity
from phalanx.ops.gpu_usage import DeviceUsage, device_key
from phalanx.ops.observation import Observation, gpu_count

if TYPE_CHECKING:
    from phalanx.ops.doctor import DoctorSettings

# Kubernetes pod reasons of pods that never start.
_IMAGE_REASONS = frozenset({"ErrImagePull", "ImagePullBackOff", "InvalidImageName"})
_CONFIG_REASONS = frozenset(
    {"CreateContainerConfigError", "CreateContainerError", "RunContainerError"}
)


def job_ref(name: str) -> str:
    """``job/<name>``: how findings name a job."""
    return f"job/{name}"


def quote(event: EventView) -> str:
    """An event as findings quote it: ``<UTC time> <reason>: <message>``."""
    at = datetime.fromtimestamp(event.at, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return f"{at} {event.reason}: {event.message}"


def _str(facts: Mapping[str, object], key: str) -> str:
    value = facts.get(key)
    return "" if value is None else str(value)


# ---- pods that never start ----------------------------------------------------------------


def pods_not_starting(obs: Observation, job: JobView, settings: DoctorSettings) -> list[Finding]:
    """Kubernetes pods stuck before their program starts: waiting now (their reason, as
    reported), or an attempt that timed out waiting (startupTimeout; the ``Failed`` or
    ``Restarting`` event with cause ``Startup`` lists the pods and their reasons)."""
    waited = [
        e
        for e in job.events
        if e.reason in (ReasonCode.RESTARTING, ReasonCode.FAILED)
        and _str(e.facts, "cause") == "Startup"
    ]
    quoted = [e for e in job.events if e.reason == ReasonCode.POD_WAITING][-3:]
    if job.phase in (JobPhase.ADMITTED, JobPhase.RUNNING):
        for pod in job.pods:
            if pod.attempt == job.attempt and pod.reason:
                found = _not_starting(job, pod.reason, f"{pod.pod_set}-{pod.index}", quoted, waited)
                if found is not None:
                    return [found]
        stuck = [
            p
            for p in job.pods
            if p.attempt == job.attempt and p.phase is PodPhase.PENDING and p.node
        ]
        admitted = job.admitted_at or obs.now
        if stuck and obs.now - admitted >= settings.startup_grace_s:
            return [
                _never_started(
                    job, [f"{p.pod_set}-{p.index}" for p in stuck], obs.now - admitted, quoted
                )
            ]
    if waited:
        pods = waited[-1].facts.get("not_running")
        reasons = [
            (str(p.get("pod", "")), str(p.get("waiting_reason") or ""))
            for p in (pods if isinstance(pods, list | tuple) else ())
            if isinstance(p, Mapping)
        ]
        for pod_name, reason in reasons:
            found = _not_starting(job, reason, pod_name, quoted, waited)
            if found is not None:
                return [found]
        waited_s = waited[-1].facts.get("waited_s")
        return [
            _never_started(
                job,
                [p for p, _ in reasons],
                float(waited_s) if isinstance(waited_s, int | float) else 0.0,
                quoted + waited[-1:],
            )
        ]
    return []


def _not_starting(
    job: JobView,
    reason: str,
    pod: str,
    quoted: list[EventView],
    waited: list[EventView],
) -> Finding | None:
    subject = job_ref(job.name)
    messages = [
        _str(e.facts, "waiting_message")
        for e in quoted
        if _str(e.facts, "waiting_reason") == reason
    ]
    facts: dict[str, object] = {"pod": pod, "pod_reason": reason, "startup_timeouts": len(waited)}
    if messages:
        facts["message"] = messages[-1]
    severity = Severity.CRITICAL
    events = tuple(quote(e) for e in quoted)
    if reason in _IMAGE_REASONS:
        return Finding(
            FindingCode.IMAGE_PULL_FAILED,
            severity,
            subject,
            f"pod {pod} of job {job.name} cannot pull its image ({reason})"
            + (f": {messages[-1]}" if messages else ""),
            "fix spec.podSets[].image (name, tag, registry credentials: imagePullSecrets)",
            0.95,
            subject,
            facts,
            events,
        )
    if reason in _CONFIG_REASONS:
        missing = _missing_reference(messages[-1] if messages else "")
        return Finding(
            FindingCode.CONTAINER_CONFIG_ERROR,
            severity,
            subject,
            f"pod {pod} of job {job.name} cannot start ({reason})"
            + (f": {messages[-1]}" if messages else ""),
            f"create the {missing} in the job's namespace, or fix the reference in the pod's env"
            if missing
            else "fix the pod's env, secrets, config maps or volumes it references",
            0.9,
            subject,
            facts,
            events,
        )
    return None


def _missing_reference(message: str) -> str:
    """``ConfigMap "x"`` or ``Secret "x"`` from a kubelet message such as
    ``configmap "x" not found``; "" when the message names neither."""
    words = message.split()
    for i, word in enumerate(words[:-1]):
        if word.lower() in ("configmap", "secret") and words[i + 1].startswith('"'):
            kind = "ConfigMap" if word.lower() == "configmap" else "Secret"
            return f"{kind} {words[i + 1]}"
    return ""


def _never_started(
    job: JobView, pods: list[str], waited_s: float, quoted: list[EventView]
) -> Finding:
    subject = job_ref(job.name)
    return Finding(
        FindingCode.PODS_NEVER_STARTED,
        Severity.CRITICAL if job.phase is JobPhase.FAILED else Severity.WARNING,
        subject,
        f"pods {', '.join(pods) or '(none listed)'} of job {job.name} were placed but did not start "
        f"within {waited_s:.0f}s, and their runtime gave no reason",
        "look at the pods' node (kubectl describe pod; kubelet, container runtime, volume "
        "mounts); raise spec.startupTimeout if the image is large",
        0.75,
        subject,
        {"pods": pods, "waited_s": round(waited_s, 1)},
        tuple(quote(e) for e in quoted),
    )


# ---- GPUs measured idle ---------------------------------------------------------------------


def measured_usage(obs: Observation, job: JobView) -> dict[str, DeviceUsage]:
    """Measured utilisation of every device the job's running pods hold, by ``node/index``;
    empty unless every one of them was measured."""
    out: dict[str, DeviceUsage] = {}
    for pod in job.pods:
        if pod.attempt != job.attempt or not pod.devices:
            continue
        view = obs.node(pod.node)
        uuids = {d.index: d.uuid for d in view.node.gpus} if view else {}
        for share in pod.devices:
            usage = obs.gpu_usage.get(
                device_key(uuids.get(share.index, ""), pod.node, share.index)
            ) or obs.gpu_usage.get(device_key("", pod.node, share.index))
            if usage is None:
                return {}
            out[f"{pod.node}/{share.index}"] = usage
    return out


def idle_measured(
    obs: Observation, job: JobView, measured: Mapping[str, DeviceUsage], settings: DoctorSettings
) -> list[Finding]:
    busiest = max(u.utilisation_pct for u in measured.values())
    if busiest >= settings.idle_util_pct:
        return []
    subject = job_ref(job.name)
    gpus = gpu_count(job.request.gpu_milli)
    sources = sorted({u.source for u in measured.values()})
    return [
        Finding(
            FindingCode.IDLE_GPUS,
            Severity.WARNING,
            subject,
            f"job {job.name} holds {gpus:g} {GPU} and none is busy: utilisation at most "
            f"{busiest:g} % ({', '.join(sources)})",
            "look for a stuck input pipeline, a deadlock or a job waiting on something else "
            f"(phalanx logs {job.name}); cancel it if it is not needed (phalanx cancel job "
            f"{job.name})",
            0.9,
            subject,
            {
                "gpus": gpus,
                "utilisation_pct": {k: u.utilisation_pct for k, u in sorted(measured.items())},
                "threshold_pct": settings.idle_util_pct,
                "source": sources,
            },
        )
    ]
