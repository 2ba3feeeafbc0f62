"""Commands for Services: ``get services``, ``describe service``, ``phalanx serve`` (a Service
from a model file or a command, in one line) and ``phalanx service promote|rollback``.

They talk to the server's ``/api/v1/services`` routes (phalanx.api.services) through the
client; the client's own methods cover jobs, so the few calls here go through its request
helper.
"""

from __future__ import annotations

import json
import shlex
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, NoReturn
from urllib.parse import quote

import typer

from phalanx.cli.context import client_of
from phalanx.client import ApiError, Client, ClientError
from phalanx.client._client import API_PREFIX

service_app = typer.Typer(
    name="service",
    help="Services: promote a canary revision, or roll back.",
    no_args_is_help=True,
)

#: Model files ``phalanx serve`` serves with the built-in model server.
MODEL_SUFFIXES = (".joblib", ".pkl", ".onnx")


def _fail(*lines: str) -> NoReturn:
    for line in lines:
        typer.echo(f"error: {line}", err=True)
    raise typer.Exit(1)


@contextmanager
def _reported() -> Iterator[None]:
    try:
        yield
    except ApiError as exc:
        lines = [
            f"{d.get('path') or '(manifest)'}: {d.get('message', '')}" for d in exc.details or ()
        ]
        _fail(*(lines or [exc.message]))
    except ClientError as exc:
        _fail(str(exc))


def fetch_services(client: Client, name: str | None = None) -> list[dict[str, Any]]:
    """Every Service (or the one named) as the API's JSON."""
    if name is not None:
        data = client._request("GET", f"{API_PREFIX}/services/{quote(name, safe='')}").json()
        return [data]
    listed = client._request("GET", f"{API_PREFIX}/services").json()
    assert isinstance(listed, list)
    return listed


