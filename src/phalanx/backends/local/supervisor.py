"""The supervisor of one local pod, run by the backend as a plain file::

    python -I -S supervisor.py POD_DIR [--cwd DIR] [--memory-limit BYTES] [--user UID:GID]
        -- COMMAND [ARG...]

The local backend starts it as the leader of a new session and process group, with the pod's
environment, stdin from /dev/null and stdout and stderr appended to ``POD_DIR/output.log``
(the backend's ``launch.json`` records the same command line, for a restart). It starts the
workload as a child in the same group (working directory ``--cwd``, as ``--user`` when the
server is root, umask 077 then), which inherits its environment and output; records its own
pid; relays SIGTERM/SIGINT to the whole group once; waits, and with ``--memory-limit`` kills
the pod once the group's resident memory exceeds it; writes ``exit.json`` atomically. Then it
SIGKILLs whatever is left of the group (itself included): a pod ends with its main process,
as a container does.

Every pod starts one: its start-up is on the path of every step of a pipeline. So it imports
nothing but built-in and frozen modules (os, sys, errno, time, and ``_signal``, which the
``signal`` module wraps: that one imports enum, which would cost more than starting Python
does), writes its two small JSON files by hand, and starts the workload with fork and exec
rather than through ``subprocess``. Nothing from phalanx: the backend runs it without the
package (``-I -S``).

A supervisor may also be started ahead of its pod (``supervisor.py --wait``, warm.py): it then
reads its launch from stdin (``encode_launch``'s form: the command line above, then the
pod's environment), up to end of file, before doing the same; one that reads no whole launch
(its backend closed the pipe or died) exits at once, having done nothing.
"""

from __future__ import annotations

import errno
import os
import sys
import time

TYPE_CHECKING = False
if TYPE_CHECKING:
    import signal
    from collections.abc import Iterable
    from types import FrameType
else:
    import _signal as signal

__all__ = [
    "LAUNCH_ERROR",
    "NOT_STARTED_EXIT_CODE",
    "WAIT_FLAG",
    "decode_launch",
    "encode_launch",
    "main",
    "read_proc_stat",
    "read_start_ticks",
]

#: Exit code reported when the workload could not be started at all (as a shell does).
NOT_STARTED_EXIT_CODE = 127
#: The reason in exit.json when it could not: the workload's fault (a missing command or
#: working directory, a bad environment), never the node's.
LAUNCH_ERROR = "LaunchError"
#: How often the group's memory is measured against ``--memory-limit``.
MEMORY_CHECK_S = 0.2
_USAGE = "usage: supervisor.py POD_DIR [OPTION VALUE]... -- COMMAND [ARG]... | --wait"
#: The command line of a supervisor started ahead of its pod (its launch comes on stdin).
WAIT_FLAG = "--wait"
#: Frames a launch on stdin: a launch cut short (a partial write) is never taken for one.
_LAUNCH_HEAD, _LAUNCH_TAIL = b"phalanx-launch-1\0", b"\0end"
_RELAYED = (signal.SIGTERM, signal.SIGINT)
#: Python ignores these at start-up; ignored signals survive exec, so the workload gets
#: them back at their defaults (as subprocess does).
_RESTORED = (signal.SIGPIPE, signal.SIGXFSZ)


class _Relay:
    """Relays a termination signal to the pod's whole process group exactly once.

    The backend signals the supervisor alone; the supervisor forwards to the group, which also
    reaches the supervisor again: that echo is recognised and dropped. A signal that arrives
    before the workload has started is held and relayed as soon as it has.
    """

    def __init__(self) -> None:
        self.child: int | None = None
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
                os.kill(self.child, signum)


class _Launch:
    """The command line's launch: the pod directory and what to run, where and how."""

    def __init__(self, argv: list[str]) -> None:
        """Raises ValueError (a usage message) for a malformed command line."""
        if not argv:
            raise ValueError(_USAGE)
        self.pod_dir = os.path.abspath(argv[0])
        self.working_dir = self.pod_dir
        self.memory_limit: int | None = None
        self.user: tuple[int, int] | None = None
        i = 1
        while i < len(argv) and argv[i] != "--":  # options come in pairs (a value may be "--")
            if i + 1 >= len(argv):
                raise ValueError(f"option {argv[i]!r} has no value; {_USAGE}")
            name, value = argv[i], argv[i + 1]
            if name == "--cwd":
                self.working_dir = value
            elif name == "--memory-limit":
                self.memory_limit = int(value) if int(value) > 0 else None
            elif name == "--user":
                uid, _, gid = value.partition(":")
                self.user = (int(uid), int(gid))
            else:
                raise ValueError(f"unknown option {name!r}; {_USAGE}")
            i += 2
        if i >= len(argv):
            raise ValueError(_USAGE)
        self.command = argv[i + 1 :]


