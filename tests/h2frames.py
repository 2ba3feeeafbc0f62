"""The HTTP/2 frames in what a client wrote: the bind tests check how a gang's binds are framed
and batched, against a fake h2 server (tests/unit/backends) and the real API server
(tests/k8s). ``tests/`` is on ``sys.path`` (the root ``conftest.py`` puts it there), so a test
imports this with ``from h2frames import written_frames``.

Needs hyperframe (the ``kubernetes`` extra, with h2): import it only where h2 is required or
has been checked for.
"""

from __future__ import annotations

from hyperframe.frame import Frame

#: The client's connection preface, which opens its first write on a connection.
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
#: Frame types as ``written_frames`` names them (hyperframe's class names).
HEADERS, DATA = "HeadersFrame", "DataFrame"

#: The fixed header every HTTP/2 frame starts with: length, type, flags, stream id.
_HEADER_BYTES = 9


def written_frames(chunk: bytes) -> list[tuple[str, int]]:
    """(type, stream id) of every HTTP/2 frame in one write, in order (after the preface, where
    the write opens with it)."""
    view = memoryview(chunk.removeprefix(PREFACE))
    out = []
    while view:
        frame, length = Frame.parse_frame_header(view[:_HEADER_BYTES])
        out.append((type(frame).__name__, frame.stream_id))
        view = view[_HEADER_BYTES + length :]
    return out
