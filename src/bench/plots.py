"""One figure per experiment: the swept variable on x, one panel per measure, one line or bar group per
value of a second swept variable. Runs that did not finish are marked with their status on the x axis."""

from __future__ import annotations

import logging
import os
import textwrap
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only: a sweep on a headless node must not need a display

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.ticker import FixedLocator, FuncFormatter, NullFormatter, NullLocator

from bench.errors import one_line
from bench.metrics import METRICS, Metric, metric, significant
from bench.results import MEMORY_LABELS, parts_shown
from bench.runs import (
    LAB_EPOCH_IMAGES,
    MAX_NAMING_VALUES,
    images_per_epoch,
    is_numeric,
    named_by_run,
    resident_dataset_mb,
    run_names,
    trains,
    unlike_the_lab,
    x_axis,
)
from bench.tables import as_text

LABELS = {
    "batch_size": "Batch size",
    "workers": "DataLoader workers",
    "model": "Model",
    "device": "Device",
    "precision": "Precision",
    "loader": "Loader",
    "dataset": "Dataset",
    "epochs": "Epochs",
    "seed": "Seed",
}
log = logging.getLogger(__name__)


class NotDrawn(Exception):
    """A figure these runs cannot make readable: its message says why, in the report, in place of the figure."""


def draw(plot: Callable[..., bool | None], *args: Any, **kwargs: Any) -> tuple[bool, str | None]:
    """``plot(*args, **kwargs)`` as a report or comparison draws it: whether it made a figure, and where the runs'
    values defeat matplotlib (a hand-edited 1.7e308 samples/s leaves no finite axis limit), why not, instead of the
    whole report lost. Warnings about the values (numpy's overflow, a crowded legend's "constrained_layout not
    applied") go to the log, not the console. A full disk (OSError) still stops the command, as any write does."""
    figure = next((a for a in args if isinstance(a, Path)), None)  # the file it is to write
    # Drawn into a file of its own and renamed over the figure once whole: a signal during savefig had left half
    # a PNG in place of the earlier report's figure.
    tmp = None if figure is None else figure.with_name(f".{figure.stem}.{os.getpid()}.tmp{figure.suffix}")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            made = plot(*(tmp if a is figure else a for a in args), **kwargs)
            if tmp is not None and tmp.exists():
                os.replace(tmp, figure)  # type: ignore[arg-type]
        except NotDrawn as err:
            plt.close("all")
            return False, str(err)
        except Exception as err:
            plt.close("all")
            # The earlier figure stays whole (this one was drawn apart): a full disk stops the command before the
            # earlier report, which links it, is replaced; else the new report does not link it and
            # remove_unlinked takes it away with the earlier text.
            if isinstance(err, OSError):  # a full disk stops the command, as any write does
                raise
            # The figure is lost, not the report beside it.
            log.warning("%s: not drawn: %s: %s", figure or plot.__name__, type(err).__name__, one_line(err))
            log.debug("%s failed", plot.__name__, exc_info=True)  # a bug of bench's, not the values: in the log
            return False, f"{type(err).__name__}: {one_line(err)}"
        finally:
            if tmp is not None:  # whatever stopped it (a signal too): no half-drawn file left beside the figures
                tmp.unlink(missing_ok=True)
            for warning in caught:
                log.debug("%s: %s", plot.__name__, warning.message)
    return made is not False, None


LAB_STYLE = dict(color="0.45", linestyle="--", marker="s", markerfacecolor="white", label="lab (Colab GPU)")


def _panels(runs: pd.DataFrame) -> list[tuple[str, str, str]]:
    """(metric key, title, y-axis label) per panel: for each panel of the metric table, the first metric with
    data. The title names the measure, the axis its unit (the name again where it has none: Samples/s)."""
    chosen: dict[str, Metric] = {}
    for m in METRICS:
        if m.panel and m.panel not in chosen and m.key in runs and runs[m.key].notna().any():
            chosen[m.panel] = m
    named = [(m, f"{m.label[:1].upper()}{m.label[1:]}") for m in chosen.values()]
    return [(m.key, name, m.unit or name) for m, name in named]