def main(argv: list[str], env: dict[str, str] | None = None) -> int:
    """Supervise the pod ``argv`` describes (see the module docstring), its workload run with
    ``env`` (None: this process's environment); return the exit status of this process."""
    if argv == [WAIT_FLAG]:
        return _main_warm()
    try:
        launch = _Launch(argv)
    except ValueError as exc:
        print(exc, file=sys.stderr)
        return 2
    # Only stdin, stdout and stderr go on to the workload (subprocess's close_fds). The
    # listing's own descriptor is in the list, and closed by the time its turn comes.
    for name in os.listdir("/proc/self/fd"):
        if int(name) > 2:
            try:  # not contextlib: see the module docstring
                os.close(int(name))
            except OSError:
                continue
    relay = _Relay()
    # Held back until the workload is started (the relay then sends them on); SIGCHLD stays
    # blocked, to be waited for (sigtimedwait) while the memory is watched.
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, {*_RELAYED, signal.SIGCHLD})
    for signum in _RELAYED:
        signal.signal(signum, relay.on_signal)
    child, message = _start(launch, mask, dict(os.environ) if env is None else env)
    # Not fsynced: it names a process, and no process outlives the machine (backend.py).
    _write_atomic(
        os.path.join(launch.pod_dir, "pid.json"),
        f'{{"pid": {os.getpid()}, "start_ticks": {_json_value(read_start_ticks(os.getpid()))}}}',
        is_durable=False,
    )
    if child is None:
        os.write(2, f"phalanx: {message}\n".encode(errors="backslashreplace"))
        _write_exit(launch.pod_dir, NOT_STARTED_EXIT_CODE, None, message, reason=LAUNCH_ERROR)
        return NOT_STARTED_EXIT_CODE
    relay.child = child
    signal.pthread_sigmask(signal.SIG_UNBLOCK, set(_RELAYED))  # held ones are relayed now
    returncode, oom = _wait(child, launch.memory_limit)
    if oom:
        os.write(2, f"phalanx: {oom}\n".encode())
        _write_exit(launch.pod_dir, None, signal.SIGKILL, oom, reason="OOMKilled")
    elif returncode < 0:
        _write_exit(launch.pod_dir, None, -returncode, "")
    else:
        _write_exit(launch.pod_dir, returncode, None, "")
    if os.getpgrp() == os.getpid():
        os.killpg(os.getpgrp(), signal.SIGKILL)
    return 0


def _main_warm() -> int:
    """A supervisor started ahead of its pod: read the launch from stdin, send stdout and
    stderr to the pod's log and stdin to /dev/null, then supervise it as ``main`` does.
    Without a whole launch (end of file first: the backend closed the pipe, or died), exit
    at once: nothing was started and nothing is written."""
    data = b""
    while chunk := _read_retrying(0):
        data += chunk
    try:
        argv, env = decode_launch(data)
        pod_dir = os.path.abspath(argv[0])
        log = os.open(
            os.path.join(pod_dir, "output.log"), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600
        )
    except (ValueError, IndexError, OSError):
        return 0
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.dup2(log, 1)
    os.dup2(log, 2)
    os.close(null)
    os.close(log)
    return main(argv, env)


def encode_launch(argv: list[str], env: dict[str, str]) -> bytes:
    """A launch for a supervisor started with ``--wait``: its command line (``main``'s
    ``argv``) and the workload's environment. Raises ValueError for a NUL character in any
    of them or an '=' in a variable's name (the OS would refuse them at exec)."""
    items = [*argv, *(f"{key}={value}" for key, value in env.items())]
    if any("\0" in item for item in items) or any("=" in key or not key for key in env):
        raise ValueError("a NUL character in the launch, or '=' in a variable name")
    fields = [str(len(argv)).encode(), *(os.fsencode(item) for item in items)]
    return _LAUNCH_HEAD + b"\0".join(fields) + _LAUNCH_TAIL


