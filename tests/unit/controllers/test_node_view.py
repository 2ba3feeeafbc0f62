"""The loop's node view (NodeHealthReconciler.nodes): quarantine applied, reused while the
backend's nodes and the nodes' health are unchanged, and never stale after either changes."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from phalanx.controllers.health import HealthTracker, QuarantinePolicy
from phalanx.controllers.reconcilers import NodeHealthReconciler
from phalanx.model.objects import Node
from phalanx.store import open_store
from phalanx.testing import make_node


class _Backend:
    def __init__(self, nodes: list[Node]) -> None:
        self.listed = nodes

    def nodes(self) -> list[Node]:
        return list(self.listed)  # a new list of the same nodes, as backends return


def _quarantined(nodes: list[Node]) -> list[str]:
    return [n.name for n in nodes if n.is_quarantined]


def test_node_view_follows_health_and_backend_changes(tmp_path: Path) -> None:
    now = [5.0]
    tracker = HealthTracker(open_store(None, tmp_path), lambda: now[0], QuarantinePolicy())
    backend = _Backend([make_node("n0").gpus(2).obj(), make_node("n1").gpus(2).obj()])
    revision = [1]
    view = NodeHealthReconciler(backend, tracker, lambda: revision[0])  # type: ignore[arg-type]
    first = view.nodes()
    assert [n.name for n in first] == ["n0", "n1"] and _quarantined(first) == []
    first.clear()  # the caller's copy: the next answer is whole
    assert _quarantined(view.nodes()) == [] and len(view.nodes()) == 2
    tracker.quarantine_now("n0", "XID 79")
    assert _quarantined(view.nodes()) == ["n0"]
    backend.listed = [backend.listed[0], replace(backend.listed[1], unhealthy_reason="XID 48")]
    assert _quarantined(view.nodes()) == ["n0", "n1"]
    assert tracker.release("n0")
    assert _quarantined(view.nodes()) == ["n1"]
    assert _quarantined(view.nodes()) == ["n1"]
