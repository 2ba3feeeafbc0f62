"""``phalanx pipeline``: run a ``@pipeline`` function in-process or on a server (each step a
job), compile it to YAML, list and describe runs (the DAG as a tree with states, durations and
cache hits), read a step's log, resume a failed run, and walk an artifact's lineage.

Talks to the server only through ``phalanx.client``; the SDK is imported when a command needs
the user's code, not at start-up.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, cast

import typer
import yaml

from phalanx.cli.context import client_of
from phalanx.client import Client

pipeline_app = typer.Typer(
    name="pipeline",
    help="Run pipelines (@pipeline functions) and inspect their runs, artifacts and lineage.",
    no_args_is_help=True,
)

Params = Annotated[
    list[str] | None,
    typer.Option(
        "--param", "-p", help="A parameter as key=value (value read as YAML: 3, 0.1, true, [1, 2])"
    ),
]
Output = Annotated[str, typer.Option("--output", "-o", help="json or yaml instead of text")]
_DONE = ("Succeeded", "Failed")


@contextmanager
def _errors() -> Iterator[None]:
    from phalanx.cli import main as cli_main
    from phalanx.pipelines.typecheck import PipelineTypeError

    with cli_main._reported_errors():
        try:
            yield
        except (PipelineTypeError, LookupError, ValueError, ImportError) as exc:
            cli_main._fail(str(exc))


def _emit(data: object, output: str) -> None:
    if output == "json":
        typer.echo(json.dumps(data, indent=2, ensure_ascii=False))
    elif output == "yaml":
        typer.echo(yaml.safe_dump(data, sort_keys=False, allow_unicode=True).rstrip("\n"))
    else:
        raise ValueError(f"--output {output!r}: use json or yaml")


def parse_params(items: list[str] | None) -> dict[str, object]:
    """``key=value`` pairs; values read as YAML scalars or lists. Raises ValueError."""
    out: dict[str, object] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"-p {item!r}: write a parameter as key=value")
        out[key] = yaml.safe_load(value) if value else ""
    return out


def load_pipeline(target: str) -> Any:
    """The ``@pipeline`` object ``module:function`` names, importing from the current
    directory. Raises LookupError saying what was found instead."""
    from phalanx.pipelines.sdk import Pipeline

    module_name, sep, attr = target.partition(":")
    if not sep:
        raise LookupError(f"{target!r}: name the pipeline as module:function")
    if str(Path.cwd()) not in sys.path:
        sys.path.insert(0, str(Path.cwd()))
    import importlib

    obj: Any = importlib.import_module(module_name)
    for part in attr.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            raise LookupError(f"{target}: module {module_name} has no {attr}")
    if not isinstance(obj, Pipeline):
        raise LookupError(f"{target} is a {type(obj).__name__}, not a @pipeline function")
    return obj


def run_manifest(
    built: Any,
    *,
    name: str,
    queue: str,
    artifacts: str,
    no_cache: bool,
    resumed_from: str = "",
    artifacts_secret: str = "",
) -> dict[str, object]:
    """The PipelineRun manifest for a built pipeline; the code is this directory, on this
    interpreter (the local backend's pods share this machine; see docs/pipelines.md)."""
    from phalanx.kinds.pipeline import spec_manifest
    from phalanx.model.specs import API_VERSION

    spec = spec_manifest(built.spec)
    python_path = [str(Path.cwd()), *os.environ.get("PYTHONPATH", "").split(":")]
    spec["artifacts"] = artifacts
    if artifacts_secret:
        spec["artifactsSecret"] = artifacts_secret
    spec["code"] = {
        "workingDir": str(Path.cwd()),
        "pythonPath": [p for p in python_path if p],
        "python": sys.executable,
    }
    if queue:
        spec["queue"] = queue
    if no_cache:
        spec["noCache"] = True
    if resumed_from:
        spec["resumedFrom"] = resumed_from
    return {
        "apiVersion": API_VERSION,
        "kind": "PipelineRun",
        "metadata": {"name": name, "labels": {"phalanx.dev/pipeline": built.spec.name}},
        "spec": spec,
    }


def wait_for_run(
    client: Client, name: str, timeout_s: float, poll_s: float = 0.05
) -> dict[str, Any]:
    """Poll the run until it Succeeded or Failed; return it. Raises TimeoutError."""
    deadline = time.monotonic() + timeout_s
    while True:
        run = cast(dict[str, Any], client._get(f"/pipelineruns/{name}"))
        if run["status"].get("phase") in _DONE:
            return run
        if time.monotonic() > deadline:
            raise TimeoutError(
                f"pipeline run {name} still {run['status'].get('phase')} after {timeout_s:g}s"
            )
        time.sleep(poll_s)


@pipeline_app.command("run")
def run_command(
    ctx: typer.Context,
    target: Annotated[str, typer.Argument(help="the pipeline as module:function")],
    param: Params = None,
    queue: Annotated[str, typer.Option("--queue", "-q", help="queue of the steps' jobs")] = "",
    artifacts: Annotated[str, typer.Option(help="artifact store: a directory or fsspec URL")] = "",
    artifacts_secret: Annotated[
        str,
        typer.Option(
            help="Secret with the S3 credentials of an s3:// --artifacts (keys "
            "AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, optional AWS_ENDPOINT_URL, "
            "AWS_DEFAULT_REGION, AWS_SESSION_TOKEN); the steps get them as variables"
        ),
    ] = "",
    name: Annotated[str, typer.Option(help="the run's name (default: pipeline-<time>-<hex>)")] = "",
    no_cache: Annotated[
        bool, typer.Option("--no-cache", help="run every step, reuse nothing")
    ] = False,
    local: Annotated[bool, typer.Option("--local", help="run in this process, no server")] = False,
    wait: Annotated[
        bool, typer.Option("--wait/--no-wait", help="wait for the run to finish")
    ] = True,
    timeout: Annotated[float, typer.Option(help="seconds to wait")] = 600.0,
) -> None:
    """Run a pipeline: each step a job on the server (or in this process with --local)."""
    with _errors():
        from phalanx.pipelines.artifacts import ArtifactStore
        from phalanx.pipelines.local import new_run_name

        pipe = load_pipeline(target)
        params = parse_params(param)
        built = pipe.build(**params)
        if local:
            from phalanx.pipelines.local import run_local

            result = run_local(built, artifacts=artifacts or None, no_cache=no_cache, run_name=name)
            shown = {
                "metadata": {"name": result.name},
                "status": {"phase": result.phase.value, "steps": result.steps},
            }
            typer.echo(describe_tree(shown, pipe_steps(built.spec)))
            if result.phase.value != "Succeeded":
                raise typer.Exit(1)
            return
        run_name = name or new_run_name(built.spec.name)
        store_url = ArtifactStore(artifacts or None).url
        manifest = run_manifest(
            built,
            name=run_name,
            queue=queue,
            artifacts=store_url,
            no_cache=no_cache,
            artifacts_secret=artifacts_secret,
        )
        with client_of(ctx) as client:
            client.apply([manifest])
            typer.echo(f"pipelinerun/{run_name} created")
            if not wait:
                return
            run = wait_for_run(client, run_name, timeout)
        typer.echo(describe_tree(run, pipe_steps(built.spec)))
        if run["status"]["phase"] != "Succeeded":
            raise typer.Exit(1)


def pipe_steps(spec: Any) -> list[dict[str, Any]]:
    from phalanx.kinds.pipeline import step_manifest

    return [step_manifest(s) for s in spec.steps]


@pipeline_app.command("compile")
def compile_command(
    target: Annotated[str, typer.Argument(help="the pipeline as module:function")],
    param: Params = None,
    file: Annotated[
        Path | None, typer.Option("--file", "-f", help="write here, not stdout")
    ] = None,
) -> None:
    """Print the Pipeline manifest (YAML) of a @pipeline function, for git and `apply -f`."""
    with _errors():
        manifest = load_pipeline(target).compile(**parse_params(param))
        text = yaml.safe_dump(manifest, sort_keys=False, allow_unicode=True)
        if file is None:
            typer.echo(text.rstrip("\n"))
        else:
            file.write_text(text)
            typer.echo(f"wrote {file}")


@pipeline_app.command("get")
def get_command(
    ctx: typer.Context,
    kind: Annotated[str, typer.Argument(help="pipelines or pipelineruns")] = "pipelineruns",
    name: Annotated[str | None, typer.Argument()] = None,
    output: Output = "",
) -> None:
    """List pipelines or pipeline runs (or show one)."""
    with _errors():
        plural = {
            "pipeline": "pipelines",
            "pl": "pipelines",
            "pipelinerun": "pipelineruns",
            "plr": "pipelineruns",
            "runs": "pipelineruns",
        }.get(kind, kind)
        if plural not in ("pipelines", "pipelineruns"):
            raise ValueError(f"{kind!r}: use pipelines or pipelineruns")
        with client_of(ctx) as client:
            print_objects(client, plural, name, output or None)


def pipeline_table(items: list[dict[str, Any]]) -> str:
    rows = [["NAME", "STEPS", "ENTRYPOINT", "SCHEDULE"]]
    for item in items:
        spec = item["spec"]
        schedule = spec.get("schedule") or {}
        rows.append(
            [
                item["metadata"]["name"],
                str(len(spec.get("steps", []))),
                spec.get("entrypoint", "-"),
                schedule.get("cron", "-"),
            ]
        )
    return _table(rows)


def run_table(items: list[dict[str, Any]], now: float | None = None) -> str:
    rows = [["NAME", "PHASE", "STEPS", "CACHED", "FAILED", "DURATION"]]
    for item in items:
        status = item.get("status") or {}
        steps = status.get("steps") or {}
        states = [s.get("state") for s in steps.values()]
        done = sum(1 for s in states if s in ("Succeeded", "Cached", "Skipped"))
        rows.append(
            [
                item["metadata"]["name"],
                status.get("phase", "Pending"),
                f"{done}/{len(states)}",
                str(states.count("Cached")),
                str(sum(1 for s in states if s in ("Failed", "UpstreamFailed"))),
                _duration(status, now),
            ]
        )
    return _table(rows)


def _table(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "   ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows
    )


def _duration(status: Mapping[str, Any], now: float | None = None) -> str:
    started = status.get("startedAt")
    if not started:
        return "-"
    end = status.get("finishedAt") or (now if now is not None else time.time())
    seconds = max(0.0, float(end) - float(started))
    return f"{seconds * 1000:.0f}ms" if seconds < 1 else f"{seconds:.1f}s"


def describe_tree(run: Mapping[str, Any], steps: list[dict[str, Any]] | None = None) -> str:
    """The run as a tree: each step under the step it depends on (its first upstream), with
    state, attempts, duration and where a cached output came from."""
    status = run.get("status") or {}
    states = status.get("steps") or {}
    spec_steps = steps if steps is not None else (run.get("spec") or {}).get("steps") or []
    children: dict[str, list[dict[str, Any]]] = {}
    roots: list[dict[str, Any]] = []
    for step in spec_steps:
        ups = [i["step"] for i in (step.get("inputs") or {}).values() if "step" in i]
        if step.get("when"):
            ups.append(step["when"]["step"])
        if ups:
            children.setdefault(ups[0], []).append(step)
        else:
            roots.append(step)
    lines = [
        f"PipelineRun {run.get('metadata', {}).get('name', '')}: {status.get('phase', 'Pending')}"
        f" ({_duration(status)})"
    ]
    if status.get("message"):
        lines.append(f"  {status['message']}")

    def walk(step: Mapping[str, Any], prefix: str, is_last: bool) -> None:
        s = states.get(step["name"]) or {}
        state = s.get("state", "Pending")
        ups = [i["step"] for i in (step.get("inputs") or {}).values() if "step" in i]
        extra = [f"attempts {s.get('attempts', 0)}"] if s.get("attempts") else []
        if s.get("startedAt"):
            extra.append(_duration(s))
        if "cachedFrom" in s:
            extra.append(
                f"cached from run {s['cachedFrom']['run']}, step {s['cachedFrom']['step']}"
            )
        if len(ups) > 1:
            extra.append("after " + ", ".join(ups))
        if step.get("when"):
            extra.append(
                ("unless " if step["when"].get("negate") else "if ") + step["when"]["step"]
            )
        branch = "└─ " if is_last else "├─ "
        lines.append(
            f"{prefix}{branch}{step['name']}  {state}"
            + (f"  ({'; '.join(extra)})" if extra else "")
        )
        if s.get("message") and state == "Failed":
            lines.append(
                prefix
                + ("   " if is_last else "│  ")
                + "   "
                + s["message"].strip().splitlines()[-1][:200]
            )
        kids = children.get(step["name"], [])
        for i, kid in enumerate(kids):
            walk(kid, prefix + ("   " if is_last else "│  "), i == len(kids) - 1)

    for i, root in enumerate(roots):
        walk(root, "", i == len(roots) - 1)
    return "\n".join(lines)


@pipeline_app.command("describe")
def describe_command(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="the pipeline run")],
    output: Output = "",
) -> None:
    """Show a run's DAG as a tree with states, durations and cache hits."""
    with _errors(), client_of(ctx) as client:
        print_run(client, name, output or None)


