"""Run folders → one DataFrame: the input of every report and comparison.

Rows come from each folder's ``metrics.json``, never from return values, so they can be collected after
any launcher, after an interrupted sweep, and across machines. A folder whose metrics are unreadable still
gives a row (``unreadable``) with its config read from ``.hydra/config.yaml``; a job number the sweep
should have but that has no folder gives a ``missing`` row.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd
from omegaconf import OmegaConf

from bench.errors import UsageError
from bench.metrics import METRICS, summarize
from bench.results import METRICS_FILE, MetricsError, load_metrics

#: What a run was configured with: the columns a sweep can vary.
CONFIG_COLUMNS = ["model", "device", "precision", "dataset", "loader", "batch_size", "workers", "epochs", "seed"]
ENV_COLUMNS = ["env_gpu", "env_torch", "env_cuda", "env_cudnn", "env_cpu", "env_hostname", "env_git_commit"]
#: Statuses a run folder can have in a report besides metrics.json's own.
UNREADABLE = "unreadable"
MISSING = "missing"
DEFAULT_EXPERIMENT = "Runs"


def summary_columns() -> list[str]:
    """summary.csv's columns: the config, the status, every metric of the table, then where the run is."""
    return ["job", *CONFIG_COLUMNS, "status", *(m.key for m in METRICS), "device_name", "error", "experiment",
            "run_dir"]  # fmt: skip


def is_run_dir(path: Path) -> bool:
    return (path / METRICS_FILE).is_file() or (path / ".hydra").is_dir()


def job_number(path: Path) -> int | None:
    return int(path.name) if path.name.isdigit() else None


def find_run_dirs(path: Path) -> list[Path]:
    """A run folder is itself; a sweep folder gives its job folders in job order."""
    if not path.exists():
        raise UsageError(f"{path}: no such folder")
    if not path.is_dir():
        raise UsageError(f"{path} is not a folder")
    if is_run_dir(path):
        return [path]
    try:
        children = [p for p in path.iterdir() if p.is_dir() and is_run_dir(p)]
    except OSError as err:
        raise UsageError(f"{path}: cannot read: {err.strerror or err}") from None
    if not children:
        raise UsageError(f"{path} holds no bench runs (no metrics.json or .hydra/ in it or its subfolders)")
    return sorted(children, key=lambda p: (job_number(p) is None, job_number(p) or 0, p.name))


def saved_config(run_dir: Path) -> dict[str, Any]:
    """The run's ``.hydra/config.yaml`` as plain data; {} when it is missing or broken."""
    try:
        cfg = OmegaConf.to_container(OmegaConf.load(run_dir / ".hydra" / "config.yaml"), resolve=False)
    except Exception:  # a missing or broken config only costs the row its labels
        return {}
    return cfg if isinstance(cfg, dict) else {}


def _row(run_dir: Path, sweep: Path) -> dict[str, Any]:
    cfg = saved_config(run_dir)
    lab = cfg.get("lab") if isinstance(cfg.get("lab"), dict) else {}
    row: dict[str, Any] = {
        "job": job_number(run_dir),
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
    # Files written before a metric existed get it derived from their epochs, where it can be.
    derived = summarize(metrics.get("epochs_detail") or [])
    row.update({m.key: metrics[m.key] if metrics.get(m.key) is not None else derived.get(m.key) for m in METRICS})
    env = metrics.get("env") or {}
    row.update({col: env.get(col.removeprefix("env_")) for col in ENV_COLUMNS})
    return row


def load_runs(paths: Sequence[Path]) -> pd.DataFrame:
    """One row per run folder under ``paths``, in the order given and by job number within a sweep.

    A job number missing from a sweep (a deleted or never-started job) becomes a ``missing`` row.
    """
    rows: list[dict[str, Any]] = []
    for path in paths:
        run_dirs = find_run_dirs(Path(path))
        jobs = sorted(n for n in (job_number(p) for p in run_dirs) if n is not None)
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
    for col in [*summary_columns(), *ENV_COLUMNS, "lab"]:
        if col not in df:
            df[col] = None
    order = {str(p): i for i, p in enumerate(paths)}
    df["_order"] = df["sweep"].map(order)
    return df.sort_values(["_order", "job"], kind="stable", na_position="last").drop(columns="_order")


def swept_variables(df: pd.DataFrame) -> list[str]:
    """The config columns that take more than one value: what the sweep (or the combination) varied."""
    return [c for c in CONFIG_COLUMNS if df[c].dropna().astype(str).nunique() > 1]


def values(col: pd.Series) -> list[str]:
    """The distinct values of a column, as text, in order of appearance."""
    return list(dict.fromkeys(str(v) for v in col.dropna()))
