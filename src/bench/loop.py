"""The measured parts of a run: a timed epoch, the rolled-back warm-up, and evaluation.

Rules (docs/architecture.md, "Measurement rules"): the epoch's clock is closed by a synchronize and the
loss is read once, after it; nothing in the timed loop reads a value from the GPU; the warm-up pays
one-time costs and is then undone in place, so training is exactly as without it.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from tqdm import tqdm

from bench.loaders import BatchSource, epoch_seed
from bench.measure import Stopwatch
from bench.results import EpochStats
from bench.step import Step

WARMUP_EPOCH = -1  # the shuffle seed index of the warm-up pass, distinct from every timed epoch


def run_epoch(
    epoch: int, epochs: int, seed: int, model: torch.nn.Module, step: Step, train: BatchSource, clock: Stopwatch
) -> EpochStats:
    """One timed pass over the training split; the loss is read once, after the clock has stopped."""
    model.train()
    batches = train.batches(epoch_seed(seed, epoch))
    loss_sum = torch.zeros((), device=clock.device)
    n_batches, wait = 0, 0.0
    with tqdm(total=len(train), desc=f"Epoch {epoch}/{epochs}", unit="batch", leave=False, disable=None) as bar:
        clock.start()
        while True:
            t0 = time.perf_counter()
            batch = next(batches, None)
            wait += time.perf_counter() - t0  # the data path alone: the device copy below is not in it
            if batch is None:
                break
            loss_sum += step.fn(*train.to_device(*batch))
            n_batches += 1
            bar.update()
        interval = clock.stop()
    # The epoch's one host read of the loss, after the clock has stopped.
    loss = (loss_sum / max(n_batches, 1)).item()
    return EpochStats(
        epoch=epoch,
        time_s=interval.wall_s,
        samples=train.samples,
        samples_per_s=train.samples / interval.wall_s,
        loss=loss,
        data_wait_s=wait,
        cuda_time_s=interval.cuda_s,
    )


@contextmanager
def rolled_back(model: torch.nn.Module, step: Step, device: torch.device) -> Iterator[None]:
    """Undo every update made inside: weights, Adam's moments and step count, the loss scale, the RNG.

    Restored in place (copy_/zero_), so tensors keep their storage; a captured CUDA graph stays valid.
    """
    if step.optimizer.state:
        raise RuntimeError("warm-up must start from a fresh optimizer")
    weights = {k: v.detach().clone() for k, v in model.state_dict().items()}
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
            # A fresh Adam state is all zeros (step count included): zeroing equals starting afresh.
            for state in step.optimizer.state.values():
                for value in state.values():
                    if isinstance(value, torch.Tensor):
                        value.zero_()
        if scaler_state:
            step.scaler.load_state_dict(scaler_state)
        torch.random.set_rng_state(cpu_rng)
        if cuda_rng is not None:
            torch.cuda.set_rng_state_all(cuda_rng)


def warm_up(seed: int, model: torch.nn.Module, step: Step, train: BatchSource, clock: Stopwatch, steps: int) -> float:
    """Pay one-time costs (CUDA init, autotuning, worker start, compilation, capture) outside the timed epochs.

    Runs ``steps`` full-size batches (passing over the data again if it is that small), then one batch of
    the epoch's last, partial size, so that its autotuning or compilation does not land in epoch 1 either.
    """
    model.train()
    full, remainder = divmod(train.samples, train.batch_size)
    done = 0
    with rolled_back(model, step, clock.device):
        clock.start()
        while True:
            for x, y in train.device_batches(epoch_seed(seed, WARMUP_EPOCH - done)):
                if len(y) == train.batch_size:
                    step.fn(x, y)
                    done += 1
                if done >= steps:
                    break
            if done >= steps or full == 0:
                break
        if remainder:
            step.fn(x[:remainder], y[:remainder])
        return clock.stop().wall_s


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