@pipeline_app.command("logs")
def logs_command(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="the pipeline run")],
    step: Annotated[str, typer.Option("--step", "-s", help="the step")],
    pod: Annotated[str | None, typer.Option(help="pod of a gang step, e.g. step-1")] = None,
) -> None:
    """Print the output of one step's pod."""
    with _errors(), client_of(ctx) as client:
        params: dict[str, str | int] = {"step": step}
        if pod:
            params["pod"] = pod
        response = client._request("GET", f"/api/v1/pipelineruns/{name}/logs", params=params)
        typer.echo(response.content.decode(errors="replace"), nl=False)


@pipeline_app.command("resume")
def resume_command(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="the failed pipeline run")],
    new_name: Annotated[str, typer.Option("--name", help="the new run's name")] = "",
    wait: Annotated[bool, typer.Option("--wait/--no-wait")] = True,
    timeout: Annotated[float, typer.Option(help="seconds to wait")] = 600.0,
) -> None:
    """Run a failed run again from its failed steps: steps whose cache key is unchanged are
    reused, so only failed steps, steps whose code changed, and their dependents run. The
    pipeline is compiled again from its entrypoint when this directory has its code."""
    with _errors(), client_of(ctx) as client:
        old = cast(dict[str, Any], client._get(f"/pipelineruns/{name}"))
        spec = dict(old["spec"])
        target = spec.get("entrypoint", "")
        run_name = new_name or f"{name[:44]}-r{int(time.time()) % 100000}"
        try:
            pipe = load_pipeline(target) if target else None
        except (ImportError, LookupError):
            pipe = None
        if pipe is not None:
            built = pipe.build(**spec.get("params", {}))
            manifest = run_manifest(
                built,
                name=run_name,
                queue=spec.get("queue", ""),
                artifacts=spec.get("artifacts", ""),
                no_cache=bool(spec.get("noCache")),
                resumed_from=name,
                artifacts_secret=str(spec.get("artifactsSecret") or ""),
            )
        else:
            spec["resumedFrom"] = name
            manifest = {
                "apiVersion": old["apiVersion"],
                "kind": "PipelineRun",
                "metadata": {"name": run_name, "labels": old["metadata"].get("labels") or {}},
                "spec": spec,
            }
        client.apply([manifest])
        typer.echo(f"pipelinerun/{run_name} created (resumes {name})")
        if wait:
            run = wait_for_run(client, run_name, timeout)
            typer.echo(describe_tree(run))
            if run["status"]["phase"] != "Succeeded":
                raise typer.Exit(1)


