"""The one training loop: ``run(cfg, run_dir) -> RunResult``, measured by docs/architecture.md's rules.

Whatever happens, the run leaves a metrics.json with a status: ``ok``, ``oom`` (out of memory),
``diverged`` (non-finite loss), ``skipped`` (the device is not here) or ``failed`` (anything else; the
traceback goes to the log).
"""

from __future__ import annotations

import logging
import math
import os
import random
import signal
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from bench import interrupts, measure
from bench.datasets import load_arrays
from bench.device import device_type, resolve_device, synchronize
from bench.environment import cpu_name, environment
from bench.errors import DeviceUnavailable, UsageError, one_line
from bench.loaders import BatchSource, build_loader
from bench.loop import evaluate, run_epoch, warm_up
from bench.metrics import summarize
from bench.models import count_parameters
from bench.results import NotRecorded, RunResult, write_metrics
from bench.schema import instantiate
from bench.step import autocast_dtype, build_step, resolve_channels_last

log = logging.getLogger(__name__)


class Diverged(RuntimeError):
    """The loss became NaN or infinite."""


OOM_MESSAGES = ("out of memory", "can't allocate memory", "CUDNN_STATUS_ALLOC_FAILED", "CUBLAS_STATUS_ALLOC_FAILED")


def is_out_of_memory(err: BaseException) -> bool:
    if isinstance(err, torch.cuda.OutOfMemoryError):
        return True
    return isinstance(err, RuntimeError) and any(m in str(err) for m in OOM_MESSAGES)


def result_for(cfg: DictConfig, **fields: Any) -> RunResult:
    """A result that names its config, before (or instead of) any training.

    Also for a config that failed its check: a key that is unset or does not resolve is recorded as null.
    """

    def get(key: str) -> Any:
        return OmegaConf.select(cfg, key, default=None, throw_on_missing=False, throw_on_resolution_failure=False)

    device = get("device.name")
    return RunResult(
        model=get("model.name"),
        device=device_type(device) if isinstance(device, str) else None,  # `auto` is recorded as what it means
        precision=get("precision.name"),
        dataset=get("dataset.name"),
        loader=get("loader.name"),
        batch_size=get("batch_size"),
        workers=get("workers"),
        epochs=get("epochs"),
        seed=get("seed"),
        warmup_steps=get("warmup_steps"),
        **fields,
    )


def run(cfg: DictConfig, run_dir: Path, *, raise_usage_errors: bool = False) -> RunResult:
    """Train once as configured and write ``run_dir/metrics.json``, also when the run fails.

    With ``raise_usage_errors`` (a single run from the CLI), a missing device or dataset is re-raised after
    metrics.json is written, so the user gets one line and exit code 2; in a sweep it stays a status.
    """
    result = result_for(cfg)
    device: torch.device | None = None
    usage_error: UsageError | None = None
    try:
        device = resolve_device(cfg.device.name)
        result.device = device.type
        result.device_name = torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_name()
        _train(cfg, device, result)
    except DeviceUnavailable as err:
        result.status, result.error, usage_error = "skipped", str(err), err
    except UsageError as err:  # a missing dataset, or a step option this device cannot run
        result.status, result.error, usage_error = "failed", str(err), err
    except Diverged as err:
        result.status, result.error = "diverged", str(err)
    except KeyboardInterrupt as stop:  # Ctrl-C, or SIGTERM under interrupts.interruptible()
        result.status, result.error = "interrupted", f"interrupted by {_signal_name(stop)}"
        log.warning("Run interrupted by %s", _signal_name(stop))
        raise
    except Exception as err:
        if interrupts.received() is not None:  # e.g. a DataLoader worker killed by the same Ctrl-C
            result.status, result.error = "interrupted", f"interrupted by {_signal_name(None)}"
        elif is_out_of_memory(err):
            result.status, result.error = "oom", one_line(err)
        else:
            result.status, result.error = "failed", f"{type(err).__name__}: {one_line(err)}"
        log.error("Run %s: %s", result.status, result.error)
        log.debug("Traceback of the %s run", result.status, exc_info=True)  # to the log file only
    finally:
        with interrupts.deferred():  # a second Ctrl-C must not cut metrics.json short
            _finish(result, device, run_dir)
    if usage_error is not None:
        if raise_usage_errors:
            raise usage_error
        log.warning("Run %s: %s", result.status, result.error)
    return result


def _finish(result: RunResult, device: torch.device | None, run_dir: Path) -> None:
    """Record the last facts and write metrics.json; never raise, so a broken device cannot stop a sweep."""
    try:
        if device is not None and result.metrics.get("peak_memory_mb") is None:  # how far an OOM run got
            _record_peak_memory(result, device)
        result.env = environment(device or torch.device("cpu"))
    except Exception as err:  # after a sticky CUDA error every CUDA call fails; keep what we have
        result.env = result.env or environment(torch.device("cpu"))
        result.notes.append(f"could not read the device after the run: {one_line(err)}")
    result.metrics["peak_rss_mb"] = measure.peak_rss_mb()
    try:
        write_metrics(run_dir, result)
    except OSError as err:
        raise NotRecorded(run_dir, result, err) from err
    if device is not None:
        try:
            if result.step.get("compile", "none") != "none":
                torch.compiler.reset()  # the next job in this process compiles its own model
            measure.reset_peak_memory(device)  # free what a failed run left behind, for the next job
        except Exception as err:
            log.warning("Could not release the device after this run: %s", one_line(err))


