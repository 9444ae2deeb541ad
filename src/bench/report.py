"""Runs → DataFrame → ``summary.csv``, ``report.md`` and plots; also ``python -m bench.report DIR...``.

The report is built from the run folders' ``metrics.json`` files, never from return values, so it works
after any launcher (local, SLURM), after an interrupted sweep, and across machines: pass a CPU sweep and a
GPU sweep together and the report lines them up and computes the speedup.
"""

from __future__ import annotations

import itertools
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bench import findings, interrupts
from bench.diagnosis import (
    CHANCE_ACCURACY_FACTOR,
    CLEAR_ACCURACY_FLOOR,
    CLEAR_ACCURACY_SES,
    NEAR_CHANCE_LOSS,
    NOISY_CV,
    PER_RUN_FIGURE,
)
from bench.errors import OneLineParser
from bench.folders import (
    FIGURES_NOTE,
    REPORT_FILE,
    SUMMARY_FILE,
    drawn_figures,
    holds_run_dirs,
    make_writable,
    remove_unlinked,
)
from bench.metrics import METRICS, metric, significant
from bench.results import MEMORY_LABELS, parts_shown, write_atomically
from bench.runs import (
    CONFIG_COLUMNS,
    COUNT_COLUMNS,
    DEFAULT_EXPERIMENT,
    LAB_EPOCH_IMAGES,
    NOT_RECORDED,
    along,
    code_version,
    images_per_epoch,
    load_runs,
    named_by_run,
    repeats_a_config,
    resident_dataset_mb,
    run_names,
    settings,
    status_counts,
    step_text,
    summary_columns,
    swept_variables,
    timed_together,
    trains,
    unlike_the_lab,
    values,
    x_axis,
)
from bench.tables import MISSING as NO_VALUE
from bench.tables import cell, markdown

log = logging.getLogger(__name__)

MEMORY_NOTE = (
    "In MB of 2²⁰ bytes (MiB), as the lab's. Parameters, gradients, optimizer state and the resident dataset "
    "are measured by their tensors' sizes; "
    "other persistent memory is what the allocator held before the timed epochs beyond those; activations & "
    "temporaries are the steady-state peak minus that; the allocator reserve is reserved minus allocated. "
    "Together they are the peak reserved (each part rounded on its own: the shown parts can miss it by "
    "0.1-0.2 MB)."
)
#: the note's reserve, where a run captured its step: the graphs' pool is a part of its own
MEMORY_NOTE_POOL = (
    "the CUDA graphs' pool is what a captured step's private memory holds beyond its live tensors; the "
    "allocator reserve is reserved minus allocated minus that pool."
)
#: the column of a model's parameter count, in a sweep over models
PARAMETERS = "parameters"
#: the column that names each run (its job, else its folder) where its swept values do not (runs.named_by_run)
RUN = "run"
#: under a lab part that measured GPU memory, where none of our runs did
NO_GPU_MEMORY = (
    "No run here measured GPU memory: our memory figures are the main process's peak RSS on the CPU, which "
    "cannot be set beside the lab's GPU allocations; run the part with `device=cuda` for those."
)
#: the spread columns: over repeat=N, else (only where some run is noisy) over the epochs of one repeat
SPREAD_REPEATS = "samples/s: median (IQR) over the repeats"
#: beside runs of repeat=1, whose median and IQR are over their epochs: the cell says so
SPREAD_MIXED = "samples/s: median (IQR) over the repeats (else the epochs)"
SPREAD_EPOCHS = "samples/s spread over the epochs"
#: what the report's other columns and words mean, for its legend (a metric's column says it in bench.metrics)
MEANINGS = {
    PARAMETERS: "the model's trainable parameters",
    RUN: "which run a row is (its job number, else its folder), where runs share every swept value or many vary",
    "status": (
        "how the run ended: ok; oom (out of memory), failed, diverged (the loss went NaN or infinite), skipped "
        "(its device is not here), interrupted (a signal); missing (it never ran), unreadable (its metrics.json) or "
        "running (not finished when the report was made)"
    ),
    "verdict": (
        "what set the epoch's pace, judged from its measurements; the section *Why it is fast or slow* gives the "
        "evidence and one thing to try"
    ),
    "learning": (
        f"whether the run learned: it did not where its test accuracy is under {CHANCE_ACCURACY_FACTOR:g}× chance, "
        f"or where its final loss (the last timed epoch's mean) is within {NEAR_CHANCE_LOSS:.0%} of a uniform "
        "guess's (ln of the classes) or above it and its test accuracy is not clearly above chance "
        f"({CLEAR_ACCURACY_FLOOR:g}× chance or more, and {CLEAR_ACCURACY_SES:g} standard errors above it over its "
        "test images); where the classes' shares are unequal, the guess is the one that knows them (its loss the "
        "shares' entropy; its accuracy the largest class's test share, where the shares differ beyond random "
        "labels' chance, with a factor out of reach read as that many times fewer errors); a run too short to "
        "learn is still timed right"
    ),
    SPREAD_REPEATS: "the median samples/s of the run's repeats (repeat=N), with their IQR",
    SPREAD_MIXED: "the median samples/s of the run's repeats (repeat=N), else of its epochs, with their IQR",
    SPREAD_EPOCHS: "how far the run's epochs' samples/s varied (CV)",
}
#: words the report uses that a newcomer may not know, explained where the report uses them
TERMS = {
    "IQR": (
        "interquartile range: the upper minus the lower quartile, a width that holds the middle half of the "
        "figures, not a ± around the median"
    ),
    "CV": f"coefficient of variation: the standard deviation ÷ the mean; above {NOISY_CV:.0%} a run is flagged noisy",
    "MB": "megabytes of 1,048,576 bytes (MiB), as torch and nvidia-smi count them",
}
PIPELINES = {
    "dataloader": "the lab's path: DataLoader workers, per-sample PIL → ToTensor → Normalize",
    "resident": "the whole dataset on the device, shuffled and normalized there",
}


