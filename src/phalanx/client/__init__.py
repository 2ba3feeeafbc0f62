"""The Python SDK: ``Client`` talks to a phalanx server over HTTP (httpx); the CLI uses it.

    from phalanx.client import Client
    with Client() as phalanx:          # finds the server `phalanx up` started
        phalanx.apply("train.yaml")
        phalanx.wait_for("train", "Succeeded", timeout_s=600)
        print(phalanx.logs("train")["data"])

Layering: imports httpx, ``phalanx.model``-level code and ``phalanx.api.schemas`` (the
API's TypedDicts, standard library only); never the rest of api or controllers, so the SDK
works without the server's dependencies (a test checks that importing it loads no FastAPI,
pydantic or SQLAlchemy).
"""

from phalanx.client._client import FINISHED_PHASES, Client, Page
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
    ApplyRequest,
    DeviceInfo,
    DoctorReport,
    ErrorBodyInfo,
    ErrorDetailInfo,
    ErrorInfo,
    EstimateInfo,
    EventInfo,
    FindingEvidenceInfo,
    FindingInfo,
    FlavorInfo,
    FlavorUsageInfo,
    GpuInfo,
    JobInfo,
    KindInfo,
    LogChunk,
    MetadataInfo,
    NodeFailureInfo,
    NodeInfo,
    OwnerReferenceInfo,
    PodInfo,
    ProgressInfo,
    QuarantineInfo,
    QueueInfo,
    ReasonInfo,
    TaintInfo,
    VersionInfo,
    WatchEvent,
)

__all__ = [
    "DEFAULT_URL",
    "FINISHED_PHASES",
    "ApiError",
    "ApplyOutcome",
    "ApplyRequest",
    "Client",
    "ClientError",
    "DeviceInfo",
    "DoctorReport",
    "ErrorBodyInfo",
    "ErrorDetailInfo",
    "ErrorInfo",
    "EstimateInfo",
    "EventInfo",
    "FindingEvidenceInfo",
    "FindingInfo",
    "FlavorInfo",
    "FlavorUsageInfo",
    "GpuInfo",
    "JobFinishedError",
    "JobInfo",
    "KindInfo",
    "LogChunk",
    "MetadataInfo",
    "NodeFailureInfo",
    "NodeInfo",
    "OwnerReferenceInfo",
    "Page",
    "PodInfo",
    "ProgressInfo",
    "QuarantineInfo",
    "QueueInfo",
    "ReasonInfo",
    "RunningServer",
    "ServerInfo",
    "ServerLocation",
    "ServerUnavailableError",
    "TaintInfo",
    "VersionInfo",
    "WatchEvent",
    "default_data_dir",
    "locate_server",
    "read_server_info",
    "register_server",
    "running_servers",
    "standard_data_dir",
    "unregister_server",
]
