"""Find the server and its token: explicit values, then the environment, then the data dir.

``phalanx up`` writes ``<data_dir>/server.json`` (``{url, pid, token_file}``) while it runs
and keeps its bearer token in ``<data_dir>/token``. The token from the data directory is only
sent to the server that server.json names, or to a loopback address, never elsewhere.
"""

from __future__ import annotations

import ipaddress
import json
import os
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

DEFAULT_URL = "http://127.0.0.1:8470"
SERVER_FILE = "server.json"
TOKEN_FILE = "token"
ENV_SERVER = "PHALANX_SERVER"
ENV_TOKEN = "PHALANX_TOKEN"
ENV_DATA_DIR = "PHALANX_DATA_DIR"


def default_data_dir() -> Path:
    """Return ``$PHALANX_DATA_DIR``, else ``$XDG_DATA_HOME/phalanx``, else
    ``~/.local/share/phalanx`` (the same rule as the server's)."""
    explicit = os.environ.get(ENV_DATA_DIR)
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_DATA_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".local" / "share"
    return base / "phalanx"


@dataclass(frozen=True, slots=True)
class ServerInfo:
    """What a running server wrote to ``<data_dir>/server.json``."""

    url: str
    pid: int
    token_file: str


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
    return ServerInfo(url, pid, token_file if isinstance(token_file, str) else "")


@dataclass(frozen=True, slots=True)
class ServerLocation:
    """Where to send requests and with which token (None: send none)."""

    url: str
    token: str | None
    data_dir: Path


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
    url = server or os.environ.get(ENV_SERVER) or (info.url if info else DEFAULT_URL)
    url = url.rstrip("/")
    if "://" not in url:
        url = f"http://{url}"
    resolved = token or os.environ.get(ENV_TOKEN)
    if resolved is None:
        if info is not None and _same_url(info.url, url):
            resolved = _read_token(
                Path(info.token_file) if info.token_file else directory / TOKEN_FILE
            )
        elif _is_loopback(url):
            resolved = _read_token(directory / TOKEN_FILE)
    return ServerLocation(url, resolved, directory)