@dataclass
class Report:
    """Where the report went, and what it found."""

    out: Path
    runs: pd.DataFrame
    files: list[Path] = field(default_factory=list)


# -------------------------------------------------------------------------------------------- analysis


def speedup_table(df: pd.DataFrame) -> pd.DataFrame:
    """CPU time ÷ GPU time for every config that ran on both, as the lab's part 1 did.

    Matching ignores only the device, so a CPU run and a GPU run pair up when everything else is the same
    (every other setting that varies, ``lr`` as much as ``batch_size``). Totals are per repeat, so a run
    repeated 3 times weighs as much as one that was not.
    """
    ok = df[df["status"] == "ok"].copy()
    ok["total_time"] = ok["total_time"] / ok["repeats"].fillna(1)
    keys = [c for c in [*CONFIG_COLUMNS, *settings(df)] if c != "device"]
    # cuDNN autotuning means nothing on the CPU, so it does not take part in the match; but two GPU runs that
    # differ in it are two rows, each beside the same CPU run, not one dropped for the other.
    autotune = ["cudnn_benchmark"] if "cudnn_benchmark" in ok else []
    cpu = ok[ok["device"] == "cpu"].drop_duplicates(keys, keep="last")
    gpu = ok[ok["device"] == "cuda"].drop_duplicates([*keys, *autotune], keep="last")
    if cpu.empty or gpu.empty:
        return pd.DataFrame()
    pairs = cpu.drop(columns=autotune).merge(gpu, on=keys, suffixes=("_cpu", "_gpu"))
    if pairs.empty:
        return pairs
    pairs["speedup"] = pairs["avg_epoch_time_cpu"] / pairs["avg_epoch_time_gpu"]
    varied = [k for k in [*keys, *autotune] if pairs[k].astype(str).nunique() > 1] or ["model", "batch_size"]
    return pairs[[*varied, "avg_epoch_time_cpu", "avg_epoch_time_gpu", "total_time_cpu", "total_time_gpu", "speedup"]]


def overall_speedup(table: pd.DataFrame) -> float | None:
    """Total CPU time over total GPU time (per repeat) across the matched configs (the lab's 'Overall GPU
    Speedup')."""
    if table.empty:
        return None
    return float(table["total_time_cpu"].sum() / table["total_time_gpu"].sum())


def _lab_variable(lab: dict[str, Any] | None) -> str | None:
    """The config column the lab swept in this part (the first its figures name), or None."""
    keys = dict.fromkeys(k for figure in (lab or {}).get("figures") or [] for k in figure)
    return next((c for c in keys if c in CONFIG_COLUMNS), None)


def lab_comparison(runs: pd.DataFrame, lab: dict[str, Any]) -> pd.DataFrame:
    """The lab's figures beside ours, matched on the variable the lab swept (one row per run of ours).

    Columns: the swept variable, device, loader, status, then ``lab <metric>`` and ``ours <metric>`` for
    every metric the lab reported (named by the metric's short header, e.g. ``lab s/epoch``).
    """
    figures = pd.DataFrame(lab.get("figures") or [])
    if figures.empty:
        return figures
    x = _lab_variable(lab)
    measures = [m for m in METRICS if m.key in figures]
    ours = _recorded(runs).copy()
    if "avg_epoch_time" in figures and "avg_epoch_time" in ours:  # like for like: per epoch of the lab's size
        ours["avg_epoch_time"] = ours["avg_epoch_time"] * lab_epoch_scale(ours)
    source = ["source"] if "source" in ours else []  # folders given together that repeat a config (_by_source)
    ours = ours[list(dict.fromkeys([x, *source, "device", "loader", "status", "dataset_memory_mb",
                                    *(m.key for m in measures)]))]  # fmt: skip
    merged = figures.assign(_key=_match_key(figures[x])).merge(
        ours.drop(columns=x).assign(_key=_match_key(ours[x])), on="_key", how="left", suffixes=("_lab", "_ours")
    )
    if "peak_memory_mb_ours" in merged:  # like for like: the lab had no resident dataset on the GPU
        merged["peak_memory_mb_ours"] = merged["peak_memory_mb_ours"] - resident_dataset_mb(merged)
    columns = {x: x, **{c: c for c in source}, "device": "device", "loader": "loader", "status": "status"}
    for m in measures:
        columns |= {f"{m.key}_lab": f"lab {m.header}", f"{m.key}_ours": f"ours {m.header}"}
    return merged[list(columns)].rename(columns=columns)


def _recorded(runs: pd.DataFrame) -> pd.DataFrame:
    """The runs the lab comparison shows: those with a readable metrics.json (not missing or unreadable)."""
    return runs[~runs["status"].isin(NOT_RECORDED)]


def lab_epoch_scale(runs: pd.DataFrame) -> pd.Series:
    """Per run, LAB_EPOCH_IMAGES ÷ its images per epoch (1 where unknown): our epoch time × this is the
    time of an epoch as long as the lab's."""
    images = images_per_epoch(runs)
    return (LAB_EPOCH_IMAGES / images).where(images > 0, 1.0)


def _lab_digits(comparison: pd.DataFrame) -> pd.DataFrame:
    """The lab's figures as it recorded them (44.25 MB, 11.64 s; 12.0 beside 11.7, not 12) and ours to 3
    significant digits (ours scaled from a short epoch is no more exact than the lab's two decimals), and none
    of ours where no run has one (GPU memory on a CPU run)."""
    figures = [c for c in comparison if c.startswith(("lab ", "ours "))]
    empty = [c for c in figures if c.startswith("ours ") and comparison[c].isna().all()]
    shown = comparison.drop(columns=empty)

    def decimals(column: str) -> int:
        """A lab column's figures to as many decimals as the most precise of them (12.0 beside 11.7, not 12),
        read without scientific notation, and at most 4."""
        found = [len(np.format_float_positional(float(v), trim="-").partition(".")[2])
                 for v in shown[column] if pd.notna(v)]  # fmt: skip
        return min(max(found, default=0), 4)

    def column_cells(column: str) -> list[str]:
        lab = column.startswith("lab ")
        places = decimals(column) if lab else 0  # once per column, not once per cell
        return [NO_VALUE if pd.isna(v) else f"{v:,.{places}f}" if lab else significant(v) for v in shown[column]]

    return shown.assign(**{c: column_cells(c) for c in figures if c not in empty})


