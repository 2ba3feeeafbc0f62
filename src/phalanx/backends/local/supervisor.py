"""The supervisor of one local pod: ``python -m phalanx.backends.local.supervisor <pod_dir>``.

The local backend starts it as the leader of a new session and process group. It records its
own pid, starts the workload from ``<pod_dir>/launch.json`` as a child in the same group with
stdout and stderr appended to ``output.log``, relays SIGTERM/SIGINT to the whole group once,
waits, and writes ``exit.json`` atomically. Then it SIGKILLs whatever is left of the group
(itself included): a pod ends with its main process, as a container does.

Standard library only, and nothing from phalanx: it must start fast, and the backend runs it as
a plain file with ``python -I``. The file helpers at the bottom are shared with the backend.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import FrameType
from typing import BinaryIO

__all__ = ["main", "read_json", "read_start_ticks", "write_json_atomic"]

#: Exit code reported when the workload could not be started at all (as a shell does).
NOT_STARTED_EXIT_CODE = 127
#: The reason in exit.json when it could not: the workload's fault (a missing command or
#: working directory, a bad environment), never the node's.
LAUNCH_ERROR = "LaunchError"


class _Relay:
    """Relays a termination signal to the pod's whole process group exactly once.

    The backend signals the supervisor alone; the supervisor forwards to the group, which also
    reaches the supervisor again: that echo is recognised and dropped. A signal that arrives
    before the workload has started is held and relayed as soon as it has.
    """

    def __init__(self) -> None:
        self.child: subprocess.Popen[bytes] | None = None
        self.held: list[int] = []
        self.relayed: set[int] = set()

    def on_signal(self, signum: int, _frame: FrameType | None) -> None:
        if signum in self.relayed:
            return
        if signum not in self.held:
            self.held.append(signum)
        if self.child is not None:
            self.flush()

    def flush(self) -> None:
        while self.held:
            signum = self.held.pop(0)
            self.relayed.add(signum)
            if os.getpgrp() == os.getpid():
                os.killpg(os.getpgrp(), signum)
            elif self.child is not None:  # run by hand, not as a group leader: spare our group
                self.child.send_signal(signum)


def main(argv: list[str]) -> int:
    """Supervise the pod in ``argv[0]``; return the process exit status."""
    if len(argv) != 1:
        print("usage: python -m phalanx.backends.local.supervisor POD_DIR", file=sys.stderr)
        return 2
    pod_dir = Path(argv[0]).absolute()
    write_json_atomic(
        pod_dir / "pid.json", {"pid": os.getpid(), "start_ticks": read_start_ticks(os.getpid())}
    )
    relay = _Relay()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, relay.on_signal)
    with (pod_dir / "output.log").open("ab", buffering=0) as log:
        child, message = _start(pod_dir, log)
        if child is None:
            log.write(f"phalanx: {message}\n".encode())
            _write_exit(pod_dir, NOT_STARTED_EXIT_CODE, None, message, reason=LAUNCH_ERROR)
            return NOT_STARTED_EXIT_CODE
        with child:
            relay.child = child
            relay.flush()
            returncode, oom = _wait(child, _memory_limit(pod_dir))
    if oom:
        log_line = f"phalanx: {oom}\n".encode()
        with (pod_dir / "output.log").open("ab") as log:
            log.write(log_line)
        _write_exit(pod_dir, None, signal.SIGKILL, oom, reason="OOMKilled")
    elif returncode < 0:
        _write_exit(pod_dir, None, -returncode, "")
    else:
        _write_exit(pod_dir, returncode, None, "")
    if os.getpgrp() == os.getpid():
        os.killpg(os.getpgrp(), signal.SIGKILL)
    return 0


def _start(pod_dir: Path, log: BinaryIO) -> tuple[subprocess.Popen[bytes] | None, str]:
    """Start the workload; return it, or None and a message saying why it could not start."""
    try:
        spec = read_json(pod_dir / "launch.json")
    except (OSError, ValueError) as exc:
        return None, f"cannot read launch.json: {exc}"
    argv = [*_strings(spec.get("command")), *_strings(spec.get("args"))]
    env_spec = spec.get("env")
    env = {str(k): str(v) for k, v in env_spec.items()} if isinstance(env_spec, dict) else {}
    working_dir = str(spec.get("working_dir") or pod_dir)
    if not argv:
        return None, "no command to run; set command (or args) in the pod set"
    if not Path(working_dir).is_dir():
        return None, f"working directory {working_dir!r} does not exist or is not a directory"
    user = spec.get("user")
    as_user: dict[str, object] = {}
    if isinstance(user, dict):  # the server is root: the workload runs as the pod user
        as_user = {
            "user": int(user["uid"]),
            "group": int(user["gid"]),
            "extra_groups": [],
            "umask": 0o077,
        }
    try:
        child = subprocess.Popen(  # type: ignore[call-overload]
            argv,
            env=env,
            cwd=working_dir,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            **as_user,
        )
    except FileNotFoundError:
        where = "" if "/" in argv[0] else f" in PATH={env.get('PATH', '')!r}"
        return None, f"command {argv[0]!r} not found{where}"
    except PermissionError:
        return None, f"command {argv[0]!r} is not executable (permission denied)"
    except OSError as exc:
        if exc.errno == errno.ENOEXEC:
            return None, f"command {argv[0]!r} is not executable (exec format error; add a #! line)"
        return None, f"cannot start {argv[0]!r}: {exc}"
    except ValueError as exc:  # e.g. a NUL byte in an argument
        return None, f"cannot start {argv[0]!r}: {exc}"
    return child, ""


def _memory_limit(pod_dir: Path) -> int | None:
    try:
        limit = read_json(pod_dir / "launch.json").get("memory_limit_bytes")
    except (OSError, ValueError):
        return None
    return limit if isinstance(limit, int) and limit > 0 else None


def _wait(child: subprocess.Popen[bytes], limit: int | None) -> tuple[int, str]:
    """Wait for the workload; with a memory ``limit``, SIGKILL the pod's processes once their
    resident memory together exceeds it. Returns (return code, OOM message or "")."""
    if limit is None:
        return child.wait(), ""
    while True:
        try:
            return child.wait(timeout=0.2), ""
        except subprocess.TimeoutExpired:
            used, pids = _group_memory(os.getpgrp())
            if used > limit:
                for pid in pids:
                    if pid != os.getpid():
                        with contextlib.suppress(ProcessLookupError):
                            os.kill(pid, signal.SIGKILL)
                child.wait()
                return -signal.SIGKILL, (
                    f"OOM-killed: the pod's processes used {used} bytes of memory, above its "
                    f"memory limit of {limit} bytes"
                )


def _group_memory(pgid: int) -> tuple[int, list[int]]:
    """Return the resident memory in bytes of the processes in group ``pgid``, and their pids."""
    page = os.sysconf("SC_PAGE_SIZE")
    total, pids = 0, []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        stat = read_proc_stat(int(entry.name))
        if stat is not None and len(stat) > 21 and int(stat[2]) == pgid:
            pids.append(int(entry.name))
            total += int(stat[21]) * page
    return total, pids


def _strings(value: object) -> list[str]:
    return [str(item) for item in value] if isinstance(value, list) else []


def _write_exit(
    pod_dir: Path, exit_code: int | None, signum: int | None, message: str, reason: str = ""
) -> None:
    status: dict[str, object] = {
        "exit_code": exit_code,
        "signal": signum,
        "finished_at": time.time(),
    }
    if reason:
        status["reason"] = reason
    if message:
        status["message"] = message
    write_json_atomic(pod_dir / "exit.json", status)


def write_json_atomic(path: Path, data: object) -> None:
    """Write ``data`` as JSON to ``path`` so that readers see the old file or the whole new one:
    a temporary file in the same directory, fsynced, then renamed over ``path``."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with tmp.open("w", encoding="utf-8") as f:
        json.dump(data, f)
        f.flush()
        os.fsync(f.fileno())
    tmp.replace(path)


def read_json(path: Path) -> dict[str, object]:
    """Return the JSON object in ``path``; raises OSError or ValueError (not an object too)."""
    data = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise ValueError(f"{path} does not hold a JSON object")
    return data


def read_start_ticks(pid: int) -> int | None:
    """Return when process ``pid`` started (clock ticks since boot, /proc/<pid>/stat field 22),
    or None if there is no such process. A pid and its start time name a process uniquely."""
    stat = read_proc_stat(pid)
    return None if stat is None else int(stat[19])


def read_proc_stat(pid: int) -> list[str] | None:
    """Return the fields of /proc/<pid>/stat after the command name (field 3, the state, is at
    index 0), or None if there is no such process."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    # The command name is in parentheses and may itself hold spaces and parentheses.
    return text[text.rfind(")") + 2 :].split()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
