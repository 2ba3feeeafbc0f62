"""``phalanx get``: objects of any kind as a kubectl-style table (or JSON/YAML), read page by
page and filtered by label selectors; with ``-w``, a row per change after the list until
Ctrl-C, from the list's resourceVersion so that no change is missed.

Talks to the server only through ``phalanx.client``; the rows come from ``tables``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import cast

from phalanx.cli.doctor import start_text
from phalanx.cli.tables import (
    column_widths,
    flavor_rows,
    job_rows,
    node_rows,
    queue_rows,
    render_row,
)
from phalanx.client import (
    ApiError,
    Client,
    ClientError,
    EstimateInfo,
    FlavorInfo,
    JobInfo,
    NodeInfo,
    QueueInfo,
)
from phalanx.kinds import FLAVOR, JOB, NODE, QUEUE, Kind
from phalanx.model.metadata import LabelSelector

Item = JobInfo | QueueInfo | NodeInfo | FlavorInfo
Echo = Callable[[str], None]


@dataclass(frozen=True, slots=True)
class Listed:
    """Objects as ``get`` lists them, and the store's revision they were read at (where a
    watch starts; 0 for nodes, which are not stored)."""

    items: Sequence[Item]
    resource_version: int


@dataclass(frozen=True, slots=True)
class Query:
    """What ``get`` was asked for: one object (``name``) or a list narrowed by ``queue``
    (jobs) and ``selector``; ``limit`` caps the list, ``chunk_size`` is jobs per request."""

    name: str | None = None
    queue: str | None = None
    selector: LabelSelector | None = None
    limit: int | None = None
    chunk_size: int = 500

    def matches(self, item: Mapping[str, object]) -> bool:
        """Whether a watched object belongs in this listing."""
        if self.name is not None and item.get("name") != self.name:
            return False
        if self.queue is not None and item.get("queue") != self.queue:
            return False
        if self.selector is not None:
            metadata = item.get("metadata")
            labels = metadata.get("labels") if isinstance(metadata, Mapping) else None
            return self.selector.matches(labels if isinstance(labels, Mapping) else {})
        return True


def fetch(client: Client, kind: Kind, query: Query) -> Listed:
    """Return the objects of ``kind`` that ``query`` asks for. Raises ApiError (NotFound for
    an unknown name, BadRequest for a selector the server refuses), ClientError for a kind
    ``get`` cannot show."""
    selector = str(query.selector) if query.selector is not None else None
    items: list[Item]
    if kind is JOB:
        if query.name is not None:
            # The revision first, then the object: a watch from it misses no change.
            version = client.job_page(limit=1).resource_version
            return Listed([client.job(query.name)], version)
        items, version = [], 0
        chunk = query.chunk_size if query.limit is None else min(query.chunk_size, query.limit)
        for page in client.job_pages(query.queue, selector=selector, chunk_size=chunk):
            version = version or page.resource_version
            items += page.items
            if query.limit is not None and len(items) >= query.limit:
                break
        return Listed(items[: query.limit], version)
    if kind is QUEUE:
        queues = client.queue_page(selector)
        if query.name is not None:
            return Listed([client.queue(query.name)], queues.resource_version)
        return Listed(list(queues.items)[: query.limit], queues.resource_version)
    if kind is FLAVOR:
        flavors = client.flavor_page(selector)
        if query.name is not None:
            return Listed([client.flavor(query.name)], flavors.resource_version)
        return Listed(list(flavors.items)[: query.limit], flavors.resource_version)
    if kind is NODE:
        if query.name is not None:
            return Listed([client.node(query.name)], 0)
        wanted = query.selector
        nodes = [n for n in client.nodes() if wanted is None or wanted.matches(n["labels"])]
        return Listed(nodes[: query.limit], 0)
    raise ClientError(f"phalanx get cannot show {kind.plural} yet")


def rows_of(
    kind: Kind,
    items: Sequence[Item],
    now: float,
    *,
    wide: bool,
    estimates: Mapping[str, EstimateInfo] | None = None,
) -> tuple[list[str], list[list[str]]]:
    """Return the table of ``items`` of ``kind``: headers and one row each; wide job tables
    given ``estimates`` end with each pending job's estimated start."""
    if kind is JOB:
        headers, rows = job_rows(cast("list[JobInfo]", items), now, wide=wide)
        if wide and estimates is not None:
            headers.append("START")
            for item, row in zip(items, rows, strict=True):
                row.append(start_text(estimates.get(str(item["name"]))))
        return headers, rows
    if kind is QUEUE:
        return queue_rows(cast("list[QueueInfo]", items), wide=wide)
    if kind is NODE:
        return node_rows(cast("list[NodeInfo]", items), wide=wide)
    return flavor_rows(cast("list[FlavorInfo]", items))