def _choose_axes(runs: pd.DataFrame, varied: list[str]) -> tuple[str, list[str]]:
    """x: the sweep's axis (bench.runs.x_axis); the other swept variables group the lines/bars."""
    x = x_axis(runs, varied)
    return x, [v for v in varied if v != x]


def _series_label(key: Any, hue: list[str]) -> str:
    keys = key if isinstance(key, tuple) else (key,)
    return ", ".join(f"{h}={as_text(k)}" for h, k in zip(hue, keys, strict=True))


#: a panel whose values span this factor or more gets a log y axis
LOG_Y_SPAN = 30
#: an experiment figure's panel width (inches), and the characters a line of its panel titles (at the default
#: size) and of its legend (small) holds
PANEL_INCHES, TITLE_CHARS, LEGEND_CHARS = 5.2, 50, 60
#: the most series an experiment's figure draws: matplotlib's colour cycle, after which two lines share a colour
MAX_SERIES = 10


def plot_experiment(
    runs: pd.DataFrame, varied: list[str], title: str, path: Path, lab: dict[str, Any] | None = None
) -> bool:
    """Save the experiment's figure to ``path``; False (and no file) when no run finished."""
    ok = runs[runs["status"] == "ok"]
    if ok.empty or not varied:
        return False
    x, all_hue = _choose_axes(runs, varied)
    # The series are told apart by what varies among the runs drawn: a setting varied only by a run that did not
    # finish (a skipped search's) had put "dataset.train_size=512" into every label alike.
    hue = [h for h in all_hue if ok[h].astype(str).nunique() > 1]
    groups = list(ok.groupby(hue, sort=False)) if hue else [(None, ok)]
    if len(groups) > MAX_SERIES:
        raise NotDrawn(f"{len(groups)} series, one for each combination of {', '.join(hue)}: more than {MAX_SERIES} "
                       "lines cannot be told apart in one figure; the table has every run, and a report of one sweep "
                       "(or of fewer folders) draws it")  # fmt: skip
    numeric = is_numeric(runs[x])
    panels = _panels(ok)
    fig, axes = plt.subplots(1, len(panels), figsize=(PANEL_INCHES * len(panels), 4.4), squeeze=False,
                             layout="constrained")  # fmt: skip
    categories = list(dict.fromkeys(str(v) for v in runs[x].dropna()))
    legend: dict[str, Any] = {}  # label → handle, over all panels: one legend for the figure
    lab_df, lab_style = _lab_at_our_epoch_size(pd.DataFrame((lab or {}).get("figures") or []), ok)
    differ = unlike_the_lab(ok, lab or {}, x)
    if differ:  # "batch_size=64" over the title stood above lab points measured at 512: the legend says so
        ran = ", ".join(f"{key}={theirs}" for key, _, theirs in differ)
        lab_style = {**lab_style, "label": textwrap.fill(f"{lab_style['label']}; the lab ran {ran}", 40)}
    if numeric and x in lab_df:
        # The lab's points within our runs' range only: a line to a point off the axis drew, at our batch 32, a
        # "lab figure" between its 16 and 64 that the lab never measured.
        ours, theirs = pd.to_numeric(runs[x], errors="coerce").dropna(), pd.to_numeric(lab_df[x], errors="coerce")
        lab_df = lab_df[(theirs >= ours.min()) & (theirs <= ours.max())]
    for ax, (column, name, unit) in zip(axes[0], panels, strict=True):
        lab_drawn = not lab_df.empty and column in lab_df and x in lab_df
        panel_groups, ours = groups, ok
        dataset = resident_dataset_mb(ok)
        if lab_drawn and column == "peak_memory_mb" and (dataset > 0).any():
            # Like for like, as the report's table: the lab held no dataset on the GPU, so ours is drawn without.
            ours = ok.assign(peak_memory_mb=pd.to_numeric(ok[column], errors="coerce") - dataset)
            panel_groups = list(ours.groupby(hue, sort=False)) if hue else [(None, ours)]
        # Values far apart (a CPU run's 40 s beside a GPU's or the lab's 0.1 s): on a linear axis the small ones
        # lie flat on the floor, the lab's markers hidden in its bottom pixel.
        band = _band(ours, column)
        shown = pd.concat([pd.to_numeric(ours[key], errors="coerce") for key in (column, *(band or ()))])
        if lab_drawn:
            shown = pd.concat([shown, pd.to_numeric(lab_df[column], errors="coerce")])
        shown = shown[shown > 0]
        log_y = len(shown) >= 2 and shown.max() / shown.min() >= LOG_Y_SPAN
        suffix = ", without its resident dataset" if ours is not ok else ""
        if numeric:
            _lines(ax, panel_groups, x, column, hue, suffix)
            xs = [float(v) for v in sorted(pd.to_numeric(runs[x].dropna()).unique())]
            # In log space: lr=1e308 beside lr=0.001 overflowed the ratio (and 1e308 * 1.25 the limit).
            if len(xs) > 2 and xs[0] > 0 and np.log2(xs[-1]) - np.log2(xs[0]) >= 3:
                ax.set_xscale("log", base=2)
                ax.set_xlim(xs[0] / 1.25, min(xs[-1] * 1.25, np.finfo(float).max))
            else:
                pad = (xs[-1] - xs[0]) * 0.05 or 0.5
                ax.set_xlim(xs[0] - pad, xs[-1] + pad)
            ax.xaxis.set_major_locator(FixedLocator(xs))
            ax.xaxis.set_minor_locator(NullLocator())
            ax.set_xticklabels([f"{v:g}" for v in xs])
        else:
            _bars(ax, panel_groups, x, column, hue, categories, points=log_y, suffix=suffix)
        if lab_drawn:
            _lab_overlay(ax, lab_df, x, column, numeric, categories, lab_style)
        _mark_unfinished(ax, runs, x, numeric, categories, all_hue)
        ax.set_xlabel(LABELS.get(x, x) + (" (log scale)" if ax.get_xscale() == "log" else ""))
        if log_y:
            ax.set_yscale("log")
            # 0.1, 1, 10 as the tables write numbers, not 10⁻¹, 10⁰, 10¹; the minor ticks unlabelled.
            ax.yaxis.set_minor_formatter(NullFormatter())
        # 2,500 and 1,000,000 samples/s as the tables write them (matplotlib's own: 2500, and 1e6 in a corner).
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: tick(v)))
        # The axis gives the unit under a title that names the measure: "Peak RSS of the main process, workers
        # excluded (MB)" twice crowded the next panel. "s, log scale", not "(s) (log scale)".
        ax.set_ylabel(f"{unit}, log scale" if log_y else unit)
        # Wrapped to the panel: side by side, "… none for a run of one epoch" ran into the next panel's title.
        said = [name, *([_whiskers_say(ours, column, band)] if band else [])]
        ax.set_title("\n".join(line for part in said for line in textwrap.wrap(part, TITLE_CHARS)))
        # A legend only where there is more than one series to tell apart (not a lone "bench").
        if hue or lab_drawn:
            for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
                legend.setdefault(label, handle)
        # From 0 (linear), and room above the highest point: 5% so its marker is not cut by the frame (on a log
        # axis, the same as a factor).
        if log_y:
            ax.set_ylim(shown.min() / 1.5, shown.max() * 1.5)
        else:
            ax.set_ylim(bottom=0, top=ax.get_ylim()[1] * 1.05)
        ax.grid(True, alpha=0.3)
    if legend:
        # Under the panels, not in them: in each panel it covered the highest points and the y axis's labels.
        labels = [textwrap.fill(label, LEGEND_CHARS) for label in legend]
        widest = max(len(line) for label in labels for line in label.splitlines())
        columns = max(1, min(len(labels), int(PANEL_INCHES * len(panels) / (0.075 * widest + 0.6))))
        fig.legend(list(legend.values()), labels, loc="outside lower center", ncols=columns, fontsize="small")
    fig.suptitle(f"{title}\n{context(runs, varied)}".strip())
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def tick(value: float) -> str:
    """An axis's number as the tables write it: thousands separated, no exponent below a trillion, 0 not -0."""
    return f"{value:,.0f}" if 1000 <= abs(value) < 1e12 else f"{value + 0.0:,g}"


