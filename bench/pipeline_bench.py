"""Benchmark: pipelines side by side with Prefect 3 (ARCHITECTURE §12: in-process at least as
fast as Prefect; ≤ 150 ms per task as jobs; a fully cached rerun of a 40-task chain < 0.5 s).

The same two DAGs of a trivial task (``inc(x) = x + 1``): a chain of 40 tasks, each taking
the previous one's output, and a fan-out of 200 independent tasks. Measured:

  a. phalanx in-process (``flow.run(local=True)``), on a fresh artifact store (no cache hit);
  b. phalanx in-process, a rerun of the chain that hits the cache on every step;
  c. phalanx job mode: each step a Job of the local backend (a process of its own, its start
     included), on a real server (``phalanx up``'s defaults: 0.2 s tick; and a 0.05 s tick),
     from applying the PipelineRun to the run's Succeeded. The bench follows the steps' jobs
     on the watch stream (one event per job write) and reads the run only once they have all
     ended: polling the whole run every 20 ms instead cost the server a read per poll, taken
     from the control loop's share of the interpreter;
  d. Prefect 3 (its own default, ephemeral API; the thread-pool task runner), in a separate
     virtual environment that this script creates on first use under
     ``~/.cache/phalanx/bench-prefect`` (never the project's venv; not run in CI).

Each figure is the median of ``--repeat`` runs after one warm-up (job mode: one run each);
overhead per task = wall time / tasks (the task itself costs microseconds). The load average
is printed with the figures.

    python bench/pipeline_bench.py [--repeat 3] [--skip-prefect] [--skip-jobs] [--ticks 0.2,0.05]
        [--dags chain,fanout]
"""

from __future__ import annotations

import argparse
import importlib
import itertools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

CHAIN, FANOUT = 40, 200
PREFECT_VENV = Path.home() / ".cache" / "phalanx" / "bench-prefect"

FLOWS = """
from phalanx.pipelines import pipeline, task

@task
def inc(x: int) -> int:
    return x + 1

@pipeline
def chain(n: int = 40) -> object:
    x = 0
    for _ in range(n):
        x = inc(x)
    return x

@pipeline
def fanout(n: int = 200) -> object:
    return inc.map(list(range(n)))
"""

PREFECT_FLOWS = """
import json, statistics, sys, time
from prefect import flow, task

@task
def inc(x: int) -> int:
    return x + 1

@flow
def chain(n: int) -> int:
    x = 0
    for _ in range(n):
        x = inc(x)
    return x

@flow
def fanout(n: int) -> list[int]:
    return [f.result() for f in inc.map(list(range(n)))]

repeat, chain_n, fanout_n = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
chain(2)  # warm-up: starts the ephemeral API
out = {}
for name, fn, n in (("chain", chain, chain_n), ("fanout", fanout, fanout_n)):
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn(n)
        times.append(time.perf_counter() - started)
    out[name] = statistics.median(times)
print("RESULT " + json.dumps(out))
"""


