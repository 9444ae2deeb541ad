"""The device rule, shared by the config check and the run: ``auto`` is cuda when available, else cpu."""

from __future__ import annotations

import torch

from bench.errors import DeviceUnavailable


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