def decode_launch(data: bytes) -> tuple[list[str], dict[str, str]]:
    """The (argv, env) of ``encode_launch``'s ``data``; raises ValueError unless it is one
    whole launch."""
    if not (data.startswith(_LAUNCH_HEAD) and data.endswith(_LAUNCH_TAIL)):
        raise ValueError("not a whole launch")
    fields = [os.fsdecode(f) for f in data[len(_LAUNCH_HEAD) : -len(_LAUNCH_TAIL)].split(b"\0")]
    count = int(fields[0])
    if not 0 <= count <= len(fields) - 1:
        raise ValueError("not a whole launch")
    argv, env_items = fields[1 : 1 + count], fields[1 + count :]
    env = {}
    for item in env_items:
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"not a variable: {item!r}")
        env[key] = value
    return argv, env


def _start(launch: _Launch, mask: Iterable[int], env: dict[str, str]) -> tuple[int | None, str]:
    """Start the workload with ``env``; return its pid, or None and a message saying why it
    could not start. ``mask``: the signal mask the workload gets."""
    argv = launch.command
    if not argv:
        return None, "no command to run; set command (or args) in the pod set"
    if not os.path.isdir(launch.working_dir):
        return (
            None,
            f"working directory {launch.working_dir!r} does not exist or is not a directory",
        )
    # PATH is looked up here, not by os.execvpe in the child: os.get_exec_path imports a
    # module, which the child, once switched to the pod user, may not be allowed to read
    # (this Python installed under /root, say), and every command would fail to start.
    search = [] if "/" in argv[0] else os.get_exec_path(env)
    # A pipe the child closes by exec (success) or writes its failure to.
    read_end, write_end = os.pipe2(os.O_CLOEXEC)
    pid = os.fork()
    if pid == 0:  # the child: until exec, nothing that could need another thread or a lock
        stage = "exec"
        try:
            stage = "chdir"
            os.chdir(launch.working_dir)
            stage = "user"
            if launch.user is not None:
                os.umask(0o077)
                os.setgroups([])
                os.setgid(launch.user[1])
                os.setuid(launch.user[0])
            for signum in (*_RELAYED, *_RESTORED):
                signal.signal(signum, signal.SIG_DFL)
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)
            stage = "exec"
            _exec(argv, env, search)
        except BaseException as exc:  # the child must never return into the supervisor
            code = exc.errno if isinstance(exc, OSError) and exc.errno else 0
            os.write(write_end, f"{stage}:{code}:{exc}".encode(errors="backslashreplace"))
        finally:
            os._exit(NOT_STARTED_EXIT_CODE)
    os.close(write_end)
    report = b""
    while chunk := _read_retrying(read_end):
        report += chunk
    os.close(read_end)
    if not report:
        return pid, ""
    os.waitpid(pid, 0)
    stage, errno_text, detail = report.decode(errors="replace").split(":", 2)
    return None, _launch_error(argv, env, stage, int(errno_text), detail)


def _exec(argv: list[str], env: dict[str, str], search: list[str]) -> None:
    """Replace this process with ``argv`` (os.execvpe's PATH search over ``search``, the
    directories looked up before the fork; none: ``argv[0]`` is a path), importing nothing.
    Raises the first error that is not "no such file" (as execvpe does), else the last."""
    if not search:
        os.execve(argv[0], argv, env)
    first: OSError | None = None
    last: OSError = FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), argv[0])
    for directory in search:
        try:
            os.execve(os.path.join(directory, argv[0]), argv, env)
        except (FileNotFoundError, NotADirectoryError) as exc:
            last = exc
        except OSError as exc:
            last = exc
            first = first or exc
    raise first or last


def _read_retrying(fd: int) -> bytes:
    while True:
        try:
            return os.read(fd, 4096)
        except InterruptedError:  # pragma: no cover - PEP 475 retries; kept for clarity
            continue


