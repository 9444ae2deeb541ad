"""Clocks and memory: the parts of a run whose numbers people must be able to trust.

Rules (docs/architecture.md, "Measurement rules"): a CUDA interval is closed by ``torch.cuda.synchronize()``
before the wall clock is read, and is also timed by CUDA events so the two can be compared; intervals use
``time.perf_counter``, never ``time.time``; peak-memory counters are reset at the start of every run.
"""

from __future__ import annotations

import contextlib
import gc
import resource
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from bench.device import synchronize

MIB = 2**20


#: what torch and its libraries say when a device's memory runs out, besides torch.cuda.OutOfMemoryError
OOM_MESSAGES = ("out of memory", "can't allocate memory", "CUDNN_STATUS_ALLOC_FAILED", "CUBLAS_STATUS_ALLOC_FAILED")


def is_out_of_memory(err: BaseException) -> bool:
    """Whether ``err`` is the device running out of memory: a run's ``oom``, a max-batch attempt that failed."""
    if isinstance(err, torch.cuda.OutOfMemoryError):
        return True
    return isinstance(err, RuntimeError) and any(m in str(err) for m in OOM_MESSAGES)


def timestamp() -> float:
    """Unix time, for when something happened, comparable across processes (runs that timed at once); never for
    how long it took: the wall clock jumps with NTP, so intervals are the Stopwatch's perf_counter."""
    return time.time()


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


#: the fewest steps an epoch needs for its host lead: the queue fills over the first ones
LEAD_MIN_STEPS = 8


