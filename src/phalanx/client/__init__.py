"""The Python SDK: ``Client`` talks to a phalanx server over HTTP (httpx); the CLI uses it.

    from phalanx.client import Client
    with Client() as phalanx:          # finds the server `phalanx up` started
        phalanx.apply("train.yaml")
        phalanx.wait_for("train", "Succeeded", timeout_s=600)
        print(phalanx.logs("train")["data"])

Layering: imports only ``phalanx.model``-level code and httpx; never api or controllers, so
the SDK works without the server's dependencies.
"""

from phalanx.client._client import FINISHED_PHASES, Client
from phalanx.client._discovery import (
    DEFAULT_URL,
    RunningServer,
    ServerInfo,
    ServerLocation,
    default_data_dir,
    locate_server,
    read_server_info,
    register_server,
    running_servers,
    standard_data_dir,
    unregister_server,
)
from phalanx.client._errors import ApiError, ClientError, JobFinishedError, ServerUnavailableError
from phalanx.client._types import (
    ApplyOutcome,
    DeviceInfo,
    ErrorDetailInfo,
    EventInfo,
    FlavorInfo,
    FlavorUsageInfo,
    GpuInfo,
    JobInfo,
    LogChunk,
    NodeInfo,
    PodInfo,
    QueueInfo,
    TaintInfo,
    VersionInfo,
)

__all__ = [
    "DEFAULT_URL",
    "FINISHED_PHASES",
    "ApiError",
    "ApplyOutcome",
    "Client",
    "ClientError",
    "DeviceInfo",
    "ErrorDetailInfo",
    "EventInfo",
    "FlavorInfo",
    "FlavorUsageInfo",
    "GpuInfo",
    "JobFinishedError",
    "JobInfo",
    "LogChunk",
    "NodeInfo",
    "PodInfo",
    "QueueInfo",
    "RunningServer",
    "ServerInfo",
    "ServerLocation",
    "ServerUnavailableError",
    "TaintInfo",
    "VersionInfo",
    "default_data_dir",
    "locate_server",
    "read_server_info",
    "register_server",
    "running_servers",
    "standard_data_dir",
    "unregister_server",
]
