"""``phalanx demo``: the core promise on this machine, narrated.

1. start a control plane (local backend: virtual GPU nodes, or this machine's real GPUs when
   NVML finds them) in a fresh data directory;
2. create a queue with a GPU/CPU quota;
3. submit a high-priority job that holds GPUs for a few seconds;
4. submit a 2-worker gang that cannot fit while it runs: it waits, whole, with a reason;
5. the gang is admitted when capacity frees up, its workers rendezvous through MASTER_ADDR /
   MASTER_PORT and all-reduce a vector; ``describe`` shows placement, events and timings.
"""

from __future__ import annotations

import os
import shlex
import socket
import sys
import tempfile
import time
from pathlib import Path

import typer

from phalanx.cli.daemon import start_daemon, stop_daemon
from phalanx.cli.describe import describe_job
from phalanx.cli.tables import job_rows, node_rows, render_table
from phalanx.client import Client

API = "phalanx.dev/v1alpha1"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _gpu_count() -> int:
    from phalanx.backends.local.nodes import discover_nodes

    return sum(len(n.gpus) for n in discover_nodes())


def _pods_cannot_run_python() -> bool:
    """Whether, as root with the default pod user, pods could not start this Python."""
    from phalanx.backends.local.isolation import POD_USER_ENV, others_can_run

    if os.geteuid() != 0 or os.environ.get(POD_USER_ENV):
        return False
    return not others_can_run(sys.executable)


