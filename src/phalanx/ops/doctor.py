"""The doctor: deterministic analyzers that name root causes across layers.

Each analyzer is a pure function of an ``Observation`` (observation.py) and returns
``Finding``s (findings.py). They read codes and facts (phalanx.model.reasons), never prose:

1. pending jobs: the scheduler's reason, traced to its cause: a queue used up (and who holds
   it), a cohort that lends nothing, a borrowing limit, a gang wider than any free block
   (fragmentation) or than the flavor itself, a flavor without nodes, a taint, a quarantined or
   not-ready node, or capacity in use by others;
2. history: preemption (by whom), OOM and crash loops, hangs, deadlines, lost nodes,
   Kubernetes pods that never start (image pulls, config errors);
3. running jobs: GPUs held but idle (measured utilisation from NVML or DCGM when there is
   one, else no progress reported), checkpoints gone stale;
   (pods that never start and GPUs measured idle are read in pod_analysis.py)
4. nodes: quarantine, not ready, node-side failures piling up;
5. services (workloads.py): no ready replica (pending replicas, failing replicas, readiness
   never passed), repeated cold starts;
6. pipeline runs (workloads.py): a failed step, with its job's root cause from 1–3.

Runtime findings carry the GPU-hours the job lost, per cause (losses.py).
``diagnose(obs)`` runs them all; ``diagnose_job``, ``diagnose_node``, ``diagnose_queue``,
``diagnose_service`` and ``diagnose_run`` keep what concerns one object.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from phalanx.controllers.views import EventView, JobView, NodeView
from phalanx.model.objects import JobPhase
from phalanx.model.reasons import ReasonCode
from phalanx.model.resources import GPU, GPU_MILLI_PER_DEVICE, format_amount
from phalanx.ops.estimates.forward import DEFAULT_LOAD_WINDOW_S, OVERLOADED
from phalanx.ops.findings import Finding, FindingCode, Severity, ordered
from phalanx.ops.losses import gpu_hours, lost_gpu_seconds
from phalanx.ops.observation import Observation, free_gpus, gpu_count, node_gpus
from phalanx.ops.pod_analysis import (
    idle_measured,
    job_ref,
    measured_usage,
    pods_not_starting,
    quote,
)
from phalanx.ops.workloads import analyze_pipeline_runs, analyze_services


@dataclass(frozen=True, slots=True)
class DoctorSettings:
    """Thresholds of the runtime analyzers."""

    #: A running job's GPUs count as idle after this long without a progress report.
    idle_after_s: float = 900.0
    #: A checkpoint older than this (while progress goes on) is stale.
    stale_checkpoint_s: float = 3600.0
    #: Failures of one cause within one job's history that make a loop.
    loop_failures: int = 2
    #: Node-side failures on a node not (yet) quarantined that are worth a warning.
    node_failures: int = 2
    #: Measured utilisation (percent) under which a held GPU counts as idle.
    idle_util_pct: float = 5.0
    #: A replica running this long without passing its readiness probe fails it.
    readiness_grace_s: float = 120.0
    #: Wake-ups from zero replicas within ``cold_start_window_s`` worth a warning.
    cold_starts: int = 3
    cold_start_window_s: float = 3600.0
    #: Replicas of a Service with none ready, replaced within this window, make a crash loop
    #: (``loop_failures`` of them).
    replaced_window_s: float = 600.0
    #: Pods placed this long ago that still have not started, with no reason given.
    startup_grace_s: float = 600.0
    #: A Service whose replicas answered 5xx to this share of at least
    #: ``service_error_min_answers`` requests in the routers' window (5 minutes) has errors.
    service_error_share: float = 0.05
    service_error_min_answers: int = 20


Analyzer = Callable[[Observation, DoctorSettings], list[Finding]]

_job = job_ref
_quote = quote


def _int(facts: Mapping[str, object], key: str) -> int:
    value = facts.get(key)
    return int(value) if isinstance(value, int | float) else 0


def _str(facts: Mapping[str, object], key: str) -> str:
    value = facts.get(key)
    return "" if value is None else str(value)


def _flavor_reasons(job: JobView) -> list[tuple[str, Mapping[str, object]]]:
    """(code, facts) per flavor tried: one, or several for a job tried on several flavors."""
    flavors = job.reason_facts.get("flavors")
    if isinstance(flavors, list | tuple):
        out = []
        for item in flavors:
            if isinstance(item, Mapping):
                facts = item.get("facts")
                out.append((str(item.get("code", "")), facts if isinstance(facts, Mapping) else {}))
        return out
    return [(job.reason_code, job.reason_facts)]


# ---- 1. pending jobs ----------------------------------------------------------------------


def analyze_pending(obs: Observation, settings: DoctorSettings) -> list[Finding]:
    """Why each pending job waits, traced to its cause."""
    out: list[Finding] = []
    for job in obs.jobs:
        if job.phase is not JobPhase.PENDING:
            continue
        for code, facts in _flavor_reasons(job):
            out += _pending_cause(obs, job, code, facts)
    return out


def _pending_cause(
    obs: Observation, job: JobView, code: str, facts: Mapping[str, object]
) -> list[Finding]:
    subject = _job(job.name)
    flavor = _str(facts, "flavor")
    if code == ReasonCode.QUEUE_NOT_FOUND:
        known = facts.get("queues")
        names = [str(q) for q in known] if isinstance(known, list | tuple) else []
        queues = ", ".join(names) or "(none)"
        return [
            Finding(
                FindingCode.QUEUE_MISSING,
                Severity.CRITICAL,
                subject,
                f"job {job.name} names queue {job.queue!r}, which does not exist",
                f"create queue {job.queue}, or resubmit the job with spec.queue one of: {queues}",
                1.0,
                subject,
                dict(facts),
            )
        ]
    if code == ReasonCode.FLAVOR_NOT_FOUND:
        return [
            Finding(
                FindingCode.FLAVOR_MISSING,
                Severity.CRITICAL,
                f"flavor/{flavor}",
                f"queue {job.queue} lists flavor {flavor}, which does not exist",
                f"create the ResourceFlavor {flavor} (phalanx apply -f flavor.yaml) or remove it from queue {job.queue}",
                1.0,
                subject,
                dict(facts),
            )
        ]
    if code == ReasonCode.QUOTA_EXCEEDED:
        return [_quota_finding(obs, job, facts)]
    if code == ReasonCode.EXCEEDS_QUEUE_LIMIT:
        return [
            Finding(
                FindingCode.JOB_EXCEEDS_QUEUE,
                Severity.CRITICAL,
                subject,
                f"job {job.name} needs more {_str(facts, 'resource')} of flavor {flavor} at once "
                f"than queue {job.queue} can ever use ({format_amount(_str(facts, 'resource'), _int(facts, 'limit'))})",
                f"shrink the job (fewer replicas or smaller pods), or raise queue {job.queue}'s "
                f"nominal quota or borrowingLimit for {_str(facts, 'resource')} on flavor {flavor}",
                1.0,
                subject,
                dict(facts),
            )
        ]
    if code == ReasonCode.NEVER_FITS:
        return [_never_fits(job, facts)]
    if code == ReasonCode.UNSCHEDULABLE:
        return _unschedulable(obs, job, facts)
    if code == ReasonCode.PREEMPTING:
        return []  # it will start once its victims stop: nothing to fix
    return []


def _quota_finding(obs: Observation, job: JobView, facts: Mapping[str, object]) -> Finding:
    """QuotaExceeded: who holds the queue's quota, and what the cohort could lend."""
    queue, flavor = _str(facts, "queue") or job.queue, _str(facts, "flavor")
    resource = _str(facts, "resource")
    holders = sorted(
        (
            (j.name, j.request)
            for j in obs.jobs
            if j.queue == queue and j.flavor == flavor and j.phase.holds_resources
        ),
        key=lambda item: item[0],
    )
    holding = [f"{name} ({format_amount(resource, r.get(resource))})" for name, r in holders]
    evidence = {**facts, "holders": [name for name, _ in holders]}
    blocked_by = _str(facts, "blocked_by")
    used = format_amount(resource, _int(facts, "used"))
    nominal = format_amount(resource, _int(facts, "nominal"))
    held = f"held by {', '.join(holding)}" if holding else "held by jobs being stopped"
    if blocked_by == "Cohort":
        cohort = _str(facts, "cohort")
        lenders = sorted(
            q.name for q in obs.queue_specs.values() if q.cohort == cohort and q.name != queue
        )
        evidence["cohort_queues"] = lenders
        return Finding(
            FindingCode.COHORT_EXHAUSTED,
            Severity.WARNING,
            f"cohort/{cohort}",
            f"queue {queue} uses {used}/{nominal} {resource} of flavor {flavor} ({held}); cohort "
            f"{cohort} has {format_amount(resource, _int(facts, 'cohort_free'))} of "
            f"{format_amount(resource, _int(facts, 'cohort_shared'))} to lend",
            f"wait for jobs of {', '.join(lenders) or 'the cohort'} to finish, raise the "
            f"lendingLimit of those queues, or raise queue {queue}'s nominal quota",
            0.9,
            _job(job.name),
            evidence,
        )
    if blocked_by == "BorrowingLimit":
        return Finding(
            FindingCode.BORROWING_LIMIT_REACHED,
            Severity.WARNING,
            f"queue/{queue}",
            f"queue {queue} uses {used} {resource} of flavor {flavor} (nominal {nominal}), at its "
            f"borrowing limit {format_amount(resource, _int(facts, 'borrowing_limit'))}; {held}",
            f"raise spec.flavors[{flavor}].{resource}.borrowingLimit of queue {queue}, or wait",
            0.9,
            _job(job.name),
            evidence,
        )
    return Finding(
        FindingCode.QUOTA_EXHAUSTED,
        Severity.WARNING,
        f"queue/{queue}",
        f"queue {queue} uses {used}/{nominal} {resource} of flavor {flavor}, {held}; it has no "
        "cohort to borrow from",
        f"wait for {', '.join(n for n, _ in holders) or 'running jobs'} to finish, cancel one "
        f"(phalanx cancel job NAME), or raise queue {queue}'s nominal {resource} quota",
        0.95,
        _job(job.name),
        evidence,
    )


