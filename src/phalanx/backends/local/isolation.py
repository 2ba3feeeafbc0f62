"""Keeping local pods away from the control plane: private file modes, the unprivileged user
pods run as when the server runs as root, and where pods' own directories live.

What the local backend does with these (see docs/security.md, "Pod isolation"):

- the data directory is 0700 (0711 with a pod user: others may pass through it to the
  directories they own, never list it), and its files — database, token, Secret key, logs,
  launch records — are 0600, under a umask of 077 for everything the server writes later;
- with a pod user, each pod's working directory (``<pod root>/work/<pod id>``) and its job's
  checkpoint directory are owned by that user, mode 0700; the pod's launch record, log and
  status files stay root's (``<data_dir>/pods/<pod id>``, 0700): the workload writes its log
  through the file descriptor it inherits and cannot read any log or launch record;
- the pod root is the data directory when the pod user can reach it; otherwise (a data
  directory under /root, say) a directory of its own, ``/var/lib/phalanx-pods/<hash>``,
  with ``<data_dir>/checkpoints`` a link to its ``checkpoints`` and the pod told the real
  path.

Must not import phalanx.controllers, phalanx.store or phalanx.api.
"""

from __future__ import annotations

import contextlib
import grp
import hashlib
import os
import pwd
import shutil
import stat
import subprocess
from dataclasses import dataclass
from pathlib import Path

#: The user ``phalanx up`` runs pods as when it runs as root and no --pod-user is given;
#: created (``useradd --system``) if missing.
DEFAULT_POD_USER = "phalanx-pod"
#: ``--pod-user none``: pods run as the server's own user (no isolation from it).
NO_POD_USER = "none"
#: The environment variable ``--pod-user`` reads when not given.
POD_USER_ENV = "PHALANX_POD_USER"
#: Where pod roots go when the pod user cannot reach the data directory.
POD_ROOTS = Path("/var/lib/phalanx-pods")
#: Files of the data directory that must be private (the database with its WAL files,
#: the API token, the Secrets key, the server's log and address).
PRIVATE_FILES = (
    "phalanx.db",
    "phalanx.db-wal",
    "phalanx.db-shm",
    "token",
    "secrets.key",
    "server.log",
    "server.json",
)


class PodUserError(RuntimeError):
    """The pod user cannot be used (unknown, cannot be created, or asked for without root);
    the message says what to do."""


@dataclass(frozen=True, slots=True)
class PodUser:
    """The unprivileged user pods run as."""

    name: str
    uid: int
    gid: int


def resolve_pod_user(name: str | None) -> PodUser | None:
    """The user pods should run as for ``--pod-user name`` (None: ``$PHALANX_POD_USER`` if
    set). None when pods run as the server's user: ``name`` is ``none``, or not given while
    the server is not root. As root with no name, the dedicated DEFAULT_POD_USER (created
    if missing). Raises PodUserError."""
    name = name if name is not None else (os.environ.get(POD_USER_ENV) or None)
    is_root = os.geteuid() == 0
    if name == NO_POD_USER or (name is None and not is_root):
        return None
    wanted = name or DEFAULT_POD_USER
    if not is_root:
        raise PodUserError(
            f"--pod-user {wanted}: running pods as another user needs the server to run as "
            f"root; run it as root, or leave --pod-user out (pods then run as you)"
        )
    try:
        entry = pwd.getpwnam(wanted)
    except KeyError:
        if wanted != DEFAULT_POD_USER:
            raise PodUserError(
                f"--pod-user {wanted}: no such user; create it (useradd --system {wanted}) "
                f"or leave --pod-user out to use {DEFAULT_POD_USER}, created on demand"
            ) from None
        entry = _create_user(wanted)
    if entry.pw_uid == 0:
        raise PodUserError(f"--pod-user {wanted}: is root; name an unprivileged user")
    return PodUser(entry.pw_name, entry.pw_uid, entry.pw_gid)


