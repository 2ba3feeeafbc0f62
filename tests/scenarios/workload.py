"""What a scenario's pod does on the local backend (runner.py, substrate ``local``): a real
process that acts out the scenario's ``workloads`` entry for its job.

Run as ``python workload.py SCENARIO_JSON`` (a Job's or a Service replica's command), or
called as ``act(SCENARIO_JSON)`` from a pipeline step's task. The file holds ``workloads``
(job name, or a prefix ending in ``*``, to ``runtime_s``, ``fail_attempts`` and ``oom``).
The job and attempt come from ``PHALANX_JOB`` and ``PHALANX_ATTEMPT``, as the control plane
sets them.

- it works (sleeps) for ``runtime_s`` (no entry: until stopped), then a failing attempt
  exits 1, or with ``oom`` touches memory until the pod's supervisor kills it for going
  over its memory limit (exit 3 if it ever holds 8 GiB, which no scenario's limit allows:
  the scenario then fails, as it should); any other attempt succeeds;
- once ``answers.json`` beside the scenario file names the job (a ``serve`` step writes
  it: ``ready_path``, and ``statuses`` by replica), it listens on ``$PORT`` instead: 200
  on ``ready_path``, its status on any other path.
"""

from __future__ import annotations

import json
import os
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

#: The most memory an ``oom`` workload touches before it gives up (no limit was enforced).
OOM_CEILING = 8 << 30
_CHUNK = 16 << 20  # 1.6 GB/s at most: the supervisor looks every 0.2 s


def behaviour(spec: dict[str, object], job: str) -> dict[str, object]:
    """The ``workloads`` entry for ``job``: its own, else the first prefix that matches."""
    workloads: dict[str, dict[str, object]] = spec.get("workloads") or {}  # type: ignore[assignment]
    if job in workloads:
        return workloads[job]
    for key, entry in workloads.items():
        if key.endswith("*") and job.startswith(key[:-1]):
            return entry
    return {}


def _use_memory() -> None:
    held: list[bytes] = []
    while len(held) * _CHUNK < OOM_CEILING:
        held.append(b"x" * _CHUNK)  # written, so resident
        time.sleep(0.01)
    sys.exit(3)


def _answer(scenario: Path, job: str) -> tuple[int, str] | None:
    """The status ``answers.json`` gives ``job``'s server and the readiness path, once it
    names the job."""
    try:
        answers = json.loads((scenario.parent / "answers.json").read_text())
    except (OSError, ValueError):
        return None
    status = answers["statuses"].get(job)
    return None if status is None else (int(status), str(answers["ready_path"]))


def replica_server(status: int, ready_path: str, port: int) -> ThreadingHTTPServer:
    """A replica's server on 127.0.0.1:``port`` (not yet serving): 200 on ``ready_path``,
    ``status`` on any other path. The sim's ``serve`` steps start one in the test process."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            code = 200 if self.path == ready_path else status
            body = b'{"status": %d}' % code
            self.send_response(code)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:  # quiet
            pass

    return ThreadingHTTPServer(("127.0.0.1", port), Handler)


def act(scenario_file: str) -> None:
    """Do what the scenario says this pod's job does; returns only on success."""
    scenario = Path(scenario_file)
    spec = json.loads(scenario.read_text())
    job = os.environ["PHALANX_JOB"]
    attempt = int(os.environ.get("PHALANX_ATTEMPT", "1"))
    w = behaviour(spec, job)
    fails = attempt in (w.get("fail_attempts") or ())  # type: ignore[operator]
    end = time.monotonic() + float(w.get("runtime_s", 1e7))  # type: ignore[arg-type]
    while (left := end - time.monotonic()) > 0:
        answer = _answer(scenario, job)
        if answer is not None:
            replica_server(*answer, int(os.environ["PORT"])).serve_forever()
        time.sleep(min(left, 0.1))
    if fails and w.get("oom"):
        _use_memory()
    if fails:
        print(f"{job}: attempt {attempt} fails, as the scenario says", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    act(sys.argv[1])
