"""The device rule, shared by the config check and the run: ``auto`` is cuda when available, else cpu."""

from __future__ import annotations

import re
from pathlib import Path

import torch

from bench.errors import DeviceUnavailable

#: where the NVIDIA driver lists this machine's GPUs, a folder each: the local launcher's GPU slots
#: (conf/hydra/launcher/local.yaml) come from here, or from ``$BENCH_LOCAL_GPUS``
NVIDIA_GPUS = Path("/proc/driver/nvidia/gpus")


def resolve_device(name: str) -> torch.device:
    """``auto`` → cuda when available, else cpu (the lab's rule); ``cuda`` without CUDA is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        built = f"built with CUDA {torch.version.cuda}" if torch.version.cuda else "a CPU-only build"
        raise DeviceUnavailable(
            f"device=cuda but no CUDA GPU is usable here (torch {torch.__version__}, {built}); "
            "use device=cpu or device=auto"
        )
    return torch.device(name)


def targets_cuda(name: str) -> bool:
    """Whether a run will ask for CUDA, counting ``device=cuda`` on a machine without it."""
    try:
        return resolve_device(name).type == "cuda"
    except DeviceUnavailable:
        return True


def device_type(name: str) -> str:
    """What ``name`` means here, for records (``auto`` is recorded as cpu or cuda)."""
    try:
        return resolve_device(name).type
    except (DeviceUnavailable, RuntimeError):  # unavailable, or not a device torch knows (device.name=gpu)
        return name


def synchronize(device: torch.device) -> None:
    """Wait for queued GPU work, so that a wall-clock read covers it. A no-op on CPU."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def machine_gpus() -> int:
    """How many NVIDIA GPUs this machine has, whatever ``CUDA_VISIBLE_DEVICES`` shows this process: NVML's count,
    else the driver's list in /proc (a container may mount one and not the other), else none."""
    try:
        import pynvml

        pynvml.nvmlInit()
        try:
            return int(pynvml.nvmlDeviceGetCount())
        finally:
            pynvml.nvmlShutdown()
    except Exception:  # no NVML library, or no driver: NVMLError, ImportError, OSError
        return len(list(NVIDIA_GPUS.iterdir())) if NVIDIA_GPUS.is_dir() else 0


def check_local_gpus(value: str) -> None:
    """``$BENCH_LOCAL_GPUS``, the GPUs ``hydra/launcher=local`` may use: comma-separated indices of GPUs this
    machine has. One it lacks is refused (DeviceUnavailable, exit 2 before any job): its jobs would see no GPU,
    and ``device=auto`` would train them on the CPU without a word."""
    indices = [part.strip() for part in value.split(",")]
    if not all(re.fullmatch(r"\d+", i) for i in indices):
        raise DeviceUnavailable(f"BENCH_LOCAL_GPUS={value}: it must be comma-separated GPU indices, such as 0,1")
    count = machine_gpus()
    if count == 0:
        raise DeviceUnavailable(
            f"BENCH_LOCAL_GPUS={value} names GPUs, but this machine has none (neither NVML nor {NVIDIA_GPUS} "
            "shows one): unset it, and local jobs run one at a time on the CPU"
        )
    missing = [i for i in indices if int(i) >= count]
    if missing:
        raise DeviceUnavailable(
            f"BENCH_LOCAL_GPUS={value}: this machine has no GPU {', '.join(missing)} (it has {count}, numbered 0 "
            f"to {count - 1})"
        )