def context(runs: pd.DataFrame, varied: list[str]) -> str:
    """What every run of the figure shares, for a figure read away from its report: the device (and its
    name), model, precision, loader and batch size, where they are one value (not swept)."""
    parts = []
    # A max_batch search trains no epochs of the configured loader and batch: only what it searched on.
    searched = "task" in runs and not trains(runs)
    keys = ("device", "model", "precision") if searched else ("device", "model", "precision", "loader", "recipe",
                                                               "batch_size")  # fmt: skip
    for key in keys:
        found = list(dict.fromkeys(as_text(v) for v in runs[key].dropna())) if key in runs else []
        if key in varied or len(found) != 1:
            continue
        value = found[0]
        if key == "device":
            names = list(dict.fromkeys(str(v) for v in runs.get("device_name", pd.Series()).dropna()))
            value += f": {names[0]}" if len(names) == 1 else ""  # "cpu: AMD EPYC (2 logical cores)"
        parts.append(value if key in ("device", "model", "precision") else f"{key}={value}")
    return " · ".join(parts)


def _band(runs: pd.DataFrame, column: str) -> tuple[str, str] | None:
    """The columns of ``column``'s whiskers (its metric's ``band``) where some run's trials differ; else None."""
    band = metric(column).band
    if band is None or not all(key in runs for key in band):
        return None
    low, high = (pd.to_numeric(runs[key], errors="coerce") for key in band)
    return band if (high - low).gt(0).any() else None


