"""What the numbers depend on: software versions, the GPU and driver, the CPU, the code's commit."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import socket
import subprocess
from pathlib import Path

import torch


def usable_cores() -> int:
    """The CPU cores this process may run on: a SLURM job's or a container's share (its affinity mask), not
    the machine's count, which ``os.cpu_count()`` gives. torch's DataLoader judges its workers by the same."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # macOS and Windows have no affinity mask
        return os.cpu_count() or 1


def cpu_name() -> str:
    """The CPU's model and core count, with the cores this process may use where they are fewer."""
    cores = f"{os.cpu_count()} logical cores"
    if usable_cores() < (os.cpu_count() or 1):
        cores += f", {usable_cores()} usable here"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return f"{line.split(':', 1)[1].strip()} ({cores})"
    except OSError:
        pass
    return f"{platform.processor() or platform.machine()} ({cores})"


def _driver_version() -> str | None:
    """The NVIDIA driver's version: from NVML (the library nvidia-smi reads, no process to start), else from
    nvidia-smi where NVML cannot be loaded; None without either."""
    try:
        import pynvml

        pynvml.nvmlInit()
        try:
            version = pynvml.nvmlSystemGetDriverVersion()
        finally:
            pynvml.nvmlShutdown()
        return version.decode() if isinstance(version, bytes) else str(version)
    except Exception:  # no pynvml, no driver library, or an NVML error: nvidia-smi's answer, if it has one
        pass
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
    import torchvision  # only here: the environment is the one place that needs its version

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "cuda": torch.version.cuda,
        # Only where it runs: asking loads the library, ~50 MB of a CPU run's resident memory, for nothing.
        "cudnn": torch.backends.cudnn.version() if cuda and torch.backends.cudnn.is_available() else None,
        "gpu": torch.cuda.get_device_name(device) if cuda else None,
        # Which card, not which kind: two runs that timed at once on one machine shared it only if this is one.
        "gpu_uuid": str(getattr(torch.cuda.get_device_properties(device), "uuid", "")) or None if cuda else None,
        "driver": _driver_version() if cuda else None,
        "cpu": cpu_name(),
        "torch_threads": torch.get_num_threads(),
        "hostname": socket.gethostname(),
        "git_commit": commit,
        "git_dirty": dirty,
        "packages": package_versions(),
    }
