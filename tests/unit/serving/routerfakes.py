"""Stand-ins for the router's sockets in unit tests: an asyncio transport that keeps what is
written to it, and a load sink that drops every report."""

from __future__ import annotations

from collections.abc import Sequence

from phalanx.serving.endpoints import LoadSample


class FakeTransport:
    """Collects written bytes; remembers closing and paused reading; one peer address."""

    def __init__(self) -> None:
        self.out = bytearray()
        self.closed = False
        self.paused = False

    def write(self, data: bytes) -> None:
        self.out += data

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def pause_reading(self) -> None:
        self.paused = True

    def resume_reading(self) -> None:
        self.paused = False

    def get_extra_info(self, name: str) -> object:
        return ("10.0.0.9", 4242) if name == "peername" else None


class NoSink:
    """A router's load sink that keeps nothing."""

    def report(self, samples: Sequence[LoadSample]) -> None:
        pass

    def demand(self, service: str) -> None:
        pass
