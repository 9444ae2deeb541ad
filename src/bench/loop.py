"""The measured parts of a run: a timed epoch, the rolled-back warm-up, and evaluation.

Rules (docs/architecture.md, "Measurement rules"): the epoch's clock is closed by a synchronize and the
loss is read once, after it; nothing in the timed loop reads a value from the GPU; the warm-up pays
one-time costs and is then undone in place, so training is exactly as without it.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from itertools import islice
from pathlib import Path

import torch
from tqdm import tqdm

from bench import interrupts
from bench.device import synchronize
from bench.energy import EnergyMeter
from bench.loaders import BatchSource, epoch_seed
from bench.measure import StepEvents, Stopwatch
from bench.results import EpochStats
from bench.step import Step

WARMUP_EPOCH = -1  # the shuffle seed index of the warm-up pass, distinct from every timed epoch
PROFILE_EPOCH = -1_000_000  # and of the profiled steps
#: where the progress bar is off (output not a terminal: a SLURM log, CI, a pipe), a line this often within an
#: epoch, from the host's own count of images (no sync; on a GPU, queued ones): a long epoch was silent
PROGRESS_EVERY_S = 30.0

log = logging.getLogger(__name__)


def run_epoch(
    epoch: int,
    epochs: int,
    seed: int,
    model: torch.nn.Module,
    step: Step,
    train: BatchSource,
    clock: Stopwatch,
    events: StepEvents,
    energy: EnergyMeter | None = None,
) -> EpochStats:
    """One timed pass over the training split; the loss is read once, after the clock has stopped.

    Where the time goes is measured without a host sync: the host's wait for each batch (``data_wait_s``),
    and on CUDA, by events read after the epoch, the stream's time in copies and in steps.
    """
    model.train()
    batches = train.batches(epoch_seed(seed, epoch))
    loss_sum = torch.zeros((), device=clock.device)  # each batch's mean loss times its size: a sum over samples
    seen, wait = 0, 0.0
    copies = train.copies
    events.reset()
    with tqdm(total=len(train), desc=f"Epoch {epoch}/{epochs}", unit="batch", leave=False, disable=None) as bar:
        if energy is not None:
            energy.start()  # a host read of NVML's counter, before the clock starts
        clock.start()
        began = time.perf_counter()
        # The bar's off: a line every PROGRESS_EVERY_S. A float compare a step, and a log line (well under a ms)
        # every half minute inside the clock.
        say_at = began + PROGRESS_EVERY_S if bar.disable else float("inf")
        while True:
            t0 = time.perf_counter()
            batch = next(batches, None)
            t1 = time.perf_counter()
            wait += t1 - t0  # the data path alone: the device copy below is not in it
            if batch is None:
                break
            if t1 >= say_at:
                log.info("Epoch %d/%d: %s of %s images after %.0f s", epoch, epochs, f"{seen:,}",
                         f"{train.samples:,}", t1 - began)  # fmt: skip
                say_at = t1 + PROGRESS_EVERY_S
            if copies:
                events.started("copy")
                batch = train.to_device(*batch)
                events.done("copy")
            size = len(batch[1])  # a shape, known to the host: no sync
            events.started("step")
            loss_sum.add_(step.fn(*batch), alpha=size)  # one kernel, as a plain += was
            events.done("step")
            seen += size
            bar.update()
            interrupts.check()
        interval = clock.stop()
    joules = energy.stop(interval.wall_s, train.samples).joules if energy is not None else None
    # The epoch's one host read of the loss, and of the events, after the clock has stopped. The mean over
    # samples, not over batches: a last, partial batch of 8 images counts for 8, not as much as 512.
    loss = (loss_sum / max(seen, 1)).item()
    busy, copy = events.totals()
    return EpochStats(
        epoch=epoch,
        time_s=interval.wall_s,
        samples=train.samples,
        samples_per_s=train.samples / interval.wall_s,
        loss=loss,
        data_wait_s=wait,
        cuda_time_s=interval.cuda_s,
        copy_s=copy,
        gpu_busy_s=busy,
        # A blocking copy (from pageable memory) waits for the GPU every step: nothing is queued ahead of it.
        host_lead_steps=events.lead_steps() if not copies or train.non_blocking else None,
        energy_j=joules,
    )


@contextmanager
def rolled_back(model: torch.nn.Module, step: Step, device: torch.device) -> Iterator[None]:
    """Undo every update made inside: weights, Adam's moments and step count, the loss scale, the RNG.

    Restored in place (copy_/zero_), so tensors keep their storage; a captured CUDA graph stays valid.
    """
    # Copies kept on the host: a rollback inside the measured window (repeat=N) must not add device memory.
    weights = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
    # Optimizer state that exists already is copied back; state made inside is zeroed, since a fresh
    # Adam state is all zeros (step count included): zeroing it equals starting afresh.
    saved = {
        id(value): value.detach().to("cpu", copy=True)
        for state in step.optimizer.state.values()
        for value in state.values()
        if isinstance(value, torch.Tensor)
    }
    scaler_state = step.scaler.state_dict()
    cpu_rng = torch.random.get_rng_state()
    cuda_rng = torch.cuda.get_rng_state_all() if device.type == "cuda" else None  # no CUDA init for CPU runs
    try:
        yield
    finally:
        with torch.no_grad():
            for k, v in model.state_dict().items():
                v.copy_(weights[k])
            for p in model.parameters():
                if p.grad is not None:
                    p.grad.zero_()
            for state in step.optimizer.state.values():
                for value in state.values():
                    if isinstance(value, torch.Tensor):
                        value.copy_(saved[id(value)]) if id(value) in saved else value.zero_()
        if scaler_state:
            step.scaler.load_state_dict(scaler_state)
        torch.random.set_rng_state(cpu_rng)
        if cuda_rng is not None:
            torch.cuda.set_rng_state_all(cuda_rng)


def warm_up(
    seed: int, model: torch.nn.Module, step: Step, train: BatchSource, clock: Stopwatch, steps: int, *, say: bool = True
) -> float:
    """Pay one-time costs (CUDA init, autotuning, worker start, compilation, capture) outside the timed epochs.

    Runs ``steps`` full-size batches (passing over the data again if it is that small), then one batch of
    the epoch's last, partial size, so that its autotuning or compilation does not land in epoch 1 either.
    """
    model.train()
    full, remainder = divmod(train.samples, train.batch_size)
    done = 0
    # Said before it starts, and every PROGRESS_EVERY_S: five steps of fp16 autocast on a CPU took 199 s, longer
    # than the timed epoch, with nothing on the console between "Training" and its end.
    if say:  # not the memory baseline's one step after it (train._steady_state), a warm-up of its own to no reader
        log.info("Warm-up: %d step%s of %s images, untimed (one-time costs: compilation, autotuning, workers' start)",
                 steps, "s" * (steps != 1), f"{train.batch_size:,}")  # fmt: skip
    with rolled_back(model, step, clock.device):
        clock.start()
        began = time.perf_counter()
        say_at = began + PROGRESS_EVERY_S
        while True:
            for x, y in train.device_batches(epoch_seed(seed, WARMUP_EPOCH - done)):
                if len(y) == train.batch_size:
                    step.fn(x, y)
                    done += 1
                    interrupts.check()
                    if time.perf_counter() >= say_at and done < steps:
                        log.info("Warm-up: %d of %d steps after %.0f s", done, steps, time.perf_counter() - began)
                        say_at = time.perf_counter() + PROGRESS_EVERY_S
                if done >= steps:
                    break
            if done >= steps or full == 0:
                break
        # The epoch's last, partial batch too: once eagerly, three times for a compiled step (its own
        # graph, which reduce-overhead's CUDA graphs record only on a later call).
        for _ in range(3 if step.settings.get("compile", "none") != "none" else 1) if remainder else ():
            step.fn(x[:remainder], y[:remainder])
        return clock.stop().wall_s


def profile(
    seed: int, model: torch.nn.Module, step: Step, train: BatchSource, steps: int, trace: Path
) -> tuple[str, int]:
    """A torch.profiler trace of up to ``steps`` training steps (one epoch's at most), rolled back like the
    warm-up, after the timed epochs.

    Writes ``trace`` (Chrome trace JSON: open it in Perfetto or chrome://tracing) and returns the top operators
    by self time as a table for the log, and how many steps it profiled.
    """
    from torch.profiler import ProfilerActivity, schedule
    from torch.profiler import profile as torch_profile

    device = next(model.parameters()).device
    cuda = device.type == "cuda"
    activities = [ProfilerActivity.CPU, *([ProfilerActivity.CUDA] if cuda else [])]
    if not cuda:
        # Kineto prints C++ lines to the console ("profiler_start", "gpuGetDeviceCount failed") that are noise
        # on a CPU run; it reads its log level once, when first used in the process. A user's own level wins.
        os.environ.setdefault("KINETO_LOG_LEVEL", "6")
    model.train()
    with rolled_back(model, step, device):
        # The batches first, so that the loader's own start (worker processes) is not in the trace.
        batches = list(islice(train.device_batches(epoch_seed(seed, PROFILE_EPOCH)), steps))
        # One step more, first, on the first batch: the profiler's start (CUPTI's, on a GPU) is slow and lands
        # in the first step it records, so its schedule's warm-up step traces that one and throws it away.
        plan = schedule(wait=0, warmup=1, active=len(batches), repeat=1)
        with torch_profile(activities=activities, schedule=plan) as prof:
            for i, (x, y) in enumerate([batches[0], *batches]):
                step.fn(x, y)
                if i == len(batches):
                    synchronize(device)  # the last step's kernels, inside the trace
                prof.step()
        done = len(batches)
        del batches  # device memory, before the evaluation that follows
    prof.export_chrome_trace(str(trace))
    sort = "self_cuda_time_total" if cuda else "self_cpu_time_total"
    return prof.key_averages().table(sort_by=sort, row_limit=10), done


def evaluate(model: torch.nn.Module, source: BatchSource, dtype: torch.dtype | None) -> float:
    """Top-1 accuracy on a split, counted on the device and read once; ``source`` is closed after."""
    device = source.device
    correct = torch.zeros((), dtype=torch.int64, device=device)
    model.eval()
    try:
        with torch.no_grad(), torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            for xb, yb in source.device_batches():
                correct += (model(xb).argmax(1) == yb).sum()
    finally:
        source.close()
    return correct.item() / source.samples
