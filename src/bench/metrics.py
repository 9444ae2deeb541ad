"""One home for every run-level number: what it is, how it is shown, and how two runs compare.

:data:`METRICS` is the single table that ``metrics.json``, ``summary.csv``, the report's tables and plots,
and every comparison (``reproduce.md``, ``bench.compare``) loop over. A metric that is derived from the
per-epoch records carries its ``derive`` function, and :func:`summarize` is the one place that computes
them all when a run ends. Adding a metric is one entry here, plus the code that measures it when it is
not derived (docs/architecture.md, "Adding a metric").
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

Epochs = Sequence[Mapping[str, Any]]


#: ``Metric.fmt`` for figures that span orders of magnitude (TFLOP/s: 0.0123 on a CPU, 372 on a GPU): three
#: significant digits, never scientific notation
SIGNIFICANT = "3 significant digits"


def significant(value: float, digits: int = 3) -> str:
    """``value`` to ``digits`` significant digits, with thousands separators: 0.0123, 1.50, 372, 1,234."""
    if value == 0 or not math.isfinite(value):
        return "0" if value == 0 else str(value)  # -0.0 too
    magnitude = math.floor(math.log10(abs(value)))
    decimals = max(0, digits - 1 - magnitude)
    rounded = round(value, decimals)
    if rounded and math.floor(math.log10(abs(rounded))) > magnitude:  # 9.996 rounds up to 10.0, not 10.00
        decimals = max(0, decimals - 1)
    return f"{value:,.{decimals}f}"


def loss_text(loss: float, decimals: int = 3) -> str:
    """A loss as the console and notes write it: 2.303; a blown-up one (lr=1e8) as 4.74e+28, not 29 digits."""
    return f"{loss:,.{decimals}f}" if not math.isfinite(loss) or abs(loss) < 1e6 else f"{loss:.3g}"


@dataclass(frozen=True)
class Metric:
    key: str
    #: what it is, in words (plots' axes, comparison rows)
    label: str
    unit: str = ""
    #: format spec for one value: no scientific notation, shares as percentages
    fmt: str = ",.2f"
    #: compact column header for tables, unit included
    short: str = ""
    #: how two runs compare: "ratio" (new / old), "difference" (new - old) or "" (not compared)
    compare: str = "difference"
    #: a column of the report's per-experiment table
    table: bool = False
    #: the plot panel it is drawn in; where several metrics share a panel, the first with data is drawn
    panel: str | None = None
    #: computed from the epochs by summarize(); None for metrics measured directly
    derive: Callable[[Epochs], float | None] | None = None
    #: how a value is shown where ``fmt`` alone would mislead (a share rounded onto a verdict's threshold)
    show: Callable[[float], str] | None = None
    #: the keys of the lowest and highest of the run's trials (repeats, else epochs): the whiskers a plot draws
    band: tuple[str, str] | None = None
    #: what its column means, for a report's legend, where ``label`` alone does not say it to a newcomer
    meaning: str = ""

    @property
    def header(self) -> str:
        return self.short or (f"{self.label} ({self.unit})" if self.unit else self.label)

    def format(self, value: Any, missing: str = "n/a") -> str:
        """One value as tables and logs show it: ``26,586``, ``33%``, ``2.41``; ``missing`` when absent."""
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return missing
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return str(value)
        if self.show is not None:
            return self.show(value)
        return significant(value) if self.fmt == SIGNIFICANT else format(value, self.fmt)


def _wait_share(value: float) -> str:
    """A data-wait share as the verdicts' evidence shows it: 29.7% beside a verdict whose threshold is 30%."""
    from bench.diagnosis import wait_share  # lazily: diagnosis reads this table

    return wait_share(value)


def _busy_share(value: float) -> str:
    """A GPU-busy share as the verdicts' evidence shows it: 49.5% beside a verdict whose threshold is 50%."""
    from bench.diagnosis import busy_share

    return busy_share(value)


def _values(epochs: Epochs, key: str) -> list[float]:
    return [e[key] for e in epochs if isinstance(e.get(key), (int, float))]


def _total(key: str) -> Callable[[Epochs], float | None]:
    return lambda epochs: sum(_values(epochs, key)) if _values(epochs, key) else None