def _whiskers_say(runs: pd.DataFrame, column: str, band: tuple[str, str]) -> str:
    """What the whiskers span: each run's repeats, or its epochs where it was not repeated; and that a run of one
    epoch has none, which would otherwise look like a run whose epochs agreed exactly."""
    repeats = set(pd.to_numeric(runs.get("repeats", pd.Series(dtype=float)), errors="coerce").fillna(1).astype(int))
    if repeats == {1}:
        said = "whiskers: slowest to fastest epoch"
    elif len(repeats) == 1:
        said = f"whiskers: slowest to fastest of {repeats.pop()} repeats"
    else:
        said = "whiskers: slowest to fastest repeat (else epoch)"
    alone = pd.to_numeric(runs[column], errors="coerce").notna() & pd.to_numeric(runs[band[0]], errors="coerce").isna()
    return said + ("; none for a run of one epoch" if alone.any() else "")


def _whiskers(data: pd.DataFrame, column: str) -> np.ndarray | None:
    """``yerr`` for matplotlib: the distance from each value down to its lowest trial and up to its highest."""
    band = _band(data, column)
    if band is None:
        return None
    value = pd.to_numeric(data[column], errors="coerce")
    low, high = (pd.to_numeric(data[key], errors="coerce") for key in band)
    return np.vstack([(value - low).clip(lower=0).fillna(0), (high - value).clip(lower=0).fillna(0)])


def _lines(ax: Axes, groups: list, x: str, column: str, hue: list[str], suffix: str = "") -> None:
    for i, (key, group) in enumerate(groups):
        if group[column].isna().all():  # e.g. CPU runs in the GPU-memory panel
            continue
        data = group.assign(_x=pd.to_numeric(group[x])).dropna(subset=["_x"]).sort_values("_x", kind="stable")
        label = (_series_label(key, hue) if hue else "bench") + suffix
        # One point per value: where a value ran more than once (a config run twice), the line goes through the
        # median of its runs, each of them a dot (a line through them all drew a vertical zigzag).
        line = data.groupby("_x", as_index=False)[column].median()
        ax.plot(line["_x"], line[column], marker="o", color=f"C{i}", label=label)  # same colour in every panel
        if len(line) < len(data):
            ax.plot(data["_x"], data[column], "o", markersize=4, color=f"C{i}", alpha=0.5)
        yerr = _whiskers(data, column)
        if yerr is not None:
            ax.errorbar(data["_x"], data[column], yerr=yerr, fmt="none", ecolor=f"C{i}", capsize=4, alpha=0.6)


