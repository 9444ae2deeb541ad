"""The energy meter: the arithmetic, and the paths without NVML (no package, no driver, the CPU) never raising."""

from __future__ import annotations

import sys
import time

import pytest
import torch

from bench.energy import EnergyMeter, EpochEnergy, epoch_energy, short_window_note
from conftest import needs_cuda

NO_FIGURES = EpochEnergy(joules=None, watts=None, samples_per_joule=None)


def test_epoch_energy_arithmetic():
    # 1,000,000 mJ → 1,500,000 mJ is 500 J; over 2.5 s that is 200 W; 10,000 samples / 500 J = 20 samples/J.
    figures = epoch_energy(1_000_000, 1_500_000, seconds=2.5, samples=10_000)
    assert figures.joules == pytest.approx(500.0)
    assert figures.watts == pytest.approx(200.0)
    assert figures.samples_per_joule == pytest.approx(20.0)


def test_a_short_timed_window_is_noted_as_rough():
    # A fast path's epochs can last tens of milliseconds, and the counter moves in steps: such figures are rough.
    note = short_window_note(0.21)
    assert note is not None and "0.21 s in all" in note and "rough" in note
    assert short_window_note(3.0) is None


def test_epoch_energy_edge_cases():
    assert epoch_energy(5_000, 5_000, seconds=1.0, samples=64) == NO_FIGURES  # not updated yet: unknown, not 0 J
    assert epoch_energy(5_000, 6_000, seconds=0.0, samples=64) == EpochEnergy(1.0, None, 64.0)
    assert epoch_energy(6_000, 5_000, seconds=1.0, samples=64) == NO_FIGURES  # counter went back


def run_epoch(meter: EnergyMeter) -> EpochEnergy:
    meter.start()
    return meter.stop(seconds=1.0, samples=128)


def assert_not_measured(meter: EnergyMeter, why: str) -> None:
    assert not meter.available
    assert meter.note is not None and meter.note.startswith("energy: not measured (")
    assert why in meter.note and "\n" not in meter.note
    assert run_epoch(meter) == NO_FIGURES
    assert run_epoch(meter) == NO_FIGURES
    assert (meter.power_limit_w, meter.sm_clock_mhz) == (None, None)
    meter.close()
    meter.close()


@pytest.mark.parametrize("device", ["cpu", torch.device("cpu")])
def test_cpu_run_is_not_measured(device):
    assert_not_measured(EnergyMeter(device), "CPU")


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU, so NVML may start")
def test_without_a_driver_nvml_does_not_start():
    pytest.importorskip("pynvml")  # nvidia-ml-py is installed: its nvmlInit() fails for want of the driver
    with EnergyMeter(0) as meter:
        assert_not_measured(meter, "NVML could not start")


@pytest.mark.parametrize("device", [0, "cuda", "cuda:0", None])
def test_without_pynvml(monkeypatch, device):
    monkeypatch.setitem(sys.modules, "pynvml", None)  # `import pynvml` raises ImportError
    assert_not_measured(EnergyMeter(device), "NVML is not installed: pip install nvidia-ml-py")


def test_a_bad_device_does_not_raise():
    meter = EnergyMeter("no-such-device")
    assert_not_measured(meter, "not measured")


@pytest.mark.cuda
@needs_cuda
def test_gpu_epoch_is_measured():
    pytest.importorskip("pynvml")
    with EnergyMeter(torch.cuda.current_device()) as meter:
        if not meter.available:
            pytest.skip(meter.note)
        assert meter.note is None
        a = torch.randn(4096, 4096, device="cuda")
        torch.cuda.synchronize()
        meter.start()
        begin = time.perf_counter()
        while time.perf_counter() - begin < 1.0:
            a = (a @ a).tanh_()
        torch.cuda.synchronize()
        figures = meter.stop(time.perf_counter() - begin, samples=1000)
        assert figures.joules is not None and figures.joules > 0
        assert figures.watts is not None and 10 < figures.watts < 2000
        assert figures.samples_per_joule == pytest.approx(1000 / figures.joules)
        assert meter.sm_clock_mhz is not None and meter.sm_clock_mhz > 0
        assert meter.power_limit_w is None or 50 < meter.power_limit_w < 2000
