"""Find the server and its token: explicit values, then the environment, then the data dir.

``phalanx up`` writes ``<data_dir>/server.json`` (``{url, pid, token_file}``) while it runs
and keeps its bearer token in ``<data_dir>/token``. The token from the data directory is only
sent to the server that server.json names, or to a loopback address, never elsewhere.

``phalanx up`` also lists its data dir in a per-user registry (``registry_dir()``, one small
JSON file per data dir) while it serves, so that a client looking in the wrong data dir can
say which server is running and how to reach it. Entries whose process is gone are dropped
by whoever reads them.
"""

from __future__ import annotations

import contextlib
import hashlib
import ipaddress
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

DEFAULT_URL = "http://127.0.0.1:8470"
SERVER_FILE = "server.json"
TOKEN_FILE = "token"
ENV_SERVER = "PHALANX_SERVER"
ENV_TOKEN = "PHALANX_TOKEN"
ENV_DATA_DIR = "PHALANX_DATA_DIR"
#: A CA certificate (PEM) to trust for an https server, beside the system's.
ENV_CA_FILE = "PHALANX_CA_FILE"


def standard_data_dir() -> Path:
    """Return the data directory used when neither ``--data-dir`` nor ``$PHALANX_DATA_DIR``
    names one: ``$XDG_DATA_HOME/phalanx``, else ``~/.local/share/phalanx``."""
    xdg = os.environ.get("XDG_DATA_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".local" / "share"
    return base / "phalanx"


def default_data_dir() -> Path:
    """Return ``$PHALANX_DATA_DIR``, else ``standard_data_dir()``."""
    explicit = os.environ.get(ENV_DATA_DIR)
    if explicit:
        return Path(explicit).expanduser()
    return standard_data_dir()


@dataclass(frozen=True, slots=True)
class ServerInfo:
    """What a running server wrote to ``<data_dir>/server.json``."""

    url: str
    pid: int
    token_file: str
    #: The certificate (PEM) to trust for an https ``url`` ("" : the system's CAs).
    ca_file: str = ""


def read_server_info(data_dir: Path) -> ServerInfo | None:
    """Return the contents of ``<data_dir>/server.json``, or None if absent or unreadable."""
    try:
        data = json.loads((data_dir / SERVER_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict):
        return None
    url, pid, token_file = data.get("url"), data.get("pid"), data.get("token_file")
    if not isinstance(url, str) or not isinstance(pid, int):
        return None
    ca_file = data.get("ca_file")
    return ServerInfo(
        url,
        pid,
        token_file if isinstance(token_file, str) else "",
        ca_file if isinstance(ca_file, str) else "",
    )


UrlSource = Literal["argument", "environment", "server.json", "default"]
TokenSource = Literal["argument", "environment", "token file", "none"]


@dataclass(frozen=True, slots=True)
class ServerLocation:
    """Where to send requests and with which token (None: send none), and where each came
    from (for error messages)."""

    url: str
    token: str | None
    data_dir: Path
    url_source: UrlSource = "default"
    token_source: TokenSource = "none"
    #: The CA certificate to trust for https ("": the system's): ``$PHALANX_CA_FILE``, else
    #: the one server.json names when the URL is that server's.
    ca_file: str = ""


def _same_url(a: str, b: str) -> bool:
    return a.rstrip("/") == b.rstrip("/")


def _is_loopback(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _read_token(path: Path) -> str | None:
    try:
        token = path.read_text(encoding="utf-8").strip()
    except OSError:
        return None
    return token or None


def locate_server(
    server: str | None = None, token: str | None = None, data_dir: Path | None = None
) -> ServerLocation:
    """Return the server URL and token to use.

    URL: ``server``, else ``$PHALANX_SERVER``, else server.json's, else ``DEFAULT_URL``.
    Token: ``token``, else ``$PHALANX_TOKEN``, else the token file of the data directory when
    the URL is the one server.json names or a loopback address.
    """
    directory = (data_dir or default_data_dir()).expanduser()
    info = read_server_info(directory)
    url_source: UrlSource
    if server:
        url, url_source = server, "argument"
    elif os.environ.get(ENV_SERVER):
        url, url_source = os.environ[ENV_SERVER], "environment"
    elif info is not None:
        url, url_source = info.url, "server.json"
    else:
        url, url_source = DEFAULT_URL, "default"
    url = url.rstrip("/")
    if "://" not in url:
        url = f"http://{url}"
    token_source: TokenSource = "argument" if token else "environment"
    resolved = token or os.environ.get(ENV_TOKEN)
    if resolved is None:
        if info is not None and _same_url(info.url, url):
            resolved = _read_token(
                Path(info.token_file) if info.token_file else directory / TOKEN_FILE
            )
        elif _is_loopback(url):
            resolved = _read_token(directory / TOKEN_FILE)
        token_source = "token file" if resolved else "none"
    ca_file = os.environ.get(ENV_CA_FILE, "")
    if not ca_file and info is not None and info.ca_file and _same_url(info.url, url):
        ca_file = info.ca_file
    return ServerLocation(url, resolved, directory, url_source, token_source, ca_file)


# -- the registry of running servers ----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RunningServer:
    """A live server listed in the registry: the data dir it serves, its URL and pid."""

    data_dir: Path
    url: str
    pid: int


def registry_dir() -> Path:
    """Return the per-user directory where running servers list their data dirs:
    ``$XDG_RUNTIME_DIR/phalanx/servers``, else ``~/.local/state/phalanx/servers``."""
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    base = Path(runtime) if runtime else Path.home() / ".local" / "state"
    return base / "phalanx" / "servers"


def _entry_path(data_dir: Path) -> Path:
    digest = hashlib.sha256(str(data_dir).encode()).hexdigest()[:16]
    return registry_dir() / f"{digest}.json"


def register_server(data_dir: Path, url: str, pid: int) -> None:
    """List the server ``pid`` serving ``data_dir`` (absolute) at ``url`` in the registry.

    Raises OSError when the registry cannot be written.
    """
    path = _entry_path(data_dir)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    partial = path.with_name(f"{path.name}.{pid}.partial")
    body = {"data_dir": str(data_dir), "url": url, "pid": pid}
    partial.write_text(json.dumps(body), encoding="utf-8")
    partial.replace(path)


def unregister_server(data_dir: Path, pid: int) -> None:
    """Remove the registry entry of ``data_dir`` if the server ``pid`` wrote it."""
    path = _entry_path(data_dir)
    entry = _read_entry(path)
    if entry is not None and entry.pid == pid:
        with contextlib.suppress(OSError):
            path.unlink()


def _read_entry(path: Path) -> RunningServer | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict):
        return None
    data_dir, url, pid = data.get("data_dir"), data.get("url"), data.get("pid")
    if not isinstance(data_dir, str) or not isinstance(url, str) or not isinstance(pid, int):
        return None
    return RunningServer(Path(data_dir), url, pid)


def _is_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def running_servers(excluding: Path | None = None) -> list[RunningServer]:
    """Return the live servers in the registry, by data dir, but the one serving ``excluding``.

    An entry is stale, and removed, when its process is gone or its data dir's server.json
    names another process (the pid was reused). An unreadable registry lists nothing.
    """
    skip = excluding.expanduser().resolve() if excluding is not None else None
    try:
        paths = list(registry_dir().glob("*.json"))
    except OSError:
        return []
    servers: list[RunningServer] = []
    for path in paths:
        entry = _read_entry(path)
        if entry is None:
            continue
        info = read_server_info(entry.data_dir)
        if not _is_alive(entry.pid) or (info is not None and info.pid != entry.pid):
            with contextlib.suppress(OSError):  # another reader removed it, or read-only
                path.unlink()
        elif entry.data_dir != skip:
            servers.append(entry)
    return sorted(servers, key=lambda s: str(s.data_dir))
