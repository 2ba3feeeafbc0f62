"""Exceptions the client raises: the server said no (ApiError), or could not be reached."""

from __future__ import annotations

from collections.abc import Sequence

from phalanx.client._types import ErrorDetailInfo


class ClientError(Exception):
    """Base of every error the client raises."""


class ApiError(ClientError):
    """The server answered with an error: ``status`` (HTTP), ``code`` (``SpecInvalid``,
    ``NotFound``, ``Conflict``, ``Unauthorized``, ``BadRequest``…), a message and, for
    rejected manifests, one detail per field error."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        details: Sequence[ErrorDetailInfo] = (),
        source: str = "",
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = list(details)
        self.source = source

    def __repr__(self) -> str:
        return f"ApiError(status={self.status}, code={self.code!r}, message={self.message!r})"


class ServerUnavailableError(ClientError):
    """Nothing answered at ``url`` (connection refused, timed out, connection dropped)."""

    def __init__(self, url: str, message: str | None = None) -> None:
        self.url = url
        super().__init__(
            message or f"cannot reach the phalanx server at {url}; start it with `phalanx up`"
        )


class JobFinishedError(ClientError):
    """``wait_for`` saw the job finish in a phase it was not waiting for."""

    def __init__(self, job: str, phase: str, message: str, wanted: Sequence[str]) -> None:
        self.job = job
        self.phase = phase
        detail = f": {message}" if message else ""
        super().__init__(
            f'job "{job}" finished as {phase}{detail}; it will never be {" or ".join(wanted)}'
        )