def _launch_error(argv: list[str], env: dict[str, str], stage: str, code: int, detail: str) -> str:
    """The message for a workload that could not start: ``stage`` failed with errno
    ``code`` (0: not an OSError) and ``detail``."""
    if stage == "chdir":
        return f"cannot enter the working directory: {detail}"
    if stage == "user":
        return f"cannot switch to the pod user: {detail}"
    if code in (errno.ENOENT, errno.ENOTDIR):
        where = "" if "/" in argv[0] else f" in PATH={env.get('PATH', '')!r}"
        return f"command {argv[0]!r} not found{where}"
    if code == errno.EACCES:
        return f"command {argv[0]!r} is not executable (permission denied)"
    if code == errno.ENOEXEC:
        return f"command {argv[0]!r} is not executable (exec format error; add a #! line)"
    return f"cannot start {argv[0]!r}: {detail}"


def _wait(child: int, limit: int | None) -> tuple[int, str]:
    """Wait for the workload; with a memory ``limit``, SIGKILL the pod's processes once their
    resident memory together exceeds it. Returns (return code, negative for a signal, as
    subprocess gives it; OOM message or "")."""
    if limit is None:
        return os.waitstatus_to_exitcode(os.waitpid(child, 0)[1]), ""
    while True:
        # Woken by the child's end (SIGCHLD, blocked since before it started) at once.
        signal.sigtimedwait({signal.SIGCHLD}, MEMORY_CHECK_S)
        done, status = os.waitpid(child, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status), ""
        used, pids = _group_memory(os.getpgrp())
        if used > limit:
            for pid in pids:
                if pid != os.getpid():
                    try:  # not contextlib: see the module docstring
                        os.kill(pid, signal.SIGKILL)
                    except ProcessLookupError:
                        continue
            os.waitpid(child, 0)
            return -signal.SIGKILL, (
                f"OOM-killed: the pod's processes used {used} bytes of memory, above its "
                f"memory limit of {limit} bytes"
            )


def _group_memory(pgid: int) -> tuple[int, list[int]]:
    """Return the resident memory in bytes of the processes in group ``pgid``, and their pids."""
    page = os.sysconf("SC_PAGE_SIZE")
    total, pids = 0, []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        stat = read_proc_stat(int(name))
        if stat is not None and len(stat) > 21 and int(stat[2]) == pgid:
            pids.append(int(name))
            total += int(stat[21]) * page
    return total, pids


def _write_exit(
    pod_dir: str, exit_code: int | None, signum: int | None, message: str, reason: str = ""
) -> None:
    fields = [
        f'"exit_code": {_json_value(exit_code)}',
        f'"signal": {_json_value(signum)}',
        f'"finished_at": {_json_value(time.time())}',
    ]
    if reason:
        fields.append(f'"reason": {_json_value(reason)}')
    if message:
        fields.append(f'"message": {_json_value(message)}')
    _write_atomic(os.path.join(pod_dir, "exit.json"), "{" + ", ".join(fields) + "}")


def _json_value(value: str | int | float | None) -> str:
    """``value`` as JSON (what json.dumps gives, without importing json and the re module
    it needs): null, a number, or a string with quotes, backslashes, control characters and
    lone surrogates escaped."""
    if value is None:
        return "null"
    if not isinstance(value, str):
        return repr(value)
    out = []
    for char in value:
        point = ord(char)
        if char in '"\\':
            out.append("\\" + char)
        elif point < 0x20 or 0xD800 <= point <= 0xDFFF:
            out.append(f"\\u{point:04x}")
        else:
            out.append(char)
    return '"' + "".join(out) + '"'


def _write_atomic(path: str, text: str, is_durable: bool = True) -> None:
    """Write ``text`` to ``path`` so that readers see the old file or the whole new one: a
    temporary file in the same directory, fsynced (when ``is_durable``: the file must
    survive a crash of the machine), then renamed over ``path``."""
    directory, name = os.path.split(path)
    tmp = os.path.join(directory, f".{name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        os.write(fd, text.encode())
        if is_durable:
            os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def read_start_ticks(pid: int) -> int | None:
    """Return when process ``pid`` started (clock ticks since boot, /proc/<pid>/stat field 22),
    or None if there is no such process. A pid and its start time name a process uniquely."""
    stat = read_proc_stat(pid)
    return None if stat is None else int(stat[19])


def read_proc_stat(pid: int) -> list[str] | None:
    """Return the fields of /proc/<pid>/stat after the command name (field 3, the state, is at
    index 0), or None if there is no such process."""
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8", errors="replace") as f:
            text = f.read()
    except OSError:
        return None
    # The command name is in parentheses and may itself hold spaces and parentheses.
    return text[text.rfind(")") + 2 :].split()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