def _never_fits(job: JobView, facts: Mapping[str, object]) -> Finding:
    flavor = _str(facts, "flavor")
    subject = _job(job.name)
    if _str(facts, "check") == "NoNodes":
        return Finding(
            FindingCode.NO_NODES_FOR_FLAVOR,
            Severity.CRITICAL,
            f"flavor/{flavor}",
            f"no node of the cluster matches flavor {flavor}'s node labels",
            f"fix flavor {flavor}'s spec.nodeLabels to match your nodes (phalanx get nodes -o "
            f"wide shows their labels), or list another flavor in queue {job.queue}",
            0.95,
            subject,
            dict(facts),
        )
    return Finding(
        FindingCode.GANG_TOO_WIDE,
        Severity.CRITICAL,
        subject,
        f"job {job.name} can never fit flavor {flavor}, even on empty nodes",
        "shrink the gang: fewer GPUs per pod (at most the largest node's), fewer replicas or a "
        "smaller spec.minAvailable, or a looser topology (mode: Preferred)",
        1.0,
        subject,
        dict(facts),
    )


def _unschedulable(obs: Observation, job: JobView, facts: Mapping[str, object]) -> list[Finding]:
    """Fits the flavor when empty, not now: taints, unavailable nodes, fragmentation, or
    capacity in use."""
    subject = _job(job.name)
    flavor = _str(facts, "flavor")
    nodes = obs.flavor_nodes(flavor)
    out: list[Finding] = []
    # a. a taint turns nodes away
    rejections = facts.get("rejections")
    if isinstance(rejections, Mapping):
        for why in sorted(rejections):
            if why.startswith("untolerated taint "):
                key = why.removeprefix("untolerated taint ")
                for n in nodes:
                    if any(t.key == key for t in n.node.taints):
                        out.append(
                            Finding(
                                FindingCode.UNTOLERATED_TAINT,
                                Severity.WARNING,
                                f"node/{n.node.name}",
                                f"node {n.node.name} has taint {key}, which job {job.name} does not tolerate",
                                f"add a toleration for {key} to the job's pod sets, or remove the "
                                f"taint from node {n.node.name}",
                                0.85,
                                subject,
                                {**facts, "taint": key},
                            )
                        )
    per_pod_milli = _int(facts, "needed_gpu_milli")
    # b. nodes that are out (quarantined, not ready) but big enough
    for n in nodes:
        if (n.node.is_quarantined or not n.node.is_ready) and (
            node_gpus(n) * GPU_MILLI_PER_DEVICE >= per_pod_milli
        ):
            out.append(_node_out(n, subject, confidence=0.8))
    if out:
        return out
    # c. enough free GPUs in all, but in blocks too small: fragmentation; else busy
    pods = max(1, _int(facts, "gang_pods") or job.pod_count)
    per_pod = max(1, -(-per_pod_milli // GPU_MILLI_PER_DEVICE)) if per_pod_milli else 0
    free = {n.node.name: free_gpus(n) for n in nodes}
    total_free = sum(free.values())
    largest = max(free.values(), default=0)
    evidence = {
        **facts,
        "free_gpus_by_node": dict(sorted(free.items())),
        "free_gpus_total": total_free,
    }
    estimate = obs.estimates.get(job.name)
    if estimate is not None and estimate[0] is not None:
        evidence["estimated_start"] = estimate[0]
    if estimate is not None and estimate[2] >= OVERLOADED:
        evidence["higher_priority_load"] = estimate[2]
    if per_pod and total_free >= per_pod * pods and largest < per_pod:
        return [
            Finding(
                FindingCode.FRAGMENTATION,
                Severity.WARNING,
                f"flavor/{flavor}",
                f"flavor {flavor} has {total_free} free GPUs in all, enough for job {job.name}'s "
                f"{pods}×{per_pod}, but the largest free block on one node is {largest}",
                "wait for a node to drain, or split the job into more pods with fewer GPUs each "
                "(e.g. replicas × GPUs per pod matching the free blocks)",
                0.8,
                subject,
                evidence,
            )
        ]
    holders = sorted({p.split("/")[0] for n in nodes for p in n.pods})
    evidence["holders"] = holders
    fix = "wait (see the start estimate), or preempt with a higher priority"
    if "higher_priority_load" in evidence:
        fix = (
            f"wait: work of higher priority submitted in the last "
            f"{DEFAULT_LOAD_WINDOW_S / 60:g} minutes asks "
            f"{evidence['higher_priority_load']}× what the cluster serves, so the job starts "
            "later than estimated while it keeps coming; or raise its priority"
        )
    return [
        Finding(
            FindingCode.CAPACITY_BUSY,
            Severity.INFO,
            f"flavor/{flavor}",
            f"flavor {flavor} has {total_free} free GPUs (largest block {largest}); job "
            f"{job.name} needs {pods}×{per_pod or gpu_count(per_pod_milli)}; in use by "
            f"{', '.join(holders[:8]) or 'nobody'}",
            fix,
            0.6,
            subject,
            evidence,
        )
    ]


def _node_out(n: NodeView, subject: str, *, confidence: float) -> Finding:
    name = n.node.name
    if n.node.is_quarantined:
        q = n.quarantine
        return Finding(
            FindingCode.NODE_QUARANTINED,
            Severity.WARNING,
            f"node/{name}",
            f"node {name} is quarantined: {q.reason if q else 'by the backend'}",
            f"fix the node, then phalanx node release {name}",
            confidence,
            subject,
            {} if q is None else {**q.facts, "since": q.since, "until": q.until},
        )
    return Finding(
        FindingCode.NODE_NOT_READY,
        Severity.WARNING,
        f"node/{name}",
        f"node {name} is not ready",
        f"bring node {name} back (kubelet, network, power); its capacity is out meanwhile",
        confidence,
        subject,
        {"gpus": node_gpus(n)},
    )


# ---- 2. history -----------------------------------------------------------------------------


def analyze_history(obs: Observation, settings: DoctorSettings) -> list[Finding]:
    """Failures and preemptions in each job's events."""
    out: list[Finding] = []
    for job in obs.jobs:
        if job.events:
            out += _job_history(obs, job, settings)
        out += pods_not_starting(obs, job, settings)
    return out


def _failures(job: JobView) -> list[EventView]:
    return [
        e
        for e in job.events
        if e.reason
        in (ReasonCode.RESTARTING, ReasonCode.FAILED, ReasonCode.OOM_KILLED, ReasonCode.HANG)
    ]


def _job_history(obs: Observation, job: JobView, settings: DoctorSettings) -> list[Finding]:
    subject = _job(job.name)
    out: list[Finding] = []
    failures = _failures(job)
    by_cause: dict[str, list[EventView]] = {}
    for e in failures:
        by_cause.setdefault(_str(e.facts, "cause") or "Application", []).append(e)
    is_over = job.phase is JobPhase.FAILED
    severity = Severity.CRITICAL if is_over else Severity.WARNING
    lost = gpu_hours(lost_gpu_seconds(job))
    oom = by_cause.get("OOM", [])
    if oom and (len(oom) >= settings.loop_failures or is_over):
        limit = _int(oom[-1].facts, "memory_limit_bytes")
        out.append(
            Finding(
                FindingCode.OOM_LOOP,
                severity,
                subject,
                f"job {job.name} was OOM-killed {len(oom)} times (memory limit "
                f"{format_amount('memory', limit)})",
                "raise the pods' memory (spec.podSets[].resources.memory), or lower the batch "
                "size; restarting will OOM again",
                0.95,
                subject,
                {
                    "oom_kills": len(oom),
                    "memory_limit_bytes": limit,
                    "lost_gpu_hours": lost.get("OOM", 0.0),
                },
                tuple(_quote(e) for e in oom[-3:]),
            )
        )
    app = by_cause.get("Application", [])
    if app and (len(app) >= settings.loop_failures or is_over):
        codes = sorted({_str(e.facts, "exit_code") for e in app})
        is_loop = len(app) >= settings.loop_failures
        out.append(
            Finding(
                FindingCode.CRASH_LOOP if is_loop else FindingCode.APPLICATION_FAILED,
                severity,
                subject,
                f"job {job.name} exited with an error {len(app)} times (exit codes {', '.join(codes)})",
                f"read the pod logs (phalanx logs {job.name}), fix the program, resubmit",
                0.9,
                subject,
                {
                    "failures": len(app),
                    "exit_codes": codes,
                    "restarts": job.restarts,
                    "lost_gpu_hours": lost.get("Application", 0.0),
                },
                tuple(_quote(e) for e in app[-3:]),
            )
        )
    hangs = by_cause.get("Hang", [])
    if hangs:
        out.append(
            Finding(
                FindingCode.HANG,
                severity,
                subject,
                f"job {job.name} stopped reporting progress {len(hangs)} times (hangTimeout "
                f"{_str(hangs[-1].facts, 'hang_timeout_s')}s)",
                "look for a deadlock or a stuck collective (phalanx logs "
                f"{job.name}); NCCL_DEBUG=INFO shows which rank waits",
                0.85,
                subject,
                {
                    "hangs": len(hangs),
                    "silent_s": hangs[-1].facts.get("silent_s"),
                    "lost_gpu_hours": lost.get("Hang", 0.0),
                },
                tuple(_quote(e) for e in hangs[-3:]),
            )
        )
    lost_nodes: dict[str, list[EventView]] = {}
    for e in by_cause.get("Node", []):
        lost_nodes.setdefault(_str(e.facts, "node"), []).append(e)
    for node, events in sorted(lost_nodes.items()):
        view = obs.node(node)
        quarantined = view is not None and view.node.is_quarantined
        out.append(
            Finding(
                FindingCode.NODE_QUARANTINED if quarantined else FindingCode.NODE_LOST,
                Severity.WARNING,
                f"node/{node}",
                f"pods of job {job.name} were lost on node {node} {len(events)} times"
                + (" and the node is quarantined" if quarantined else ""),
                f"check node {node} (phalanx describe node {node}); the job restarts elsewhere "
                "from its last checkpoint",
                0.85,
                subject,
                {
                    "losses": len(events),
                    "pod_reason": _str(events[-1].facts, "pod_reason"),
                    "lost_gpu_hours": lost.get("Node", 0.0),
                },
                tuple(_quote(e) for e in events[-3:]),
            )
        )
    if job.reason_code == ReasonCode.DEADLINE_EXCEEDED and is_over:
        out.append(
            Finding(
                FindingCode.DEADLINE_EXCEEDED,
                Severity.CRITICAL,
                subject,
                f"job {job.name} ran longer than its maxRuntime",
                "raise spec.maxRuntime, or make the job checkpoint and resume in shorter runs",
                1.0,
                subject,
                dict(job.reason_facts),
            )
        )
    for e in job.events:
        if e.reason == ReasonCode.RECONCILE_ERROR:
            out.append(
                Finding(
                    FindingCode.RECONCILE_ERROR,
                    Severity.WARNING,
                    subject,
                    f"the control plane failed on job {job.name}: {_str(e.facts, 'error')}",
                    "see the server log; the control plane retries this job on each tick",
                    0.7,
                    subject,
                    dict(e.facts),
                    (_quote(e),),
                )
            )
            break
    out += _preemptions(job)
    return out


def _preemptions(job: JobView) -> list[Finding]:
    """The last preemption of a job that has not run again since: the preemptor is the
    cause."""
    last = None
    for e in job.events:
        if e.reason == ReasonCode.PREEMPTED:
            last = e
        elif e.reason in (ReasonCode.ADMITTED, ReasonCode.SUCCEEDED):
            last = None if last is not None and e.at > last.at else last
    if last is None or job.phase not in (JobPhase.PENDING, JobPhase.PREEMPTED):
        return []
    facts = last.facts
    preemptor = _str(facts, "preemptor")
    same_queue = _str(facts, "preemptor_queue") == _str(facts, "victim_queue")
    return [
        Finding(
            FindingCode.PREEMPTED_BY_PRIORITY if same_queue else FindingCode.RECLAIMED_BY_QUEUE,
            Severity.INFO,
            _job(preemptor),
            f"job {job.name} was preempted by {preemptor}: {last.message}",
            f"raise job {job.name}'s priority, or checkpoint more often to lose less"
            if same_queue
            else f"submit to a queue with nominal quota of its own (queue {_str(facts, 'victim_queue')} was borrowing)",
            0.9,
            _job(job.name),
            dict(facts),
            (_quote(last),),
        )
    ]


# ---- 3. running jobs ------------------------------------------------------------------------


def analyze_running(obs: Observation, settings: DoctorSettings) -> list[Finding]:
    """GPUs held with no progress, checkpoints gone stale."""
    out: list[Finding] = []
    for job in obs.jobs:
        if job.phase is not JobPhase.RUNNING or not job.request.gpu_milli:
            continue
        subject = _job(job.name)
        progress = job.progress
        started = job.started_at or job.admitted_at or obs.now
        last_report = progress.reported_at if progress and progress.reported_at else None
        silent_s = obs.now - (last_report or started)
        measured = measured_usage(obs, job)
        if measured:
            out += idle_measured(obs, job, measured, settings)
        elif silent_s >= settings.idle_after_s:
            gpus = gpu_count(job.request.gpu_milli)
            out.append(
                Finding(
                    FindingCode.IDLE_GPUS,
                    Severity.WARNING,
                    subject,
                    f"job {job.name} holds {gpus:g} {GPU} and has reported no progress for "
                    f"{silent_s:.0f}s" + ("" if last_report else " (never since it started)"),
                    "report progress from the workload (phalanx.train.report_progress), set "
                    f"spec.failurePolicy.hangTimeout to restart it when stuck, or cancel it "
                    f"(phalanx cancel job {job.name})",
                    0.7 if last_report else 0.6,
                    subject,
                    {
                        "silent_s": round(silent_s, 1),
                        "gpus": gpus,
                        "idle_gpu_s": round(gpus * silent_s, 1),
                        "has_reported": last_report is not None,
                    },
                )
            )
        if progress and progress.checkpoint_at is not None and last_report is not None:
            age = obs.now - progress.checkpoint_at
            if age >= settings.stale_checkpoint_s and last_report > progress.checkpoint_at:
                out.append(
                    Finding(
                        FindingCode.STALE_CHECKPOINT,
                        Severity.WARNING,
                        subject,
                        f"job {job.name}'s last checkpoint (step {progress.checkpoint_step}) is "
                        f"{age:.0f}s old while it keeps making progress (step {progress.step})",
                        "check the checkpoint writer (disk full, permissions, a failing save); a "
                        "failure now loses all progress since",
                        0.8,
                        subject,
                        {
                            "checkpoint_age_s": round(age, 1),
                            "checkpoint_step": progress.checkpoint_step,
                            "step": progress.step,
                            "lost_gpu_s_if_killed": round(
                                gpu_count(job.request.gpu_milli) * age, 1
                            ),
                        },
                    )
                )
    return out


# ---- 4. nodes -------------------------------------------------------------------------------


def analyze_nodes(obs: Observation, settings: DoctorSettings) -> list[Finding]:
    """Nodes out of placement, and nodes collecting node-side failures."""
    out: list[Finding] = []
    for n in obs.nodes:
        name = f"node/{n.node.name}"
        if n.node.is_quarantined or not n.node.is_ready:
            out.append(_node_out(n, name, confidence=0.9))
        elif len(n.failures) >= settings.node_failures:
            jobs = sorted({f.job for f in n.failures})
            out.append(
                Finding(
                    FindingCode.NODE_FAILING,
                    Severity.WARNING,
                    name,
                    f"node {n.node.name} has {len(n.failures)} node-side pod failures from jobs "
                    f"{', '.join(jobs)}",
                    f"check node {n.node.name}'s GPUs and drivers (nvidia-smi, dmesg for XID)",
                    0.6,
                    name,
                    {"failures": len(n.failures), "jobs": jobs},
                )
            )
    return out


ANALYZERS: tuple[Analyzer, ...] = (
    analyze_pending,
    analyze_history,
    analyze_running,
    analyze_nodes,
    analyze_services,
)


def diagnose(obs: Observation, settings: DoctorSettings | None = None) -> list[Finding]:
    """Every analyzer over ``obs``: findings most urgent first, without duplicates. Pipeline
    runs come last: a failed step's finding quotes its job's root cause."""
    settings = settings or DoctorSettings()
    found: list[Finding] = []
    for analyzer in ANALYZERS:
        found += analyzer(obs, settings)
    found += analyze_pipeline_runs(obs, found)
    return ordered(_root_causes(found))


#: Findings that are consequences when a job was preempted: it waits because its preemptor
#: now holds what it had.
_AFTER_PREEMPTION = frozenset(
    {
        FindingCode.QUOTA_EXHAUSTED,
        FindingCode.COHORT_EXHAUSTED,
        FindingCode.BORROWING_LIMIT_REACHED,
        FindingCode.CAPACITY_BUSY,
    }
)


#: Findings about a node that its pods' losses, once named, already explain.
_AFTER_LOSS = frozenset({FindingCode.NODE_NOT_READY, FindingCode.NODE_FAILING})


def _root_causes(found: list[Finding]) -> list[Finding]:
    """Drop consequences of causes named already: a preempted job's wait for capacity (the
    preemption is the cause), a node's bare not-ready state once its loss of pods is named,
    and a node's tally of node-side failures once the jobs' losses there are named (the same
    failures, counted again)."""
    preempted = {
        f.subject
        for f in found
        if f.code in (FindingCode.PREEMPTED_BY_PRIORITY, FindingCode.RECLAIMED_BY_QUEUE)
    }
    lost = {f.object for f in found if f.code is FindingCode.NODE_LOST}
    return [
        f
        for f in found
        if not (f.code in _AFTER_PREEMPTION and f.subject in preempted)
        and not (f.code in _AFTER_LOSS and f.object in lost)
    ]


def diagnose_job(
    obs: Observation, name: str, settings: DoctorSettings | None = None
) -> list[Finding]:
    """Findings about job ``name``: those it suffers from, and those it causes."""
    ref = _job(name)
    return [f for f in diagnose(obs, settings) if ref in (f.subject, f.object)]


def diagnose_node(
    obs: Observation, name: str, settings: DoctorSettings | None = None
) -> list[Finding]:
    """Findings whose cause is node ``name``."""
    ref = f"node/{name}"
    return [f for f in diagnose(obs, settings) if f.object == ref]


def diagnose_queue(
    obs: Observation, name: str, settings: DoctorSettings | None = None
) -> list[Finding]:
    """Findings about queue ``name``: its quota, and its jobs' causes."""
    ref = f"queue/{name}"
    jobs = {_job(j.name) for j in obs.jobs if j.queue == name}
    cohort = obs.queue_specs[name].cohort if name in obs.queue_specs else ""
    refs = {ref, *jobs} | ({f"cohort/{cohort}"} if cohort else set())
    return [f for f in diagnose(obs, settings) if f.object in refs or f.subject in jobs]


def diagnose_service(
    obs: Observation, name: str, settings: DoctorSettings | None = None
) -> list[Finding]:
    """Findings about Service ``name``: its own, and its replicas' causes."""
    ref = f"service/{name}"
    service = next((s for s in obs.services if s.name == name), None)
    replicas = {_job(r.name) for r in service.replicas} if service else set()
    return [
        f
        for f in diagnose(obs, settings)
        if ref in (f.object, f.subject) or f.subject in replicas or f.object in replicas
    ]


def diagnose_run(
    obs: Observation, name: str, settings: DoctorSettings | None = None
) -> list[Finding]:
    """Findings about PipelineRun ``name``: its failed steps, and its step jobs' causes."""
    ref = f"pipelinerun/{name}"
    run = next((r for r in obs.runs if r.name == name), None)
    jobs = {_job(s.job) for s in run.steps if s.job} if run else set()
    return [
        f
        for f in diagnose(obs, settings)
        if ref in (f.object, f.subject) or f.subject in jobs or f.object in jobs
    ]
