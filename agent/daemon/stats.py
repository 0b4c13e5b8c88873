"""Machine stats a daemon reports with each heartbeat.

CPU, memory, disk and load come from psutil; GPU stats from NVML (``nvidia-ml-py``,
imported as ``pynvml``) when it is installed and a GPU answers. Nothing here raises:
a stat that cannot be read is left out.
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path
from typing import Any

import psutil

log = logging.getLogger(__name__)

_MIB = 1024 * 1024


class GpuStats:
    """Per-GPU utilisation, memory and temperature through NVML, if there is one.

    NVML is initialised once, on first use; when the library or a GPU is missing, every
    call returns an empty list.
    """

    def __init__(self) -> None:
        self._nvml: Any = None
        self._tried = False
        self._lock = threading.Lock()

    def _init(self) -> Any:
        with self._lock:
            if not self._tried:
                self._tried = True
                self._nvml = _load_nvml()
        return self._nvml

    def read(self) -> list[dict[str, Any]]:
        nvml = self._init()
        if nvml is None:
            return []
        try:
            return [_read_gpu(nvml, i) for i in range(nvml.nvmlDeviceGetCount())]
        except nvml.NVMLError as exc:  # a GPU fell off the bus, the driver went away, ...
            log.debug("NVML read failed: %s", exc)
            return []

    def close(self) -> None:
        with self._lock:
            if self._nvml is not None:
                try:
                    self._nvml.nvmlShutdown()
                except self._nvml.NVMLError:
                    pass  # shutting down: nothing more to do with the library
                self._nvml = None


def _load_nvml() -> Any:
    try:
        import pynvml
    except ImportError:
        return None
    try:
        pynvml.nvmlInit()
        if pynvml.nvmlDeviceGetCount() == 0:
            pynvml.nvmlShutdown()
            return None
    except pynvml.NVMLError as exc:
        log.debug("no NVML GPU: %s", exc)
        return None
    return pynvml


def _read_gpu(nvml: Any, index: int) -> dict[str, Any]:
    handle = nvml.nvmlDeviceGetHandleByIndex(index)
    util = nvml.nvmlDeviceGetUtilizationRates(handle)
    mem = nvml.nvmlDeviceGetMemoryInfo(handle)
    name = nvml.nvmlDeviceGetName(handle)
    return {
        "index": index,
        "name": name.decode() if isinstance(name, bytes) else str(name),
        "utilization_pct": float(util.gpu),
        "memory_used_mib": round(mem.used / _MIB, 1),
        "memory_total_mib": round(mem.total / _MIB, 1),
        "temperature_c": float(nvml.nvmlDeviceGetTemperature(handle, nvml.NVML_TEMPERATURE_GPU)),
    }


class MachineStats:
    """Collects one stats dict per call; cheap enough for every heartbeat."""

    def __init__(self, disk_path: str | Path | None = None, gpus: GpuStats | None = None):
        self.disk_path = str(disk_path or Path.home())
        self.gpus = gpus or GpuStats()
        # The first cpu_percent(None) call only primes the counter; later calls report the
        # utilisation since the previous call, without blocking.
        psutil.cpu_percent(interval=None)

    def collect(self) -> dict[str, Any]:
        """A JSON-able dict: cpu_pct, cpu_count, memory_*, disk_*, load_avg, gpus."""
        stats: dict[str, Any] = {"cpu_count": os.cpu_count() or 1}
        stats["cpu_pct"] = psutil.cpu_percent(interval=None)
        mem = psutil.virtual_memory()
        stats.update(
            memory_used_mib=round((mem.total - mem.available) / _MIB, 1),
            memory_total_mib=round(mem.total / _MIB, 1),
            memory_pct=mem.percent,
        )
        try:
            disk = psutil.disk_usage(self.disk_path)
            stats.update(
                disk_used_mib=round(disk.used / _MIB, 1),
                disk_total_mib=round(disk.total / _MIB, 1),
                disk_pct=disk.percent,
            )
        except OSError as exc:
            log.debug("disk usage of %s: %s", self.disk_path, exc)
        try:
            stats["load_avg"] = [round(x, 2) for x in os.getloadavg()]
        except OSError:
            pass  # not on this platform
        gpus = self.gpus.read()
        if gpus:
            stats["gpus"] = gpus
        return stats

    def close(self) -> None:
        self.gpus.close()