def _bars(
    ax: Axes, groups: list, x: str, column: str, hue: list[str], categories: list[str], points: bool = False,
    suffix: str = "",
) -> None:  # fmt: skip
    """A bar per category and series; with ``points`` (a log axis, where a bar's length from an arbitrary floor
    is not its value: amp_fp16's 7.7× looked 1.4× fp32's) a marker labelled with its value instead."""
    width = 0.8 / len(groups)
    positions = np.arange(len(categories))
    for i, (key, group) in enumerate(groups):
        if group[column].isna().all():
            continue
        runs = group.assign(_x=group[x].astype(str))
        # A bar per category: the median of its runs where it ran more than once (the last of them had stood
        # for all), each of them a dot, and the whiskers only where there is one run to draw them for.
        repeated = runs["_x"].duplicated(keep=False)
        rows = runs.drop_duplicates("_x", keep="last").set_index("_x")
        rows[column] = runs.groupby("_x")[column].median()
        rows = rows.reindex(categories)  # a row per category, NaN where this series has no run
        heights = list(rows[column])
        yerr = _whiskers(rows, column)
        if yerr is not None:
            yerr[:, list(rows.index.isin(runs.loc[repeated, "_x"]))] = 0
        offset = (i - (len(groups) - 1) / 2) * width
        label = (_series_label(key, hue) if hue else "bench") + suffix
        if repeated.any():
            where = {c: n for n, c in enumerate(categories)}
            dots = runs[repeated & runs["_x"].isin(categories)]
            ax.plot([where[c] + offset for c in dots["_x"]], dots[column], "o", markersize=4, color="0.2", alpha=0.6,
                    zorder=3)  # fmt: skip
        if not points:
            ax.bar(positions + offset, heights, width, color=f"C{i}", label=label, yerr=yerr, capsize=4,
                   error_kw={"ecolor": "0.25", "alpha": 0.8})  # fmt: skip
            continue
        ax.plot(positions + offset, heights, "o", markersize=8, color=f"C{i}", label=label)
        if yerr is not None:
            ax.errorbar(positions + offset, heights, yerr=yerr, fmt="none", ecolor=f"C{i}", capsize=4, alpha=0.6)
        for pos, height in zip(positions + offset, heights, strict=True):
            if pd.notna(height):
                ax.annotate(significant(height), (pos, height), xytext=(7, 0), textcoords="offset points",
                            va="center", fontsize="small")  # fmt: skip
    ax.set_xticks(positions, categories)
    ax.set_xlim(-0.5, len(categories) - 0.5)  # every category in the frame, also one with no bar (skipped)


