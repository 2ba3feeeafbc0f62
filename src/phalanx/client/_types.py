"""The JSON the API returns, as TypedDicts: what ``Client`` methods hand back.

They are the server's own definitions (``phalanx.api.schemas``, which FastAPI uses as its
response models), re-exported: one source, nothing to keep in step. That module needs only
the standard library, so the client still imports without FastAPI or pydantic.
"""

from __future__ import annotations

from phalanx.api.schemas import (
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
    "ApplyOutcome",
    "ApplyRequest",
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
    "JobInfo",
    "KindInfo",
    "LogChunk",
    "MetadataInfo",
    "NodeFailureInfo",
    "NodeInfo",
    "OwnerReferenceInfo",
    "PodInfo",
    "ProgressInfo",
    "QuarantineInfo",
    "QueueInfo",
    "ReasonInfo",
    "TaintInfo",
    "VersionInfo",
    "WatchEvent",
]
