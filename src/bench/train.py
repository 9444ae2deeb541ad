"""The one training loop: ``run(cfg, run_dir) -> RunResult``, measured by docs/architecture.md's rules.

Whatever happens, the run leaves a metrics.json with a status: ``ok``, ``oom`` (out of memory),
``diverged`` (non-finite loss), ``skipped`` (the device is not here), ``interrupted`` (a signal: SIGINT,
SIGTERM, SIGHUP) or ``failed`` (anything else; the traceback goes to the log).
"""

from __future__ import annotations

import contextlib
import logging
import math
import random
import signal
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig, ListConfig, OmegaConf

from bench import capacity, interrupts, measure, memory
from bench.datasets import Arrays, load_arrays
from bench.device import device_type, resolve_device, synchronize
from bench.diagnosis import class_prior, diagnose
from bench.energy import EnergyMeter, short_window_note
from bench.environment import cpu_name, environment, usable_cores
from bench.errors import ConfigError, DeviceUnavailable, Interrupted, UsageError, one_line
from bench.flops import count_untouched, utilization
from bench.folders import TRACE_FILE
from bench.loaders import BatchSource, build_loader, normalize
from bench.loop import evaluate, profile, rolled_back, run_epoch, warm_up
from bench.measure import MIB, is_out_of_memory
from bench.metrics import loss_text, metric, summarize
from bench.models import count_parameters
from bench.results import EpochStats, NotRecorded, RunResult, write_metrics
from bench.schema import MaxBatchConfig, as_override, batch_exceeds_data, instantiate, set_by_the_command
from bench.step import Step, autocast_dtype, build_step, math_mode, resolve_compile_and_layout
from bench.tables import as_text

log = logging.getLogger(__name__)


#: samples of one batch the FLOP counter runs on: FLOPs per sample do not depend on the batch size
FLOP_SAMPLES = 8
#: steps traced by profile=true (into folders.TRACE_FILE in the run folder)
PROFILE_STEPS = 5


class Diverged(RuntimeError):
    """The loss became NaN or infinite."""


