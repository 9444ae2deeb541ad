"""GPU energy per timed epoch, from NVML's energy counter: joules, average watts, samples per joule.

NVML (``pynvml``, from the ``nvidia-ml-py`` package) is optional. Without it, without a driver, on the CPU, or on a
GPU without the counter (before Volta), every figure is None and ``note`` says why in one line: measuring energy
never breaks a run, so nothing here raises.

The counter is the whole board's (millijoules since the driver loaded): other processes on the same GPU count
too, and so does the whole GPU when the run uses one MIG slice of it.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

import torch

from bench.errors import one_line

_NOT_MEASURED = "energy: not measured"


@dataclass(frozen=True)
class EpochEnergy:
    """One epoch's energy: joules, average watts over the epoch's wall time, samples per joule (None: unknown)."""

    joules: float | None = None
    watts: float | None = None
    samples_per_joule: float | None = None


#: timed epochs shorter than this in all get a note: the counter moves in steps, not continuously
SHORT_WINDOW_S = 1.0


def epoch_energy(start_mj: float, end_mj: float, seconds: float, samples: int) -> EpochEnergy:
    """The figures from two counter reads (millijoules), the epoch's wall time and its sample count."""
    joules = (end_mj - start_mj) / 1000.0
    # Went back: a driver reload. Did not move: the counter has not updated since the epoch began (a GPU never
    # draws 0 W); 0 J would pull the run's mean down, so both are unknown.
    if joules <= 0:
        return EpochEnergy()
    watts = joules / seconds if seconds > 0 else None
    return EpochEnergy(joules=joules, watts=watts, samples_per_joule=samples / joules)


def short_window_note(seconds: float) -> str | None:
    """A note when the timed epochs (``seconds`` in all) are too short for NVML's counter to be read closely."""
    if seconds >= SHORT_WINDOW_S:
        return None
    return (
        f"energy: the timed epochs lasted {seconds:.2f} s in all; NVML's counter moves in steps, not continuously, "
        f"so over less than {SHORT_WINDOW_S:.0f} s the energy figures are rough (more or longer epochs firm them up)"
    )


class EnergyMeter:
    """Reads the NVML energy counter of the GPU torch calls ``device`` around each timed epoch.

    ``start()`` before the epoch, ``stop(seconds, samples)`` after it (after ``torch.cuda.synchronize()``, with
    the epoch's wall time). ``power_limit_w`` is read when the meter is made, ``sm_clock_mhz`` at the end of the
    first epoch (a read at rest would show the idle clock). ``note`` is None while energy is measured.
    """

    def __init__(self, device: torch.device | str | int | None = None) -> None:
        self.note: str | None = None
        self.power_limit_w: float | None = None
        self.sm_clock_mhz: int | None = None
        self._nvml: Any = None
        self._handle: Any = None
        self._start_mj: int | None = None
        try:
            self._open(device)
        except Exception as error:  # never out of the meter
            self._fail(f"{type(error).__name__}: {one_line(error)}")

    @property
    def available(self) -> bool:
        return self._handle is not None

    def _open(self, device: torch.device | str | int | None) -> None:
        if device is None:
            device = torch.device("cuda")
        device = torch.device("cuda", device) if isinstance(device, int) else torch.device(device)
        if device.type != "cuda":
            self.note = f"{_NOT_MEASURED} (the run is on the {device.type.upper()}, not an NVIDIA GPU)"
            return
        try:
            import pynvml
        except ImportError:
            self.note = f"{_NOT_MEASURED} (NVML is not installed: pip install nvidia-ml-py)"
            return
        try:
            pynvml.nvmlInit()
        except Exception as error:
            self.note = f"{_NOT_MEASURED} (NVML could not start: {one_line(error)})"
            return
        self._nvml = pynvml
        if not torch.cuda.is_available():
            return self._fail("CUDA is not available")
        index = device.index if device.index is not None else torch.cuda.current_device()
        handle = _nvml_handle(pynvml, index)
        if handle is None:
            return self._fail(f"cuda:{index} was not found among NVML's GPUs")
        try:
            pynvml.nvmlDeviceGetTotalEnergyConsumption(handle)
        except pynvml.NVMLError as error:
            return self._fail(f"this GPU has no energy counter, which needs Volta or newer: {one_line(error)}")
        self._handle = handle
        with contextlib.suppress(pynvml.NVMLError):
            self.power_limit_w = pynvml.nvmlDeviceGetEnforcedPowerLimit(handle) / 1000.0

    def start(self) -> None:
        """Read the counter at the start of a timed epoch."""
        self._start_mj = self._read()

    def stop(self, seconds: float, samples: int) -> EpochEnergy:
        """Read the counter at the end of the epoch; the figures, or all None when not measured."""
        end_mj, start_mj, self._start_mj = self._read(), self._start_mj, None
        if self.available and self.sm_clock_mhz is None:
            with contextlib.suppress(Exception):
                self.sm_clock_mhz = int(self._nvml.nvmlDeviceGetClockInfo(self._handle, self._nvml.NVML_CLOCK_SM))
        if start_mj is None or end_mj is None:
            return EpochEnergy()
        return epoch_energy(start_mj, end_mj, seconds, samples)

    def close(self) -> None:
        """Release NVML (its init and shutdown are reference counted, so other users are not affected)."""
        if self._nvml is not None:
            with contextlib.suppress(Exception):
                self._nvml.nvmlShutdown()
        self._nvml, self._handle = None, None

    def __enter__(self) -> EnergyMeter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _read(self) -> int | None:
        if self._handle is None:
            return None
        try:
            return int(self._nvml.nvmlDeviceGetTotalEnergyConsumption(self._handle))
        except Exception as error:
            self._fail(f"the energy counter could not be read: {one_line(error)}")
            return None

    def _fail(self, why: str) -> None:
        self.note = f"{_NOT_MEASURED} ({why})"
        self.close()


def _nvml_handle(pynvml: Any, index: int) -> Any:
    """NVML's handle for torch's ``cuda:index``. NVML sees every GPU, torch only CUDA_VISIBLE_DEVICES (renumbered),
    so the index cannot be shared: match by PCI bus id, else by UUID. None when neither matches."""
    props = torch.cuda.get_device_properties(index)
    keys = []
    if all(hasattr(props, a) for a in ("pci_domain_id", "pci_bus_id", "pci_device_id")):
        keys.append((pynvml.nvmlDeviceGetHandleByPciBusId, _bus_id(props)))
    if getattr(props, "uuid", None) is not None:
        keys.append((pynvml.nvmlDeviceGetHandleByUUID, f"GPU-{props.uuid}"))
    for lookup, key in keys:
        try:
            return lookup(key)
        except Exception:
            continue
    return None


def _bus_id(props: Any) -> str:
    """NVML's PCI bus id form, domain:bus:device.function, from torch's device properties."""
    return f"{props.pci_domain_id:08x}:{props.pci_bus_id:02x}:{props.pci_device_id:02x}.0"
