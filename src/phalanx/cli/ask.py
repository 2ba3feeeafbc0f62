"""``phalanx ask "…"``: a question in plain language about the cluster.

With a model (``--model-url`` or ``PHALANX_ASK_URL``: any OpenAI-compatible server), the model
answers using the MCP server's tools, which read through the API with the caller's token (so
within the caller's role); read-only unless ``--allow-write``. The API key is read from the
environment variable ``--api-key-env`` names (``PHALANX_ASK_KEY`` by default) and is never
printed or logged. Without a model, the doctor looks at the objects the question names and
its findings are printed. The work is in phalanx.ops.ask; this module renders.
"""

from __future__ import annotations

import json
import os
import sys
from typing import TYPE_CHECKING, Annotated, Any

import typer

from phalanx.cli.context import client_of
from phalanx.cli.doctor import render_report
from phalanx.client import ApiError, ClientError, DoctorReport
from phalanx.ops.ask import ENV_KEY, ENV_MODEL, ENV_URL, AskError, doctor_targets

if TYPE_CHECKING:
    from phalanx.cli.mcp import ClientTools


def _fail(message: str) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(1)


def base_url(url: str) -> str:
    """The OpenAI base URL for ``url``: ``/v1`` added to a bare ``http://host:port``."""
    url = url.rstrip("/")
    rest = url.split("://", 1)[-1]
    return url if "/" in rest else f"{url}/v1"


def ask(
    ctx: typer.Context,
    question: Annotated[str, typer.Argument(help="The question, in plain language.")],
    model_url: Annotated[
        str | None,
        typer.Option(
            "--model-url",
            envvar=ENV_URL,
            help="An OpenAI-compatible server (http://host:port or …/v1). Without one, "
            "the doctor answers.",
        ),
    ] = None,
    model: Annotated[
        str | None,
        typer.Option(
            "--model", envvar=ENV_MODEL, help="The model's name (default: the server's first)."
        ),
    ] = None,
    api_key_env: Annotated[
        str,
        typer.Option("--api-key-env", help="The environment variable holding the API key, if any."),
    ] = ENV_KEY,
    allow_write: Annotated[
        bool,
        typer.Option(
            "--allow-write", help="Offer the model the mutating tools too (within your role)."
        ),
    ] = False,
    max_rounds: Annotated[int, typer.Option(min=1, help="Model rounds at most.")] = 6,
    require_tool: Annotated[
        bool, typer.Option("--require-tool", help="Make the model call a tool first.")
    ] = False,
    output: Annotated[str | None, typer.Option("--output", "-o", help="json.")] = None,
) -> None:
    """Ask a question about jobs, queues, nodes, services or pipeline runs: answered by a
    model with the MCP server's tools, or by the doctor on the objects it names."""
    if output not in (None, "json"):
        _fail(f"-o {output}: only json is supported here")
    from phalanx.cli.mcp import ClientTools  # the MCP SDK is heavy: only when asked

    try:
        with client_of(ctx) as client:
            tools = ClientTools(client)
            if not model_url:
                _print_reports(_doctor_answers(question, tools), output)
                return
            key = os.environ.get(api_key_env, "")
            _ask_model(
                question,
                tools,
                model_url,
                model,
                key,
                allow_write,
                max_rounds,
                require_tool,
                output,
            )
    except ApiError as exc:
        _fail(str(exc))
    except (ClientError, AskError) as exc:
        _fail(str(exc))


def _doctor_answers(question: str, tools: ClientTools) -> list[dict[str, Any]]:
    reports: list[dict[str, Any]] = []
    for kind, name in doctor_targets(question, tools):
        try:
            reports.append(dict(tools.doctor(kind, name)))
        except ApiError as exc:
            if exc.status != 404:
                raise
            reports.append({"target": f"{kind}/{name}", "findings": [], "error": str(exc)})
    return reports


def _print_reports(reports: list[dict[str, Any]], output: str | None) -> None:
    if output == "json":
        typer.echo(json.dumps({"reports": reports}, indent=2))
        return
    typer.echo("No model configured (--model-url or PHALANX_ASK_URL): the doctor's findings.")
    for report in reports:
        typer.echo("")
        if "error" in report:
            typer.echo(f"{report['target']}: {report['error']}")
        else:
            typer.echo(render_report(DoctorReport(**report)))  # type: ignore[typeddict-item]


def _ask_model(
    question: str,
    tools: ClientTools,
    url: str,
    model: str | None,
    key: str,
    allow_write: bool,
    max_rounds: int,
    require_tool: bool,
    output: str | None,
) -> None:
    try:
        import openai
    except ImportError:
        _fail("phalanx ask with a model needs the openai package: pip install 'phalanx[ask]'")
    from phalanx.ops.ask import ask_model
    from phalanx.ops.masking import mask_secrets
    from phalanx.ops.mcp_server import build_server

    secrets = [key] if key else []
    # Closed on the way out: its pooled connection would otherwise outlive the command.
    with openai.OpenAI(
        base_url=base_url(url), api_key=key or "none", max_retries=1, timeout=120
    ) as ai:
        try:
            name = model or next(iter(ai.models.list())).id
        except (openai.OpenAIError, StopIteration) as exc:
            raise AskError(
                f"{base_url(url)} lists no model ({mask_secrets(str(exc), secrets) or 'empty'}): "
                "give one with --model or PHALANX_ASK_MODEL"
            ) from None
        server = build_server(tools, allow_write=allow_write)
        result = ask_model(
            question,
            server,
            ai,
            name,
            allow_write=allow_write,
            max_rounds=max_rounds,
            require_tool=require_tool,
            secrets=secrets,
        )
    if output == "json":
        calls = [
            {"tool": c.name, "arguments": dict(c.arguments), "error": c.is_error}
            for c in result.calls
        ]
        typer.echo(
            json.dumps(
                {"model": name, "answer": result.answer, "calls": calls, "rounds": result.rounds},
                indent=2,
            )
        )
        return
    for c in result.calls:
        args = ", ".join(f"{k}={json.dumps(v)}" for k, v in c.arguments.items())
        print(f"· {c.name}({args}){' failed' if c.is_error else ''}", file=sys.stderr)
    typer.echo(result.answer)