def _match_key(col: pd.Series) -> pd.Series:
    """Numbers compare as numbers (64 == 64.0, which a column with gaps becomes), anything else as text."""
    numbers = pd.to_numeric(col, errors="coerce")
    return numbers.astype("float64") if numbers.notna().all() else col.astype(str)


# ----------------------------------------------------------------------------------------------- output


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_") or "runs"


def _environment(df: pd.DataFrame) -> pd.DataFrame:
    """One row per environment the runs recorded; with several, the jobs that ran in each."""
    cols = ["device", "device_name", "env_gpu", "env_torch", "env_cuda", "env_cudnn", "env_hostname", "env_git_commit"]
    present = [c for c in cols if c in df]
    recorded = df[df["env_torch"].notna()].copy()  # runs that got as far as recording it
    measured = recorded[recorded["status"] != "skipped"]  # a skipped job (CUDA on a CPU box) measured nothing here
    recorded = measured.copy() if not measured.empty else recorded
    if "env_git_commit" in recorded:  # code with uncommitted changes is not the commit's code
        recorded["env_git_commit"] = [
            code_version(c, d) or c for c, d in zip(recorded["env_git_commit"], _git_dirty(recorded), strict=True)
        ]
    keys = recorded[present].astype(str).apply(tuple, axis=1)  # each run's environment
    first = ~keys.duplicated()
    env = recorded.loc[first, present]
    sweeps = recorded["sweep"].astype(str) if "sweep" in recorded else pd.Series("", index=recorded.index)
    # Which jobs ran where, wherever the runs ran in more than one environment (other code, say). A run that is no
    # sweep's job (outputs/runs/<time>) by its folder's name: its row had read "n/a".
    if "job" in recorded and len(env) > 1:
        named = sweeps.nunique() > 1  # job numbers repeat across sweeps: each with its sweep's folder name
        numbered = recorded["job"].notna()
        names = pd.Series(run_names(recorded), index=recorded.index)  # a run that is no job: its folder's name

        def jobs(key: tuple) -> str:
            here, jobs_here = keys == key, (keys == key) & numbered
            found = [(f"{Path(sweep).name}: " if named else "") + _job_list(group["job"])
                     for sweep, group in recorded[jobs_here].groupby(sweeps[jobs_here], sort=False)]  # fmt: skip
            return "; ".join([*found, *names[here & ~numbered]])

        column = "job numbers" if numbered.all() else "runs"  # "jobs: 0" read as a count
        env = env.assign(**{column: [jobs(key) for key in keys[first]]})
    env = env.rename(columns={c: c.removeprefix("env_") for c in present})
    if "cudnn" in env:  # torch gives 92400 for cuDNN 9.24.0
        env["cudnn"] = env["cudnn"].map(_cudnn_version)
    # torch.version.cuda is the CUDA torch was built for, recorded for CPU runs too: not a GPU in use.
    env = env.rename(columns={"cuda": "CUDA (torch build)"})
    return env.astype(str)  # versions are text: CUDA "13.0" is not the number 13


def _counts_whole(df: pd.DataFrame) -> pd.DataFrame:
    """The count columns as whole numbers with gaps (pandas' Int64), where every value is a whole number."""
    out = df.copy()
    for col in COUNT_COLUMNS:
        values = pd.to_numeric(out[col], errors="coerce") if col in out else None
        if values is not None and values.notna().sum() == out[col].notna().sum() and (values.dropna() % 1 == 0).all():
            out[col] = values.astype("Int64")
    return out


def _git_dirty(runs: pd.DataFrame) -> pd.Series:
    """Per run, whether its code had uncommitted changes; False where it did not say (older metrics.json)."""
    return runs.get("env_git_dirty", pd.Series(False, index=runs.index)) == True  # noqa: E712


def _job_list(jobs: pd.Series) -> str:
    """Job numbers as ranges: 0–2, 5."""
    numbers = sorted({int(j) for j in jobs.dropna()})
    spans: list[list[int]] = []
    for n in numbers:
        if spans and n == spans[-1][-1] + 1:
            spans[-1].append(n)
        else:
            spans.append([n])
    return ", ".join(f"{s[0]}–{s[-1]}" if len(s) > 1 else str(s[0]) for s in spans) or NO_VALUE


def _code_versions_sentence(df: pd.DataFrame) -> str:
    """Where the runs ran on more than one version of the code, a difference between them may be the code's."""
    if "env_git_commit" not in df:
        return ""
    recorded = df[df["env_git_commit"].notna()]
    dirty = _git_dirty(recorded)
    versions = set(zip(recorded["env_git_commit"], dirty, strict=True))
    if len(versions) < 2 and not dirty.any():
        return ""
    if len(versions) < 2:
        return ("These runs ran code with uncommitted changes: its commit does not say what ran, and a rerun "
                "from it may differ.")  # fmt: skip
    jobs = "jobs" if recorded["job"].notna().all() else "runs"  # as the environment table's column names them
    return (f"These runs ran on {len(versions)} versions of the code (commits, or uncommitted changes; {jobs} per "
            "version above): a difference between runs of different versions may be the code's, not the "
            "settings'.")  # fmt: skip


