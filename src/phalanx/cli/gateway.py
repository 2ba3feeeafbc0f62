"""``phalanx gateway``: the OpenAI-compatible LLM gateway on its own.

Two modes:

- control plane (the default): in front of the LLM Services of a running server, like
  ``phalanx router`` (routes from ``GET /api/v1/routes``; load and demand posted back);
- static (``--upstream URL`` repeated, with ``--model``): in front of OpenAI-compatible
  servers that phalanx does not run (a benchmark's fleet), as one service.

Once it listens it prints exactly one line, ``gateway listening on http://HOST:PORT``.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from phalanx.model.llm import ENGINES, POLICIES


def gateway(
    ctx: typer.Context,
    upstream: Annotated[
        list[str] | None,
        typer.Option(
            "--upstream",
            help="An OpenAI-compatible server (http://host:port) to route to; repeat it. "
            "Without it: the LLM Services of the running phalanx server.",
        ),
    ] = None,
    model: Annotated[
        list[str] | None,
        typer.Option("--model", help="With --upstream: a model name the upstreams serve."),
    ] = None,
    policy: Annotated[
        str,
        typer.Option("--policy", help=f"With --upstream: {', '.join(POLICIES)}."),
    ] = "prefix",
    engine: Annotated[
        str,
        typer.Option(
            "--engine",
            help=f"With --upstream: {', '.join(ENGINES)} (vllm and sglang: their /metrics "
            "are read for queue depth).",
        ),
    ] = "vllm",
    host: Annotated[str, typer.Option("--host", help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[
        int, typer.Option("--port", min=0, max=65535, help="Port (0: a free one).")
    ] = 8000,
    poll_interval_s: Annotated[
        float,
        typer.Option("--poll-interval", help="Control-plane mode: seconds between route reads."),
    ] = 1.0,
    metrics_interval_s: Annotated[
        float,
        typer.Option(
            "--metrics-interval", help="Seconds between reads of the engines' /metrics (0: off)."
        ),
    ] = 1.0,
) -> None:
    """Run the OpenAI-compatible LLM gateway: /v1/chat/completions, /v1/completions,
    /v1/embeddings and /v1/models, routed by model with prefix- and load-aware routing."""
    from phalanx.serving.llm.gateway import Gateway, StaticRoutes
    from phalanx.serving.router import new_event_loop, serve_forever

    remote: Any = None
    if upstream:
        if not model:
            typer.echo(
                "error: --upstream needs --model NAME: the model the upstreams serve "
                "(what clients send as model)",
                err=True,
            )
            raise typer.Exit(2)
        if policy not in POLICIES:
            typer.echo(f"error: --policy {policy!r} is not one of {', '.join(POLICIES)}", err=True)
            raise typer.Exit(2)
        if engine not in ENGINES:
            typer.echo(f"error: --engine {engine!r} is not one of {', '.join(ENGINES)}", err=True)
            raise typer.Exit(2)
        for url in upstream:
            if not url.startswith("http://") or url.rstrip("/").count(":") != 2:
                typer.echo(
                    f"error: --upstream {url!r} must be http://HOST:PORT (plain HTTP, with a port)",
                    err=True,
                )
                raise typer.Exit(2)
        source: Any = StaticRoutes(upstream, model, policy=policy, engine=engine)
        sink: Any = source
    else:
        if model or policy != "prefix":
            typer.echo(
                "error: --model and --policy go with --upstream; in front of a phalanx "
                "server, models and policies come from each Service's spec.llm",
                err=True,
            )
            raise typer.Exit(2)
        from phalanx.cli.serving_data import RemoteRoutes, RemoteRoutesError
        from phalanx.client import locate_server

        root = ctx.find_root().obj
        location = locate_server(
            getattr(root, "server", None),
            getattr(root, "token", None),
            getattr(root, "data_dir", None),
        )
        remote = RemoteRoutes(
            location.url,
            location.token,
            poll_interval_s=poll_interval_s,
            verify=location.ca_file or True,
        )
        try:
            remote.start()
        except RemoteRoutesError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(1) from None
        source = sink = remote

    def ready(bound: int) -> None:
        typer.echo(f"gateway listening on http://{host}:{bound}")

    try:
        serve_forever(
            Gateway(source, sink, metrics_interval_s=metrics_interval_s),
            host,
            port,
            ready,
            loop_factory=new_event_loop,
        )
    except OSError as exc:
        typer.echo(f"error: cannot listen on {host}:{port}: {exc}", err=True)
        raise typer.Exit(1) from None
    finally:
        if remote is not None:
            remote.stop()
