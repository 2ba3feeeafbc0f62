"""Measured GPU utilisation, for the doctor's idle-GPU analyzer: NVML on this machine, or
NVIDIA's DCGM exporter on a cluster (its text format scraped directly, or its series queried
from a Prometheus that scrapes it).

Each reader returns ``{key: DeviceUsage}`` keyed by ``device_key``: the device UUID when the
source gives one (NVML and DCGM both do), else ``<node>/<index>``. Readers never raise for a
missing GPU or an unreachable source: they return nothing, and the doctor falls back to
progress reports. Configuration (``UsageSources.from_env``):

- ``PHALANX_DCGM_PROMETHEUS_URL``: a Prometheus base URL; the query is ``DCGM_FI_DEV_GPU_UTIL``;
- ``PHALANX_DCGM_EXPORTER_URL``: the exporter's metrics URL (``http://host:9400/metrics``);
- NVML is read when the library loads and finds devices (``PHALANX_NVML=0`` turns it off).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass

import httpx
from prometheus_client.parser import text_string_to_metric_families

log = logging.getLogger(__name__)

#: The DCGM field of GPU utilisation (percent of time a kernel ran), as the exporter names it.
DCGM_UTIL = "DCGM_FI_DEV_GPU_UTIL"
#: Labels that name a series' node, most specific first (Prometheus relabelling on Kubernetes
#: usually adds ``node`` or ``kubernetes_node``; the exporter itself sets ``Hostname``).
_NODE_LABELS = ("node", "kubernetes_node", "Hostname")


@dataclass(frozen=True, slots=True)
class DeviceUsage:
    """One device's utilisation (percent, 0–100) and where it was read (``nvml``,
    ``dcgm-exporter`` or ``dcgm-prometheus``)."""

    utilisation_pct: float
    source: str


@dataclass(frozen=True, slots=True)
class UsageSources:
    """Where measured utilisation comes from; see the module docstring."""

    prometheus_url: str = ""
    exporter_url: str = ""
    use_nvml: bool = True
    timeout_s: float = 2.0

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> UsageSources:
        env = os.environ if env is None else env
        return cls(
            prometheus_url=env.get("PHALANX_DCGM_PROMETHEUS_URL", ""),
            exporter_url=env.get("PHALANX_DCGM_EXPORTER_URL", ""),
            use_nvml=env.get("PHALANX_NVML", "1") != "0",
        )


def device_key(uuid: str, node: str, index: int) -> str:
    """The key of a device in a usage map: its UUID, else ``<node>/<index>``."""
    return uuid or f"{node}/{index}"


def usage_from_dcgm_text(text: str, source: str = "dcgm-exporter") -> dict[str, DeviceUsage]:
    """Utilisation per device from the DCGM exporter's text format. Raises ValueError for
    text that is not the Prometheus text format."""
    out: dict[str, DeviceUsage] = {}
    for family in text_string_to_metric_families(text):
        if family.name != DCGM_UTIL:
            continue
        for sample in family.samples:
            out.update(_entry(sample.labels, float(sample.value), source))
    return out


def _entry(labels: Mapping[str, str], value: float, source: str) -> dict[str, DeviceUsage]:
    node = next((labels[k] for k in _NODE_LABELS if labels.get(k)), "")
    gpu = labels.get("gpu", "")
    usage = DeviceUsage(value, source)
    out = {}
    if labels.get("UUID"):
        out[labels["UUID"]] = usage
    if node and gpu.isdigit():
        out[f"{node}/{int(gpu)}"] = usage
    return out


def read_dcgm_exporter(url: str, timeout_s: float = 2.0) -> dict[str, DeviceUsage]:
    """Scrape the exporter at ``url``; nothing when it cannot be read."""
    try:
        response = httpx.get(url, timeout=timeout_s)
        response.raise_for_status()
        return usage_from_dcgm_text(response.text)
    except (httpx.HTTPError, ValueError) as exc:
        log.warning("reading GPU utilisation from the DCGM exporter %s failed: %s", url, exc)
        return {}


def read_dcgm_prometheus(url: str, timeout_s: float = 2.0) -> dict[str, DeviceUsage]:
    """Query the Prometheus at ``url`` for the exporter's latest utilisation; nothing when
    it cannot be read."""
    try:
        response = httpx.get(
            f"{url.rstrip('/')}/api/v1/query", params={"query": DCGM_UTIL}, timeout=timeout_s
        )
        response.raise_for_status()
        results = response.json()["data"]["result"]
        out: dict[str, DeviceUsage] = {}
        for item in results:
            out.update(_entry(item["metric"], float(item["value"][1]), "dcgm-prometheus"))
        return out
    except (httpx.HTTPError, ValueError, KeyError, TypeError) as exc:
        log.warning("querying GPU utilisation from Prometheus %s failed: %s", url, exc)
        return {}


def read_nvml() -> dict[str, DeviceUsage]:
    """Utilisation of this machine's GPUs by UUID; nothing without NVML or GPUs."""
    try:
        import pynvml
    except ImportError:  # the nvidia-ml-py wheel is a dependency, but be safe
        return {}
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError:
        return {}
    out: dict[str, DeviceUsage] = {}
    try:
        for i in range(pynvml.nvmlDeviceGetCount()):
            handle = pynvml.nvmlDeviceGetHandleByIndex(i)
            uuid = pynvml.nvmlDeviceGetUUID(handle)
            uuid = uuid.decode() if isinstance(uuid, bytes) else str(uuid)
            rates = pynvml.nvmlDeviceGetUtilizationRates(handle)
            out[uuid] = DeviceUsage(float(rates.gpu), "nvml")
    except pynvml.NVMLError as exc:
        log.warning("reading GPU utilisation from NVML failed: %s", exc)
    finally:
        pynvml.nvmlShutdown()
    return out


def read_usage(sources: UsageSources) -> dict[str, DeviceUsage]:
    """Every configured source, merged (DCGM over NVML for a device both report)."""
    out: dict[str, DeviceUsage] = {}
    if sources.use_nvml:
        out.update(read_nvml())
    if sources.exporter_url:
        out.update(read_dcgm_exporter(sources.exporter_url, sources.timeout_s))
    if sources.prometheus_url:
        out.update(read_dcgm_prometheus(sources.prometheus_url, sources.timeout_s))
    return out
