"""The ``max_batch`` task: the largest batch a model trains at, and how its peak memory grows with the batch.

One job is one model × precision (``experiment=max_batch`` sweeps them): bench.maxbatch doubles the batch,
then bisects to within the tolerance, each attempt one real training step (two, so that Adam's state is
there too) whose peak memory is recorded; an OOM is caught and freed before the next attempt. A straight
line through the fitting attempts gives peak ≈ a + b·batch. It needs a CUDA GPU: elsewhere the job is
``skipped`` with that reason.
"""

from __future__ import annotations

import contextlib
import logging

import torch
from omegaconf import DictConfig

from bench.datasets import load_arrays
from bench.errors import DeviceUnavailable
from bench.maxbatch import (
    FIT_POINTS,
    FIT_SPAN,
    Trial,
    cuda_step_trial,
    fit_line,
    memory_cap,
    search_max_batch,
)
from bench.results import RunResult, lower_bound_reason
from bench.schema import instantiate
from bench.step import autocast_dtype, resolve_adam, resolve_channels_last, resolve_compile

log = logging.getLogger(__name__)

#: training steps per attempt: from the second on, Adam's state is in memory during the forward pass
STEPS_PER_ATTEMPT = 2


def measure(cfg: DictConfig, device: torch.device, result: RunResult, trial: Trial | None = None) -> None:
    """Search and fit for ``cfg``'s model and precision on ``device``, recording into ``result``.

    ``trial`` replaces the real CUDA step (a CPU stand-in, for tests of everything around it).
    """
    options = cfg.max_batch
    if trial is None:
        trial = _cuda_trial(cfg, device)
    _note_the_step(cfg, device, result)
    cap = memory_cap(options.memory_fraction, device) if options.memory_fraction else contextlib.nullcontext()
    with cap:
        search = search_max_batch(trial, start=options.start, tolerance=options.tolerance, budget_s=options.budget_s)
    fit = fit_line(search.points)
    largest = search.largest_fitting
    result.metrics["max_batch"] = largest
    fitting = [a for a in search.attempts if a.fits and a.batch == largest]
    result.metrics["peak_memory_mb"] = fitting[-1].peak_mb if fitting else None
    if fit is not None:
        result.metrics.update(mem_intercept_mb=fit.intercept_mb, mem_mb_per_image=fit.slope_mb_per_image,
                              mem_fit_r2=fit.r2, images_per_gb=fit.images_per_gb)  # fmt: skip
    result.capacity = {
        "attempts": [vars(a) for a in search.attempts],
        "smallest_failing": search.smallest_failing,
        "stopped": search.stopped,
        "memory_fraction": options.memory_fraction,
        "steps_per_attempt": STEPS_PER_ATTEMPT,
    }
    # A search cut short (its time budget, or the batch limit) found a batch that fits, not the largest.
    reason = lower_bound_reason(search.stopped, largest, search.smallest_failing) if largest is not None else None
    if reason:
        result.notes.append(f"max_batch {largest:,} is a lower bound ({reason})")
    seconds = sum(a.seconds for a in search.attempts)
    # As the report says it: a search cut short found a batch that fits, not the largest ("at least").
    found = "none" if largest is None else f"{'at least ' if reason else ''}{largest:,}"
    log.info("Largest batch that fits: %s (%s; %d attempts in %.1f s)", found, search.stopped,
             len(search.attempts), seconds)  # fmt: skip
    if fit is not None:
        log.info("Peak ≈ %.1f MB + %.4f MB × batch (R² %.3f): %.0f images per GB", fit.intercept_mb,
                 fit.slope_mb_per_image, fit.r2, fit.images_per_gb)  # fmt: skip
    else:
        batches = sorted({batch for batch, _ in search.points})
        result.notes.append(f"no straight-line fit of peak memory to batch: it needs {FIT_POINTS} batches that fit, "
                            f"the largest at least {FIT_SPAN}× the smallest; these fit: "
                            f"{', '.join(f'{b:,}' for b in batches) or 'none'}")  # fmt: skip


def _note_the_step(cfg: DictConfig, device: torch.device, result: RunResult) -> None:
    """The step the attempts run, recorded as a run's is; a compile mode a run of this config would use is not
    searched (each attempt builds a new model, and compiling or capturing each would cost minutes): a note."""
    result.step = {"compile": "none", "adam": resolve_adam(cfg.step.adam, device),
                   "channels_last": resolve_channels_last(cfg.step.channels_last, device),
                   "grad_scaler": bool(cfg.precision.grad_scaler)}  # fmt: skip
    mode = resolve_compile(cfg.step.compile, device, bool(cfg.precision.grad_scaler))
    if mode != "none":
        auto = f" (auto: {mode} here)" if cfg.step.compile == "auto" else ""
        result.notes.append(f"step.compile={cfg.step.compile}{auto} is ignored by task=max_batch: each attempt is "
                            "an eager step on a new model, so the batch found is the eager step's")  # fmt: skip


def _cuda_trial(cfg: DictConfig, device: torch.device) -> Trial:
    if device.type != "cuda":
        raise DeviceUnavailable(
            "task=max_batch (experiment=max_batch) needs a CUDA GPU: it searches the GPU's "
            "memory; run it on a machine with one (every CPU run records its peak RSS)"
        )
    classes = len(load_arrays(cfg.dataset).classes)  # the model's last layer, as the training run has it
    return cuda_step_trial(
        lambda: instantiate(cfg.model, num_classes=classes),
        device=device,
        precision_dtype=autocast_dtype(cfg.precision),
        grad_scaler=bool(cfg.precision.grad_scaler),
        lr=cfg.lr,
        adam=cfg.step.adam,
        channels_last=resolve_channels_last(cfg.step.channels_last, device),
        steps=STEPS_PER_ATTEMPT,
        num_classes=classes,
    )
