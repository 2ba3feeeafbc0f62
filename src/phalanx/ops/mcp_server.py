"""The MCP server: phalanx's read side as tools for agents (the official ``mcp`` SDK).

Tools list and describe jobs, queues, nodes, Services and pipeline runs, say why a job is pending (with its start
estimate and the doctor's findings), run the doctor, list start estimates, a job's events, and
a bounded tail of a pod's log with secrets masked, and what-if estimates (other queue quotas,
drained nodes). Every tool is read-only
(``readOnlyHint``); with ``allow_write`` one mutating tool, ``cancel_job``
(``destructiveHint``), is added. Users and roles do not exist yet, so the caller's rights are
the token's: all or nothing.

The tools call a ``Tools`` implementation: ``phalanx mcp`` (cli/mcp.py) passes one that talks
to a running server over its API; ``phalanx ask`` (ops/ask.py) offers the same tools to a
model.
"""

from __future__ import annotations

from typing import Protocol

from mcp.server.fastmcp import FastMCP
from mcp.types import ToolAnnotations

from phalanx.ops.masking import mask_secrets

#: The most bytes of a log a tail reads back, and the most lines it returns.
MAX_TAIL_BYTES = 64 * 1024
MAX_TAIL_LINES = 500

_READ = ToolAnnotations(readOnlyHint=True, destructiveHint=False, openWorldHint=False)
_WRITE = ToolAnnotations(
    readOnlyHint=False, destructiveHint=True, idempotentHint=True, openWorldHint=False
)

INSTRUCTIONS = (
    "phalanx queues, gang-schedules and places GPU jobs. To explain why a job waits or fails, "
    "call why_pending or doctor first: findings name the root cause (code, object), the "
    "evidence and the fix. Objects are named kind/name (job/x, queue/x, node/x, flavor/x, "
    "service/x, pipelinerun/x)."
)


class Tools(Protocol):
    """What the MCP tools read (and, with write access, do): JSON-able answers."""

    def jobs(self, queue: str, phase: str) -> list[dict[str, object]]: ...
    def job(self, name: str) -> dict[str, object]: ...
    def queues(self) -> list[dict[str, object]]: ...
    def queue(self, name: str) -> dict[str, object]: ...
    def nodes(self) -> list[dict[str, object]]: ...
    def node(self, name: str) -> dict[str, object]: ...
    def doctor(self, kind: str, name: str) -> dict[str, object]: ...
    def estimates(self) -> list[dict[str, object]]: ...
    def what_if(
        self, queue_gpus: dict[str, float], drain: list[str]
    ) -> list[dict[str, object]]: ...
    def log_bytes(self, job: str, pod: str, max_bytes: int) -> tuple[str, list[str]]: ...
    def services(self) -> list[dict[str, object]]: ...
    def service(self, name: str) -> dict[str, object]: ...
    def runs(self) -> list[dict[str, object]]: ...
    def run(self, name: str) -> dict[str, object]: ...
    def cancel(self, name: str) -> dict[str, object]: ...


def tail_lines(text: str, lines: int) -> str:
    """The last ``lines`` lines of ``text`` (at most MAX_TAIL_LINES)."""
    keep = max(1, min(lines, MAX_TAIL_LINES))
    return "\n".join(text.splitlines()[-keep:])