def _mean(key: str) -> Callable[[Epochs], float | None]:
    return lambda epochs: (sum(v := _values(epochs, key)) / len(v)) if _values(epochs, key) else None


def _sum_ratio(numerator: str, denominator: str) -> Callable[[Epochs], float | None]:
    """A rate or a share over the whole run: the sum of one field over the sum of another."""

    def ratio(epochs: Epochs) -> float | None:
        both = [e for e in epochs if _values([e], numerator) and _values([e], denominator)]  # epochs with both
        num, den = sum(_values(both, numerator)), sum(_values(both, denominator))
        return num / den if both and den > 0 else None

    return ratio


def _idle(epochs: Epochs) -> float | None:
    busy, copy = _sum_ratio("gpu_busy_s", "time_s")(epochs), _sum_ratio("copy_s", "time_s")(epochs)
    return None if busy is None else max(0.0, 1.0 - busy - (copy or 0.0))


def _trials(epochs: Epochs, key: str) -> list[float]:
    """The run's independent measurements of ``key`` ("time_s" or "samples_per_s"): one per repeat when the
    timed epochs were repeated (each repeat's mean epoch time, or its overall rate), else one per epoch."""
    repeats = sorted({e.get("repeat", 1) for e in epochs})
    if len(repeats) <= 1:
        return _values(epochs, key)
    groups = [[e for e in epochs if e.get("repeat", 1) == r] for r in repeats]
    if key == "samples_per_s":
        return [sum(_values(g, "samples")) / sum(_values(g, "time_s")) for g in groups]
    return [sum(_values(g, key)) / len(g) for g in groups]


def _spread(key: str, what: str) -> Callable[[Epochs], float | None]:
    """The median, IQR (75th minus 25th percentile), coefficient of variation (std / mean), lowest ("min") or
    highest ("max") of the trials. The run's own figure (its mean epoch time, or all its images over all its
    time) always lies between the lowest and the highest."""

    def stat(epochs: Epochs) -> float | None:
        trials = np.asarray(_trials(epochs, key), dtype=float)
        if trials.size == 0 or (what != "median" and trials.size < 2):
            return None  # one measurement says nothing about its spread
        if what == "median":
            return float(np.median(trials))
        if what in ("min", "max"):
            return float(trials.min() if what == "min" else trials.max())
        if what == "iqr":
            q1, q3 = np.percentile(trials, [25, 75])
            return float(q3 - q1)
        return float(trials.std(ddof=1) / trials.mean()) if trials.size > 1 and trials.mean() else None

    return stat


def _repeats(epochs: Epochs) -> int | None:
    return len({e.get("repeat", 1) for e in epochs}) if epochs else None


def _last(key: str) -> Callable[[Epochs], float | None]:
    return lambda epochs: epochs[-1].get(key) if epochs else None