def empty_message(kind: Kind, query: Query) -> str:
    """Return what ``get`` says when nothing matches."""
    where = f" in queue {query.queue}" if query.queue else ""
    matching = f" matching {query.selector}" if query.selector else ""
    return f"No {kind.plural}{where}{matching}."


@dataclass(slots=True)
class WatchPrinter:
    """Prints watch events as ``get`` would print the objects: table rows aligned with the
    table printed before them, or one JSON/YAML document each (``output``). With
    ``with_events`` the rows (or documents) say which event they are, as kubectl's
    ``--output-watch-events`` does."""

    kind: Kind
    echo: Echo
    wide: bool = False
    output: str = "table"  # table, json or yaml
    with_events: bool = False
    widths: list[int] = field(default_factory=list)
    #: Start estimates of pending jobs (wide job tables show them); None: no such column.
    estimates: Mapping[str, EstimateInfo] | None = None

    def table(self, items: Sequence[Item], now: float) -> str:
        """Return the first table (header and a row per item, ADDED when with events) and
        remember its column widths."""
        headers = self._headers()
        rows = rows_of(self.kind, items, now, wide=self.wide, estimates=self.estimates)[1]
        if self.with_events:
            rows = [["ADDED", *row] for row in rows]
        self.widths = self._widths(headers, rows)
        return "\n".join(render_row(row, self.widths) for row in [headers, *rows])

    def _headers(self) -> list[str]:
        headers = rows_of(self.kind, [], 0.0, wide=self.wide, estimates=self.estimates)[0]
        return ["EVENT", *headers] if self.with_events else headers

    def _widths(self, headers: list[str], rows: list[list[str]]) -> list[int]:
        widths = column_widths(headers, rows)
        if self.with_events:  # as wide as MODIFIED, so rows stay aligned as events come
            widths[0] = max(widths[0], len("MODIFIED"))
        return widths

    def event(self, event_type: str, item: Item, now: float) -> None:
        """Print one changed (or, with its last known state, deleted) object."""
        if self.output == "json":
            document: object = {"type": event_type, "object": item} if self.with_events else item
            self.echo(json.dumps(document, indent=2, ensure_ascii=False))
            return
        if self.output == "yaml":
            import yaml

            document = {"type": event_type, "object": item} if self.with_events else item
            self.echo("---\n" + yaml.safe_dump(document, sort_keys=False, allow_unicode=True))
            return
        _, rows = rows_of(self.kind, [item], now, wide=self.wide, estimates=self.estimates)
        row = [event_type, *rows[0]] if self.with_events else rows[0]
        if not self.widths:  # the list was empty: the header comes with the first row
            headers = self._headers()
            self.widths = self._widths(headers, [row])
            self.echo(render_row(headers, self.widths))
        self.widths = [max(w, len(c)) for w, c in zip(self.widths, row, strict=False)]
        self.echo(render_row(row, self.widths))


def watch_changes(
    client: Client,
    kind: Kind,
    query: Query,
    listed: Listed,
    printer: WatchPrinter,
    *,
    stop_after_s: float | None = None,
    clock: Callable[[], float] = time.time,
) -> None:
    """Print a row per change to the objects ``query`` selects, from ``listed``'s revision,
    until interrupted (or for ``stop_after_s``). A watch the server ends is resumed from the
    last revision seen; one too old for the server's log lists again and goes on from there.
    A DELETED object is printed with the last state seen. Raises ClientError when the server
    goes away."""
    version = listed.resource_version
    known: dict[str, Item] = {str(item["name"]): item for item in listed.items}
    deadline = None if stop_after_s is None else time.monotonic() + stop_after_s
    while deadline is None or time.monotonic() < deadline:
        left = None if deadline is None else max(0.1, deadline - time.monotonic())
        try:
            for event in client.watch(version, kinds=[kind.name], timeout_s=left):
                version = event["resourceVersion"]
                name = event["name"]
                item = event.get("object")
                if item is None:  # DELETED: show the last state seen, if it was shown
                    last = known.pop(name, None)
                    if last is not None:
                        printer.event(event["type"], last, clock())
                    continue
                if not query.matches(item):
                    known.pop(name, None)  # e.g. relabelled out of the selector
                    continue
                known[name] = item
                printer.event(event["type"], item, clock())
        except ApiError as exc:
            if exc.status != 410:
                raise
            # Compacted past our revision: list again, as a fresh start would.
            listed = fetch(client, kind, query)
            version = listed.resource_version
            known = {str(item["name"]): item for item in listed.items}
            for relisted in listed.items:
                printer.event("ADDED", relisted, clock())