def _cudnn_version(code: object) -> object:
    """torch's cuDNN code as a version: 92400 → "9.24.0" (from cuDNN 9, major·10,000 + minor·100 + patch),
    8907 → "8.9.7" (before, major·1,000); anything else as it is."""
    if not isinstance(code, int | float) or pd.isna(code) or code < 1_000:
        return code
    major = 10_000 if code >= 10_000 else 1_000
    code = int(code)
    return f"{code // major}.{code % major // 100}.{code % 100}"


def _experiment_columns(runs: pd.DataFrame, varied: list[str]) -> list[str]:
    training = trains(runs)
    # Which run each row is (where nothing else tells them apart), and which pipeline and recipe made it.
    shown = [
        *([RUN] if RUN in runs else []),
        *varied,
        *(c for c in ("loader", "recipe") if c not in varied and training),
    ]
    if "model" in varied:  # what makes one model heavier than another: its weights and its work per image
        known = {PARAMETERS: "params", "flops_per_sample": "flops_per_sample"}  # (older runs lack params)
        shown += [c for c, key in known.items() if pd.to_numeric(runs[key], errors="coerce").notna().any()]
    # Autotuning changes both time and memory: a column where a CUDA run recorded it (a skipped one did not).
    if ((runs["device"] == "cuda") & runs["cudnn_benchmark"].notna()).any() and "cudnn_benchmark" not in shown:
        shown.append("cudnn_benchmark")
    # Measurement columns no run has (e.g. GPU memory in a CPU sweep) are left out.
    # The host's RSS is the memory figure of a run without a CUDA peak; beside CUDA runs alone it is noise.
    cpu_memory = (runs["peak_memory_mb"].isna() & runs["peak_rss_mb"].notna()).any()
    measured = [m.key for m in METRICS
                if m.table and runs[m.key].notna().any() and (m.key != "peak_rss_mb" or cpu_memory)]  # fmt: skip
    # A column of text with holes: all-missing is float NaN to pandas, so test the values, not the dtype.
    judged = ["verdict"] if runs["verdict"].map(lambda v: isinstance(v, str) and v != "").any() else []
    judged += ["learning"] if (runs["learning"] == "did not learn").any() else []  # else a column of "learned"
    spread = [c for c in (SPREAD_REPEATS, SPREAD_MIXED, SPREAD_EPOCHS) if c in runs]
    # A max_batch search says why it stopped: its max batch is the largest only where it bracketed it.
    searched = ["search"] if not training and runs["search"].notna().any() else []
    return [*shown, "status", *searched, *judged, *spread, *measured]


def _memory_panels(runs: pd.DataFrame) -> str:
    """What the memory panels' peak is, for these runs: a search's attempt or the timed epochs, and for a
    captured step also its CUDA graphs' pool."""
    measured = "Memory panels show peak memory *allocated* by tensors (`torch.cuda.max_memory_allocated`)"
    if not trains(runs):
        return f"{measured} in the attempt at each run's largest batch (a fresh model, a few steps); nothing was timed."
    if "graph_pool" in parts_shown(p for p in runs["memory"] if isinstance(p, dict)):
        measured += (" in the timed epochs, plus a captured step's CUDA graphs' pool (between replays torch counts the "
                     "step's activations there as reserved, not allocated)")  # fmt: skip
    else:
        measured += " in the timed epochs"
    return f"{measured}; reserved memory is in the table."


def build_report(paths: Sequence[Path], out: Path | None = None) -> Report:
    """Write summary.csv, report.md and the PNGs of each experiment into ``out`` (default: the first path)."""
    paths = [Path(p) for p in paths]
    out = Path(out) if out is not None else paths[0]
    df = load_runs(paths)  # before anything is written: an input that is not there is never created
    make_writable(out, "--out" if out != paths[0] else "the report folder")
    report = Report(out=out, runs=df)
    earlier = drawn_figures(out / REPORT_FILE)

    summary = out / SUMMARY_FILE
    write_atomically(summary, _counts_whole(df[summary_columns(settings(df))]).to_csv(index=False))
    report.files.append(summary)

    lines = ["# bench report", ""]
    lines += [f"Runs from: {', '.join(f'`{p}`' for p in paths)}", ""]
    varied = swept_variables(df)
    if varied:
        swept = "; ".join(f"**{v}** = {', '.join(values(along(df, [v])[v]))}" for v in varied)
        parts = df["experiment"].dropna().nunique() if "experiment" in df else 1
        # Over several experiments (two lab parts in one report) the values are the union, not a grid of them.
        head = f"Varied across its {parts} experiments (each section says what it swept)" if parts > 1 else "Swept"
        lines += [f"{head}: {swept}", ""]
    else:
        lines += ["Swept: nothing (every run has the same config)", ""]
    lines += [f"Runs: {len(df)} ({status_counts(df)})", ""]

    environment = _environment(df)
    # No run got as far as recording one (every job missing): a header without rows said nothing.
    lines += [
        "## Environment",
        "",
        markdown(environment) if len(environment) else "_No run recorded its environment._",
        "",
    ]
    versions = _code_versions_sentence(df)
    if versions:
        lines += [versions, ""]

    for title, runs in df.groupby("experiment", sort=False):
        lines += _experiment(out, str(title), runs.copy(), report)

    lines += _notes_lines(df)
    lines += ["## Status of every run", ""]
    lines += [markdown(df, ["job", *[c for c in varied if c in df], "status", "error", "run_dir"]), ""]
    lines += _legend(lines)
    drawn = " ".join(p.name for p in report.files if p.suffix == ".png")
    lines += [FIGURES_NOTE.format(drawn), ""] if drawn else []  # none drawn: nothing a later report need remove
    report_md = out / REPORT_FILE
    with interrupts.deferred():  # the new text and the earlier figures it no longer draws go together, as compare's
        write_atomically(report_md, "\n".join(lines))
        report.files.append(report_md)
        remove_unlinked(out, earlier, report.files)
    return report


