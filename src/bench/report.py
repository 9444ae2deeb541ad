"""Runs → DataFrame → ``summary.csv``, ``report.md`` and plots; also ``python -m bench.report DIR...``.

The report is built from the run folders' ``metrics.json`` files, never from return values, so it works
after any launcher (local, SLURM), after an interrupted sweep, and across machines: pass a CPU sweep and a
GPU sweep together and the report lines them up and computes the speedup.
"""

from __future__ import annotations

import argparse
import logging
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from omegaconf import OmegaConf

from bench.errors import UsageError
from bench.results import METRICS_FILE, MetricsError, load_metrics

log = logging.getLogger(__name__)

#: What a run was configured with: the columns a sweep can vary.
CONFIG_COLUMNS = ["model", "device", "precision", "dataset", "loader", "batch_size", "workers", "epochs", "seed"]
MEASURED_COLUMNS = [
    "avg_epoch_time", "total_time", "samples_per_s", "warmup_time", "data_wait_frac",
    "peak_memory_mb", "peak_reserved_mb", "peak_rss_mb", "dataset_memory_mb", "final_loss", "test_accuracy",
]  # fmt: skip
SUMMARY_COLUMNS = ["job", *CONFIG_COLUMNS, "status", *MEASURED_COLUMNS, "device_name", "error", "experiment", "run_dir"]
#: Statuses a run folder can have in a report besides metrics.json's own.
UNREADABLE = "unreadable"
MISSING = "missing"
DEFAULT_EXPERIMENT = "Runs"
PIPELINES = {
    "dataloader": "the lab's path: DataLoader workers, per-sample PIL → ToTensor → Normalize",
    "resident": "the whole dataset on the device, shuffled and normalized there",
}
ENV_COLUMNS = ["env_gpu", "env_torch", "env_cuda", "env_cudnn", "env_cpu", "env_hostname", "env_git_commit"]


@dataclass
class Report:
    """Where the report went, and what it found."""

    out: Path
    runs: pd.DataFrame
    files: list[Path] = field(default_factory=list)


# ------------------------------------------------------------------------------------------ collecting


def is_run_dir(path: Path) -> bool:
    return (path / METRICS_FILE).is_file() or (path / ".hydra").is_dir()


def _job_number(path: Path) -> int | None:
    return int(path.name) if path.name.isdigit() else None


def find_run_dirs(path: Path) -> list[Path]:
    """A run folder is itself; a sweep folder gives its job folders in job order."""
    if not path.is_dir():
        raise UsageError(f"{path} is not a folder")
    if is_run_dir(path):
        return [path]
    children = [p for p in path.iterdir() if p.is_dir() and is_run_dir(p)]
    if not children:
        raise UsageError(f"{path} holds no bench runs (no metrics.json or .hydra/ in it or its subfolders)")
    return sorted(children, key=lambda p: (_job_number(p) is None, _job_number(p) or 0, p.name))


def _saved_config(run_dir: Path) -> dict[str, Any]:
    cfg_file = run_dir / ".hydra" / "config.yaml"
    try:
        cfg = OmegaConf.to_container(OmegaConf.load(cfg_file), resolve=False)
    except Exception:  # a missing or broken config only costs the row its labels
        return {}
    return cfg if isinstance(cfg, dict) else {}