def _age(seconds: float) -> str:
    seconds = max(0.0, seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{int(seconds // size)}{unit}"
    return f"{int(seconds)}s"


def services_table(services: Sequence[Mapping[str, Any]], now: float) -> str:
    """``get services``: one row per Service, kubectl style."""
    rows = [("NAME", "READY", "DESIRED", "REVISION", "TRAFFIC", "URL", "AGE")]
    for s in services:
        traffic = ",".join(
            f"{r['name']}={r['percent']:g}%" for r in s["revisions"] if r["percent"] > 0
        )
        total = sum(1 for r in s["replicas"] if r["phase"] != "Terminating")
        rows.append(
            (
                s["name"],
                f"{s['ready']}/{total}",
                str(s["desired"]),
                s["revision"],
                traffic or "-",
                s["url"] or s["route"]["pathPrefix"],
                _age(now - float(s["created_at"])),
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "   ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in rows
    )


def describe_service(s: Mapping[str, Any], now: float) -> str:
    """``describe service``: spec, revisions with traffic, replicas (a pending one with its
    reason), the autoscaler's last decisions and why, and the Service's events."""
    spec = s["manifest"].get("spec", {})
    template = spec.get("template", {})
    lines = [
        f"Name:          {s['name']}",
        f"Queue:         {s['queue']}",
        f"URL:           {s['url'] or '(router path ' + s['route']['pathPrefix'] + ')'}",
        f"Command:       {shlex.join(str(c) for c in template.get('command', []))}",
        f"Resources:     {template.get('resources') or '{}'} x {template.get('pods', 1)} pod(s)",
        f"Replicas:      {s['ready']} ready, {s['desired']} desired "
        f"(min {s['min_replicas']}, max {s['max_replicas']})",
        f"Revision:      {s['revision']} (the template's)",
    ]
    autoscaling = spec.get("autoscaling", {})
    if autoscaling:
        lines.append(
            f"Autoscaling:   {autoscaling.get('metric')} target {autoscaling.get('target')} per "
            f"replica, scale to zero after {spec.get('scaleToZeroAfter')}"
        )
    if s.get("error"):
        lines.append(f"Error:         {s['error']}")
    if s.get("rollout_waiting"):
        lines.append(f"Rollout:       waiting: {s['rollout_waiting']}")
    lines += ["", "Revisions:", "  NAME         TRAFFIC   DESIRED   REPLICAS   READY   CREATED"]
    for r in s["revisions"]:
        marker = " (latest)" if r["latest"] else ""
        created = _age(now - r["created_at"]) + " ago" if r["created_at"] else "-"
        lines.append(
            f"  {r['name']:<12} {r['percent']:>6g}%   {r['desired']:>7}   {r['replicas']:>8}"
            f"   {r['ready']:>5}   {created}{marker}"
        )
    lines += ["", "Replicas:"]
    if not s["replicas"]:
        lines.append("  (none)")
    for r in s["replicas"]:
        extra = " (draining)" if r["draining"] else ""
        lines.append(
            f"  {r['name']:<28} {r['revision']:<11} {r['phase']:<12} {r['url'] or '-'}{extra}"
        )
        reason = r.get("reason")
        if reason:
            lines.append(f"      {reason['code']}: {reason['message']}")
    lines += ["", "Autoscaler decisions (newest last):"]
    if not s["decisions"]:
        lines.append("  (none yet)")
    for d in s["decisions"][-10:]:
        lines.append(
            f"  {_age(now - d['at'])} ago: {d['replicas']} replica(s), {d['code']}: {d['reason']}"
        )
    lines += ["", "Events (newest last):"]
    if not s.get("events"):
        lines.append("  (none)")
    for e in s.get("events", [])[-10:]:
        lines.append(f"  {_age(now - e['at'])} ago  {e['type']:<8} {e['reason']}: {e['message']}")
    return "\n".join(lines)


def _emit(data: object, output: str) -> None:
    if output == "json":
        typer.echo(json.dumps(data, indent=2, ensure_ascii=False))
    else:
        import yaml

        typer.echo(yaml.safe_dump(data, sort_keys=False, allow_unicode=True).rstrip("\n"))


def print_services(client: Client, name: str | None, output: str | None) -> None:
    """What ``phalanx get services [NAME] [-o json|yaml]`` prints."""
    with _reported():
        services = fetch_services(client, name)
    if output in ("json", "yaml"):
        _emit(services[0] if name is not None else services, output)
    elif services:
        typer.echo(services_table(services, time.time()))
    else:
        typer.echo("No services found.", err=True)


def print_description(client: Client, name: str) -> None:
    """What ``phalanx describe service NAME`` prints."""
    with _reported():
        service = fetch_services(client, name)[0]
    typer.echo(describe_service(service, time.time()))


@service_app.command()
def promote(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(metavar="NAME", help="The Service.")],
    revision: Annotated[
        str | None,
        typer.Option("--revision", "-r", help="Default: the template's (ends a canary)."),
    ] = None,
) -> None:
    """Send all traffic to a revision: ends a canary (spec.traffic is removed)."""
    _post(ctx, name, "promote", revision)


@service_app.command()
def rollback(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(metavar="NAME", help="The Service.")],
    revision: Annotated[
        str | None,
        typer.Option("--revision", "-r", help="Default: the one before the template's."),
    ] = None,
) -> None:
    """Go back to an earlier revision: its template, all the traffic."""
    _post(ctx, name, "rollback", revision)


def _post(ctx: typer.Context, name: str, action: str, revision: str | None) -> None:
    params = {"revision": revision} if revision else None
    with _reported(), client_of(ctx) as client:
        data = client._request(
            "POST", f"{API_PREFIX}/services/{quote(name, safe='')}/{action}", params=params
        ).json()
    typer.echo(f"service/{name}: all traffic to revision {data['revision']}")


def serve_manifest(
    name: str,
    command: Sequence[str],
    *,
    queue: str,
    min_replicas: int,
    max_replicas: int,
    resources: Mapping[str, str],
    readiness_path: str,
    target: float | None,
    scale_to_zero_after: str | None,
    env: Mapping[str, str],
) -> dict[str, Any]:
    """The Service manifest ``phalanx serve`` applies."""
    spec: dict[str, Any] = {
        "queue": queue,
        "minReplicas": min_replicas,
        "maxReplicas": max(max_replicas, min_replicas, 1),
        "readinessProbe": {"path": readiness_path},
        "template": {"command": list(command), "resources": dict(resources)},
    }
    if env:
        spec["template"]["env"] = dict(env)
    if target is not None:
        spec["autoscaling"] = {"metric": "concurrency", "target": target}
    if scale_to_zero_after is not None:
        spec["scaleToZeroAfter"] = scale_to_zero_after
    return {
        "apiVersion": "phalanx.dev/v1alpha1",
        "kind": "Service",
        "metadata": {"name": name},
        "spec": spec,
    }


def model_command(path: Path) -> list[str]:
    """The replica command serving model file ``path`` with the built-in Open Inference
    Protocol server (``phalanx serve-model``, which listens on ``$PHALANX_PORT``)."""
    return [sys.executable, "-m", "phalanx.cli", "serve-model", str(path)]


def with_port(command: Sequence[str]) -> list[str]:
    """``command``, run by a shell that puts the replica's port where an argument says
    ``$PORT`` (or ``${PORT}``); unchanged when none does."""
    if not any("$PORT" in arg or "${PORT}" in arg for arg in command):
        return list(command)
    words = []
    for arg in command:
        parts = arg.replace("${PORT}", "$PORT").split("$PORT")
        words.append('"$PORT"'.join(shlex.quote(p) if p else "" for p in parts))
    return ["sh", "-c", "exec " + " ".join(words)]


def serve(
    ctx: typer.Context,
    target: Annotated[
        list[str],
        typer.Argument(
            metavar="MODEL_FILE | -- COMMAND...",
            help="A model file (.joblib, .pkl, .onnx) to serve over the Open Inference "
            "Protocol, or, after --, a server command that listens on $PORT.",
        ),
    ],
    name: Annotated[
        str | None, typer.Option("--name", help="The Service's name; default: from the file.")
    ] = None,
    queue: Annotated[str, typer.Option("--queue", "-q", help="Queue replicas use.")] = "default",
    min_replicas: Annotated[int, typer.Option("--min-replicas", min=0)] = 1,
    max_replicas: Annotated[int, typer.Option("--max-replicas", min=1)] = 1,
    cpu: Annotated[str, typer.Option("--cpu", help="Per replica pod.")] = "1",
    memory: Annotated[str, typer.Option("--memory", help="Per replica pod.")] = "1Gi",
    gpus: Annotated[str, typer.Option("--gpus", help="Per pod: 1, 0.5, …")] = "0",
    readiness_path: Annotated[
        str | None,
        typer.Option("--readiness-path", help="Default: /v2/health/ready for a model, else /."),
    ] = None,
    concurrency: Annotated[
        float | None, typer.Option("--concurrency", help="Autoscaling target per replica.")
    ] = None,
    scale_to_zero_after: Annotated[
        str | None, typer.Option("--scale-to-zero-after", help="e.g. 5m (with --min-replicas 0).")
    ] = None,
    env: Annotated[
        list[str] | None, typer.Option("--env", "-e", help="NAME=VALUE, repeatable.")
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print the manifest (YAML) instead of applying it.")
    ] = False,
    wait_s: Annotated[
        float, typer.Option("--wait", help="Seconds to wait for a ready replica (0: do not).")
    ] = 0.0,
) -> None:
    """Serve a model file or a command as a Service, in one command, and print its URL."""
    is_model = len(target) == 1 and target[0].endswith(MODEL_SUFFIXES)
    if is_model:
        path = Path(target[0]).expanduser().absolute()
        if not path.is_file():
            _fail(f"{target[0]}: no such model file; give a .joblib, .pkl or .onnx file")
        command = model_command(path)
        default_name = path.stem
        probe = readiness_path or "/v2/health/ready"
    else:
        command = with_port(target)
        default_name = Path(target[0]).stem
        probe = readiness_path or "/"
    service = (name or default_name).lower().replace("_", "-").replace(".", "-")
    variables: dict[str, str] = {}
    for item in env or ():
        key, sep, value = item.partition("=")
        if not sep or not key:
            _fail(f"--env {item!r}: expected NAME=VALUE")
        variables[key] = value
    resources = {"cpu": cpu, "memory": memory}
    if gpus not in ("0", ""):
        resources["nvidia.com/gpu"] = gpus
    manifest = serve_manifest(
        service,
        command,
        queue=queue,
        min_replicas=min_replicas,
        max_replicas=max_replicas,
        resources=resources,
        readiness_path=probe,
        target=concurrency,
        scale_to_zero_after=scale_to_zero_after,
        env=variables,
    )
    if dry_run:
        _emit(manifest, "yaml")
        return
    with _reported(), client_of(ctx) as client:
        outcome = client.apply([manifest], "phalanx serve")
        typer.echo(f"service/{service} {outcome[0]['action']}")
        deadline = time.monotonic() + wait_s
        data = fetch_services(client, service)[0]
        while wait_s > 0 and data["ready"] < 1:
            if time.monotonic() > deadline:
                _fail(
                    f"no replica of {service} was ready within {wait_s:g}s; see `phalanx "
                    f"describe service {service}`"
                )
            time.sleep(0.2)
            data = fetch_services(client, service)[0]
    typer.echo(f"  url: {data['url'] or data['route']['pathPrefix'] + ' (on the router)'}")