@pipeline_app.command("lineage")
def lineage_command(
    ctx: typer.Context,
    artifact: Annotated[str, typer.Argument(help="an artifact hash (a prefix will do)")],
    direction: Annotated[str, typer.Option(help="up (made from), down (used by) or both")] = "both",
    output: Output = "",
) -> None:
    """Which run and step made an artifact from which inputs (up), and what was made from
    it (down)."""
    with _errors(), client_of(ctx) as client:
        data = cast(dict[str, Any], client._get(f"/lineage/{artifact}", {"direction": direction}))
        if output:
            _emit(data, output)
            return
        lines = [f"artifact {data['artifact']}"]
        for key, title in (("upstream", "made from"), ("downstream", "used by")):
            if key in data:
                lines.append(f"{title}:")
                _lineage_lines(data[key], "  ", lines, top=True)
        typer.echo("\n".join(lines))


def _lineage_lines(
    node: Mapping[str, Any], indent: str, lines: list[str], top: bool = False
) -> None:
    makers = ", ".join(
        f"{m['run']}/{m['step']}" + (" (cached)" if m["cached"] else "") for m in node["madeBy"]
    )
    if not top:
        via = f"{node['via']}: " if node["via"] else ""
        lines.append(f"{indent}{via}{node['artifact'][:19]}…  by {makers or 'a literal'}")
    else:
        lines.append(f"{indent}by {makers or 'a literal'}")
    for child in node["next"]:
        _lineage_lines(child, indent + "  ", lines)


def print_objects(client: Client, plural: str, name: str | None, output: str | None) -> None:
    """``phalanx get pipelines|pipelineruns [NAME]``: a table, or the API's JSON/YAML."""
    data = client._get(f"/{plural}/{name}" if name else f"/{plural}")
    if output in ("json", "yaml"):
        _emit(data, output)
        return
    items = [cast(dict[str, Any], data)] if name else cast(list[dict[str, Any]], data)
    if not items:
        typer.echo(f"No {plural}.")
        return
    typer.echo(run_table(items) if plural == "pipelineruns" else pipeline_table(items))


def print_run(client: Client, name: str, output: str | None = None) -> None:
    """``phalanx describe pipelinerun NAME``: the DAG as a tree (or JSON/YAML)."""
    run = cast(dict[str, Any], client._get(f"/pipelineruns/{name}"))
    if output in ("json", "yaml"):
        _emit(run, output)
        return
    steps = run["spec"].get("steps")
    if steps is None and run["spec"].get("pipeline"):
        source = cast(dict[str, Any], client._get(f"/pipelines/{run['spec']['pipeline']}"))
        steps = source["spec"]["steps"]
    typer.echo(describe_tree(run, steps))