def _row(run_dir: Path, sweep: Path) -> dict[str, Any]:
    cfg = _saved_config(run_dir)
    lab = cfg.get("lab") or {}
    row: dict[str, Any] = {
        "job": _job_number(run_dir),
        "run_dir": str(run_dir),
        "sweep": str(sweep),
        "experiment": lab.get("title", DEFAULT_EXPERIMENT),
        "lab": lab or None,
    }
    try:
        metrics = load_metrics(run_dir)
    except MetricsError as err:
        # Still say what the run was, from its saved config, so the reader can tell which point is lost.
        for key in CONFIG_COLUMNS:
            node = cfg.get(key)
            row[key] = node.get("name") if isinstance(node, dict) else node
        row.update(status=UNREADABLE, error=str(err))
        return row
    row.update({k: metrics.get(k) for k in (*CONFIG_COLUMNS, "status", "error", "device_name")})
    row.update({k: metrics.get(k) for k in MEASURED_COLUMNS if k != "data_wait_frac"})
    epochs = metrics.get("epochs_detail") or []
    wait = sum(e.get("data_wait_s") or 0 for e in epochs)
    total = sum(e.get("time_s") or 0 for e in epochs)
    row["data_wait_frac"] = wait / total if total else None
    env = metrics.get("env") or {}
    row.update({col: env.get(col.removeprefix("env_")) for col in ENV_COLUMNS})
    row["cuda_epoch_time"] = _mean([e.get("cuda_time_s") for e in epochs])
    return row