def _legend(lines: list[str]) -> list[str]:
    """What the report's columns and terms mean: those its tables and text use, each once, in their order."""
    text = "\n".join(lines)
    headers = [
        name.strip()
        for line, below in itertools.pairwise(text.splitlines())  # a table's header row: the one over its rule
        if line.startswith("|") and re.fullmatch(r"\|(\s*:?-+:?\s*\|)+", below.strip())
        for name in line.strip().strip("|").split("|")
    ]
    meanings = {**{m.header: m.meaning for m in METRICS if m.meaning}, **MEANINGS}
    entries = [(h, meanings[h]) for h in dict.fromkeys(headers) if h in meanings]
    # The words in the report's own text, in the order it first uses them: not in a path, a host name or a code
    # span (a sweep folder named CV-runs is no coefficient of variation).
    prose = re.sub(r"`[^`]*`|[^\s|]*[/\\][^\s|]*", " ", text)
    used = {term: found.start() for term in TERMS if (found := re.search(rf"(?<![\w./-]){term}(?![\w./-])", prose))}
    entries += [(term, TERMS[term]) for term in sorted(used, key=used.get)]
    if not entries:
        return []
    return ["## What the columns and terms mean", "", *(f"- **{name}**: {means}" for name, means in entries), ""]


#: a note about a setting the run did not use (workers beside the resident loader, cuDNN autotuning on the CPU,
#: tf32 on the CPU): what the tables' settings meant, apart from the notes that change how to read a result
UNUSED_SETTING = re.compile(r"^\S+ is ignored( by |\b)|^precision=tf32 is fp32 here")


#: the note for runs timed while another was busy on one machine (runs.timed_together)
TOGETHER = ("timed while another run was busy on the same machine ({host}): they competed for it, so its figures "
            "read slower than alone (Hydra's submitit_local starts every job at once; the default launcher runs "
            "them one after another)")  # fmt: skip


def _notes_lines(df: pd.DataFrame) -> list[str]:
    """Each note the runs recorded (a run that did not learn, clocks that disagree, ...), once, with the runs it
    applies to; then, apart, the settings the runs did not use (precision=tf32 is fp32 here, a setting the loader
    ignored): every resident run's "workers is ignored" had stood among the notes that matter."""
    where: dict[str, list[str]] = {}
    figures: dict[str, list[str]] = {}  # a PER_RUN_FIGURE note's figure for each of its runs
    together = timed_together(df)
    for (_, run), name in zip(df.iterrows(), run_names(df), strict=True):
        for note in run["notes"] if isinstance(run["notes"], list) else []:
            found = PER_RUN_FIGURE.match(note) if len(df) > 1 else None
            if found:
                note = f"{found[1]} {found[3]}"
                figures.setdefault(note, []).append(found[2])
            where.setdefault(note, []).append(name)
        if run.name in together:
            where.setdefault(TOGETHER.format(host=together[run.name]), []).append(name)
    numbered = df["job"].notna().any()  # a sweep's jobs; else single runs, named by their folders

    def listed(notes: list[str]) -> list[str]:
        lines = []
        for note in notes:
            names, values = where[note], figures.get(note)
            if len(df) == 1:
                runs = "the run"
            elif len(names) == len(df) and not values:
                runs = "every run"
            else:  # each run's figure by its name, all runs' too
                labels = [f"{n} ({v})" for n, v in zip(names, values, strict=True)] if values else names
                runs = ("job" if numbered else "run") + ("s " if len(names) > 1 else " ") + ", ".join(labels)
            lines.append(f"- {note} — {runs}")
        return lines

    unused = [n for n in where if UNUSED_SETTING.search(n)]
    notes = [n for n in where if n not in unused]
    lines = ["## Notes the runs recorded", "", *listed(notes), ""] if notes else []
    if unused:
        lines += ["## Settings the runs did not use", "", *listed(unused), ""]
    return lines


