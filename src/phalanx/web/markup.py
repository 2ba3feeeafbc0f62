"""Building blocks of the dashboard's pages: escaping, the layout every page shares, tables,
badges, times and quantities. Every value that came from the API goes through ``esc``."""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Mapping, Sequence
from html import escape
from typing import Any
from urllib.parse import quote, urlencode

from phalanx.web.static import static_url

#: Decoded JSON of an API response.
Json = dict[str, Any]

#: (path, label) of the navigation bar, in order.
NAV = (
    ("/", "Overview"),
    ("/ui/queues", "Queues"),
    ("/ui/jobs", "Jobs"),
    ("/ui/nodes", "Nodes"),
    ("/ui/services", "Services"),
    ("/ui/pipelineruns", "Pipelines"),
    ("/ui/reports", "Simulations"),
)


def esc(value: object) -> str:
    """Return ``value`` as text safe inside HTML elements and quoted attributes."""
    return escape("" if value is None else str(value), quote=True)


def q(value: str) -> str:
    """Return ``value`` quoted for a URL path segment."""
    return quote(value, safe="")


def query(params: Mapping[str, object]) -> str:
    """Return ``?a=1&amp;b=2`` (escaped for an ``href``) for the params that have a value
    ("" when none have)."""
    kept = {k: str(v) for k, v in params.items() if v not in (None, "")}
    return esc("?" + urlencode(kept)) if kept else ""


def layout(
    title: str,
    body: str,
    *,
    active: str,
    page: str,
    data: Mapping[str, object] | None = None,
    is_logged_in: bool = True,
) -> str:
    """Return a whole page: the navigation, ``body`` inside ``<main>``, and ``data-*``
    attributes on ``<body>`` that the script reads (what to watch, from which revision)."""
    attrs = "".join(f' data-{esc(k)}="{esc(v)}"' for k, v in (data or {}).items())
    links = "".join(
        f'<a href="{path}"{" class=active" if path == active else ""}>{label}</a>'
        for path, label in NAV
    )
    logout = (
        '<form method="post" action="/ui/logout" class="logout"><button>Sign out</button></form>'
        if is_logged_in
        else ""
    )
    return (
        "<!doctype html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        f"<title>{esc(title)} · phalanx</title>"
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<link rel="icon" href="data:,">'
        f'<link rel="stylesheet" href="{static_url("style.css")}">'
        f'<script src="{static_url("app.js")}" defer></script>'
        f'</head><body data-page="{esc(page)}"{attrs}>'
        f'<header><span class="brand">phalanx</span><nav>{links}</nav>{logout}</header>'
        f'<main id="main">{body}</main></body></html>'
    )


def table(
    headers: Sequence[str],
    rows: Iterable[str],
    *,
    table_id: str = "",
    empty: str = "Nothing here yet.",
) -> str:
    """Return a table of pre-rendered ``<tr>`` rows (``empty`` in a paragraph when none)."""
    body = "".join(rows)
    ident = f' id="{esc(table_id)}"' if table_id else ""
    head = "".join(f"<th>{esc(h)}</th>" for h in headers)
    hidden = "" if body else " hidden"
    note = "" if body else f'<p class="empty">{esc(empty)}</p>'
    return (
        f"<table{ident}{hidden}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>{note}"
    )


def badge(phase: str) -> str:
    """Return a phase as a coloured badge (classes follow the phase's name)."""
    return f'<span class="badge phase-{esc(phase.lower())}">{esc(phase)}</span>'


def ago(at: float | None, now: float | None = None) -> str:
    """Return how long ago ``at`` (epoch seconds) was, as ``42s``, ``5m``, ``3h``, ``2d``."""
    if at is None:
        return "-"
    seconds = max(0.0, (time.time() if now is None else now) - at)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{int(seconds // size)}{unit}"
    return f"{int(seconds)}s"


def when(at: float | None) -> str:
    """Return an epoch time as UTC ``YYYY-MM-DD HH:MM:SS`` (``-`` when unset), in a
    ``<time>`` element."""
    if at is None:
        return "-"
    text = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(at))
    return f'<time datetime="{text.replace(" ", "T")}Z">{text}</time>'


def facts(values: Mapping[str, object]) -> str:
    """Return a reason's facts as a definition list."""
    if not values:
        return ""
    items = "".join(f"<dt>{esc(k)}</dt><dd>{esc(_fact(v))}</dd>" for k, v in values.items())
    return f'<dl class="facts">{items}</dl>'


def _fact(value: object) -> str:
    if isinstance(value, list | tuple) and all(isinstance(v, str | int | float) for v in value):
        return ", ".join(_fact(v) for v in value)
    if isinstance(value, list | tuple | dict):
        return json.dumps(value, separators=(", ", ": "), default=str)
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def gpus(amounts: Mapping[str, object]) -> str:
    """Return the GPU amount of a resources mapping (``-`` when none)."""
    return esc(amounts.get("nvidia.com/gpu", "-") or "-")


def quantity(text: object) -> float:
    """Return a Kubernetes quantity (``500m``, ``16Gi``, ``2``) as a number; 0 for none."""
    if text is None or text == "":
        return 0.0
    if isinstance(text, int | float):
        return float(text)
    raw = str(text)
    suffixes = {
        "Ki": 2**10,
        "Mi": 2**20,
        "Gi": 2**30,
        "Ti": 2**40,
        "m": 1e-3,
        "k": 1e3,
        "M": 1e6,
        "G": 1e9,
        "T": 1e12,
    }
    for suffix, factor in suffixes.items():
        if raw.endswith(suffix):
            return float(raw[: -len(suffix)]) * factor
    return float(raw)