METRICS: list[Metric] = [
    Metric("avg_epoch_time", "avg epoch time", "s", ",.3f", "s/epoch", "ratio", table=True, panel="time",
           derive=_mean("time_s"), band=("epoch_time_min", "epoch_time_max"),
           meaning=("the mean time of one timed epoch, in seconds; the warm-up's one-time costs (start-up, autotuning, "
                    "compilation) are not in it")),
    Metric("total_time", "total time of the timed epochs", "s", ",.2f", compare="ratio", derive=_total("time_s")),
    Metric("repeats", "repeats of the timed epochs", "", ",.0f", compare="", derive=_repeats),
    # Those the run finished: a run stopped early (diverged, interrupted) timed fewer than its config's `epochs`.
    Metric("timed_epochs", "timed epochs, all repeats", "", ",.0f", compare="", derive=lambda e: len(e) or None),
    Metric("samples_per_s_median", "median samples/s over the repeats (else the epochs)", "", ",.0f",
           "median samples/s", "ratio", derive=_spread("samples_per_s", "median")),
    Metric("samples_per_s_iqr", "interquartile range of samples/s over the repeats (else the epochs)", "",
           ",.0f", "IQR samples/s", derive=_spread("samples_per_s", "iqr")),
    Metric("samples_per_s_cv", "coefficient of variation of samples/s over the repeats (else the epochs)", "",
           ".1%", "CV", derive=_spread("samples_per_s", "cv")),
    Metric("epoch_time_median", "median epoch time over the repeats (else the epochs)", "s", ",.3f",
           compare="ratio", derive=_spread("time_s", "median")),
    # To 3 significant digits: a few ms at three decimals read "0.002 | 0.001 | -0.002" in reproduce.md.
    Metric("epoch_time_iqr", "interquartile range of the epoch time over the repeats (else the epochs)", "s",
           SIGNIFICANT, derive=_spread("time_s", "iqr")),
    Metric("epoch_time_cv", "coefficient of variation of the epoch time over the repeats (else the epochs)", "",
           ".1%", derive=_spread("time_s", "cv")),
    Metric("samples_per_s_min", "lowest samples/s of the repeats (else the epochs)", "", ",.0f", compare="",
           derive=_spread("samples_per_s", "min")),
    Metric("samples_per_s_max", "highest samples/s of the repeats (else the epochs)", "", ",.0f", compare="",
           derive=_spread("samples_per_s", "max")),
    Metric("epoch_time_min", "shortest epoch time of the repeats' means (else the epochs)", "s", ",.3f",
           compare="", derive=_spread("time_s", "min")),
    Metric("epoch_time_max", "longest epoch time of the repeats' means (else the epochs)", "s", ",.3f",
           compare="", derive=_spread("time_s", "max")),
    # The run's figure: every timed epoch's images ÷ their time; the median over repeats is another column.
    Metric("samples_per_s", "samples/s", "", ",.0f", "samples/s (all epochs)", "ratio", table=True,
           panel="throughput", derive=_sum_ratio("samples", "time_s"),
           band=("samples_per_s_min", "samples_per_s_max"),
           meaning="the run's throughput: every timed epoch's images ÷ their time"),
    Metric("cuda_epoch_time", "avg epoch time by CUDA events", "s", ",.3f", compare="ratio",
           derive=_mean("cuda_time_s")),
    Metric("data_wait_frac", "share of the epoch waiting for data", "", ".0%", "data wait", table=True,
           derive=_sum_ratio("data_wait_s", "time_s"), show=_wait_share,
           meaning=("the share of the epoch the training loop waited for its next batch from the data path (the "
                    "lab's DataLoader reads, decodes and transforms images); the copy to the GPU is not in it")),
    # With step.channels_last on the DataLoader path, the batch's layout change runs right after its copy, inside
    # the same events: it is part of getting the batch onto the GPU, not of the step.
    Metric("copy_frac", "share of the epoch in host-to-device copies (CUDA events; layout change included)", "",
           ".0%", "copy", derive=_sum_ratio("copy_s", "time_s")),
    Metric("gpu_busy_frac", "share of the epoch the GPU ran training steps (CUDA events)", "", ".0%", "GPU busy",
           table=True, derive=_sum_ratio("gpu_busy_s", "time_s"), show=_busy_share,
           meaning=("the share of the epoch the GPU ran training steps, by CUDA events (a step's gaps between kernels "
                    "count as busy)")),
    Metric("gpu_idle_frac", "share of the epoch the GPU had no step or copy to run", "", ".0%", "GPU idle",
           derive=_idle),
    # GPU busy counts a step's gaps between kernels as busy; this tells a GPU that set the pace (a step or more
    # queued ahead of it) from one that waited on the host's launches (under diagnosis.LAUNCH_LEAD_STEPS).
    Metric("host_lead_steps", "how far ahead of the GPU the host queued steps, each epoch's median averaged",
           "steps", ",.2f", "host lead (steps)", derive=_mean("host_lead_steps")),
    Metric("warmup_time", "warm-up time (one-time costs)", "s", ",.2f", compare="ratio"),
    Metric("flops_per_sample", "training FLOPs per sample (forward + backward)", "FLOP", ",.0f", "FLOP/sample",
           compare="", meaning="the floating-point operations one image costs in a training step, forward and "
                               "backward, counted once by torch.utils.flop_counter"),
    Metric("tflops", "achieved training compute", "TFLOP/s", SIGNIFICANT, "TFLOP/s", "ratio", table=True,
           meaning=("trillions of floating-point operations a second: the model's training FLOPs per image (forward and"
                    " backward, counted by torch.utils.flop_counter) × samples/s")),
    Metric("peak_flops_frac", "share of the GPU's dense peak for the precision used", "", ".1%", "% of peak",
           table=True,
           meaning="TFLOP/s as a share of the GPU's dense datasheet peak for the precision used"),
    Metric("energy_j_per_epoch", "GPU energy per epoch (NVML)", "J", ",.0f", "J/epoch", "ratio",
           derive=_mean("energy_j")),
    Metric("avg_power_w", "average GPU power in the timed epochs", "W", ",.0f", "W", "ratio",
           derive=_sum_ratio("energy_j", "time_s")),
    Metric("samples_per_joule", "samples per joule", "", ",.1f", "samples/J", "ratio", table=True,
           derive=_sum_ratio("samples", "energy_j"),
           meaning="images trained per joule of GPU energy (NVML's counter)"),
    Metric("power_limit_w", "GPU power limit", "W", ",.0f", compare=""),
    Metric("sm_clock_mhz", "SM clock in the first epoch", "MHz", ",.0f", compare=""),
    # Allocated, plus what captured CUDA graphs' pools hold (torch counts that as reserved: bench.memory).
    Metric("peak_memory_mb", "peak CUDA memory allocated", "MB", ",.1f", "peak alloc MB", table=True,
           panel="memory",
           meaning=("the most GPU memory the run's tensors held at once (torch's allocated memory; a captured step's "
                    "graph pool included)")),
    Metric("peak_reserved_mb", "peak CUDA memory reserved", "MB", ",.1f", "peak reserved MB", table=True,
           meaning=("the most GPU memory torch's caching allocator held: allocated, plus what it kept for reuse")),
    Metric("warmup_peak_memory_mb", "peak CUDA memory allocated before the timed epochs (data, model, warm-up)",
           "MB", ",.1f"),
    # The training process's own: DataLoader workers are processes of their own, not counted in it. In a
    # report's table only beside runs without a CUDA peak (the CPU's memory figure).
    Metric("peak_rss_mb", "peak RSS of the main process, workers excluded", "MB", ",.0f", "peak RSS MB (main process)",
           table=True, panel="memory",
           meaning=("the most physical memory (resident set size) the training process held; DataLoader workers"
                    " are processes of their own, not counted")),
    Metric("dataset_memory_mb", "resident dataset on the device", "MB", ",.1f", "dataset MB", table=True,
           meaning="the training images held on the device by loader=resident"),
    Metric("max_batch", "largest batch that trains (task=max_batch)", "images", ",.0f", "max batch", "ratio",
           table=True, panel="capacity",
           meaning="the largest batch that trained two steps without running out of memory (task=max_batch)"),
    Metric("mem_intercept_mb", "fitted peak memory at batch 0", "MB", ",.1f", "a (MB)"),
    Metric("mem_mb_per_image", "fitted peak memory per image in the batch", "MB", ",.4f", "b (MB/image)",
           table=True),
    Metric("mem_fit_r2", "R² of the straight-line fit of peak memory to batch", "", ".4f", "R²", table=True),
    Metric("images_per_gb", "more images per GB of memory, from the fit's slope (1024 / b)", "", ",.0f",
           "images/GB", "ratio", table=True),
    Metric("final_loss", "final loss", "", ",.4f", derive=_last("loss"), show=lambda v: loss_text(v, 4)),
    Metric("test_accuracy", "test accuracy", "", ".1%", "test acc", table=True,
           meaning="the share of the test images the trained model classified correctly"),
    Metric("eval_time", "evaluation time", "s", ",.2f", compare="ratio"),
]  # fmt: skip


def finite(value: Any) -> float | None:
    """A measured value as a float, or None for a missing one (None, NaN, infinity, a bool, text)."""
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
    return float(value) if ok else None


def metric(key: str) -> Metric:
    """The table's entry for ``key``."""
    for m in METRICS:
        if m.key == key:
            return m
    raise KeyError(key)


def summarize(epochs: Epochs) -> dict[str, float | None]:
    """Every derived run-level number, from the per-epoch records; what a run writes into metrics.json."""
    return {m.key: m.derive(epochs) for m in METRICS if m.derive is not None}
