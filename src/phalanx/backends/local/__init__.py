"""The local backend, the embedded default: pods are process groups on this machine.

Nodes are this machine (``discover_nodes``) or declared virtual nodes sharing it
(``load_virtual_nodes``, ``parse_nodes_option``). Names are imported lazily so that
``python -m phalanx.backends.local.supervisor`` loads nothing but the supervisor. Must not
import phalanx.controllers, phalanx.store, phalanx.api or another backend.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from phalanx.backends.local.backend import LocalBackend
    from phalanx.backends.local.nodes import (
        NodeSpecError,
        discover_nodes,
        load_virtual_nodes,
        parse_nodes_option,
    )

__all__ = [
    "LocalBackend",
    "NodeSpecError",
    "discover_nodes",
    "load_virtual_nodes",
    "parse_nodes_option",
]

_MODULES = {"LocalBackend": "backend"} | dict.fromkeys(__all__[1:], "nodes")


def __getattr__(name: str) -> object:
    if name not in _MODULES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_MODULES[name]}"), name)
