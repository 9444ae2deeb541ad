"""The largest batch that trains one step in GPU memory, and the straight line its peak memory follows.

``search_max_batch`` knows nothing of torch: it calls ``trial(batch)`` (peak MB, or None when out of
memory), doubling from ``start`` until the first failure, then bisecting until the largest fitting and the
smallest failing batch are within ``tolerance``. ``cuda_step_trial`` is the real trial: one training step
of a fresh model, all in this process, leaving the GPU as it found it. ``fit_line`` turns the fitting
attempts into peak ≈ a + b·batch. "MB" is MiB (2**20 bytes) throughout, as in measure.py.
"""

from __future__ import annotations

import contextlib
import math
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np
import torch
from omegaconf import OmegaConf
from torch import nn

from bench.measure import MIB, is_out_of_memory, release_cached_memory
from bench.schema import StepConfig
from bench.step import build_step

#: peak MB of one step at a batch size, or None when it ran out of memory
Trial = Callable[[int], float | None]


@dataclass(frozen=True)
class Attempt:
    batch: int
    fits: bool
    #: peak allocated MB of the step (None when it ran out of memory)
    peak_mb: float | None
    seconds: float


@dataclass
class Search:
    """Every attempt in the order made, and what they established."""

    attempts: list[Attempt] = field(default_factory=list)
    #: the largest batch that did fit (None: none fitted, not even batch 1, or the budget ran out first)
    largest_fitting: int | None = None
    #: the smallest batch that ran out of memory (None: none did, e.g. the limit was reached)
    smallest_failing: int | None = None
    #: "bracketed within 5%", "reached the limit", "time budget" or "batch 1 does not fit"
    stopped: str = ""

    @property
    def points(self) -> list[tuple[int, float]]:
        """(batch, peak MB) of the attempts that fitted: what ``fit_line`` takes."""
        return [(a.batch, a.peak_mb) for a in self.attempts if a.fits and a.peak_mb is not None]


