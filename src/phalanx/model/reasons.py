"""Reasons as data: ``Reason(code, facts)``, with a message rendered from the facts.

Every pending, failure, preemption and quarantine reason, and every event, is a Reason: a stable
code from ``ReasonCode`` (the one catalogue, documented code by code in ``docs/reasons.md``),
facts with the numbers (JSON-able: str, int, float, bool, None, and tuples and mappings of
those), and ``message``, rendered from the facts by the code's renderer. Programs (the doctor,
metrics, the dashboard, tests) read codes and facts; people read messages.

Units are in the names of facts (``needed_gpu_milli``, ``wait_s``, ``memory_limit_bytes``); a
fact named only ``used``/``needed``/``nominal`` next to a ``resource`` fact is in that
resource's base unit: millicores for ``cpu``, bytes for ``memory``, thousandths of a device
for ``nvidia.com/gpu``.

Pure: imports only the standard library and phalanx.model.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TypeAlias

from phalanx.model.objects import NODE_TOPOLOGY
from phalanx.model.resources import (
    CPU,
    GPU,
    GPU_MILLI_PER_DEVICE,
    MEMORY,
    Resources,
    format_amount,
    format_cpu,
    format_gpu,
    format_memory,
)

#: One fact: a JSON-able value (tuples become lists in JSON, and lists tuples again).
Fact: TypeAlias = str | int | float | bool | tuple["Fact", ...] | Mapping[str, "Fact"] | None
Facts: TypeAlias = Mapping[str, Fact]


class ReasonCode(StrEnum):
    """The catalogue of reason codes. The values are stored and shown: never change one."""

    # Why a job is pending (the scheduler's reasons, and the controllers' for held-back jobs).
    BACKOFF = "Backoff"
    QUEUE_NOT_FOUND = "QueueNotFound"
    FLAVOR_NOT_FOUND = "FlavorNotFound"
    QUOTA_EXCEEDED = "QuotaExceeded"
    EXCEEDS_QUEUE_LIMIT = "ExceedsQueueLimit"
    UNSCHEDULABLE = "Unschedulable"
    NEVER_FITS = "NeverFits"
    PREEMPTING = "Preempting"
    WAITING_FOR_CAPACITY = "WaitingForCapacity"
    # What happened to a job (events, and the job's reason after them).
    CREATED = "Created"
    ADMITTED = "Admitted"
    STARTED = "Started"
    SUCCEEDED = "Succeeded"
    RESTARTING = "Restarting"
    FAILED = "Failed"
    OOM_KILLED = "OOMKilled"
    HANG = "Hang"
    DEADLINE_EXCEEDED = "DeadlineExceeded"
    #: A pod of an admitted attempt is not starting (image pull, container config, kubelet).
    POD_WAITING = "PodWaiting"
    #: The attempt's pods were not all running within ``startupTimeout``.
    STARTUP_TIMEOUT = "StartupTimeout"
    PREEMPTED = "Preempted"
    REQUEUED = "Requeued"
    CANCELLED = "Cancelled"
    # What happened to a node.
    QUARANTINED = "Quarantined"
    RELEASED = "Released"
    # What happened to a Service (its autoscaler's decisions).
    SCALED_UP = "ScaledUp"
    SCALED_DOWN = "ScaledDown"
    SCALED_TO_ZERO = "ScaledToZero"
    # The control plane itself.
    RECONCILE_ERROR = "ReconcileError"
    OWNER_DELETED = "OwnerDeleted"

    @property
    def event_type(self) -> str:
        """``Warning`` for codes someone may have to act on, else ``Normal``."""
        return "Warning" if self in _WARNINGS else "Normal"

    @property
    def needs_change(self) -> bool:
        """Whether a job pending for this reason waits until someone changes the cluster, a
        queue or the job: other jobs finishing cannot help it."""
        return self in _NEEDS_CHANGE


_WARNINGS = frozenset(
    {
        ReasonCode.QUEUE_NOT_FOUND,
        ReasonCode.FLAVOR_NOT_FOUND,
        ReasonCode.EXCEEDS_QUEUE_LIMIT,
        ReasonCode.UNSCHEDULABLE,
        ReasonCode.NEVER_FITS,
        ReasonCode.RESTARTING,
        ReasonCode.FAILED,
        ReasonCode.OOM_KILLED,
        ReasonCode.HANG,
        ReasonCode.DEADLINE_EXCEEDED,
        ReasonCode.POD_WAITING,
        ReasonCode.STARTUP_TIMEOUT,
        ReasonCode.PREEMPTED,
        ReasonCode.QUARANTINED,
        ReasonCode.RECONCILE_ERROR,
    }
)
_NEEDS_CHANGE = frozenset(
    {ReasonCode.FLAVOR_NOT_FOUND, ReasonCode.EXCEEDS_QUEUE_LIMIT, ReasonCode.NEVER_FITS}
)


@dataclass(frozen=True, slots=True)
class Reason:
    """A code from the catalogue and the facts behind it; ``message`` is rendered from them."""

    code: ReasonCode
    facts: Facts = field(default_factory=dict)
    # Memos of ``message`` and ``plain_facts``: a cycle compares and writes thousands of
    # reasons, each several times. Facts are not to be changed after construction.
    _message: str | None = field(default=None, init=False, repr=False, compare=False)
    _plain_facts: dict[str, object] | None = field(
        default=None, init=False, repr=False, compare=False
    )

    @property
    def message(self) -> str:
        """The facts in words, for people (see ``render``)."""
        if self._message is None:
            object.__setattr__(self, "_message", render(self.code, self.facts))
        assert self._message is not None
        return self._message

    def plain_facts(self) -> dict[str, object]:
        """The facts as JSON (tuples as lists), for storage and the API (a new dict each
        time; its values are shared between calls and must not be changed)."""
        if self._plain_facts is None:
            plain = {key: _plain(value) for key, value in self.facts.items()}
            object.__setattr__(self, "_plain_facts", plain)
            return dict(plain)
        return dict(self._plain_facts)

    def to_dict(self) -> dict[str, object]:
        """``{"code", "message", "facts"}`` as JSON."""
        return {"code": self.code.value, "message": self.message, "facts": self.plain_facts()}

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> Reason:
        """Return the Reason of ``to_dict``'s output (the message is rendered again).

        Raises ValueError for a code that is not in the catalogue or facts that are no mapping.
        """
        code = str(data.get("code", ""))
        try:
            reason_code = ReasonCode(code)
        except ValueError:
            raise ValueError(
                f"unknown reason code {code!r}; known: {', '.join(c.value for c in ReasonCode)}"
            ) from None
        facts = data.get("facts") or {}
        if not isinstance(facts, Mapping):
            raise ValueError(f"reason facts must be a mapping, not {type(facts).__name__}")
        return cls(reason_code, {str(k): _fact(v) for k, v in facts.items()})


def _plain(value: Fact) -> object:
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    return value


def _fact(value: object) -> Fact:
    """A JSON value as a Fact (lists become tuples)."""
    if isinstance(value, list | tuple):
        return tuple(_fact(v) for v in value)
    if isinstance(value, Mapping):
        return {str(k): _fact(v) for k, v in value.items()}
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)


def per_flavor(reasons: Sequence[Reason]) -> Reason:
    """One reason for a job that fits none of its queue's flavors, from one reason per flavor
    (each with a ``flavor`` fact). A single reason is returned as it is; several become one
    with the fact ``flavors``: ``({"code", "facts"}, ...)`` in the queue's order, and the code
    of the first that waiting may cure (else of the first).

    Raises ValueError when ``reasons`` is empty.
    """
    if not reasons:
        raise ValueError("per_flavor needs at least one reason")
    if len(reasons) == 1:
        return reasons[0]
    code = next((r.code for r in reasons if not r.code.needs_change), reasons[0].code)
    return Reason(
        code, {"flavors": tuple({"code": r.code.value, "facts": r.facts} for r in reasons)}
    )


# ---- rendering ----------------------------------------------------------------------------


def render(code: ReasonCode, facts: Facts) -> str:
    """Return the message of ``code`` with ``facts``. Facts a renderer needs but does not find
    read as empty or zero: a message is always produced."""
    flavors = facts.get("flavors")
    if isinstance(flavors, tuple) and len(facts) == 1:
        parts = []
        for item in flavors:
            sub = item if isinstance(item, Mapping) else {}
            sub_facts = _mapping(sub, "facts")
            try:
                sub_code = ReasonCode(_str(sub, "code"))
            except ValueError:
                continue
            parts.append(f"flavor {_str(sub_facts, 'flavor')}: {render(sub_code, sub_facts)}")
        return "; ".join(parts)
    return _RENDERERS[code](facts)


def _str(facts: Facts, key: str) -> str:
    value = facts.get(key)
    return "" if value is None else str(value)


def _int(facts: Facts, key: str) -> int:
    value = facts.get(key)
    return int(value) if isinstance(value, int | float) else 0


def _float(facts: Facts, key: str) -> float:
    value = facts.get(key)
    return float(value) if isinstance(value, int | float) else 0.0


def _names(facts: Facts, key: str) -> list[str]:
    value = facts.get(key)
    return [str(v) for v in value] if isinstance(value, tuple) else []


def _mapping(facts: Facts, key: str) -> Facts:
    value = facts.get(key)
    return value if isinstance(value, Mapping) else {}


def _pods(count: int, *, every: bool = False) -> str:
    """``1 pod``, ``3 pods``; with ``every``: ``the pod``, ``all 3 pods``."""
    if count == 1:
        return "the pod" if every else "1 pod"
    return f"all {count} pods" if every else f"{count} pods"


def describe_request(gpu_milli: int, cpu_milli: int, memory_bytes: int) -> str:
    """``8 nvidia.com/gpu, 1 cpu, 16Gi memory`` (zero parts left out)."""
    parts = []
    if gpu_milli:
        share = " (a share of one GPU)" if 0 < gpu_milli < GPU_MILLI_PER_DEVICE else ""
        parts.append(f"{format_gpu(gpu_milli)} {GPU}{share}")
    if cpu_milli:
        parts.append(f"{format_cpu(cpu_milli)} {CPU}")
    if memory_bytes:
        parts.append(f"{format_memory(memory_bytes)} {MEMORY}")
    return ", ".join(parts) or "no resources"


def request_facts(r: Resources) -> dict[str, Fact]:
    """A request as facts: ``needed_gpu_milli``, ``needed_cpu_milli``, ``needed_memory_bytes``."""
    return {
        "needed_gpu_milli": r.gpu_milli,
        "needed_cpu_milli": r.cpu_milli,
        "needed_memory_bytes": r.memory_bytes,
    }


def _need(facts: Facts) -> str:
    return describe_request(
        _int(facts, "needed_gpu_milli"),
        _int(facts, "needed_cpu_milli"),
        _int(facts, "needed_memory_bytes"),
    )


def _amount(facts: Facts, key: str) -> str:
    return format_amount(_str(facts, "resource"), _int(facts, key))


def _scope(topology_key: str) -> str:
    return "one node" if topology_key == NODE_TOPOLOGY else f"one {topology_key} domain"


# -- pending --


def _backoff(f: Facts) -> str:
    if "cause" in f:  # set by the controllers right after a failure: the restart in full
        return _restart(f)
    return f"restarting after backoff in {_float(f, 'wait_s'):.1f}s"


def _queue_not_found(f: Facts) -> str:
    queues = ", ".join(_names(f, "queues")) or "(no queues yet)"
    return f"queue {_str(f, 'queue')!r} does not exist; create it or submit to one of: {queues}"


def _flavor_not_found(f: Facts) -> str:
    return f"flavor {_str(f, 'flavor')} does not exist; create the ResourceFlavor"


def _quota_exceeded(f: Facts) -> str:
    resource, flavor = _str(f, "resource"), _str(f, "flavor")
    what = (
        f"queue {_str(f, 'queue')} uses {_amount(f, 'used')}/{_amount(f, 'nominal')} "
        f"{resource} of flavor {flavor}"
    )
    needed = _amount(f, "needed")
    blocked_by = _str(f, "blocked_by")
    if blocked_by == "BorrowingLimit":
        return f"{what}; the job needs {needed} more, above its borrowing limit of {_amount(f, 'borrowing_limit')}"
    if blocked_by == "Cohort":
        return (
            f"{what}; the job needs {needed} more and cohort {_str(f, 'cohort')} has "
            f"{_amount(f, 'cohort_free')} of {_amount(f, 'cohort_shared')} shared {resource} free"
        )
    return f"{what}, the job needs {needed} more, and the queue has no cohort to borrow from"


def _exceeds_queue_limit(f: Facts) -> str:
    queue = _str(f, "queue")
    head = (
        f"the job needs {_amount(f, 'needed')} {_str(f, 'resource')} of flavor "
        f"{_str(f, 'flavor')} at once, more than queue {queue} can ever use: {_amount(f, 'limit')}"
    )
    limited_by = _str(f, "limited_by")
    if limited_by == "BorrowingLimit":
        why = (
            f"nominal {_amount(f, 'nominal')} plus borrowing limit {_amount(f, 'borrowing_limit')}"
        )
    elif limited_by == "CohortQuota":
        why = (
            f"{_amount(f, 'guaranteed')} of its own plus the {_amount(f, 'cohort_shared')} "
            f"cohort {_str(f, 'cohort')} shares in all"
        )
    else:
        why = "its nominal quota; it has no cohort to borrow from"
    return f"{head} ({why}); it waits until the job or the quota changes"


def _pod_detail(f: Facts) -> str:
    """Why one pod fits no node of a flavor (or of a topology domain): the pod part of an
    Unschedulable reason."""
    flavor = _str(f, "flavor")
    where = f"flavor {flavor}"
    need = _need(f)
    total = _int(f, "nodes_total")
    if not total:
        down = _int(f, "not_ready_nodes")
        extra = f" ({down} nodes not ready or quarantined)" if down else ""
        return f"needs {need}, but no ready node matches {where}{extra}"
    if "largest_node" in f:  # the largest ready node is too small (a larger one is not ready)
        if _int(f, "needed_gpu_milli") > _int(f, "largest_node_gpus") * GPU_MILLI_PER_DEVICE:
            size = f"{_int(f, 'largest_node_gpus')} GPUs ({_str(f, 'largest_node')})"
        else:
            size = (
                f"{format_cpu(_int(f, 'largest_node_cpu_milli'))} cpu and "
                f"{format_memory(_int(f, 'largest_node_memory_bytes'))} memory"
            )
        return f"needs {need} on one node, but the largest ready node of {where} has {size}"
    if "largest_free_gpus" in f:
        closest = (
            f"; the largest free GPU block on any node of {where} is "
            f"{_int(f, 'largest_free_gpus')} ({_str(f, 'largest_free_node')})"
        )
    elif "most_free_gpu_milli" in f:
        closest = (
            f"; the most free on any GPU of {where} is "
            f"{format_gpu(_int(f, 'most_free_gpu_milli'))} ({_str(f, 'most_free_gpu_node')})"
        )
    elif "most_free_cpu_milli" in f:
        closest = (
            f"; the most free cpu on any node of {where} is "
            f"{format_cpu(_int(f, 'most_free_cpu_milli'))} ({_str(f, 'most_free_cpu_node')})"
        )
    else:
        closest = ""
    rejections = _mapping(f, "rejections")
    if rejections:
        counts = sorted(
            ((str(k), _int(rejections, k)) for k in rejections), key=lambda kv: (-kv[1], kv[0])
        )
        summary = ", ".join(f"{n} {why}" for why, n in counts)
        return f"needs {need} on one node; {_int(f, 'nodes_fit')}/{total} nodes of {where} fit: {summary}{closest}"
    return f"needs {need} on one node; no node of {where} fits{closest}"


def _gang_detail(f: Facts) -> str:
    detail = _pod_detail(f)
    pods = _int(f, "gang_pods")
    if pods <= 1:
        return detail
    placed, minimum, pod = _int(f, "pods_placed"), _int(f, "gang_minimum"), _str(f, "pod")
    if placed:
        return (
            f"only {placed} of {pods} pods fit at once (gang minimum {minimum}, all or nothing); "
            f"with the others placed, pod {pod} {detail}"
        )
    return f"no pod of the gang of {pods} fits, not even alone (all or nothing, minimum {minimum}): pod {pod} {detail}"


def _unschedulable(f: Facts) -> str:
    key = _str(f, "topology_key")
    if not key:
        return _gang_detail(f)
    scope = _scope(key)
    tried = _int(f, "domains_tried")
    if not tried:
        return (
            f"needs {_need(f)} in total within {scope} (topology Required), "
            f"and no such domain of flavor {_str(f, 'flavor')} has that much free"
        )
    return (
        f"needs all {_int(f, 'gang_pods')} pods within {scope} (topology Required); {tried} "
        f"domains have enough free in total but none fits the pods: "
        f"{key}={_str(f, 'topology_domain')}: {_gang_detail(f)}"
    )


def _never_fits(f: Facts) -> str:
    where = f"flavor {_str(f, 'flavor')}"
    need = _need(f)
    check = _str(f, "check")
    nodes = _int(f, "nodes_total")
    if check == "NoNodes":
        return f"needs {need}, but no node of the cluster matches {where} (ready or not); it can never fit"
    if check == "Gang":
        return (
            f"needs {_int(f, 'gang_minimum')} pods of {need} at once (all or nothing), but the "
            f"{nodes} nodes of {where} together hold at most {_int(f, 'slots')} such pods even "
            "when empty; it can never fit"
        )
    if check == "GangTotal":
        return (
            f"needs {format_gpu(_int(f, 'needed_gpu_milli'))} {GPU} in total at once (all or "
            f"nothing), but the {nodes} nodes of {where} have "
            f"{format_gpu(_int(f, 'capacity_gpu_milli'))} in all; it can never fit"
        )
    if check == "Topology":
        return (
            f"needs {need} in total within {_scope(_str(f, 'topology_key'))} (topology "
            f"Required), but none of the {_int(f, 'domains_total')} such domains of {where} "
            f"has that much even when empty; it can never fit"
        )
    gpus = _int(f, "max_node_gpus")
    if _int(f, "needed_gpu_milli") > gpus * GPU_MILLI_PER_DEVICE:
        size = f"{gpus} GPUs ({_str(f, 'largest_node')})"
    elif _int(f, "needed_cpu_milli") > _int(f, "max_node_cpu_milli") or _int(
        f, "needed_memory_bytes"
    ) > _int(f, "max_node_memory_bytes"):
        size = (
            f"{format_cpu(_int(f, 'max_node_cpu_milli'))} cpu and "
            f"{format_memory(_int(f, 'max_node_memory_bytes'))} memory"
        )
    else:
        return f"needs {need} on one node, but no node of {where} has that much of every resource at once; it can never fit"
    return f"needs {need} on one node, but the largest node of {where} has {size}; it can never fit"


def _preempting(f: Facts) -> str:
    return f"preempting {', '.join(_names(f, 'victims'))} on flavor {_str(f, 'flavor')}; admitted once they stop"


def _waiting_for_capacity(f: Facts) -> str:
    if "stopping" in f:
        return (
            f"fits on flavor {_str(f, 'flavor')} once stopping workloads release their "
            f"capacity: {', '.join(_names(f, 'stopping'))}"
        )
    return f"waiting for {_int(f, 'pods_stopping')} pods of attempt {_int(f, 'attempt')} to stop"


# -- job lifecycle --


def _created(f: Facts) -> str:
    return f"submitted to queue {_str(f, 'queue')}"


def _share(device: Fact) -> str:
    if not isinstance(device, tuple) or len(device) != 2:
        return str(device)
    index, milli = (int(v) if isinstance(v, int | float) else 0 for v in device)
    return str(index) if milli >= GPU_MILLI_PER_DEVICE else f"{index}:{format_gpu(milli)}"


def _admitted(f: Facts) -> str:
    where = []
    pods = f.get("pods")
    for item in pods if isinstance(pods, tuple) else ():
        pod = item if isinstance(item, Mapping) else {}
        devices = pod.get("devices")
        shares = [_share(d) for d in devices] if isinstance(devices, tuple) else []
        gpus = f" [gpu {','.join(shares)}]" if shares else ""
        where.append(f"{_str(pod, 'pod')} → {_str(pod, 'node')}{gpus}")
    return f"attempt {_int(f, 'attempt')} on flavor {_str(f, 'flavor')}: {'; '.join(where)}"


def _started(f: Facts) -> str:
    return f"{_pods(_int(f, 'pods'), every=True)} of attempt {_int(f, 'attempt')} running"


def _succeeded(f: Facts) -> str:
    return f"{_pods(_int(f, 'pods'), every=True)} succeeded after {_float(f, 'duration_s'):.1f}s"


def _what_failed(f: Facts) -> str:
    """The failure itself (without what the controllers do about it)."""
    cause = _str(f, "cause")
    if cause == "Hang":
        since = "" if f.get("has_reported") else " since the attempt started"
        return (
            f"hang: no progress report{since} for {_float(f, 'silent_s'):.0f}s "
            f"(hangTimeout {_float(f, 'hang_timeout_s'):g}s)"
        )
    if cause == "Startup":
        waiting = f.get("not_running")
        names = [
            f"{_str(p, 'pod')} ({_str(p, 'waiting_reason') or 'not running'})"
            for p in (waiting if isinstance(waiting, tuple) else ())
            if isinstance(p, Mapping)
        ]
        return (
            f"pods not all running {_float(f, 'waited_s'):.0f}s after admission "
            f"(startupTimeout {_float(f, 'startup_timeout_s'):g}s): " + (", ".join(names) or "?")
        )
    pod, node = _str(f, "pod"), _str(f, "node")
    pod_reason, pod_message = _str(f, "pod_reason"), _str(f, "pod_message")
    if f.get("is_lost"):
        what = f"pod {pod} was lost on node {node} ({pod_reason or 'no exit status'})"
    else:
        # A plain non-zero exit needs no more words; signals and launch errors do.
        detail = f" ({pod_message})" if pod_message and pod_reason != "Error" else ""
        what = f"pod {pod} on node {node} exited with code {_str(f, 'exit_code')}{detail}"
    if cause == "OOM":
        what += f": killed for exceeding its memory limit {format_memory(_int(f, 'memory_limit_bytes'))}"
        if _str(f, "outcome") == "FailByPolicy":
            what += " (failurePolicy.onOOM: Fail; raise the pod's memory or set onOOM: Restart)"
    elif cause == "Node":
        what += f" (node-side failure on node {node})"
    return what


def _restart(f: Facts) -> str:
    what = _what_failed(f)
    restarts, most = _int(f, "restarts"), _int(f, "max_restarts")
    backoff = f"{_float(f, 'backoff_s'):g}s backoff"
    outcome = _str(f, "outcome")
    if outcome == "RestartFree":
        return (
            f"{what}; restarting the whole gang from its last checkpoint, not counted against "
            f"maxRestarts ({restarts}/{most} used), after {backoff}"
        )
    if outcome == "Restart":
        return f"{what}; restarting the whole gang (restart {restarts}/{most}) after {backoff}"
    if outcome == "NoRestartsLeft":
        if _str(f, "restart_policy") == "Never":
            return f"{what} (restartPolicy Never)"
        return f"{what} after {restarts} restarts" if restarts else what
    return what


def _pod_waiting(f: Facts) -> str:
    message = _str(f, "waiting_message")
    return (
        f"pod {_str(f, 'pod')} on node {_str(f, 'node')} is not starting: "
        f"{_str(f, 'waiting_reason')}" + (f" ({message})" if message else "")
    )


def _deadline_exceeded(f: Facts) -> str:
    return f"ran longer than maxRuntime {_float(f, 'max_runtime_s'):g}s; stopped"


def _preempted(f: Facts) -> str:
    queue, victim_queue = _str(f, "preemptor_queue"), _str(f, "victim_queue")
    if queue == victim_queue:
        why = f"priority {_int(f, 'preemptor_priority')} > {_int(f, 'victim_priority')} in queue {queue}"
    else:
        why = f"queue {queue} reclaims quota it lent to queue {victim_queue} in cohort {_str(f, 'cohort')}"
    checkpoint = f.get("last_checkpoint_age_s")
    if isinstance(checkpoint, int | float):
        since = f"last checkpoint {checkpoint:.0f}s ago"
    else:
        since = f"no checkpoint yet, admitted {_float(f, 'admitted_age_s'):.0f}s ago"
    return (
        f"preempted by {_str(f, 'preemptor')} ({why}); it needs "
        f"{format_gpu(_int(f, 'needed_gpu_milli'))} {GPU} on flavor {_str(f, 'flavor')}; "
        f"loses {_float(f, 'lost_gpu_s'):.0f} GPU-s of work ({_float(f, 'victim_gpus'):g} GPUs, {since})"
    )


def _requeued(f: Facts) -> str:
    return (
        "all pods stopped; back in the queue"
        if f.get("had_pods")
        else "no pods to stop; back in the queue"
    )


def _cancelled(f: Facts) -> str:
    return f"{'deleted' if f.get('is_delete') else 'cancelled'} by {_str(f, 'by') or 'user'}"


# -- nodes --


def _quarantined(f: Facts) -> str:
    if _str(f, "cause") != "NodeSideFailures":  # a GPU error: the backend's words
        return _str(f, "detail")
    recent = []
    items = f.get("recent")
    for item in items if isinstance(items, tuple) else ():
        failure = item if isinstance(item, Mapping) else {}
        recent.append(f"{_str(failure, 'job')}/{_str(failure, 'pod')} {_str(failure, 'reason')}")
    return (
        f"{_int(f, 'failures')} node-side pod failures from {_int(f, 'jobs')} jobs within "
        f"{_float(f, 'window_s'):g}s (threshold {_int(f, 'threshold')}): " + "; ".join(recent)
    )


def _released(f: Facts) -> str:
    how = "after its cool-down" if _str(f, "by") == "cooldown" else "by hand (phalanx node release)"
    return f"node {_str(f, 'node')} released from quarantine {how}"


# -- the control plane --


def _reconcile_error(f: Facts) -> str:
    return (
        f"{_str(f, 'reconciler')} could not {_str(f, 'step')} this object: {_str(f, 'error')}; "
        "the control plane goes on with every other object and retries this one"
    )


def _scaled(f: Facts) -> str:
    """ScaledUp, ScaledDown, ScaledToZero: the Service, the counts and what drove them."""
    head = (
        f"Service {_str(f, 'service')} scaled from {_int(f, 'from_replicas')} to "
        f"{_int(f, 'to_replicas')} replica(s)"
    )
    decision = _str(f, "decision")
    unit = "requests/s" if f.get("metric") == "rps" else "concurrent requests"
    if decision == "ScaleFromZero":
        why = f"{_int(f, 'waiting')} request(s) waiting at zero replicas"
    elif decision in ("ScaleToZero", "IdleGrace"):
        idle = f.get("idle_s")
        idle_text = "no request seen" if idle is None else f"idle for {_float(f, 'idle_s'):.0f} s"
        why = f"{idle_text} (scaleToZeroAfter {_float(f, 'scale_to_zero_after_s'):g} s)"
    elif decision in ("Stable", "Panic"):
        window = "panic" if decision == "Panic" else "stable"
        value = _float(f, "panic_value" if decision == "Panic" else "stable_value")
        why = (
            f"{window} window: {value:.2f} {unit} at a target of {_float(f, 'target'):g} per "
            f"replica wants {_int(f, 'wanted')} (ready {_int(f, 'ready')})"
        )
    else:
        why = f"decision {decision or 'unknown'}"
    if f.get("clamped"):
        why += f", bounded by minReplicas {_int(f, 'min')} / maxReplicas {_int(f, 'max')}"
    coalesced = _int(f, "coalesced")
    if coalesced:
        why += f"; {coalesced} change(s) in between not recorded"
    return f"{head}: {why}"


def _owner_deleted(f: Facts) -> str:
    return (
        f"{_str(f, 'owner_kind')} {_str(f, 'owner')} was deleted, and with it what it owned: "
        f"{_str(f, 'kind')} {_str(f, 'name')}"
    )


_RENDERERS: Mapping[ReasonCode, Callable[[Facts], str]] = {
    ReasonCode.BACKOFF: _backoff,
    ReasonCode.QUEUE_NOT_FOUND: _queue_not_found,
    ReasonCode.FLAVOR_NOT_FOUND: _flavor_not_found,
    ReasonCode.QUOTA_EXCEEDED: _quota_exceeded,
    ReasonCode.EXCEEDS_QUEUE_LIMIT: _exceeds_queue_limit,
    ReasonCode.UNSCHEDULABLE: _unschedulable,
    ReasonCode.NEVER_FITS: _never_fits,
    ReasonCode.PREEMPTING: _preempting,
    ReasonCode.WAITING_FOR_CAPACITY: _waiting_for_capacity,
    ReasonCode.CREATED: _created,
    ReasonCode.ADMITTED: _admitted,
    ReasonCode.STARTED: _started,
    ReasonCode.SUCCEEDED: _succeeded,
    ReasonCode.RESTARTING: _restart,
    ReasonCode.FAILED: _restart,
    ReasonCode.OOM_KILLED: _restart,
    ReasonCode.HANG: _restart,
    ReasonCode.DEADLINE_EXCEEDED: _deadline_exceeded,
    ReasonCode.POD_WAITING: _pod_waiting,
    ReasonCode.STARTUP_TIMEOUT: _restart,
    ReasonCode.PREEMPTED: _preempted,
    ReasonCode.REQUEUED: _requeued,
    ReasonCode.CANCELLED: _cancelled,
    ReasonCode.QUARANTINED: _quarantined,
    ReasonCode.RELEASED: _released,
    ReasonCode.SCALED_UP: _scaled,
    ReasonCode.SCALED_DOWN: _scaled,
    ReasonCode.SCALED_TO_ZERO: _scaled,
    ReasonCode.RECONCILE_ERROR: _reconcile_error,
    ReasonCode.OWNER_DELETED: _owner_deleted,
}