def _lab_at_our_epoch_size(lab: pd.DataFrame, ok: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The lab's epoch times scaled to our runs' images per epoch, where all of ours share one other size,
    so the time panel compares like with like and its legend says so; else the lab's own figures."""
    sizes = images_per_epoch(ok).dropna().unique()
    if "avg_epoch_time" not in lab or len(sizes) != 1 or sizes[0] in (0, LAB_EPOCH_IMAGES):
        return lab, LAB_STYLE
    scaled = lab.assign(avg_epoch_time=lab["avg_epoch_time"] * sizes[0] / LAB_EPOCH_IMAGES)
    return scaled, {**LAB_STYLE, "label": f"{LAB_STYLE['label']}, times per {sizes[0]:,.0f} images"}


def _lab_overlay(
    ax: Axes, lab: pd.DataFrame, x: str, column: str, numeric: bool, categories: list[str], style: dict[str, Any]
) -> None:
    if x == "device":  # part 1: the lab's points are its CPU's and its GPU's
        style = {**style, "label": style["label"].replace("Colab GPU", "Colab CPU and GPU")}
    if numeric:
        ax.plot(pd.to_numeric(lab[x]), lab[column], **style)
        return
    where = {c: i for i, c in enumerate(categories)}
    points = [(where[str(v)], y) for v, y in zip(lab[x], lab[column], strict=True) if str(v) in where]
    if points:
        ax.plot(*zip(*points, strict=True), **{**style, "linestyle": "none"})


def _mark_unfinished(
    ax: Axes, runs: pd.DataFrame, x: str, numeric: bool, categories: list[str], hue: list[str] = ()
) -> None:  # fmt: skip
    """Write 'oom', 'skipped', ... at the x position of every run that has no numbers to plot, with its series
    where there are several (a diverged lr=1e30 beside the lr=0.001 line the legend shows)."""
    for _, run in runs[runs["status"] != "ok"].iterrows():
        if pd.isna(run[x]):
            continue
        pos = float(run[x]) if numeric else categories.index(str(run[x]))
        series = f" ({_series_label(tuple(run[h] for h in hue), list(hue))})" if hue else ""
        # Beside the run's x, not on it: a lab marker drawn there (the lab's GPU beside a skipped cuda job) was
        # covered by the word.
        ax.annotate(f"{run['status']}{series}", (pos, 0), xycoords=("data", "axes fraction"), xytext=(9, 4),
                    textcoords="offset points", ha="center", va="bottom", color="tab:red", fontsize="small",
                    rotation=90)  # fmt: skip


def _job_labels(runs: pd.DataFrame, varied: list[str]) -> list[str]:
    """Each bar's label: its swept values; and which run it is, as the report's table names it, where those do not
    tell it apart (a config run twice), or alone, where too many vary for a label to hold them."""
    if len(varied) > MAX_NAMING_VALUES:
        return [f"run {name}" for name in run_names(runs)]
    labels = ["\n".join(f"{k}={as_text(r[k])}" for k in varied) or str(r["job"]) for _, r in runs.iterrows()]
    if not named_by_run(runs, varied):
        return labels
    return [f"{label}\nrun {name}" for label, name in zip(labels, run_names(runs), strict=True)]


def _bars_width(labels: list[str]) -> float:
    """A bar figure's width in inches: each bar as wide as its longest label line needs at the small font
    (~0.08 inch a character; with 1.1 inches each, "loader=dataloader" ran into its neighbour's label)."""
    longest = max((len(line) for label in labels for line in label.splitlines()), default=0)
    return max(5.0, max(1.1, 0.08 * longest + 0.15) * len(labels) + 2.5)


def _stacked(
    path: Path,
    title: str,
    labels: list[str],
    stacks: dict[str, list[float]],
    ylabel: str,
    marks: dict[str, list[float]] | None = None,
    shared: str = "",
    totals: list[str] | None = None,
) -> None:
    """Stacked bars, one per run; ``marks`` are drawn over them as points (a measure on another timeline);
    ``shared`` (:func:`context`) is a line under the title; ``totals`` are written above the bars."""
    width = _bars_width(labels)
    fig, ax = plt.subplots(figsize=(width, 4.4), layout="constrained")
    bottom = np.zeros(len(labels))
    for i, (name, heights) in enumerate(stacks.items()):
        values = np.nan_to_num(np.asarray(heights, dtype=float))
        color = "0.82" if name.endswith("idle") else f"C{i}"  # idle time in grey: nothing ran
        ax.bar(range(len(labels)), values, 0.6, bottom=bottom, label=name, color=color)
        bottom += values
    for name, heights in (marks or {}).items():
        ax.plot(range(len(labels)), heights, "D", color="black", markersize=7, label=name)
    for i, total in enumerate(totals or []):
        ax.annotate(total, (i, bottom[i]), xytext=(0, 3), textcoords="offset points", ha="center", va="bottom",
                    fontsize="small")  # fmt: skip
    if totals:
        ax.set_ylim(0, max(bottom.max(), 1e-9) * 1.1)  # room for them
    ax.set_xticks(range(len(labels)), labels, fontsize="small")
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: tick(v)))  # 12,000 MB, as the memory table has it
    ax.set_ylabel(ylabel)
    # Wrapped: no title past the figure's edge. The context, smaller, says what every bar shares.
    fig.suptitle("\n".join(textwrap.wrap(title, int(8 * width))))
    if shared:
        ax.set_title("\n".join(textwrap.wrap(shared, int(9 * width))), fontsize="small", color="0.3")
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.savefig(path, dpi=110)
    plt.close(fig)


