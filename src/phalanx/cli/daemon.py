"""``phalanx up --daemon`` and ``phalanx down``: run the server detached, and stop it.

The daemon is this CLI run again (``python -m phalanx.cli … up``) in a new session with its
output appended to ``<data_dir>/server.log``; it is up once it has written server.json and
answers ``/healthz``. ``down`` signals the pid in server.json, after checking that the pid
really is that phalanx server (pids get reused). Messages name ``--data-dir`` whenever the
data dir is not the one commands use without it.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from phalanx.client import (
    Client,
    ClientError,
    RunningServer,
    ServerInfo,
    default_data_dir,
    read_server_info,
)

LOG_FILE = "server.log"
SERVER_FILE = "server.json"


class DaemonError(RuntimeError):
    """The daemon could not be started or stopped; the message says why and what to do."""


@dataclass(frozen=True, slots=True)
class Started:
    """A daemon that answers: where, which process, where its log goes."""

    url: str
    pid: int
    log_path: Path


def is_default_data_dir(data_dir: Path) -> bool:
    """Return whether ``data_dir`` is the one commands use without ``--data-dir`` (here:
    ``$PHALANX_DATA_DIR``, else the standard one)."""
    return data_dir.expanduser().resolve() == default_data_dir().expanduser().resolve()


def phalanx_command(command: str, data_dir: Path) -> str:
    """Return ``phalanx <command>``, with ``--data-dir`` unless ``data_dir`` is the default."""
    if is_default_data_dir(data_dir):
        return f"phalanx {command}"
    return f"phalanx {command} --data-dir {shlex.quote(str(data_dir))}"


def how_to_stop(servers: Sequence[RunningServer]) -> str:
    """Return which of ``servers`` (at least one) run and the command that stops each."""
    listed = ", ".join(
        f"--data-dir {shlex.quote(str(s.data_dir))} (pid {s.pid}, {s.url})" for s in servers
    )
    if len(servers) == 1:
        stop = phalanx_command("down", servers[0].data_dir)
        return f"a server is running with {listed}: stop it with `{stop}`"
    return f"servers are running with {listed}: stop one with `phalanx down --data-dir DIR`"


def is_alive(pid: int) -> bool:
    """Return whether ``pid`` is a live process; reaps it first if it is our exited child."""
    with contextlib.suppress(ChildProcessError):
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _answers(info: ServerInfo, data_dir: Path) -> bool:
    """Return whether the server in ``info`` answers /healthz as that very process."""
    try:
        with Client(server=info.url, data_dir=data_dir, timeout_s=2) as client:
            health = client.health()
    except ClientError:
        return False
    return health.get("pid") == info.pid


def _looks_like_phalanx(pid: int) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return b"phalanx" in cmdline


def running_server(data_dir: Path) -> ServerInfo | None:
    """Return the live server of ``data_dir``; remove a stale server.json and return None."""
    info = read_server_info(data_dir)
    if info is None:
        return None
    if not is_alive(info.pid):
        (data_dir / SERVER_FILE).unlink(missing_ok=True)
        return None
    return info


def _tail(path: Path, lines: int = 15) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def start_daemon(
    data_dir: Path, up_args: Sequence[str], timeout_s: float = 30, *, is_ha: bool = False
) -> Started:
    """Start ``phalanx up`` detached for ``data_dir`` and return once it answers.

    ``up_args``: the options for ``up`` (without ``--daemon``). Raises DaemonError when a
    server already runs there, or the new one exits or stays silent for ``timeout_s``.
    ``is_ha``: ``up_args`` has ``--ha``; other servers with ``--ha`` may run on ``data_dir``
    (the new one refuses to start beside one without), and the new one names itself in its
    own ``server-<pid>.json`` (server.json names the leader).
    """
    data_dir.mkdir(parents=True, exist_ok=True)
    existing = running_server(data_dir)
    if existing is not None and not is_ha:
        raise DaemonError(
            f"a phalanx server is already running for {data_dir} (pid {existing.pid}, "
            f"{existing.url}); stop it with `{phalanx_command('down', data_dir)}`"
        )
    log_path = data_dir / LOG_FILE
    command = [sys.executable, "-m", "phalanx.cli", "--data-dir", str(data_dir), "up", *up_args]
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            close_fds=True,
        )
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        code = process.poll()
        if code is not None:
            tail = _tail(log_path)
            raise DaemonError(
                f"the server exited with code {code} while starting; see {log_path}"
                + (f":\n{tail}" if tail else "")
            )
        info = _own_info(data_dir, process.pid) if is_ha else read_server_info(data_dir)
        if info is not None and info.pid == process.pid and _answers(info, data_dir):
            # Forget the child without waiting for it: it outlives this command on purpose.
            process.returncode = 0
            return Started(info.url, process.pid, log_path)
        time.sleep(0.1)
    process.terminate()
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(5)
    raise DaemonError(
        f"the server did not answer within {timeout_s:g}s and was stopped; see {log_path}"
    )


def _own_info(data_dir: Path, pid: int) -> ServerInfo | None:
    """What the high-availability server ``pid`` wrote about itself, if it has yet."""
    try:
        data = json.loads((data_dir / f"server-{pid}.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("pid") != pid:
        return None
    url, token_file = data.get("url"), data.get("token_file")
    if not isinstance(url, str):
        return None
    return ServerInfo(url, pid, token_file if isinstance(token_file, str) else "")


def stop_daemon(data_dir: Path, timeout_s: float = 30) -> int | None:
    """SIGTERM the server of ``data_dir`` and wait until it has exited.

    Returns its pid, or None when none was running. Raises DaemonError when the pid in
    server.json is not a phalanx server, or it is still alive after ``timeout_s``.
    """
    info = running_server(data_dir)
    if info is None:
        return None
    if not _answers(info, data_dir) and not _looks_like_phalanx(info.pid):
        raise DaemonError(
            f"process {info.pid} named in {data_dir / SERVER_FILE} does not look like a phalanx "
            "server; not stopping it (remove that file if it is stale)"
        )
    with contextlib.suppress(ProcessLookupError):
        os.kill(info.pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while is_alive(info.pid):
        if time.monotonic() >= deadline:
            raise DaemonError(
                f"the server (pid {info.pid}) is still running {timeout_s:g}s after SIGTERM; "
                f"stop it with `kill -9 {info.pid}`"
            )
        time.sleep(0.1)
    after = read_server_info(data_dir)
    if after is not None and after.pid == info.pid:  # a new leader (--ha) may have written it
        (data_dir / SERVER_FILE).unlink(missing_ok=True)
    return info.pid