def _experiment(out: Path, title: str, runs: pd.DataFrame, report: Report) -> list[str]:
    """One experiment's section: table, findings, figures, verdicts, memory, the lab beside ours."""
    from bench import plots  # matplotlib is imported only when a report is built

    lab = next((lab for lab in runs.get("lab", []) if isinstance(lab, dict)), None)
    swept = swept_variables(runs)
    # A lab part run at one value of what the lab swept (experiment=batch_size batch_size=32) is still told
    # along that variable: its table, plot and lab comparison name the batch size, not the model.
    varied = swept or [v for v in (_lab_variable(lab), "model") if v in runs][:1]
    runs, varied = _by_source(runs, varied)
    runs = along(runs, varied)
    if lab and "part" in lab:
        heading = f"Lab part {lab['part']}: {title}"
    elif title != DEFAULT_EXPERIMENT:
        heading = title
    elif not swept:  # nothing varies: no "sweep over model" for one model
        by_folder = ", one per folder (source)" if "source" in varied else ""
        heading = "The run" if len(runs) == 1 else f"{len(runs)} runs of one config{by_folder}"
    else:
        heading = f"Sweep over {', '.join(varied)}"
    # The lab measured GPU memory; where none of ours did (CPU runs), the heading and plot say what ours is.
    no_gpu_memory = bool(lab) and (runs["status"] == "ok").any() and not runs["peak_memory_mb"].notna().any()
    heading = heading.replace("peak GPU memory", "peak memory (RSS: no GPU run)") if no_gpu_memory else heading
    lines = [f"## {heading}", ""]
    if no_gpu_memory and any("peak_memory_mb" in f for f in (lab or {}).get("figures") or [] if isinstance(f, dict)):
        lines += [NO_GPU_MEMORY, ""]
    loaders = values(runs["loader"])
    if len(loaders) == 1 and trains(runs):
        pipeline = PIPELINES.get(loaders[0], "see README")
        if loaders[0] == "dataloader" and (pd.to_numeric(runs["workers"], errors="coerce") == 0).all():
            pipeline = pipeline.replace("DataLoader workers", "DataLoader in the main process (workers=0)")
        lines += [f"Pipeline: loader={loaders[0]} ({pipeline})", ""]
    steps = values(runs["step_as_timed"]) if trains(runs) else []
    if steps:  # what step.*=auto and the recipe resolved to: recorded per run, never shown before
        lines += [f"Step as timed: {steps[0]}" if len(steps) == 1 else
                  f"Steps as timed (they differ between runs): {_steps_by_run(runs, steps, varied)}", ""]  # fmt: skip
    shown = runs.assign(learning=[findings.learning_cell(v) for v in runs["learned"]])
    names = run_names(runs)
    if named_by_run(runs, varied):  # rows nothing in the table told apart (a config run twice), or many values
        shown[RUN] = names
    params = pd.to_numeric(runs["params"], errors="coerce")
    shown[PARAMETERS] = [f"{int(p):,}" if pd.notna(p) else NO_VALUE for p in params]
    timed = runs["samples_per_s_median"].notna()  # rows without a result (missing, failed) have no spread
    repeated = (runs["repeats"].fillna(1) > 1)[timed]
    if timed.any() and repeated.all():  # repeated timings: the median and IQR, and a noise flag
        shown[SPREAD_REPEATS] = [_spread(r) for _, r in runs.iterrows()]
    elif repeated.any():  # beside runs of one repeat, whose spread is over their epochs: each such cell says so
        shown[SPREAD_MIXED] = [_spread(r, over_epochs=not (pd.notna(r["repeats"]) and r["repeats"] > 1))
                               for _, r in runs.iterrows()]  # fmt: skip
    elif (pd.to_numeric(runs["samples_per_s_cv"], errors="coerce") > NOISY_CV).any():  # one repeat, epochs far apart
        shown[SPREAD_EPOCHS] = [_noise(r["samples_per_s_cv"]) for _, r in runs.iterrows()]
    lines += [markdown(shown, _experiment_columns(shown, varied)), ""]
    x = x_axis(runs, varied)
    # The sentences name a run as the table does, where its value does not (a config run twice).
    named = runs.assign(run_name=names)
    for paragraph in findings.paragraphs(named, x, [v for v in varied if v != x]):
        lines += [paragraph, ""]

    slug = _slug(title)
    # The breakdown figures' own titles: "Where the time goes: Lab part 2", not the part's whole title, which
    # speaks of memory over a time-only figure and wrapped to three lines.
    part = f"Lab part {lab['part']}" if lab and "part" in lab else heading
    figures = [
        (plots.draw(plots.plot_experiment, runs, varied, heading, out / f"{slug}.png", lab=lab), f"{slug}.png",
         heading),
        (plots.draw(plots.plot_time_split, runs, varied, part, out / f"{slug}_time.png"), f"{slug}_time.png",
         "Where the time goes"),
    ]  # fmt: skip
    if figures[0][0] == (False, None):
        lines += ["_No run finished, so there is nothing to plot._", ""]
    for (made, problem), name, alt in figures:
        lines += _figure_lines(report, out, name, alt, made, problem)
    if figures[0][0][0] and runs["peak_memory_mb"].notna().any():
        lines += [_memory_panels(runs), ""]

    if runs["verdict"].notna().any():
        lines += ["### Why it is fast or slow", "", markdown(findings.verdict_table(runs, varied)), ""]
    lines += _memory_lines(out, slug, part, runs, varied, report)
    if lab:
        lines += _lab_lines(runs, lab)
    if "device" in varied or (lab and lab.get("part") == 1):
        lines += _speedup_lines(runs)
    return lines


def _steps_by_run(runs: pd.DataFrame, steps: list[str], varied: list[str]) -> str:
    """Each step as timed, with the runs that timed it by their swept values: "…, GradScaler" alone did not say
    that it was the fp16 run's."""
    said = []
    for step in steps:
        which = runs[runs["step_as_timed"] == step]
        names = [", ".join(f"{k}={cell(run[k])}" for k in varied) for _, run in which.iterrows()]
        said.append(f"{step} ({'; '.join(dict.fromkeys(names))})" if varied else step)
    return "; ".join(said)


def _by_source(runs: pd.DataFrame, varied: list[str]) -> tuple[pd.DataFrame, list[str]]:
    """Where folders given together repeat a config (a sweep run twice, two commits), the folder each run
    came from becomes a variable of its own ("source"), so the table, the plots and the sentences keep them
    apart instead of zigzagging between two batch-256 rows."""
    if runs["sweep"].nunique() < 2 or not repeats_a_config(runs, varied):
        return runs, varied
    paths = [Path(p).resolve() for p in runs["sweep"]]  # "." has no name of its own
    depth = 1  # the shortest tail of the paths that still tells the folders apart
    while len({p.parts[-depth:] for p in paths}) < runs["sweep"].nunique() and depth < max(len(p.parts) for p in paths):
        depth += 1
    return runs.assign(source=["/".join(p.parts[-depth:]) for p in paths]), [*varied, "source"]


def _spread(run: pd.Series, over_epochs: bool = False) -> str:
    """``500 (IQR 20)``: the IQR is a width (upper minus lower quartile), never a ± around the median;
    ``over_epochs``: ``500 (IQR 20, over 3 epochs)``, a run of one repeat beside repeated ones."""
    median, iqr, cv = run["samples_per_s_median"], run["samples_per_s_iqr"], run["samples_per_s_cv"]
    if pd.isna(median):
        return ""
    where = ""
    if over_epochs:
        # The epochs it timed: a run stopped early timed fewer than its config's `epochs`.
        epochs = pd.to_numeric(run.get("timed_epochs"), errors="coerce")
        where = f", over {int(epochs)} epoch{'s' * (epochs != 1)}" if pd.notna(epochs) else ", over the epochs"
    said = [f"IQR {iqr:,.0f}{where}"] * bool(pd.notna(iqr))
    said += [f"noisy: CV {cv:.1%}"] * bool(pd.notna(cv) and cv > NOISY_CV)  # bool: numpy's cannot repeat a list
    return f"{median:,.0f}" + (f" ({'; '.join(said)})" if said else "")  # one parenthesis: "(IQR 95; noisy: …)"