#: the stack of the epoch the GPU spent in steps, by the events around them, which count the gaps between a
#: step's kernels too: a step of tiny kernels launched one by one fills it as a step of large ones does
STEPS_STACK = "GPU in steps (incl.\ngaps between kernels)"  # two lines: a wide legend squeezes the bars


def plot_time_split(runs: pd.DataFrame, varied: list[str], title: str, path: Path) -> bool:
    """Where the time goes, per finished run: stacked shares of the epoch (CUDA: the GPU's timeline, copy, busy
    with steps and idle, with the host's data wait as a point, since the GPU may run queued steps while the
    host waits; CPU: data wait and compute). False (and no file) when no run has the shares."""
    ok = runs[(runs["status"] == "ok") & runs["data_wait_frac"].notna()]
    if ok.empty:
        return False
    stacks, marks = time_shares(ok)
    percent = {k: [100 * v for v in vs] for k, vs in stacks.items()}
    marks = {k: [100 * v for v in vs] for k, vs in marks.items()} if marks else None
    # Shares alone drew a 1.2 s fp32 epoch and a 16 s fp16 one as the same bar: each bar says its seconds.
    epochs = pd.to_numeric(ok["avg_epoch_time"], errors="coerce")
    seconds = [f"{significant(t)} s" if pd.notna(t) else "" for t in epochs]
    _stacked(path, f"Where the time goes: {title}", _job_labels(ok, varied), percent,
             "share of the epoch (%); above each bar,\nthe epoch in seconds", marks, context(ok, varied),
             seconds)  # fmt: skip
    return True


def time_shares(ok: pd.DataFrame) -> tuple[dict[str, list[float]], dict[str, list[float]] | None]:
    """Each run's epoch as shares on its own timeline: the stacks, and the points drawn over them. A CPU run
    beside GPU runs (a CPU and a GPU sweep in one report) is its data wait and compute, not "GPU idle"."""
    wait = ok["data_wait_frac"].astype(float).tolist()
    gpu = ok["gpu_busy_frac"].notna().tolist()
    if not any(gpu):
        return {"data wait": wait, "compute (CPU)": [1 - w for w in wait]}, None
    copy = [c if g else 0.0 for c, g in zip(ok["copy_frac"].fillna(0).astype(float), gpu, strict=True)]
    busy = [b if g else 0.0 for b, g in zip(ok["gpu_busy_frac"].fillna(0).astype(float), gpu, strict=True)]
    idle = [max(0.0, 1 - c - b) if g else 0.0 for c, b, g in zip(copy, busy, gpu, strict=True)]
    stacks = {"host-to-device copy": copy, STEPS_STACK: busy, "GPU idle": idle}
    if not all(gpu):
        stacks |= {"data wait (CPU run)": [0.0 if g else w for w, g in zip(wait, gpu, strict=True)],
                   "compute (CPU run)": [0.0 if g else 1 - w for w, g in zip(wait, gpu, strict=True)]}  # fmt: skip
    return stacks, {"host waiting for data": [w if g else float("nan") for w, g in zip(wait, gpu, strict=True)]}


def plot_memory(runs: pd.DataFrame, varied: list[str], title: str, path: Path) -> bool:
    """What peak memory is made of, per CUDA run with a breakdown (bench.memory); False when none has one."""

    rows = [
        (i, r["memory"]) for i, r in runs.iterrows() if isinstance(r["memory"], dict) and "reserve_mb" in r["memory"]
    ]
    if not rows:
        return False
    shown = parts_shown(parts for _, parts in rows)  # the CUDA graphs' pool only where a run captured one
    stacks = {MEMORY_LABELS[p]: [parts.get(f"{p}_mb", 0.0) for _, parts in rows] for p in shown}
    drawn = runs.loc[[i for i, _ in rows]]
    ylabel = "MB (the stack is peak reserved)"
    _stacked(path, f"What peak memory is made of: {title}", _job_labels(drawn, varied), stacks, ylabel,
             shared=context(drawn, varied))  # fmt: skip
    return True