def _signal_name(stop: BaseException | None) -> str:
    signum = getattr(stop, "signum", None) or interrupts.received() or signal.SIGINT
    return signal.Signals(signum).name


def _record_peak_memory(result: RunResult, device: torch.device) -> None:
    result.metrics["peak_memory_mb"], result.metrics["peak_reserved_mb"] = measure.peak_memory_mb(device)


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # also seeds every CUDA device


def _train(cfg: DictConfig, device: torch.device, result: RunResult) -> None:
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = bool(cfg.cudnn_benchmark)
    measure.reset_peak_memory(device)

    arrays = load_arrays(cfg.dataset)
    result.train_samples, result.test_samples = len(arrays.train_y), len(arrays.test_y)

    _seed_everything(cfg.seed)
    model = instantiate(cfg.model, num_classes=len(arrays.classes)).to(device)
    channels_last = resolve_channels_last(cfg.step.channels_last, device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    result.params = count_parameters(model)
    step = build_step(model, device, options=cfg.step, precision=cfg.precision, lr=cfg.lr)
    result.step = step.settings

    train = _loader(cfg, arrays.train_x, arrays.train_y, device, shuffle=True, channels_last=channels_last)
    try:
        if train.device_bytes:
            result.metrics["dataset_memory_mb"] = train.device_bytes / measure.MIB
        result.notes.extend(f"{key} is ignored by loader={cfg.loader.name}" for key in train.ignored)
        cores = os.cpu_count() or 1
        if cfg.workers > cores and "workers" not in train.ignored:
            result.notes.append(f"workers={cfg.workers} is more than the {cores} CPU cores here: the worker "
                                "processes compete with training and with each other for them")  # fmt: skip
            log.warning("Note: %s", result.notes[-1])
        log.info(
            "Training %s (%s params) on %s (%s) | %s | batch %d | %s, %d train / %d test images | loader=%s",
            cfg.model.name, f"{result.params:,}", device.type, result.device_name, cfg.precision.name,
            cfg.batch_size, cfg.dataset.name, result.train_samples, result.test_samples, cfg.loader.name,
        )  # fmt: skip

        clock = measure.Stopwatch(device)
        warmup_steps = max(cfg.warmup_steps, step.min_warmup_steps)
        if warmup_steps > cfg.warmup_steps:
            result.notes.append(f"warm-up raised to {warmup_steps} steps: step.compile={cfg.step.compile} needs them")
        result.warmup_steps = warmup_steps
        if warmup_steps > 0:
            result.metrics["warmup_time"] = warmup = warm_up(cfg.seed, model, step, train, clock, warmup_steps)
            log.info("Warm-up: %d steps in %.2fs (rolled back)", warmup_steps, warmup)

        for epoch in range(1, cfg.epochs + 1):
            stats = run_epoch(epoch, cfg.epochs, cfg.seed, model, step, train, clock)
            result.epochs_detail.append(stats)
            log.info(
                "Epoch %d/%d | Loss: %.3f | Time: %.2fs | %.0f samples/s",
                epoch, cfg.epochs, stats.loss, stats.time_s, stats.samples_per_s,
            )  # fmt: skip
            if not math.isfinite(stats.loss):
                raise Diverged(f"loss is {stats.loss} after epoch {epoch}")
    finally:
        train.close()

    result.metrics.update(summarize([asdict(e) for e in result.epochs_detail]))
    _record_peak_memory(result, device)

    if cfg.evaluate:
        start = time.perf_counter()
        test = _loader(cfg, arrays.test_x, arrays.test_y, device, shuffle=False, channels_last=channels_last)
        accuracy = evaluate(model, test, autocast_dtype(cfg.precision))
        synchronize(device)
        result.metrics["test_accuracy"], result.metrics["eval_time"] = accuracy, time.perf_counter() - start

    m = result.metrics
    memory = (
        f"peak memory {m['peak_memory_mb']:.1f} MB allocated / {m['peak_reserved_mb']:.1f} MB reserved"
        if m["peak_memory_mb"] is not None
        else f"peak RSS {measure.peak_rss_mb():.0f} MB"
    )
    accuracy = f", test accuracy {m['test_accuracy']:.1%}" if m.get("test_accuracy") is not None else ""
    log.info("Done: avg epoch %.2fs, %.0f samples/s, %s%s", m["avg_epoch_time"], m["samples_per_s"], memory, accuracy)


def _loader(
    cfg: DictConfig, x: Any, y: Any, device: torch.device, *, shuffle: bool, channels_last: bool
) -> BatchSource:
    return build_loader(
        cfg.loader, x, y, device=device, batch_size=cfg.batch_size, shuffle=shuffle, channels_last=channels_last
    )