def _noise(cv: float) -> str:
    return "" if pd.isna(cv) else f"CV {cv:.1%}" + (" (noisy)" if cv > NOISY_CV else "")


def _figure_lines(report: Report, out: Path, name: str, alt: str, made: bool, problem: str | None) -> list[str]:
    """A figure's link, or why it could not be drawn from these runs' values."""
    if made:
        report.files.append(out / name)
        return [f"![{alt}]({name})", ""]
    return [f"_{alt}: could not be drawn ({problem})._", ""] if problem else []


def _memory_lines(
    out: Path, slug: str, heading: str, runs: pd.DataFrame, varied: list[str], report: Report
) -> list[str]:
    from bench import plots  # matplotlib is imported only when a report is built

    table = findings.memory_table(runs, varied)
    if table.empty:
        return []
    lines = ["### What peak memory is made of", ""]
    made, problem = plots.draw(plots.plot_memory, runs, varied, heading, out / f"{slug}_memory.png")
    lines += _figure_lines(report, out, f"{slug}_memory.png", "What peak memory is made of", made, problem)
    like = {c: "peak_memory_mb" for c in table if c not in varied}
    note = MEMORY_NOTE
    if MEMORY_LABELS["dataset"] not in table:  # no run held one: the note names none
        note = note.replace("optimizer state and the resident dataset", "optimizer state").replace(
            "gradients, optimizer state", "gradients and optimizer state"
        )
    if MEMORY_LABELS["graph_pool"] in table:
        note = note.replace("the allocator reserve is reserved minus allocated.", MEMORY_NOTE_POOL)
    return [*lines, markdown(table, like=like), "", note, ""]


def _lab_lines(runs: pd.DataFrame, lab: dict[str, Any]) -> list[str]:
    lines = []
    comparison = lab_comparison(runs, lab)
    if not comparison.empty and comparison["status"].isna().all():
        # None of ours matches a lab row (batch_size=32 against its 16/64/256/1024): the lab's alone, said so.
        x = comparison.columns[0]
        table = _lab_digits(comparison)
        table = table[[x, *(c for c in table if c.startswith("lab "))]]
        values = ", ".join(str(v) for v in table[x])
        lines += [
            f"The lab's figures (CIFAR-10, the per-sample DataLoader path): none of our runs has a {x} the "
            f"lab ran ({values}), so there is nothing of ours to set beside them:",
            "",
            markdown(table),
            "",
        ]
    elif not comparison.empty:
        # The lab ran on a Colab-class GPU, and in part 1 (matched on the device) also on its CPU: where ours ran
        # on the CPU beside a lab GPU figure the rows compare machines, not code paths: no "like for like".
        matched_on_device = comparison.columns[0] == "device"
        ours_cpu = not matched_on_device and (comparison["device"] == "cpu").any()
        recorded = _recorded(runs)
        # batch_size (ours 64; the lab's 512) for each setting the lab's runs had that ours do not
        settings_unlike = unlike_the_lab(recorded, lab, str(comparison.columns[0]))
        differ = [f"{key} (ours {', '.join(ours)}; the lab's {theirs})" for key, ours, theirs in settings_unlike]
        # The lab's AMP part ran a GradScaler too: only the rest of the step can be unlike the lab's.
        our_steps = {str(t).removesuffix(", GradScaler") for t in recorded["step_as_timed"].dropna()}
        unlike = our_steps - {step_text(LAB_STEP)}
        other = "with settings of ours that the lab's runs did not have (below)"
        if ours_cpu:
            how = "ours ran on the CPU where the lab's ran on its GPU" + (
                f", and {other}" if differ else ", so these rows compare machines, not code paths"
            )
        else:  # the lab's settings at best, never its Colab machine
            alike = "with the lab's settings except the step (below)" if unlike else "with the lab's settings"
            how = other if differ else f"{alike}, on this machine's hardware, not the lab's Colab one"
        table = _lab_digits(comparison)
        scaled = recorded[lab_epoch_scale(recorded) != 1.0]
        # Our times as long as the lab's epochs: the header says so, beside a runs table whose s/epoch is ours
        # as measured (1.35 there, 66.1 here, for one run).
        ours_time = f"ours s/epoch, scaled to {LAB_EPOCH_IMAGES:,} images"
        if "ours s/epoch" in table and not scaled.empty:
            table = table.rename(columns={"ours s/epoch": ours_time})
        # Only where a run of ours held a resident dataset: lab_comparison subtracted it from our peak.
        resident = (resident_dataset_mb(recorded) > 0).any()
        memory = ("; our peak memory leaves out our resident dataset, which the lab did not have"
                  if "ours peak alloc MB" in table and resident else "")  # fmt: skip
        lines += [f"The lab's figures (CIFAR-10, the per-sample DataLoader path) beside ours{_our_images(runs)}, "
                  f"{how}{memory}:", "", markdown(table), ""]  # fmt: skip
        if differ:
            # The loader, its workers and the recipe feed the same images to the same maths: another path, not
            # another workload (a batch size, a model or a precision is one).
            paths_only = all(key in PATH_SETTINGS for key, _, _ in settings_unlike)
            what = ("the same work by another code path" if paths_only
                    else "different workloads, not only code paths")  # fmt: skip
            lines += [f"Our runs differ from the lab's in {'; '.join(differ)}: these rows compare {what}.", ""]
        if unlike:
            lines += [f"Our step ({'; '.join(sorted(unlike))}) is not the lab's ({step_text(LAB_STEP)}: torch's "
                      "default Adam, eager, NCHW): the same maths in other kernels, so part of a difference in time "
                      "is the step's.", ""]  # fmt: skip
        if ours_time in table:
            sizes = " and ".join(f"{n:,.0f}" for n in sorted(set(images_per_epoch(scaled))))
            factor = LAB_EPOCH_IMAGES / images_per_epoch(scaled).min()
            # 1,024 images an epoch: 0.26 s of starting 8 workers became 12.5 s of a "26.4 s" epoch.
            rough = (
                f" At ×{factor:,.0f} those fixed costs can outweigh the work: run with dataset.train_size="
                f"{LAB_EPOCH_IMAGES} for epoch times to set beside the lab's."
                if factor >= ROUGH_SCALE
                else ""
            )
            lines += [f"The lab's epochs had {LAB_EPOCH_IMAGES:,} images and ours {sizes}: \"{ours_time}\" is our "
                      f"measured epoch time × {LAB_EPOCH_IMAGES:,} ÷ our images per epoch (fixed costs of an "
                      f"epoch, such as starting workers, are scaled with it).{rough}", ""]  # fmt: skip
        why = findings.lab_memory_sentence(runs) if "lab peak alloc MB" in comparison else ""
        if why:
            lines += [why, ""]
        compute = findings.lab_compute_sentence(pd.DataFrame(lab.get("figures") or []), recorded,
                                                 str(comparison.columns[0]))  # fmt: skip
        if compute:
            lines += [compute, ""]
    if lab.get("note"):
        lines += [f"Lab: {lab['note']}", ""]
    return lines


