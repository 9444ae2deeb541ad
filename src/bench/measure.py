"""Clocks, memory and environment capture: the parts of a run whose numbers people must be able to trust.

Rules (DESIGN.md §4): a CUDA interval is closed by ``torch.cuda.synchronize()`` before the wall clock is
read, and is also timed by CUDA events so the two can be compared; intervals use ``time.perf_counter``,
never ``time.time``; peak-memory counters are reset at the start of every run.
"""

from __future__ import annotations

import contextlib
import gc
import importlib.metadata
import os
import platform
import resource
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch

MIB = 2**20


def synchronize(device: torch.device) -> None:
    """Wait for queued GPU work, so that a wall-clock read covers it. A no-op on CPU."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@dataclass
class Interval:
    wall_s: float
    #: the same interval measured by CUDA events on the device's stream (None on CPU)
    cuda_s: float | None


class Stopwatch:
    """Times one interval by a synchronized ``perf_counter`` and, on CUDA, by a pair of CUDA events."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self._cuda = device.type == "cuda"
        self._t0 = 0.0
        self._start_event: torch.cuda.Event | None = None

    def start(self) -> None:
        synchronize(self.device)  # nothing queued earlier may leak into this interval
        if self._cuda:
            self._start_event = torch.cuda.Event(enable_timing=True)
            self._start_event.record()
        self._t0 = time.perf_counter()

    def stop(self) -> Interval:
        end_event = None
        if self._cuda:
            end_event = torch.cuda.Event(enable_timing=True)
            end_event.record()
        synchronize(self.device)  # the interval ends when the GPU is done, not when the host is
        wall = time.perf_counter() - self._t0
        cuda_s = None
        if end_event is not None and self._start_event is not None:
            cuda_s = self._start_event.elapsed_time(end_event) / 1000.0
        return Interval(wall, cuda_s)


def reset_peak_memory(device: torch.device) -> None:
    """Start a run's memory accounting from zero; earlier runs in this process must not show up."""
    gc.collect()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    _reset_peak_rss()


def peak_memory_mb(device: torch.device) -> tuple[float | None, float | None]:
    """Peak (allocated, reserved) CUDA memory in MiB since the last reset; (None, None) on CPU."""
    if device.type != "cuda":
        return None, None
    return (
        torch.cuda.max_memory_allocated(device) / MIB,
        torch.cuda.max_memory_reserved(device) / MIB,
    )


def _reset_peak_rss() -> None:
    # Linux: writing 5 to clear_refs resets the high-water mark (VmHWM), so a sweep's jobs that share one
    # process each report their own peak. Elsewhere the peak stays the process's lifetime peak.
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")


def peak_rss_mb() -> float:
    """Peak resident memory of this process since the last reset (Linux), else over its lifetime."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return peak / MIB if sys.platform == "darwin" else peak / 1024


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return f"{line.split(':', 1)[1].strip()} ({os.cpu_count()} logical cores)"
    except OSError:
        pass
    return f"{platform.processor() or platform.machine()} ({os.cpu_count()} logical cores)"


def _driver_version() -> str | None:
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
            capture_output=True, text=True, timeout=10, check=True,
        )  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip().splitlines()[0] if out.stdout.strip() else None


def _git(*args: str) -> str | None:
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(["git", "-C", str(here), *args], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


PACKAGES = ("bench", "torch", "torchvision", "hydra-core", "omegaconf", "numpy", "pillow")


def package_versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def environment(device: torch.device) -> dict[str, object]:
    """What the numbers depend on: software versions, the GPU and driver, the CPU, the code's commit."""
    cuda = device.type == "cuda"
    commit = _git("rev-parse", "HEAD")
    dirty = None
    if commit is not None:
        dirty = bool(_git("status", "--porcelain", "--untracked-files=no"))
    import torchvision

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "gpu": torch.cuda.get_device_name(device) if cuda else None,
        "driver": _driver_version() if cuda else None,
        "cpu": cpu_name(),
        "torch_threads": torch.get_num_threads(),
        "hostname": socket.gethostname(),
        "git_commit": commit,
        "git_dirty": dirty,
        "packages": package_versions(),
    }