def _median(fn: Any, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def in_process(work: Path, repeat: int) -> dict[str, float]:
    sys.path.insert(0, str(work))
    (work / "benchflows.py").write_text(FLOWS)
    flows = importlib.import_module("benchflows")
    counter = iter(range(10**6))

    def fresh() -> str:
        return str(work / f"store-{next(counter)}")

    flows.chain.run(artifacts=fresh(), n=3)  # warm-up
    out = {
        "chain": _median(lambda: flows.chain.run(artifacts=fresh(), n=CHAIN), repeat),
        "fanout": _median(lambda: flows.fanout.run(artifacts=fresh(), n=FANOUT), repeat),
    }
    cached = fresh()
    first = flows.chain.run(artifacts=cached, n=CHAIN)
    assert not first.cached
    out["chain_cached"] = _median(lambda: flows.chain.run(artifacts=cached, n=CHAIN), repeat)
    rerun = flows.chain.run(artifacts=cached, n=CHAIN)
    assert len(rerun.cached) == CHAIN, rerun.steps
    return out


def wait_for_steps_then_run(
    client: Any, run: str, jobs: set[str], since: int, timeout_s: float
) -> dict[str, Any]:
    """Follow ``jobs`` (the run's step jobs) on the watch stream from revision ``since``
    until every one has ended, then read the run until it is Succeeded or Failed."""
    deadline = time.monotonic() + timeout_s
    ended: set[str] = set()
    while ended != jobs:
        for event in client.watch(resource_version=since, kinds=["Job"], timeout_s=30):
            since = event["resourceVersion"]
            phase = event.get("object", {}).get("phase")
            if event["name"] in jobs and phase in ("Succeeded", "Failed", "Cancelled"):
                ended.add(event["name"])
                if ended == jobs:
                    break
        if time.monotonic() > deadline:
            raise TimeoutError(f"run {run}: {len(jobs) - len(ended)} step jobs still going")
    while True:
        status = client._get(f"/pipelineruns/{run}")["status"]
        if status.get("phase") in ("Succeeded", "Failed"):
            return dict(status)
        if time.monotonic() > deadline:
            raise TimeoutError(f"run {run} still {status.get('phase')}")
        time.sleep(0.005)


def chain_breakdown(client: Any, run: str) -> dict[str, float]:
    """Where a chain step's time goes, medians over the steps, from the jobs' own times:
    ``gap_ms``, the previous step's pod ended → this step's job admitted (the control loop:
    the end noticed and recorded, the run reconciled, the job stored, scheduled); and
    ``pod_ms``, admitted → the pod ended (the supervisor's and the step's processes)."""
    jobs = {j["name"]: j for j in client.jobs(selector=f"phalanx.dev/pipelinerun={run}")}
    from phalanx.pipelines.reconciler import job_name

    steps = [jobs[job_name(run, i)] for i in range(CHAIN)]
    gaps = [b["admitted_at"] - a["finished_at"] for a, b in itertools.pairwise(steps)]
    pods = [s["finished_at"] - s["admitted_at"] for s in steps]
    return {
        "chain_gap_ms": statistics.median(gaps) * 1000,
        "chain_pod_ms": statistics.median(pods) * 1000,
    }


def job_mode(work: Path, tick_s: float, only: tuple[str, ...]) -> dict[str, float]:
    from phalanx.api.server import ApiServer, ServerSettings
    from phalanx.cli.pipeline import run_manifest
    from phalanx.client import Client
    from phalanx.pipelines.reconciler import job_name

    flows = importlib.import_module("benchflows")
    data = work / f"server-{tick_s}"
    os.environ["XDG_RUNTIME_DIR"] = str(work / "run")
    for key in ("PHALANX_SERVER", "PHALANX_TOKEN", "PHALANX_DATA_DIR"):
        os.environ.pop(key, None)
    api = ApiServer(
        ServerSettings(
            data_dir=data,
            nodes="1x0",
            port=0,
            log_level="warning",
            tick_s=tick_s,
            router_port=None,
            pod_user="none",
        )
    )
    thread = threading.Thread(target=api.run, daemon=True)
    thread.start()
    while not (data / "server.json").exists():
        time.sleep(0.01)
    cwd = Path.cwd()
    os.chdir(work)  # the steps import benchflows from here
    out: dict[str, float] = {}
    try:
        with Client(data_dir=data, timeout_s=60) as client:
            client.apply(
                [
                    {
                        "apiVersion": "phalanx.dev/v1alpha1",
                        "kind": "ResourceFlavor",
                        "metadata": {"name": "default"},
                        "spec": {},
                    },
                    {
                        "apiVersion": "phalanx.dev/v1alpha1",
                        "kind": "Queue",
                        "metadata": {"name": "bench"},
                        "spec": {
                            "flavors": [
                                {"name": "default", "resources": {"cpu": 1000, "memory": "1Ti"}}
                            ]
                        },
                    },
                ]
            )
            dags = (("chain", flows.chain, CHAIN), ("fanout", flows.fanout, FANOUT))
            for name, pipe, n in (d for d in dags if d[0] in only):
                run_name = f"{name}-{int(tick_s * 1000)}"
                since = client.job_page(limit=1).resource_version
                started = time.perf_counter()
                built = pipe.build(n=n)
                manifest = run_manifest(
                    built,
                    name=run_name,
                    queue="bench",
                    artifacts=str(work / f"jobs-store-{tick_s}-{name}"),
                    no_cache=False,
                )
                client.apply([manifest])
                jobs = {job_name(run_name, i) for i in range(n)}
                status = wait_for_steps_then_run(client, run_name, jobs, since, 1800)
                out[name] = time.perf_counter() - started
                assert status["phase"] == "Succeeded", status
                if name == "chain":
                    out.update(chain_breakdown(client, run_name))
    finally:
        os.chdir(cwd)
        api.request_stop()
        thread.join(timeout=30)
    return out


def prefect(repeat: int) -> dict[str, float]:
    python = PREFECT_VENV / "bin" / "python"
    if not python.exists():
        print(f"creating {PREFECT_VENV} with Prefect 3 (first use only)…", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "venv", str(PREFECT_VENV)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", "prefect>=3,<4"], check=True)
    with tempfile.TemporaryDirectory() as home:
        script = Path(home) / "prefect_flows.py"
        script.write_text(textwrap.dedent(PREFECT_FLOWS))
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")},
            "PREFECT_HOME": home,
            "PREFECT_LOGGING_LEVEL": "WARNING",
            # Its ephemeral API server starts in a subprocess; give a loaded machine time.
            "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "180",
        }
        done = subprocess.run(
            [str(python), str(script), str(repeat), str(CHAIN), str(FANOUT)],
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
    line = next((x for x in done.stdout.splitlines() if x.startswith("RESULT ")), None)
    if line is None:
        raise RuntimeError(f"the Prefect run failed:\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}")
    result: dict[str, float] = json.loads(line[len("RESULT ") :])
    version = subprocess.run(
        [str(python), "-c", "import prefect; print(prefect.__version__)"],
        capture_output=True,
        text=True,
        check=False,
    )
    print(f"Prefect {version.stdout.strip()}", file=sys.stderr)
    return result


def _row(label: str, seconds: float | None, tasks: int) -> str:
    if seconds is None:
        return f"{label:<44} {'-':>9} {'-':>12}"
    return f"{label:<44} {seconds:>8.3f}s {seconds / tasks * 1000:>10.2f}ms"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--skip-prefect", action="store_true")
    parser.add_argument("--skip-jobs", action="store_true")
    parser.add_argument("--ticks", default="0.2,0.05", help="job-mode loop ticks (seconds)")
    parser.add_argument("--dags", default="chain,fanout", help="job-mode DAGs to run")
    args = parser.parse_args()
    dags = tuple(args.dags.split(","))
    load_before = os.getloadavg()
    results: dict[str, Any] = {"load_before": load_before}
    with tempfile.TemporaryDirectory(prefix="phalanx-pipeline-bench-") as tmp:
        work = Path(tmp)
        results["in_process"] = in_process(work, args.repeat)
        if not args.skip_jobs:
            for tick in (float(t) for t in args.ticks.split(",")):
                results[f"jobs_tick_{tick}"] = job_mode(work, tick, dags)
    print(json.dumps(results, indent=2), flush=True)  # kept if the Prefect run fails
    if not args.skip_prefect:
        try:
            results["prefect"] = prefect(args.repeat)
        except RuntimeError as exc:  # e.g. its ephemeral API refusing requests under load
            print(f"Prefect: {exc}"[:3000], file=sys.stderr)
    results["load_after"] = os.getloadavg()
    print(json.dumps(results, indent=2))
    print(f"\nload average before {load_before[0]:.2f}, after {results['load_after'][0]:.2f}")
    print(f"{'':<44} {'wall':>9} {'per task':>12}")
    for dag, tasks in (("chain", CHAIN), ("fanout", FANOUT)):
        print(f"-- {dag} of {tasks} trivial tasks")
        print(_row("phalanx in-process", results["in_process"][dag], tasks))
        if dag == "chain":
            print(
                _row(
                    "phalanx in-process, fully cached rerun",
                    results["in_process"]["chain_cached"],
                    tasks,
                )
            )
        for key, value in results.items():
            if key.startswith("jobs_tick_"):
                if dag not in value:
                    continue
                print(_row(f"phalanx job mode (tick {key[10:]} s)", value[dag], tasks))
                if dag == "chain":
                    print(
                        f"{'  median step: pod ended → next admitted':<44} "
                        f"{value['chain_gap_ms']:>8.1f}ms; admitted → pod ended "
                        f"{value['chain_pod_ms']:.1f}ms"
                    )
        if "prefect" in results:
            print(_row("Prefect 3", results["prefect"][dag], tasks))
            ratio = results["prefect"][dag] / results["in_process"][dag]
            print(f"{'  Prefect / phalanx in-process':<44} {ratio:>8.1f}x")


if __name__ == "__main__":
    main()