#: settings that change how the same images reach the same maths, not what is computed
PATH_SETTINGS = ("loader", "workers", "recipe")
#: ours scaled up this many times or more to the lab's 50,000 images an epoch: its fixed costs are scaled too
ROUGH_SCALE = 10
#: the lab's step, as bench records a step: torch's default Adam, eager, NCHW
LAB_STEP = {"compile": "none", "adam": "default", "channels_last": False}


def _our_images(runs: pd.DataFrame) -> str:
    """Where ours trained on other images than CIFAR-10 (the offline default, synthetic), what that means for
    the comparison: every dataset is 32×32 RGB, so an image costs the same work, but the pictures differ."""
    others = sorted({str(d) for d in _recorded(runs).get("dataset", pd.Series(dtype=object)).dropna()} - {"cifar10"})
    if not others:
        return ""
    return (f" (ours on {' and '.join(others)} images, 32×32 RGB as CIFAR-10's: the same work per image, "
            "other pictures)")  # fmt: skip


def _speedup_lines(runs: pd.DataFrame) -> list[str]:
    lines = ["### GPU speedup (CPU time ÷ GPU time)", ""]
    table = speedup_table(runs)
    if table.empty:
        gpu = runs[runs["device"] == "cuda"]
        if not gpu.empty and (gpu["status"] == "skipped").all():
            lines += ["CUDA is not available on this machine: the GPU runs were **skipped**, so there is no "
                      "speedup to compute (the lab printed: \"CUDA not available. Cannot perform GPU training "
                      "or calculate speedup.\")", ""]  # fmt: skip
        else:
            lines += ["No config finished on both the CPU and the GPU, so there is no speedup to compute.", ""]
        return lines
    seconds = metric("avg_epoch_time").key
    like = {SPEEDUP_HEADERS[c]: seconds for c in table if c.endswith(("_cpu", "_gpu"))}
    shown = table.assign(speedup=[f"{v:.2f}×" for v in table["speedup"]]).rename(columns=SPEEDUP_HEADERS)
    lines += [markdown(shown, like=like), "",
              f"**Overall GPU speedup: {overall_speedup(table):.2f}×** (total training time, CPU ÷ GPU, summed over "
              "the configs above, as the lab computes it; the table's speedups are per epoch)", ""]  # fmt: skip
    return lines


#: the speedup table's columns as a reader wants them: what, on which device, in which unit
SPEEDUP_HEADERS = {
    "avg_epoch_time_cpu": "CPU s/epoch", "avg_epoch_time_gpu": "GPU s/epoch", "total_time_cpu": "CPU total s",
    "total_time_gpu": "GPU total s", "speedup": "speedup (s/epoch, CPU ÷ GPU)",
}  # fmt: skip


# ------------------------------------------------------------------------------------------------- CLI


def _holds_other_runs(out: Path, dirs: Sequence[Path]) -> bool:
    """Whether writing to ``out`` would replace another report: ``out`` is a run folder, or a sweep's, other than
    the one folder read (a folder's own report may be rebuilt in place, and a report folder reused; but a report
    combined from several folders must not replace one's own, nor fill a run folder)."""
    read = {d.resolve() for d in dirs}
    if out.resolve() in read:
        return len(read) > 1 and holds_run_dirs(out)
    return holds_run_dirs(out)


def main(argv: Sequence[str] | None = None) -> None:
    parser = OneLineParser(
        prog="python -m bench.report",
        description="Build summary.csv, report.md and plots from bench run or sweep folders.",
    )
    parser.add_argument("dirs", nargs="+", type=Path, help="run or sweep folders (several are combined)")
    parser.add_argument("--out", type=Path, help="where to write the report (default: the folder, when one is "
                        "given; needed for several)")  # fmt: skip
    args = parser.parse_args(argv)
    if len(args.dirs) > 1 and args.out is None:  # the combined report must not replace the first folder's own
        parser.error(f"{len(args.dirs)} folders are combined into one report: say where it goes with --out DIR")
    if args.out is not None and _holds_other_runs(args.out, args.dirs):
        parser.error(f"--out {args.out}: that folder holds runs of its own, whose report this would replace; "
                     "choose a new folder")  # fmt: skip
    # What reading the runs says on the way (a job's config it could not use): one line each, on stderr.
    logging.basicConfig(format="warning: %(message)s", level=logging.WARNING)
    with interrupts.command("build the report"):
        report = build_report(args.dirs, args.out)
    print(f"{len(report.runs)} run{'s' * (len(report.runs) != 1)} ({status_counts(report.runs)})")
    for path in report.files:
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