def search_max_batch(
    trial: Trial,
    *,
    start: int = 16,
    limit: int = 2**24,
    tolerance: float = 0.05,
    budget_s: float | None = None,
    clock: Callable[[], float] = time.perf_counter,
) -> Search:
    """Doubling, then bisection; assumes a batch fits when any larger one does. Few attempts: each is a step.

    The budget is checked before each attempt (a running step cannot be cut short); ``clock`` is injectable
    so that tests need not sleep.
    """
    if start < 1 or limit < 1 or tolerance < 0:
        raise ValueError(f"need start >= 1, limit >= 1, tolerance >= 0; got {start}, {limit}, {tolerance}")
    search = Search()
    began = clock()

    def fits(batch: int) -> bool | None:
        """Run one attempt and record it; None when the budget is spent and nothing was run."""
        if budget_s is not None and clock() - began >= budget_s:
            search.stopped = "time budget"
            return None
        t0 = clock()
        peak = trial(batch)
        search.attempts.append(Attempt(batch, peak is not None, peak, clock() - t0))
        if peak is None:
            search.smallest_failing = batch
        else:
            search.largest_fitting = batch
        return peak is not None

    batch = min(start, limit)
    while (ok := fits(batch)) and batch < limit:  # doubling up to the first failure
        batch = min(2 * batch, limit)
    if ok is None:
        return search
    if ok:
        search.stopped = "reached the limit"
        return search
    while search.largest_fitting is None and batch > 1:  # `start` did not fit: halving down to 1
        batch //= 2
        if fits(batch) is None:
            return search
    if search.largest_fitting is None:
        search.stopped = "batch 1 does not fit"
        return search
    while True:  # bisection; an integer gap of 1 is as close as batches get
        low, high = search.largest_fitting, search.smallest_failing
        assert high is not None
        if high - low <= max(tolerance * low, 1):
            search.stopped = f"bracketed within {tolerance:.0%}"
            return search
        if fits((low + high) // 2) is None:
            return search


@dataclass(frozen=True)
class Fit:
    """peak MB ≈ intercept_mb + slope_mb_per_image · batch, least squares."""

    intercept_mb: float
    slope_mb_per_image: float
    r2: float
    #: 1024 / slope: the marginal images per GiB (2**30 bytes) of GPU memory; NaN when the slope is not positive
    images_per_gb: float
    points: int


#: a fit needs this many distinct batch sizes, the largest at least FIT_SPAN times the smallest: through two
#: points a line always has R² 1, and through batches 16 and 17 a slope is mostly the peaks' noise
FIT_POINTS, FIT_SPAN = 3, 2


def fit_line(points: list[tuple[int, float]]) -> Fit | None:
    """The straight line through (batch, peak MB) points; None with fewer than ``FIT_POINTS`` distinct batch
    sizes or a span under ``FIT_SPAN``×.

    The intercept is what does not scale with the batch (weights, gradients, Adam's state, workspaces, and
    whatever the process held before); the slope is the activations an image costs.
    """
    batches = {batch for batch, _ in points}
    if len(batches) < FIT_POINTS or max(batches) < FIT_SPAN * min(batches):
        return None
    x = np.array([batch for batch, _ in points], dtype=float)
    y = np.array([peak for _, peak in points], dtype=float)
    slope, intercept = np.polyfit(x, y, 1)
    ss_res = float(np.sum((y - (intercept + slope * x)) ** 2))
    ss_tot = float(np.sum((y - y.mean()) ** 2))
    r2 = 1.0 - ss_res / ss_tot if ss_tot > 0 else 1.0  # all peaks equal: the flat line is exact
    per_gb = 1024 / slope if slope > 0 else math.nan
    return Fit(float(intercept), float(slope), r2, float(per_gb), len(points))


def cuda_step_trial(
    build_model: Callable[[], nn.Module],
    *,
    device: torch.device | str = "cuda",
    precision_dtype: torch.dtype | None,
    grad_scaler: bool,
    lr: float = 1e-3,
    adam: str = "auto",
    channels_last: bool = False,
    steps: int = 1,
    num_classes: int = 10,
) -> Trial:
    """A trial for ``search_max_batch``: the peak allocated MB of one training step at a batch size.

    The step is the runs' own eager one (``step.build_step`` with ``adam`` and ``channels_last``, not compiled
    or captured: bench.capacity notes a run's compile mode), so the batch found is one the benchmark can
    train. Model, optimizer and scaler are new in every attempt, so an attempt's peak never depends on the
    attempts before it (a reused model would carry Adam's state and the gradients of the last attempt into
    the next).
    By default an attempt is a run's first step; later steps also hold Adam's two moment buffers through the
    forward pass, 8 bytes per parameter more (34 MB for LargeNet): ``steps=2`` measures that steady state.
    The peak counts everything allocated in the process, including what the caller held before. The labels
    are drawn from ``num_classes``, the model's outputs (an image folder may have fewer than CIFAR's 10).
    """
    device = torch.device(device)
    options = OmegaConf.structured(StepConfig(adam=adam, channels_last=channels_last))
    autocast = str(precision_dtype).removeprefix("torch.") if precision_dtype is not None else None
    precision = OmegaConf.create({"autocast_dtype": autocast, "grad_scaler": grad_scaler})
    memory_format = torch.channels_last if channels_last else torch.contiguous_format

    def one_step(batch: int) -> float:
        # Every tensor of the attempt is a local here, so all of it is freed when this frame goes.
        model = build_model().to(device, memory_format=memory_format)
        step = build_step(model, device, options=options, precision=precision, lr=lr)
        x = torch.randn(batch, 3, 32, 32, device=device).contiguous(memory_format=memory_format)
        y = torch.randint(0, num_classes, (batch,), device=device)
        for _ in range(steps):
            step.fn(x, y)
        torch.cuda.synchronize(device)
        return torch.cuda.max_memory_allocated(device) / MIB

    def trial(batch: int) -> float | None:
        release_cached_memory(device)  # what the caller left cached, or garbage cycles holding tensors
        torch.cuda.reset_peak_memory_stats(device)
        try:
            return one_step(batch)
        except Exception as err:
            if not is_out_of_memory(err):
                raise
            # The traceback's frames hold the model, the batch and the activations: let them go even if
            # something (a logger, a debugger) still holds the exception.
            chained, seen = err, set()
            while chained is not None and id(chained) not in seen:
                seen.add(id(chained))
                traceback.clear_frames(chained.__traceback__)
                chained.__traceback__ = None  # a cleared frame still pins its function and the closures in it
                chained = chained.__cause__ or chained.__context__
        finally:
            torch.cuda.empty_cache()  # this attempt's blocks go back to the driver: the next job starts clean
        release_cached_memory(device)  # out of the except clause, the exception and its traceback are gone
        return None

    return trial


@contextlib.contextmanager
def memory_cap(fraction: float, device: torch.device | str = "cuda") -> Iterator[None]:
    """Let the caching allocator use only ``fraction`` of the GPU, so a search can run in a small budget."""
    device = torch.device(device)
    # The fraction's getter wants an index: torch.device("cuda") has none (seen on torch 2.11).
    index = device.index if device.index is not None else torch.cuda.current_device()
    getter = getattr(torch.cuda, "get_per_process_memory_fraction", None)  # torch >= 2.8; before it, 1.0
    before = getter(index) if getter is not None else 1.0
    torch.cuda.empty_cache()  # cached blocks from before would count against the cap
    torch.cuda.set_per_process_memory_fraction(fraction, index)
    try:
        yield
    finally:
        torch.cuda.empty_cache()
        torch.cuda.set_per_process_memory_fraction(before, index)