def build_server(
    tools: Tools,
    *,
    allow_write: bool = False,
    host: str = "127.0.0.1",
    port: int = 8765,
) -> FastMCP:
    """An MCP server whose tools read through ``tools``; ``host``/``port`` serve streamable
    HTTP (``run("streamable-http")``, at ``/mcp``), stdio needs neither."""
    server = FastMCP(
        "phalanx", instructions=INSTRUCTIONS, host=host, port=port, log_level="WARNING"
    )

    @server.tool(annotations=_READ)
    def list_jobs(queue: str = "", phase: str = "") -> list[dict[str, object]]:
        """Jobs (oldest first) with phase, queue, priority and why they are where they are;
        optionally of one queue and one phase (Pending, Running, Failed, ...)."""
        return tools.jobs(queue, phase)

    @server.tool(annotations=_READ)
    def describe_job(name: str) -> dict[str, object]:
        """One job in full: spec, status and reason (code, facts, message), pods of every
        attempt with nodes and GPUs, progress and checkpoints, events."""
        return tools.job(name)

    @server.tool(annotations=_READ)
    def list_queues() -> list[dict[str, object]]:
        """Queues with their quota per flavor, what they use, and their job counts."""
        return tools.queues()

    @server.tool(annotations=_READ)
    def describe_queue(name: str) -> dict[str, object]:
        """One queue: cohort, quotas, usage, pending and admitted jobs."""
        return tools.queue(name)

    @server.tool(annotations=_READ)
    def list_nodes() -> list[dict[str, object]]:
        """Nodes with GPUs, what is allocated on each, readiness and quarantine."""
        return tools.nodes()

    @server.tool(annotations=_READ)
    def describe_node(name: str) -> dict[str, object]:
        """One node: devices, pods on it, taints, quarantine and the failures against it."""
        return tools.node(name)

    @server.tool(annotations=_READ)
    def list_services() -> list[dict[str, object]]:
        """Services with their replicas (phase, revision), desired count and route."""
        return tools.services()

    @server.tool(annotations=_READ)
    def describe_service(name: str) -> dict[str, object]:
        """One Service: replicas with why each waits, revisions and traffic, the
        autoscaler's last decisions."""
        return tools.service(name)

    @server.tool(annotations=_READ)
    def list_pipeline_runs() -> list[dict[str, object]]:
        """Pipeline runs with their phase and each step's state."""
        return tools.runs()

    @server.tool(annotations=_READ)
    def describe_pipeline_run(name: str) -> dict[str, object]:
        """One pipeline run: each step's state, job, attempts, cache hits and message."""
        return tools.run(name)

    @server.tool(annotations=_READ)
    def why_pending(job: str) -> dict[str, object]:
        """Why a job is not running: its phase and reason (code, facts, message), its start
        estimate, and the doctor's findings about it (root cause, evidence, fix)."""
        view = tools.job(job)
        estimate = next((e for e in tools.estimates() if e.get("job") == job), None)
        return {
            "job": job,
            "phase": view.get("phase"),
            "reason_code": view.get("reason_code"),
            "message": view.get("message"),
            "facts": view.get("reason_facts"),
            "estimate": estimate,
            "findings": tools.doctor("job", job).get("findings", []),
        }

    @server.tool(annotations=_READ)
    def doctor(kind: str = "", name: str = "") -> dict[str, object]:
        """Root causes across queues, quotas, gangs, nodes, runtimes, Services and pipeline
        runs, each with evidence and a fix: for everything, or one object (kind job, node,
        queue, service or pipelinerun, and its name)."""
        return tools.doctor(kind, name)

    @server.tool(annotations=_READ)
    def start_estimates() -> list[dict[str, object]]:
        """When each pending job should start (scheduler run forward in virtual time), what
        it waits on, and the jobs whose end lets it start."""
        return tools.estimates()

    @server.tool(annotations=_READ)
    def what_if(
        queue_gpus: dict[str, float] | None = None, drain_nodes: list[str] | None = None
    ) -> list[dict[str, object]]:
        """Start estimates now and as they would be if queues had other nominal GPU quotas
        (``{"team-a": 16}``) and the ``drain_nodes`` took no new pods: per pending job, the
        wait now and the wait then (seconds; null: not within a week). Changes nothing."""
        now = {str(e["job"]): e for e in tools.estimates()}
        then = tools.what_if(dict(queue_gpus or {}), list(drain_nodes or []))
        return [
            {
                "job": e["job"],
                "queue": e.get("queue"),
                "wait_s_now": now.get(str(e["job"]), {}).get("wait_s"),
                "wait_s_then": e.get("wait_s"),
                "waits_on_then": e.get("waits_on"),
            }
            for e in then
        ]

    @server.tool(annotations=_READ)
    def job_events(name: str) -> list[object]:
        """A job's events, oldest first: reason code, message, facts, time."""
        events = tools.job(name).get("events")
        return list(events) if isinstance(events, list) else []

    @server.tool(annotations=_READ)
    def log_tail(job: str, pod: str = "", lines: int = 100) -> str:
        """The last lines (at most 500) of a pod's output, latest attempt, with secrets
        masked; ``pod`` is <podset>-<index> (default: the first pod)."""
        text, secrets = tools.log_bytes(job, pod, MAX_TAIL_BYTES)
        return mask_secrets(tail_lines(text, lines), secrets)

    if allow_write:

        @server.tool(annotations=_WRITE)
        def cancel_job(name: str) -> dict[str, object]:
            """Cancel a job: its pods stop, it stays as Cancelled. Only with --allow-write."""
            return tools.cancel(name)

    return server
