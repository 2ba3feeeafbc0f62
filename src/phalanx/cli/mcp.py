"""``phalanx mcp``: the MCP server (phalanx.ops.mcp_server) over stdio or streamable HTTP on
loopback, its tools answered by a running server through ``phalanx.client``.

stdio is the protocol's channel: nothing else may be printed to stdout.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import cast

from phalanx.client import Client
from phalanx.ops.masking import secret_values
from phalanx.ops.mcp_server import build_server

#: Hosts streamable HTTP may listen on: loopback only (the server has no auth of its own).
LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})
#: Fields of a job in ``list_jobs`` (the rest: ``describe_job``).
_JOB_FIELDS = (
    "name",
    "queue",
    "priority",
    "phase",
    "reason_code",
    "message",
    "flavor",
    "restarts",
    "pod_count",
    "created_at_iso",
)


def _json(value: object) -> dict[str, object]:
    return cast("dict[str, object]", value)


def _list(value: object) -> list[dict[str, object]]:
    """A list answer, or the ``items`` of a paginated one."""
    if isinstance(value, Mapping):
        value = value.get("items", [])
    return [_json(v) for v in value] if isinstance(value, list) else []


class ClientTools:
    """The MCP tools' reads through the API client (see phalanx.ops.mcp_server.Tools)."""

    def __init__(self, client: Client) -> None:
        self.client = client

    def jobs(self, queue: str, phase: str) -> list[dict[str, object]]:
        jobs = self.client.jobs(queue or None)
        return [
            {k: cast("Mapping[str, object]", j).get(k) for k in _JOB_FIELDS}
            for j in jobs
            if not phase or j["phase"].lower() == phase.lower()
        ]

    def job(self, name: str) -> dict[str, object]:
        return _json(self.client.job(name))

    def queues(self) -> list[dict[str, object]]:
        return [_json(q) for q in self.client.queues()]

    def queue(self, name: str) -> dict[str, object]:
        return _json(self.client.queue(name))

    def nodes(self) -> list[dict[str, object]]:
        return [_json(n) for n in self.client.nodes()]

    def node(self, name: str) -> dict[str, object]:
        return _json(self.client.node(name))

    def doctor(self, kind: str, name: str) -> dict[str, object]:
        return _json(self.client.doctor(kind, name))

    def estimates(self) -> list[dict[str, object]]:
        return [_json(e) for e in self.client.estimates()]

    def what_if(self, queue_gpus: dict[str, float], drain: list[str]) -> list[dict[str, object]]:
        return [_json(e) for e in self.client.estimates(queue_gpus, drain)]

    def log_bytes(self, job: str, pod: str, max_bytes: int) -> tuple[str, list[str]]:
        """The last ``max_bytes`` of a pod's output read so far, and the job's secret env
        values (to mask)."""
        info = self.client.job(job)
        env: dict[str, str] = {}
        spec = info["manifest"].get("spec")
        pod_sets = spec.get("podSets") if isinstance(spec, Mapping) else None
        for ps in pod_sets if isinstance(pod_sets, list) else []:
            values = ps.get("env") if isinstance(ps, Mapping) else None
            if isinstance(values, Mapping):
                env.update({str(k): str(v) for k, v in values.items()})
        text, offset = "", 0
        while True:
            chunk = self.client.logs(job, pod or None, offset=offset)
            text = (text + chunk["data"])[-max_bytes:]
            if not chunk["data"] or chunk["next_offset"] == offset:
                break
            offset = chunk["next_offset"]
        return text, secret_values(env)

    def cancel(self, name: str) -> dict[str, object]:
        return _json(self.client.cancel(name))

    def services(self) -> list[dict[str, object]]:
        return _list(self.client._get("/services"))

    def service(self, name: str) -> dict[str, object]:
        return _json(self.client._get(f"/services/{name}"))

    def runs(self) -> list[dict[str, object]]:
        return _list(self.client._get("/pipelineruns"))

    def run(self, name: str) -> dict[str, object]:
        return _json(self.client._get(f"/pipelineruns/{name}"))


def run_mcp(client: Client, transport: str, host: str, port: int, *, allow_write: bool) -> None:
    """Serve MCP until the client goes away (stdio) or until interrupted (http). Raises
    ValueError for a transport other than stdio/http or a host that is not loopback."""
    if transport not in ("stdio", "http"):
        raise ValueError(f"--transport must be stdio or http, not {transport!r}")
    if transport == "http" and host not in LOOPBACK:
        raise ValueError(
            f"--host {host}: the MCP server listens on loopback only (127.0.0.1 or ::1); "
            "put a proxy with authentication in front of it to reach it from elsewhere"
        )
    server = build_server(ClientTools(client), allow_write=allow_write, host=host, port=port)
    server.run("stdio" if transport == "stdio" else "streamable-http")