def result_for(cfg: DictConfig, **fields: Any) -> RunResult:
    """A result that names its config, before (or instead of) any training.

    Also for a config that failed its check: a key that is unset or does not resolve is recorded as null.
    """

    def get(key: str) -> Any:
        value = OmegaConf.select(cfg, key, default=None, throw_on_missing=False, throw_on_resolution_failure=False)
        # A value the check refuses (a list where a name goes) is still recorded, as text, not lost to JSON.
        return str(OmegaConf.to_container(value)) if isinstance(value, DictConfig | ListConfig) else value

    device = get("device.name")
    return RunResult(
        task=get("task") or "train",
        model=get("model.name"),
        device=device_type(device) if isinstance(device, str) else None,  # `auto` is recorded as what it means
        precision=get("precision.name"),
        dataset=get("dataset.name"),
        loader=get("loader.name"),
        recipe=get("recipe.name"),
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
    result = result_for(cfg, ran_from=measure.timestamp())
    device: torch.device | None = None
    usage_error: UsageError | None = None
    try:
        device = resolve_device(cfg.device.name)
        result.device = device.type
        result.device_name = torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_name()
        run_dir.mkdir(parents=True, exist_ok=True)  # a run writes into it before metrics.json (the trace)
        with math_mode(cfg.precision), _cudnn_benchmark(bool(cfg.cudnn_benchmark), device):
            if cfg.task == "max_batch":
                capacity.measure(cfg, device, result)
            else:
                _train(cfg, device, result, run_dir)
    except DeviceUnavailable as err:
        result.status, result.error, usage_error = "skipped", str(err), err
    except UsageError as err:  # a missing dataset, or a step option this device cannot run
        result.status, result.error, usage_error = "failed", str(err), err
    except Diverged as err:
        result.status, result.error = "diverged", str(err)
    except KeyboardInterrupt as stop:  # Ctrl-C, or SIGTERM under interrupts.interruptible()
        interrupts.delivered()
        result.status, result.error = "interrupted", f"interrupted by {_signal_name(stop)}"
        log.warning("Run interrupted by %s", _signal_name(stop))
        raise
    except Exception as err:
        if interrupts.received() is not None:
            # The signal came first, but an error overtook its Interrupted: raised in a cleanup on the way out
            # (a DataLoader worker that the same Ctrl-C or SIGTERM ended, found by torch's SIGCHLD handler in
            # optimizer.step's `finally`). Still an interruption: recorded as one, and it stops the sweep.
            interrupts.delivered()
            result.status, result.error = "interrupted", f"interrupted by {_signal_name(None)}"
            log.warning("Run interrupted by %s", _signal_name(None))
            log.debug("What overtook the interruption", exc_info=True)  # to the log file only
            raise Interrupted(interrupts.received() or signal.SIGINT) from err
        if type(err).__name__ == "UncompletedJobError":  # submitit, on SLURM's warning before the time limit
            result.status, result.error = "interrupted", (f"interrupted: the job's time limit ({one_line(err)}); "
                                                          "raise hydra.launcher.timeout_min")  # fmt: skip
        elif is_out_of_memory(err):
            result.status, result.error = "oom", one_line(err)
        else:
            result.status, result.error = "failed", f"{type(err).__name__}: {one_line(err)}"
        log.error("Run %s: %s", result.status, result.error)
        log.debug("Traceback of the %s run", result.status, exc_info=True)  # to the log file only
    except BaseException as stop:  # SystemExit from a launcher's signal handler (submitit's requeue)
        result.status, result.error = "interrupted", f"interrupted: {type(stop).__name__} {one_line(stop)}".strip()
        raise
    finally:
        with interrupts.deferred():  # a second Ctrl-C must not cut metrics.json short
            _finish(result, device, run_dir)
    if usage_error is not None:
        if raise_usage_errors:
            # The CLI prints it as its one line; the run's log gets it too (at DEBUG: the file only), so that
            # bench.log beside a failed metrics.json does not stay empty.
            log.debug("Run %s: %s", result.status, result.error)
            raise usage_error
        log.warning("Run %s: %s", result.status, result.error)
    return result


def _finish(result: RunResult, device: torch.device | None, run_dir: Path) -> None:
    """Record the last facts and write metrics.json. A broken device cannot stop a sweep (its errors become
    notes); only a metrics.json that cannot be written is raised, as NotRecorded, whose line says it all."""
    result.ran_until = measure.timestamp()
    # The run's own peak, read after its timed epochs (above), or here, before the environment is gathered
    # (which may load libraries), for a run that stopped earlier; none for one skipped before any work.
    if result.metrics.get("peak_rss_mb") is None:
        result.metrics["peak_rss_mb"] = measure.peak_rss_mb() if result.status != "skipped" else None
    # A run that stopped after some timed epochs (interrupted, oom, diverged): their figures, measured like any
    # run's, are recorded as such, so metrics.json and the reports say the same. Not the epoch a run diverged in:
    # its steps ran on non-finite weights from the step it blew up (its 316 samples/s stood beside an ok run's
    # 285 as if comparable).
    timed = [e for e in result.epochs_detail if result.status != "diverged" or math.isfinite(e.loss)]
    if result.status != "ok" and timed and result.metrics.get("avg_epoch_time") is None:
        done = len(timed)
        result.metrics.update({k: v for k, v in summarize([asdict(e) for e in timed]).items()
                               if result.metrics.get(k) is None})  # fmt: skip
        if result.status == "diverged":  # it ended on a non-finite loss, not on the last finite epoch's
            result.metrics["final_loss"] = None
        if result.metrics.get("tflops") is None and device is not None:  # samples/s is given, so is its compute
            _utilization(result, device)
        before = "before the one it diverged in, which is not counted" if result.status == "diverged" else (
            "it finished before it stopped")  # fmt: skip
        result.notes.append(f"its figures are of the {done} timed epoch{'s' * (done > 1)} {before} "
                            f"({result.status})")  # fmt: skip
    elif result.status == "diverged" and result.epochs_detail:
        result.notes.append("no figures: it diverged in its first timed epoch, whose steps ran on non-finite "
                            "weights from the step it blew up")  # fmt: skip
    try:
        # How far an OOM run got. Not for a max_batch search: its peak is its largest fitting attempt's, and
        # where none fitted the allocator's peak is the last attempt's, the one that ran out of memory.
        if device is not None and result.task != "max_batch" and result.metrics.get("peak_memory_mb") is None:
            _record_peak_memory(result, device)
        result.env = environment(device or torch.device("cpu"))
    except Exception as err:  # after a sticky CUDA error every CUDA call fails; keep what we have
        result.env = result.env or environment(torch.device("cpu"))
        result.notes.append(f"could not read the device after the run: {one_line(err)}")
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
    """How far a run that stopped early got (the steady-state figures are recorded by _train)."""
    result.metrics["peak_memory_mb"], result.metrics["peak_reserved_mb"] = measure.peak_memory_mb(device)


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # also seeds every CUDA device


@contextlib.contextmanager
def _cudnn_benchmark(on: bool, device: torch.device) -> Iterator[None]:
    """cuDNN's autotuner on or off for a CUDA run, restored after, so the next run in the process (a sweep's,
    a benchmark's) starts from the same setting."""
    saved = torch.backends.cudnn.benchmark
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = on
    try:
        yield
    finally:
        torch.backends.cudnn.benchmark = saved


def _graph_pool(allocator: memory.Allocator, result: RunResult) -> int:
    """What captured CUDA graphs hold (read once, before the timed epochs: replays allocate nothing), with a
    note where it is counted in the peak or cannot be read."""
    held = allocator.graph_pool()
    if held is None:
        result.notes.append(
            "memory: the allocator gives no snapshot, so a captured step's activations (in its CUDA graph's "
            "pool, which torch counts as reserved) are not in peak_memory_mb"
        )
        return 0
    if held:
        result.notes.append(
            f"memory: peak_memory_mb counts {held / MIB:,.1f} MB held by captured CUDA graphs (the step's "
            "activations and temporaries, which torch counts as reserved, not allocated, between replays)"
        )
    return held


def _train(cfg: DictConfig, device: torch.device, result: RunResult, run_dir: Path) -> None:
    # What ran: cuDNN autotunes CUDA convolutions only, so a CPU run records null (recipe=fast asks for it
    # everywhere).
    result.cudnn_benchmark = bool(cfg.cudnn_benchmark) if device.type == "cuda" else None
    measure.reset_peak_memory(device)
    allocator = memory.allocator_for(device)

    arrays = load_arrays(cfg.dataset)
    result.notes.extend(arrays.notes)  # said on the console as the dataset loaded; kept for the reports
    # Test images only where the run tests on them: with evaluate=false none is used.
    result.train_samples, result.test_samples = len(arrays.train_y), len(arrays.test_y) if cfg.evaluate else None
    result.classes = len(arrays.classes)
    result.prior_loss, result.prior_accuracy = class_prior(arrays.train_y, arrays.test_y if cfg.evaluate else None,
                                                           result.classes)  # fmt: skip
    if result.train_samples < cfg.batch_size:  # a dataset's own size (an image folder), which no config states
        raise ConfigError(batch_exceeds_data(cfg.batch_size, result.train_samples, whole_dataset=True))

    _seed_everything(cfg.seed)
    model = instantiate(cfg.model, num_classes=result.classes).to(device)
    compile_mode, channels_last = resolve_compile_and_layout(cfg.step, device, cfg.precision)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    result.params = count_parameters(model)
    if cfg.workers > usable_cores():
        # torch warns of it in a paragraph with its file and line, twice a run; the run's note says it in one line.
        warnings.filterwarnings("ignore", r"This DataLoader will create \d+ worker processes", UserWarning)
    train = _loader(cfg, arrays.train_x, arrays.train_y, device, shuffle=True, channels_last=channels_last)
    energy: EnergyMeter | None = None  # before the try: a failure ahead of the epochs (an OOM) reaches finally
    try:
        # compile=max moves the resident loader's gather into the step, where the capture replays it.
        prepare = train.defer() if compile_mode == "max" and hasattr(train, "defer") else None
        step = build_step(model, device, options=cfg.step, precision=cfg.precision, lr=cfg.lr, prepare=prepare)
        result.step = {**step.settings, "input_in_step": prepare is not None}
        if train.device_bytes:
            result.metrics["dataset_memory_mb"] = train.device_bytes / MIB
        _note_setup(cfg, train, result)
        clock = measure.Stopwatch(device)
        warmup_steps = max(cfg.warmup_steps, step.min_warmup_steps)
        if warmup_steps > cfg.warmup_steps:
            result.notes.append(f"warm-up raised to {warmup_steps} steps: step.compile={cfg.step.compile} needs them")
        result.warmup_steps = warmup_steps
        _count_flops(model, arrays, device, result, autocast_dtype(cfg.precision))
        if warmup_steps > 0:
            result.metrics["warmup_time"] = warmup = warm_up(cfg.seed, model, step, train, clock, warmup_steps)
            log.info("Warm-up: %d step%s in %.2fs (rolled back)", warmup_steps, "s" * (warmup_steps != 1), warmup)

        if allocator is not None and warmup_steps == 0:
            result.notes.append("memory: with warmup_steps=0, gradients and optimizer state count as activations")
        # The sizes the CUDA breakdown rests on, at the baseline it is measured from (a CPU run reads them below).
        sizes = memory.persistent_sizes(model, step.optimizer, train.device_bytes) if allocator is not None else {}
        baseline, graph_pool = _steady_state(
            allocator, result, lambda: warm_up(cfg.seed, model, step, train, clock, 1, say=False)
        )
        events = measure.StepEvents(device, len(train))  # made here, outside the timed epochs
        energy = EnergyMeter(device) if device.type == "cuda" else None
        if energy is not None and energy.note:
            result.notes.append(energy.note)
        _timed_epochs(cfg, model, step, train, clock, events, energy, result)
        peaks = (allocator.peak_allocated(), allocator.peak_reserved()) if allocator is not None else (0, 0)
        # The CPU's peak too, before the profiler and evaluation (which a profiled CPU run's peak had counted).
        result.metrics["peak_rss_mb"] = measure.peak_rss_mb()
        if cfg.profile:
            # After the timed epochs and their peaks: a profiler can leave CUDA's tracing (CUPTI) active in the
            # process after it stops, which slows the kernels that follow it.
            table, profiled = profile(cfg.seed, model, step, train, PROFILE_STEPS, run_dir / TRACE_FILE)
            # The file's name: the run's folder is the Results line's (and absolute here, unlike it).
            log.info("Profiled %d step%s (rolled back): %s in the run's folder (Perfetto or chrome://tracing); the "
                     "top operators by self time are in bench.log", profiled, "s" * (profiled != 1),
                     TRACE_FILE)  # fmt: skip
            log.debug("Top operators by self time:\n%s", table)  # to bench.log
    finally:
        train.close()
        if energy is not None:
            energy.close()

    _record(device, result)
    if allocator is not None:
        result.memory = memory.breakdown(sizes, baseline, *peaks, graph_pool)
        # The headline peaks are the breakdown's own (its peak allocated has what captured graphs hold).
        result.metrics["peak_memory_mb"] = result.memory["peak_allocated_mb"]
        result.metrics["peak_reserved_mb"] = result.memory["peak_reserved_mb"]
    else:  # read after the epochs: with warmup_steps=0 no step had yet made the gradients or Adam's state
        result.memory = memory.sizes_mb(memory.persistent_sizes(model, step.optimizer, train.device_bytes))

    if cfg.evaluate:
        start = time.perf_counter()
        test = _loader(cfg, arrays.test_x, arrays.test_y, device, shuffle=False, channels_last=channels_last)
        accuracy = evaluate(model, test, autocast_dtype(cfg.precision))
        synchronize(device)
        result.metrics["test_accuracy"], result.metrics["eval_time"] = accuracy, time.perf_counter() - start
    _conclude(result)


def _steady_state(
    allocator: memory.Allocator | None, result: RunResult, one_more_step: Callable[[], object]
) -> tuple[int, int]:
    """From here the run is in its steady state: the warm-up's one-time transients must not set its peak. The
    allocator's baseline and the captured graphs' pool, in bytes (0 and 0 without a CUDA allocator)."""
    if allocator is None:
        return 0, 0
    result.metrics["warmup_peak_memory_mb"] = allocator.peak_allocated() / MIB
    allocator.start_steady_state()
    baseline = allocator.allocated()
    graph_pool = _graph_pool(allocator, result)
    if result.warmup_steps:
        # Releasing the cache also gave the step's own blocks back to the driver. One more rolled-back step
        # takes them again, so the first timed epoch does not pay their cudaMalloc calls; its peaks are
        # dropped, and the epochs' own peak reserved is still only what a step holds.
        one_more_step()
        allocator.reset_peaks()
    return baseline, graph_pool


def _timed_epochs(
    cfg: DictConfig, model: torch.nn.Module, step: Step, train: BatchSource, clock: measure.Stopwatch,
    events: measure.StepEvents, energy: EnergyMeter | None, result: RunResult,
) -> None:  # fmt: skip
    """The timed epochs, ``repeat`` times, into ``result.epochs_detail``; then what NVML said of them."""
    result.timed_from = measure.timestamp()  # when, not how long: the epochs' own clocks are their Stopwatch's
    for repeat in range(1, cfg.repeat + 1):
        # Every repeat but the last is rolled back: each trains the same epochs from the same state, so the
        # repeats differ in their timings alone, and the model evaluated is the one trained once.
        again = rolled_back(model, step, clock.device) if repeat < cfg.repeat else contextlib.nullcontext()
        with again:
            for epoch in range(1, cfg.epochs + 1):
                stats = run_epoch(epoch, cfg.epochs, cfg.seed, model, step, train, clock, events, energy)
                stats.repeat = repeat
                result.epochs_detail.append(stats)
                result.timed_until = measure.timestamp()  # after each epoch: a stopped run keeps its span
                _log_epoch(stats, cfg.epochs, cfg.repeat)
    if energy is not None:
        result.metrics["power_limit_w"], result.metrics["sm_clock_mhz"] = energy.power_limit_w, energy.sm_clock_mhz
        if energy.note and energy.note not in result.notes:  # NVML stopped answering during the epochs
            result.notes.append(energy.note)
        measured = [e.time_s for e in result.epochs_detail if e.energy_j is not None]
        short = short_window_note(sum(measured)) if measured else None
        result.notes.extend([short] if short else [])


def _record(device: torch.device, result: RunResult) -> None:
    """The run-level figures from its epochs: the metric table's, the FLOP utilization, and whether the two
    clocks agree."""
    result.metrics.update(summarize([asdict(e) for e in result.epochs_detail]))
    _utilization(result, device)
    m = result.metrics
    clocks = _clocks_disagree(m.get("avg_epoch_time"), m.get("cuda_epoch_time"))
    if clocks:
        log.warning("Note: %s", clocks)
        result.notes.append(clocks)


def _utilization(result: RunResult, device: torch.device) -> None:
    """Achieved TFLOP/s, and on a GPU of the peak table its share of the dense peak for the maths the step ran
    (its recorded ``math``: math_precision's, which on a GPU is the precision's), with the note that names the
    peak's source."""
    m = result.metrics
    gpu = result.device_name if device.type == "cuda" else None
    m["tflops"], m["peak_flops_frac"], note = utilization(m, gpu, result.step.get("math") or "fp32")
    result.notes.extend([note] if note else [])


def _log_epoch(stats: EpochStats, epochs: int, repeats: int) -> None:
    where = f"Repeat {stats.repeat}/{repeats} | " if repeats > 1 else ""
    log.info("%sEpoch %d/%d | Loss: %s | Time: %.2fs | %s samples/s", where, stats.epoch, epochs, loss_text(stats.loss),
             stats.time_s, f"{stats.samples_per_s:,.0f}")  # fmt: skip
    if not math.isfinite(stats.loss):
        raise Diverged(f"loss is {stats.loss} after epoch {stats.epoch}")


def _count_flops(
    model: torch.nn.Module, arrays: Arrays, device: torch.device, result: RunResult, dtype: torch.dtype | None
) -> None:
    """Training FLOPs per sample, once, on a few training images (from the arrays: no worker start)."""
    x = normalize(torch.from_numpy(arrays.train_x[:FLOP_SAMPLES])).to(device)
    y = torch.from_numpy(arrays.train_y[:FLOP_SAMPLES]).to(device)
    result.metrics["flops_per_sample"] = count_untouched(model, x, y, dtype).training


def _note_setup(cfg: DictConfig, train: BatchSource, result: RunResult) -> None:
    """Facts a reader of the numbers should know, in metrics.json's notes and on the console."""
    notes = []  # on the console too, before the run: each changes what its numbers mean
    if cfg.precision.tf32 and result.device != "cuda":
        notes.append("precision=tf32 is fp32 here: TF32 is a GPU tensor-core format")
    if cfg.precision.autocast_dtype == "float16" and result.device == "cpu":
        # Said before the warm-up, which can take a minute: a user had only the verdict's word for it, at the end.
        notes.append(f"precision={cfg.precision.name} on the CPU: fp16 autocast has no fast path here, so expect it "
                     "many times slower than fp32 (the lab's AMP is a GPU feature)")  # fmt: skip
    # Settings this run has no use for, where the command set them: said on the console as facts, not warnings
    # (they change no number), and recorded. One a default or the recipe gave (workers=2 beside loader=resident,
    # recipe=fast's cudnn_benchmark on a CPU) is not the user's to clear: said for every run, and in every report,
    # it read as a mistake the user had made.
    typed = set_by_the_command()
    unused = ["cudnn_benchmark=true is ignored without CUDA: cuDNN autotunes a GPU's convolutions"] * (
        bool(cfg.cudnn_benchmark) and result.device != "cuda" and (typed is None or "cudnn_benchmark" in typed)
    )
    unused.extend(f"{key} is ignored by loader={cfg.loader.name}" + (f" here: {why}" if why else "")
                  for key, why in train.ignored.items() if typed is None or key in typed)  # fmt: skip
    # The max_batch search's settings, changed on a training run: max_batch.budget_s=5 was dropped without a word.
    defaults = asdict(MaxBatchConfig())
    unused.extend(f"max_batch.{key}={as_override(value) if value is None else as_text(value)} is ignored by "
                  "task=train: it is a setting of experiment=max_batch"
                  for key, value in cfg.max_batch.items() if value != defaults.get(key))  # fmt: skip
    cores = usable_cores()  # a SLURM job's share, not the node's count
    if cfg.workers > cores and "workers" not in train.ignored:
        notes.append(f"workers={cfg.workers} is more than the {cores} CPU core{'s' * (cores > 1)} this run may use: "
                     "the worker processes compete with training and with each other for them")  # fmt: skip
    for note in notes:
        log.warning("Note: %s", note)
    for note in unused:
        log.info("Unused here: %s", note)
    result.notes.extend([*notes, *unused])
    tested = f"{result.test_samples:,} test images" if result.test_samples is not None else "no test (evaluate=false)"
    log.info(
        "Training %s (%s params) on %s (%s) | %s | batch %s | %s, %s train images, %s | loader=%s",
        cfg.model.name, f"{result.params:,}", result.device, result.device_name, cfg.precision.name,
        f"{cfg.batch_size:,}", cfg.dataset.name, f"{result.train_samples:,}", tested, cfg.loader.name,
    )  # fmt: skip
    # What step.*=auto and the recipe resolved to, as metrics.json's `step` records it: the one place a user
    # sees, before the epochs, which step is being timed.
    step = result.step
    log.info(
        "Step: recipe=%s | compile=%s | adam=%s | channels_last=%s%s",
        cfg.recipe.name, step.get("compile"), step.get("adam"), as_override(bool(step.get("channels_last"))),
        " | GradScaler" if step.get("grad_scaler") else "",
    )  # fmt: skip


#: how far the CUDA-event epoch time may stray from the synchronized wall clock's before a note says so
CLOCKS_AGREE = 0.02


def _clocks_disagree(wall_s: float | None, cuda_s: float | None) -> str | None:
    """A note when the two epoch clocks differ by more than CLOCKS_AGREE (measurement rule 1: they must agree).
    Both span the same interval, the stream's start and end events and the synchronized host clock around
    them, idle time included; a gap means work outside the stream's window (another stream's, or the host's
    between a clock's read and its event), and the figure to doubt."""
    if not wall_s or not cuda_s:
        return None
    gap = cuda_s / wall_s - 1
    if abs(gap) <= CLOCKS_AGREE:
        return None
    return (f"the epoch's CUDA-event time ({cuda_s:.3f} s) and its wall-clock time ({wall_s:.3f} s) differ by "
            f"{gap:+.1%}: the wall clock, synchronized, is the figure reported")  # fmt: skip


def _conclude(result: RunResult) -> None:
    """The run's verdict and learning check, and its closing lines on the console."""
    result.diagnosis = diagnose(result.to_dict())
    if result.diagnosis["learned"] is False:
        result.notes.append(result.diagnosis["learning"])
        log.warning("Note: %s", result.diagnosis["learning"])
    m = result.metrics
    cv, repeats = m.get("samples_per_s_cv"), m.get("repeats") or 1
    over = f"over {repeats} repeats" if repeats > 1 else "over the epochs"
    noisy = f"noisy: CV {cv:.1%} {over}" if result.diagnosis.get("noisy") and cv is not None else ""
    said = []  # one parenthesis: "(median of 3 repeats 123, IQR 20; noisy: CV 20.4% over 3 repeats)"
    if repeats > 1 and m.get("samples_per_s_median") is not None:  # metrics.json had them; the console did not
        iqr = m.get("samples_per_s_iqr")
        said.append(f"median of {repeats} repeats {metric('samples_per_s').format(m['samples_per_s_median'])}"
                    + (f", IQR {metric('samples_per_s').format(iqr)}" if iqr is not None else "")
                    + (f", CV {cv:.1%}" if cv is not None and not noisy else ""))  # fmt: skip
    said += [noisy] * bool(noisy)
    spread = f" ({'; '.join(said)})" if said else ""
    over_all = " over all epochs" if repeats > 1 else ""  # beside the repeats' median: which rate is which
    line = [f"avg epoch {metric('avg_epoch_time').format(m['avg_epoch_time'])} s",
            f"{metric('samples_per_s').format(m['samples_per_s'])} samples/s{over_all}{spread}"]  # fmt: skip
    if m.get("peak_memory_mb") is not None:
        pooled = " (with CUDA graphs' pool)" if (result.memory or {}).get("graph_pool_mb") else ""
        line.append(
            f"peak memory {m['peak_memory_mb']:,.1f} MB allocated{pooled} / {m['peak_reserved_mb']:,.1f} MB reserved"
        )
    else:
        # The figure metrics.json records (after the epochs); the main process's, as every figure of it says.
        line.append(f"peak RSS {m['peak_rss_mb']:,.0f} MB (main process)")
    if m.get("test_accuracy") is not None:
        line.append(f"test accuracy {m['test_accuracy']:.1%}")
    log.info("Done: %s", ", ".join(line))
    diagnosis = result.diagnosis
    if diagnosis["verdict"]:
        next_step = f"; try {diagnosis['next']}" if diagnosis["next"] else ""
        if diagnosis["next"] == "device=cuda" and not torch.cuda.is_available():  # the verdict is the run's alone
            next_step += ", on a machine with a CUDA GPU (none is usable here)"
        log.info("Verdict: %s: %s%s", diagnosis["verdict"], diagnosis["evidence"], next_step)


def _loader(
    cfg: DictConfig, x: Any, y: Any, device: torch.device, *, shuffle: bool, channels_last: bool
) -> BatchSource:
    return build_loader(
        cfg.loader, x, y, device=device, batch_size=cfg.batch_size, shuffle=shuffle, channels_last=channels_last
    )