def _layout(real_gpus: int) -> tuple[list[str], str, str, str]:
    """Return (up options, nodes description, GPUs of the holding job, GPUs per gang worker)."""
    if real_gpus == 0:
        return (
            ["--nodes", "2x2"],
            "2 virtual nodes with 2 GPUs each (no GPU found by NVML)",
            "2",
            "2",
        )
    if real_gpus == 1:
        return [], "this machine's 1 GPU (NVML)", "1", "0.5"
    return (
        [],
        f"this machine's {real_gpus} GPUs (NVML)",
        str(real_gpus - real_gpus // 2),
        str(real_gpus // 2),
    )


def _manifests(
    hold_gpus: str, worker_gpus: str
) -> tuple[list[dict[str, object]], dict[str, object], dict[str, object]]:
    queue: list[dict[str, object]] = [
        {
            "apiVersion": API,
            "kind": "ResourceFlavor",
            "metadata": {"name": "default"},
            "spec": {"nodeLabels": {}},
        },
        {
            "apiVersion": API,
            "kind": "Queue",
            "metadata": {"name": "research"},
            "spec": {
                "flavors": [
                    {
                        "name": "default",
                        "resources": {"cpu": 8, "memory": "16Gi", "nvidia.com/gpu": 8},
                    }
                ]
            },
        },
    ]
    hold: dict[str, object] = {
        "apiVersion": API,
        "kind": "Job",
        "metadata": {"name": "urgent-eval"},
        "spec": {
            "queue": "research",
            "priority": 100,
            "podSets": [
                {
                    "name": "eval",
                    "replicas": 1,
                    "command": [
                        sys.executable,
                        "-c",
                        "import time; print('evaluating a checkpoint...', flush=True); time.sleep(4); print('done')",
                    ],
                    "resources": {"cpu": "500m", "memory": "256Mi", "nvidia.com/gpu": hold_gpus},
                }
            ],
        },
    }
    gang: dict[str, object] = {
        "apiVersion": API,
        "kind": "Job",
        "metadata": {"name": "allreduce"},
        "spec": {
            "queue": "research",
            "priority": 0,
            "restartPolicy": {"policy": "OnFailure", "maxRestarts": 2},
            "podSets": [
                {
                    "name": "worker",
                    "replicas": 2,
                    "command": [
                        sys.executable,
                        "-m",
                        "phalanx.examples.allreduce",
                        "--size",
                        "4096",
                    ],
                    "resources": {"cpu": "500m", "memory": "256Mi", "nvidia.com/gpu": worker_gpus},
                }
            ],
        },
    }
    return queue, hold, gang


def _say(step: str, text: str) -> None:
    typer.secho(f"\n{step} {text}", bold=True)


def _show(command: str, output: str) -> None:
    typer.secho(f"$ {command}", fg=typer.colors.CYAN)
    typer.echo(output.rstrip())


def run_demo(
    server: str | None = None, data_dir: Path | None = None, args: list[str] | None = None
) -> None:
    """Run the demo; ``--keep`` in ``args`` leaves the server running afterwards."""
    keep = "--keep" in (args or [])
    if server:
        typer.echo("note: the demo starts its own server; --server is ignored", err=True)
    work_dir = data_dir or Path(tempfile.mkdtemp(prefix="phalanx-demo-"))
    options, described, hold_gpus, worker_gpus = _layout(_gpu_count())
    if _pods_cannot_run_python():
        # As root, pods run as an unprivileged user, which cannot run this Python (under
        # /root, say); the demo's pods are Python. Isolation is the server's default still.
        options += ["--pod-user", "none"]
        typer.echo(
            f"note: running as root, and the pod user cannot run {sys.executable}; the "
            "demo's pods run as root (--pod-user none). See the README's isolation section.",
            err=True,
        )
    _say("[1/5]", f"Starting a control plane on {described}, data in {work_dir}")
    started = start_daemon(work_dir, [*options, "--port", str(_free_port())])
    typer.echo(f"phalanx server {started.url} (pid {started.pid}, log {started.log_path})")
    env = f"PHALANX_DATA_DIR={shlex.quote(str(work_dir))}"
    try:
        with Client(server=started.url, data_dir=work_dir) as client:
            queue, hold, gang = _manifests(hold_gpus, worker_gpus)
            _show("phalanx get nodes", render_table(*node_rows(client.nodes(), wide=False)))
            _say("[2/5]", "A queue with a quota of 8 GPUs and 8 CPUs")
            for outcome in client.apply(queue):
                typer.echo(
                    f"{outcome['kind'].lower()}.phalanx.dev/{outcome['name']} {outcome['action']}"
                )
            _say("[3/5]", f"A high-priority job holds {hold_gpus} GPU(s) for a few seconds")
            client.apply([hold])
            client.wait_for("urgent-eval", "Running", timeout_s=30)
            _say(
                "[4/5]",
                f"A 2-worker gang ({worker_gpus} GPU(s) per worker) is submitted: all or nothing",
            )
            client.apply([gang])
            deadline = time.monotonic() + 10
            info = client.job("allreduce")
            while (
                not info["message"] and info["phase"] == "Pending" and time.monotonic() < deadline
            ):
                time.sleep(0.1)
                info = client.job("allreduce")
            _show(
                "phalanx get jobs", render_table(*job_rows(client.jobs(), time.time(), wide=False))
            )
            if info["phase"] == "Pending":
                typer.secho(f"why is allreduce pending? {info['message']}", fg=typer.colors.YELLOW)
            _say("[5/5]", "When the high-priority job ends, the gang is admitted whole and runs")
            final = client.wait_for("allreduce", ("Succeeded", "Failed"), timeout_s=120)
            for pod in ("worker-0", "worker-1"):
                _show(
                    f"phalanx logs allreduce --pod {pod}", client.logs("allreduce", pod=pod)["data"]
                )
            _show(
                "phalanx describe job allreduce", describe_job(client.job("allreduce"), time.time())
            )
            if final["phase"] != "Succeeded":
                raise typer.Exit(1)
        typer.secho(
            "\nThe gang waited whole, was placed whole, rendezvoused and succeeded.",
            fg=typer.colors.GREEN,
            bold=True,
        )
    finally:
        if keep:
            typer.echo(
                f"\nThe server keeps running. Try: {env} phalanx get jobs; stop it with: {env} phalanx down"
            )
        else:
            stop_daemon(work_dir)
            typer.echo(f"\nServer stopped. Its data stays in {work_dir}.")