class StepEvents:
    """CUDA events around each step and each host-to-device copy of an epoch, read once after it.

    Recording an event queues a timestamp on the stream; it does not wait for the GPU, so the timed loop
    makes no extra host sync. After the epoch's closing synchronize, :meth:`totals` sums the intervals: the
    time the stream spent on training steps (GPU busy) and on copies. A pool of events is made once per run,
    outside the timed epochs. On the CPU every method is a no-op and the totals are None.

    The events count a step's gaps between kernels as busy, so a step of tiny kernels launched one by one
    reads as busy as a step of large ones. :meth:`lead_steps` tells them apart: each step's host clock is
    read as its first event is queued, and after the epoch set against when the GPU reached that event.
    Where the GPU sets the pace the host runs ahead, and the lag is a step or more; where the host does,
    the GPU reaches each step as soon as it is queued.
    """

    KINDS = ("step", "copy")

    def __init__(self, device: torch.device, steps: int) -> None:
        self.enabled = device.type == "cuda"
        self.device = device
        self._stream: torch.cuda.Stream | None = None
        pairs = steps + 1 if self.enabled else 0
        self._pairs = {
            kind: [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)) for _ in range(pairs)]
            for kind in self.KINDS
        }
        self._counts = dict.fromkeys(self.KINDS, 0)
        #: the host's clock as each step's first event was queued, and the origin both clocks are read from
        self._queued = [0.0] * pairs
        self._origin = torch.cuda.Event(enable_timing=True) if self.enabled else None
        self._close = torch.cuda.Event(enable_timing=True) if self.enabled else None
        self._origin_s = 0.0
        if self.enabled:  # torch creates a CUDA event at its first record: here, not in the first timed epoch
            for pair in self._pairs.values():
                for start, end in pair:
                    start.record()
                    end.record()
            self._origin.record()  # (the origin's creation would otherwise fall between its two clock reads)
            self._close.record()
            torch.cuda.synchronize(device)

    def reset(self) -> None:
        """Start an epoch's count; outside its clock."""
        self._counts = dict.fromkeys(self.KINDS, 0)
        # The stream, looked up once: record() with no stream builds a Stream object (a device switch and back)
        # at every call. Two a step cost MediumNet's plain step at batch 256 about 3% in a probe on an H100 (a
        # noisy one), which is the harness's whole budget.
        self._stream = torch.cuda.current_stream(self.device) if self.enabled else None
        if self._origin is not None:
            # With nothing queued the GPU reaches the origin event as it is recorded: both clocks start here,
            # the host's read just before the record, as each step's is.
            torch.cuda.synchronize(self.device)
            self._origin_s = time.perf_counter()
            self._origin.record(self._stream)

    def started(self, kind: str) -> None:
        """A step or a copy (``kind``) is queued from here on."""
        if self.enabled:
            if kind == "step":
                self._queued[self._counts[kind]] = time.perf_counter()
            self._pairs[kind][self._counts[kind]][0].record(self._stream)

    def done(self, kind: str) -> None:
        if self.enabled:
            self._pairs[kind][self._counts[kind]][1].record(self._stream)
            self._counts[kind] += 1

    def totals(self) -> tuple[float | None, float | None]:
        """(GPU busy in steps, copies) in seconds; call after the epoch's synchronize."""
        if not self.enabled:
            return None, None
        seconds = {
            kind: sum(start.elapsed_time(end) for start, end in self._pairs[kind][: self._counts[kind]]) / 1000.0
            for kind in self.KINDS
        }
        return seconds["step"], seconds["copy"]

    def lead_steps(self) -> float | None:
        """How far ahead of the GPU the host queued the epoch's steps, in steps: the median, over the second
        half of its steps, of the time from queuing a step to the GPU reaching it, over the median time between
        steps' starts on the GPU. The first half is left out: an epoch starts with nothing queued, and a host
        that runs ahead needs steps to get there. Call after the epoch's synchronize; None on the CPU and for
        an epoch of fewer than LEAD_MIN_STEPS steps."""
        steps = self._counts["step"]
        if self._origin is None or self._close is None or steps < LEAD_MIN_STEPS:
            return None
        # The two clocks tick at slightly different rates (the GPU's timer, and the host's as NTP slews it: up
        # to 500 ppm, 5 ms over a 10 s epoch, two steps of 2 ms). A second pair of readings, taken as the
        # first with nothing queued, after the epoch and outside its clock, sets the GPU's times onto the host's
        # clock in proportion rather than from the origin alone.
        torch.cuda.synchronize(self.device)
        close_s = time.perf_counter()
        self._close.record(self._stream)
        torch.cuda.synchronize(self.device)
        gpu_span = self._origin.elapsed_time(self._close) / 1000.0
        rate = (close_s - self._origin_s) / gpu_span if gpu_span > 0 else 1.0  # host seconds per GPU second
        starts = [rate * self._origin.elapsed_time(start) / 1000.0 for start, _ in self._pairs["step"][:steps]]
        lags = [gpu - (host - self._origin_s) for gpu, host in zip(starts, self._queued[:steps], strict=True)]
        period = float(np.median(np.diff(starts)))
        return max(0.0, float(np.median(lags[steps // 2 :]))) / period if period > 0 else None


def collect_garbage() -> None:
    """Free what earlier work left in reference cycles (a model, a captured graph, their CUDA tensors), so that
    memory read next is the run's own.

    A full collection walks every object the collector tracks, and once torch and Hydra are imported a
    process holds ~350,000 that live as long as it does: 0.2 s a collection on 2 cores, three a CUDA run,
    more in a `max_batch` search. So the first collection freezes what survives it (``gc.freeze``), mostly
    the imported modules, and later ones walk only what was made since (which includes Inductor's ~150,000
    objects when a later run is the first to compile). A frozen object in a cycle that dies is never freed;
    only what was alive at that first collection (in the CLI, before any training) is frozen, so this can
    leak only that once. Forked DataLoader workers also copy fewer of the parent's pages.
    """
    gc.collect()
    if gc.get_freeze_count() == 0:
        gc.freeze()


def release_cached_memory(device: torch.device) -> None:
    """Free garbage cycles and hand the caching allocator's unused blocks back to the driver (CUDA), so what
    comes next (the timed epochs, the next attempt, the next job) starts from what is really in use."""
    collect_garbage()
    torch.cuda.synchronize(device)
    torch.cuda.empty_cache()


def reset_peak_memory(device: torch.device) -> None:
    """Start a run's memory accounting from zero; earlier runs in this process must not show up."""
    collect_garbage()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        _clear_cublas_workspaces()
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    _reset_peak_rss()


def _clear_cublas_workspaces() -> None:
    # cuBLAS keeps one workspace per (handle, stream), allocated through the caching allocator (so counted
    # as allocated memory) and never freed: a run on new streams would leave its workspaces to the next
    # job's peak. Clearing them makes every run allocate its own in its warm-up, as job 0 of a process
    # does. This is what PyTorch's own CUDA leak check and Inductor's CUDA graphs do; the call is private,
    # hence the guard.
    clear = getattr(torch._C, "_cuda_clearCublasWorkspaces", None)
    if clear is not None:
        clear()


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