def _create_user(name: str) -> pwd.struct_passwd:
    useradd = shutil.which("useradd") or "/usr/sbin/useradd"
    command = [useradd, "--system", "--user-group", "--no-create-home"]
    command += ["--home-dir", "/nonexistent", "--shell", "/usr/sbin/nologin", name]
    try:
        subprocess.run(command, check=True, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError) as exc:
        detail = getattr(exc, "stderr", "") or str(exc)
        raise PodUserError(
            f"cannot create the pod user {name} ({' '.join(command)}: {detail.strip()}); "
            "create it yourself or pass --pod-user with an existing unprivileged user"
        ) from exc
    return pwd.getpwnam(name)


def secure_data_dir(data_dir: Path, *, is_shared_with_pods: bool = False) -> None:
    """Make ``data_dir`` private: umask 077 for this process from now on, the directory 0700
    (0711 when ``is_shared_with_pods``: a pod user passes through to its own directories)
    and its PRIVATE_FILES 0600."""
    os.umask(0o077)
    data_dir.mkdir(parents=True, exist_ok=True)
    data_dir.chmod(0o711 if is_shared_with_pods else 0o700)
    for name in PRIVATE_FILES:
        with contextlib.suppress(FileNotFoundError):
            (data_dir / name).chmod(0o600)


def can_reach(path: Path, user: PodUser) -> bool:
    """Whether ``user`` may pass through every directory from / down to ``path``."""
    groups = {user.gid} | {g.gr_gid for g in grp.getgrall() if user.name in g.gr_mem}
    current = Path(path).absolute()
    for directory in [*reversed(current.parents), current]:
        try:
            info = directory.stat()
        except OSError:
            return False
        if info.st_uid == user.uid:
            bit = stat.S_IXUSR
        elif info.st_gid in groups:
            bit = stat.S_IXGRP
        else:
            bit = stat.S_IXOTH
        if not info.st_mode & bit:
            return False
    return True


def others_can_run(executable: str) -> bool:
    """Whether a user who is neither ``executable``'s owner nor in its group may run it (the
    real file, every directory above it passable by others, the file executable by them):
    a pod user, unless it was given rights of its own. Python installed under root's home
    (a pyenv in /root, 0700) is the common case where this is False."""
    real = Path(os.path.realpath(executable))
    nobody = PodUser("", uid=-1, gid=-1)
    return can_reach(real.parent, nobody) and bool(real.stat().st_mode & stat.S_IXOTH)


def pod_root(data_dir: Path, user: PodUser) -> Path:
    """Where the pods' working and checkpoint directories go (see the module docstring),
    created (0711, the server's) and, when it is not the data directory, linked from
    ``<data_dir>/checkpoints``."""
    data_dir = Path(data_dir).absolute()
    if can_reach(data_dir, user):
        return data_dir
    digest = hashlib.sha256(str(data_dir).encode()).hexdigest()[:16]
    root = POD_ROOTS / digest
    POD_ROOTS.mkdir(mode=0o711, parents=True, exist_ok=True)
    POD_ROOTS.chmod(0o711)
    root.mkdir(mode=0o711, exist_ok=True)
    root.chmod(0o711)
    (root / "data-dir").write_text(f"{data_dir}\n", encoding="utf-8")
    checkpoints = root / "checkpoints"
    link = data_dir / "checkpoints"
    if link.is_dir() and not link.is_symlink() and not checkpoints.exists():
        link.rename(checkpoints)  # an existing data dir: its checkpoints move with it
    checkpoints.mkdir(mode=0o711, exist_ok=True)
    if not link.is_symlink():
        link.symlink_to(checkpoints, target_is_directory=True)
    return root


def own_directory(path: Path, user: PodUser, *, parent_mode: int = 0o711) -> None:
    """Create ``path`` (0700) owned by ``user``; its parent is made passable (``parent_mode``)."""
    path.parent.mkdir(mode=parent_mode, parents=True, exist_ok=True)
    path.parent.chmod(parent_mode)
    path.mkdir(mode=0o700, exist_ok=True)
    os.chown(path, user.uid, user.gid)
    path.chmod(0o700)


__all__ = [
    "DEFAULT_POD_USER",
    "NO_POD_USER",
    "PodUser",
    "PodUserError",
    "can_reach",
    "own_directory",
    "pod_root",
    "resolve_pod_user",
    "secure_data_dir",
]