def _mean(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return sum(present) / len(present) if present else None


def load_runs(paths: Sequence[Path]) -> pd.DataFrame:
    """One row per run folder under ``paths``, in the order given and by job number within a sweep.

    A job number missing from a sweep (a deleted or never-started job) becomes a ``missing`` row.
    """
    rows: list[dict[str, Any]] = []
    for path in paths:
        run_dirs = find_run_dirs(Path(path))
        jobs = sorted(n for n in (_job_number(p) for p in run_dirs) if n is not None)
        present = set(jobs)
        sweep = Path(path)
        for run_dir in run_dirs:
            rows.append(_row(run_dir, sweep))
        if len(run_dirs) > 1 or run_dirs[0] != sweep:
            for n in range(jobs[-1] if jobs else 0):
                if n not in present:
                    rows.append({"job": n, "run_dir": str(sweep / str(n)), "sweep": str(sweep),
                                 "experiment": rows[-1]["experiment"], "status": MISSING,
                                 "error": "job folder not found"})  # fmt: skip
    df = pd.DataFrame(rows)
    for col in [*SUMMARY_COLUMNS, *ENV_COLUMNS, "lab"]:
        if col not in df:
            df[col] = None
    order = {str(p): i for i, p in enumerate(paths)}
    df["_order"] = df["sweep"].map(order)
    return df.sort_values(["_order", "job"], kind="stable", na_position="last").drop(columns="_order")


# -------------------------------------------------------------------------------------------- analysis


def swept_variables(df: pd.DataFrame) -> list[str]:
    """The config columns that take more than one value: what the sweep (or the combination) varied."""
    return [c for c in CONFIG_COLUMNS if df[c].dropna().astype(str).nunique() > 1]


def speedup_table(df: pd.DataFrame) -> pd.DataFrame:
    """CPU time ÷ GPU time for every config that ran on both, as the lab's part 1 did.

    Matching ignores only the device, so a CPU run and a GPU run pair up when everything else is the same.
    """
    ok = df[df["status"] == "ok"]
    keys = [c for c in CONFIG_COLUMNS if c != "device"]
    cpu = ok[ok["device"] == "cpu"].drop_duplicates(keys, keep="last")
    gpu = ok[ok["device"] == "cuda"].drop_duplicates(keys, keep="last")
    if cpu.empty or gpu.empty:
        return pd.DataFrame()
    pairs = cpu.merge(gpu, on=keys, suffixes=("_cpu", "_gpu"))
    if pairs.empty:
        return pairs
    pairs["speedup"] = pairs["avg_epoch_time_cpu"] / pairs["avg_epoch_time_gpu"]
    varied = [k for k in keys if pairs[k].astype(str).nunique() > 1] or ["model", "batch_size"]
    return pairs[[*varied, "avg_epoch_time_cpu", "avg_epoch_time_gpu", "total_time_cpu", "total_time_gpu", "speedup"]]


def overall_speedup(table: pd.DataFrame) -> float | None:
    """Total CPU time over total GPU time across the matched configs (the lab's 'Overall GPU Speedup')."""
    if table.empty:
        return None
    return float(table["total_time_cpu"].sum() / table["total_time_gpu"].sum())


def lab_comparison(runs: pd.DataFrame, lab: dict[str, Any]) -> pd.DataFrame:
    """The lab's figures beside ours, matched on the variable the lab swept (one row per run of ours)."""
    figures = pd.DataFrame(lab.get("figures") or [])
    if figures.empty:
        return figures
    x = next(c for c in figures.columns if c in CONFIG_COLUMNS)
    measures = [c for c in ("avg_epoch_time", "peak_memory_mb") if c in figures]
    ours = runs[~runs["status"].isin([MISSING, UNREADABLE])]
    ours = ours[list(dict.fromkeys([x, "device", "loader", "status", *measures]))]
    merged = figures.assign(_key=_match_key(figures[x])).merge(
        ours.drop(columns=x).assign(_key=_match_key(ours[x])), on="_key", how="left", suffixes=("_lab", "_ours")
    )
    names = {"avg_epoch_time": "s/epoch", "peak_memory_mb": "peak MB"}
    columns = {x: x, "device": "device", "loader": "loader", "status": "status"}
    for m in measures:
        columns |= {f"{m}_lab": f"lab {names[m]}", f"{m}_ours": f"ours {names[m]}"}
    return merged[list(columns)].rename(columns=columns)


def _match_key(col: pd.Series) -> pd.Series:
    """Numbers compare as numbers (64 == 64.0, which a column with gaps becomes), anything else as text."""
    numbers = pd.to_numeric(col, errors="coerce")
    return numbers.astype("float64") if numbers.notna().all() else col.astype(str)


# ----------------------------------------------------------------------------------------------- output


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_") or "runs"


def _markdown(df: pd.DataFrame, *, as_text: bool = False) -> str:
    """A GitHub table; ``as_text`` keeps version strings such as CUDA "13.0" from being read as numbers."""
    cells = df.astype(object).where(df.notna(), None)  # NaN prints as "nan"; None prints as missingval
    return cells.to_markdown(index=False, floatfmt=".4g", missingval="—", disable_numparse=as_text)


def _environment(df: pd.DataFrame) -> pd.DataFrame:
    cols = ["device", "device_name", "env_gpu", "env_torch", "env_cuda", "env_cudnn", "env_hostname", "env_git_commit"]
    present = [c for c in cols if c in df]
    env = df[df["env_torch"].notna()][present].drop_duplicates()  # runs that got as far as recording it
    env = env.rename(columns={c: c.removeprefix("env_") for c in present})
    if "git_commit" in env:
        env["git_commit"] = env["git_commit"].map(lambda c: c[:10] if isinstance(c, str) else c)
    return env


def _experiment_table(runs: pd.DataFrame, varied: list[str]) -> pd.DataFrame:
    shown = [*varied, *(["loader"] if "loader" not in varied else [])]  # which pipeline made each row
    cols = [
        *shown, "status", "avg_epoch_time", "samples_per_s", "data_wait_frac",
        "peak_memory_mb", "peak_reserved_mb", "dataset_memory_mb", "test_accuracy",
    ]  # fmt: skip
    table = runs[[c for c in cols if c in runs]].copy()
    # Drop measurement columns no run has (e.g. GPU memory in a CPU sweep).
    table = table[[c for c in table if c in shown or c == "status" or table[c].notna().any()]]
    return table.rename(
        columns={
            "avg_epoch_time": "s/epoch",
            "samples_per_s": "samples/s",
            "data_wait_frac": "data wait",
            "peak_memory_mb": "peak alloc MB",
            "peak_reserved_mb": "peak reserved MB",
            "dataset_memory_mb": "dataset MB",
            "test_accuracy": "test acc",
        }
    )


def build_report(paths: Sequence[Path], out: Path | None = None) -> Report:
    """Write summary.csv, report.md and one PNG per experiment into ``out`` (default: the first path)."""
    from bench import plots  # matplotlib is imported only when a report is built

    paths = [Path(p) for p in paths]
    out = Path(out) if out is not None else paths[0]
    out.mkdir(parents=True, exist_ok=True)
    df = load_runs(paths)
    report = Report(out=out, runs=df)

    summary = out / "summary.csv"
    df[SUMMARY_COLUMNS].to_csv(summary, index=False)
    report.files.append(summary)

    lines = ["# bench report", ""]
    lines += [f"Runs from: {', '.join(f'`{p}`' for p in paths)}", ""]
    varied = swept_variables(df)
    if varied:
        swept = "; ".join(f"**{v}** = {', '.join(_values(df[v]))}" for v in varied)
        lines += [f"Swept: {swept}", ""]
    else:
        lines += ["Swept: nothing (every run has the same config)", ""]
    counts = df["status"].value_counts()
    lines += [f"Runs: {len(df)} ({', '.join(f'{n} {s}' for s, n in counts.items())})", ""]

    lines += ["## Environment", "", _markdown(_environment(df), as_text=True), ""]

    for title, runs in df.groupby("experiment", sort=False):
        runs = runs.copy()
        lab = next((lab for lab in runs.get("lab", []) if isinstance(lab, dict)), None)
        exp_varied = swept_variables(runs) or [v for v in ("model",) if v in runs]
        if lab and "part" in lab:
            heading = f"Lab part {lab['part']}: {title}"
        else:
            heading = f"Sweep over {', '.join(exp_varied)}" if title == DEFAULT_EXPERIMENT else str(title)
        lines += [f"## {heading}", ""]
        loaders = _values(runs["loader"])
        if len(loaders) == 1:
            lines += [f"Pipeline: loader={loaders[0]} ({PIPELINES.get(loaders[0], 'see README')})", ""]
        lines += [_markdown(_experiment_table(runs, exp_varied)), ""]
        png = out / f"{_slug(str(title))}.png"
        if plots.plot_experiment(runs, exp_varied, heading, png, lab=lab):
            report.files.append(png)
            lines += [f"![{heading}]({png.name})", ""]
            if runs["peak_memory_mb"].notna().any():
                lines += ["Memory panels show peak memory *allocated* by tensors "
                          "(`torch.cuda.max_memory_allocated`); reserved memory is in the table.", ""]  # fmt: skip
        else:
            lines += ["_No run finished, so there is nothing to plot._", ""]
        if lab:
            comparison = lab_comparison(runs, lab)
            if not comparison.empty:
                lines += ["The lab's figures (a Colab-class GPU, CIFAR-10, the per-sample DataLoader path) "
                          "beside ours:", "", _markdown(comparison), ""]  # fmt: skip
            if lab.get("note"):
                lines += [f"Lab: {lab['note']}", ""]
        if "device" in exp_varied or (lab and lab.get("part") == 1):
            lines += _speedup_lines(runs)

    lines += ["## Status of every run", ""]
    status = df[["job", *[c for c in varied if c in df], "status", "error", "run_dir"]]
    lines += [_markdown(status), ""]
    report_md = out / "report.md"
    report_md.write_text("\n".join(lines))
    report.files.append(report_md)
    return report


def _values(col: pd.Series) -> list[str]:
    return list(dict.fromkeys(str(v) for v in col.dropna()))


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
    lines += [_markdown(table), "", f"**Overall GPU speedup: {overall_speedup(table):.2f}x**", ""]
    return lines


# ------------------------------------------------------------------------------------------------- CLI


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.report",
        description="Build summary.csv, report.md and plots from bench run or sweep folders.",
    )
    parser.add_argument("dirs", nargs="+", type=Path, help="run or sweep folders (several are combined)")
    parser.add_argument("--out", type=Path, help="where to write the report (default: the first folder)")
    args = parser.parse_args(argv)
    try:
        report = build_report(args.dirs, args.out)
    except UsageError as err:
        print(f"bench: error: {err}", file=sys.stderr)
        sys.exit(2)
    counts = report.runs["status"].value_counts()
    print(f"{len(report.runs)} runs ({', '.join(f'{n} {s}' for s, n in counts.items())})")
    for path in report.files:
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