def plot_ratios(
    rows: pd.DataFrame, labels: list[str], title: str, path: Path, colors: dict[str, str], shared: str = ""
) -> None:
    """bench.compare's figure: one bar per config, its samples/s ratio (candidate / baseline) coloured by
    its verdict, the noise band shaded around 1, and a line at 1; ``shared`` (the machines, a key not matched
    on) is a smaller line under the title."""
    ticks = [label.replace(", ", "\n") for label in labels]
    # Wide enough for the line under the title in three lines or so (~9 small characters an inch), up to 12
    # inches: two machines and two unmatched keys had made it seven lines over two bars.
    inches = max(_bars_width(ticks), min(12.0, len(shared) / 27))
    fig, ax = plt.subplots(figsize=(inches, 4.4), layout="constrained")
    # From the line at 1×, up or down: a bar's length is how far from as-fast-as-the-baseline it is (on a log
    # scale, a bar from an arbitrary floor would make 0.02× a stub and 1.08× a tower).
    ax.bar(range(len(rows)), rows["ratio"] - 1, 0.6, bottom=1, color=[colors[v] for v in rows["verdict"]])
    for verdict in dict.fromkeys(rows["verdict"]):
        ax.bar([0], [0], 0, bottom=1, color=colors[verdict], label=verdict)  # a legend entry per verdict shown
    for i, (ratio, width) in enumerate(zip(rows["ratio"], rows["band"], strict=True)):
        # The verdict's own limits (bench.compare.verdict): as far below 1 as above it, on a log scale.
        ax.fill_between([i - 0.45, i + 0.45], 1 / (1 + width), 1 + width, color="0.5", alpha=0.3, linewidth=0,
                        label="noise band" if i == 0 else None)  # fmt: skip
        # At the bar's far end, beyond it: above a faster bar, below a slower one (not on the line at 1×).
        below = ratio < 1
        ax.annotate(f"{ratio:.2f}×", (i, ratio), xytext=(0, -3 if below else 3), textcoords="offset points",
                    ha="center", va="top" if below else "bottom")  # fmt: skip
    ax.axhline(1.0, color="black", linewidth=1, label="as fast as the baseline")
    # Ratios 2× apart or more on a log axis, where 0.5× and 2× are as far from 1: on a linear one a 4.5×
    # slowdown (0.22×) drew shorter than a 2× speedup.
    band = float(rows["band"].max())
    # The band's ends as far as the axis must reach: 1 / (1 + band) below, never 0 or less.
    low, high = min(rows["ratio"].min(), 1 / (1 + band)), max(rows["ratio"].max(), 1 + band)
    log = high / low >= 2
    if log:
        ax.set_yscale("log", base=2)
        ax.set_ylim(low / 1.6, high * 1.6)  # room for the labels beyond the bars' ends
    else:
        pad = 0.15 * (high - low)
        ax.set_ylim(low - pad, high + pad)
    # On the log axis 0.25× as "1/4×": its ticks are powers of 2, and 0.03125× is a number to decipher
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}×" if v >= 1 or not log else f"1/{1 / v:g}×"))
    ax.set_xticks(range(len(rows)), ticks, fontsize="small")
    ax.set_ylabel("samples/s, candidate / baseline" + (", log scale" if log else ""))
    fig.suptitle("\n".join(textwrap.wrap(title, int(8 * inches))))  # ~8 characters an inch: no title past the edge
    if shared:
        ax.set_title("\n".join(textwrap.wrap(shared, int(9 * inches))), fontsize="small", color="0.3")
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend(fontsize="small")
    fig.savefig(path, dpi=110)
    plt.close(fig)
