"""Hydra callbacks: claim a run's or sweep's folder before Hydra writes into it, and report a finished sweep.

Both read and write only folders, never the jobs' return values, so they work the same with the basic
launcher, submitit on SLURM, or any other launcher.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from bench import interrupts
from bench.errors import Refused, UsageError, failure_reason, one_line
from bench.folders import (
    CONFIG_SUBDIR,
    LOCK_FILE,
    METRICS_FILE,
    REPORT_FILE,
    REPRODUCE_FILE,
    SWEEP_OUTPUTS,
    TRACE_FILE,
    claim_run_dir,
    claim_sweep_dir,
)

log = logging.getLogger("bench")
#: the sweeper conf/hydra/sweeper/bench.yaml names: Hydra's basic sweeper plus resume=true
BENCH_SWEEPER = "hydra_plugins.bench_sweeper.BenchSweeper"


class FolderGuard(Callback):
    """Refuse (one line, exit 2, before any work) a folder that holds another run, or cannot be written."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        try:
            if OmegaConf.select(config, "resume", default=False):
                raise UsageError("resume=true resumes a sweep: add -m and hydra.sweep.dir=<the sweep's folder>")
            # Without -m Hydra runs the one job here and ignores the launcher: a SLURM run trained on the login node.
            launcher = str(OmegaConf.select(config, "hydra.launcher._target_", default=""))
            if launcher and not launcher.endswith("BasicLauncher"):
                # As the user chose it (hydra/launcher=local), not the class behind it (LocalLauncher).
                choice = OmegaConf.select(config, "hydra.runtime.choices", default={}).get("hydra/launcher")
                # Not "basic" where the class was set directly (hydra.launcher._target_=...): its class then.
                named = choice and choice != "basic"
                name = f"hydra/launcher={choice}" if named else f"the {launcher.rsplit('.', 1)[-1]}"
                raise UsageError(f"{name} runs a sweep's jobs, and this is a single run, which would train here "
                                 "in this process: add -m (one value per key makes a sweep of one job)")  # fmt: skip
            check_job_files(config)
            claim_run_dir(Path(_resolved(config, "hydra.run.dir")))
        except UsageError as err:
            raise Refused(str(err)) from None
        except Exception as err:  # Hydra would warn of it and run unguarded: a path too long, a symlink loop
            raise Refused(_unguarded(config, "hydra.run.dir", err)) from None

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        sweep = OmegaConf.to_container(config.hydra.sweep, resolve=False)
        assert isinstance(sweep, dict)
        resume = bool(OmegaConf.select(config, "resume", default=False))
        sweeper = OmegaConf.select(config, "hydra.sweeper._target_", default=None)
        if resume and sweeper != BENCH_SWEEPER:  # another sweeper would run the finished jobs again, over them
            raise Refused(f"resume=true needs bench's sweeper, which skips finished jobs; this sweep has {sweeper} "
                          "(a saved config with --config-path, or hydra/sweeper=...): resume without it")  # fmt: skip
        try:
            check_job_files(config)  # Hydra sweeps no hydra.* key: the jobs share these settings
            claim_sweep_dir(Path(_resolved(config, "hydra.sweep.dir")), str(sweep.get("subdir")), resume=resume)
        except UsageError as err:
            raise Refused(str(err)) from None
        except Exception as err:
            raise Refused(_unguarded(config, "hydra.sweep.dir", err)) from None


def _unguarded(config: DictConfig, key: str, err: Exception) -> str:
    """The line for a folder the guard could not even look at: named, with why."""
    folder = OmegaConf.select(config, key, default="?", throw_on_resolution_failure=False)
    why = err.strerror if isinstance(err, OSError) and err.strerror else one_line(err)  # the path is named
    return f"{key}={folder}: cannot use it ({why})"


#: what a log file must not be: the files bench writes in a run's or a sweep's folder
RESULT_FILES = (METRICS_FILE, LOCK_FILE, *SWEEP_OUTPUTS, REPRODUCE_FILE, TRACE_FILE)
_OWN_FOLDER = "${hydra.runtime.output_dir}/"
#: the same folder as Hydra's resolver writes it
_OWN_FOLDERS = (_OWN_FOLDER, "${hydra:runtime.output_dir}/")


def check_job_files(config: DictConfig) -> None:
    """Refuse Hydra settings that would write a run's files outside its own folder, or over its results: an
    ``hydra.output_subdir`` other than .hydra (``../victim/.hydra`` replaced a finished run's saved config, and
    ``null`` left a run that cannot be reproduced), or a log file elsewhere or named as a result
    (``hydra.job_logging.handlers.file.filename=<another run>/metrics.json`` appended log lines to it)."""
    subdir = OmegaConf.select(config, "hydra.output_subdir", default=None)
    if subdir is None or os.path.normpath(str(subdir)) != CONFIG_SUBDIR:  # .hydra/ and ./.hydra are .hydra
        given = "null" if subdir is None else subdir
        raise UsageError(f"hydra.output_subdir={given}: bench keeps each run's config in its folder's "
                         f"{CONFIG_SUBDIR}/, where bench.reproduce and the reports read it; leave it at "
                         f"{CONFIG_SUBDIR}")  # fmt: skip
    job_name = str(OmegaConf.select(config, "hydra.job.name", default="bench"))
    if Path(job_name).name != job_name or job_name in (".", ".."):  # the log's file name is made from it
        raise UsageError(f"hydra.job.name={job_name}: a name, not a path")
    for logging_key in ("hydra.job_logging", "hydra.hydra_logging"):  # bench's log, and Hydra's own
        for key, filename in _log_files(config, logging_key):
            _check_log_file(key, filename, job_name)


def _log_files(config: DictConfig, logging_key: str) -> list[tuple[str, str]]:
    """Each file handler of a logging config, as (its override key, its filename as written)."""
    node = OmegaConf.select(config, logging_key, default=None)
    raw = OmegaConf.to_container(node, resolve=False) if isinstance(node, DictConfig) else {}
    handlers = raw.get("handlers") if isinstance(raw, dict) else None
    return [
        (f"{logging_key}.handlers.{name}.filename", str(handler["filename"]))
        for name, handler in (handlers.items() if isinstance(handlers, dict) else ())
        if isinstance(handler, dict) and handler.get("filename") is not None
    ]


def _check_log_file(key: str, filename: str, job_name: str) -> None:
    key = f"{key}={filename}"
    own = next((prefix for prefix in _OWN_FOLDERS if filename.startswith(prefix)), None)
    if own is None:
        raise UsageError(f"{key}: a job's log is written in its own folder: {_OWN_FOLDER}<name>.log")
    tail = filename.removeprefix(own)
    for name in ("${hydra.job.name}", "${hydra:job.name}"):
        tail = tail.replace(name, job_name)
    inside = Path(tail)
    if ".." in inside.parts or inside.name in RESULT_FILES or CONFIG_SUBDIR in inside.parts:
        raise UsageError(f"{key}: that is not a log's place; a job's log goes in its own folder, beside (not "
                         f"over) its results: {_OWN_FOLDER}<name>.log")  # fmt: skip


def _resolved(config: DictConfig, key: str) -> str:
    """The folder ``key`` names, or a UsageError in one line: an interpolation that does not resolve
    (``${oc.env:NOPE}``) would otherwise become Hydra's multi-line warning, and the guard would not run."""
    try:
        return str(OmegaConf.select(config, key, throw_on_missing=True))
    except OmegaConfBaseException as err:
        raise UsageError(f"{key}: {one_line(err)}") from None


#: why the last sweep's report could not be built, for the command's closing line and exit status (None: it was)
report_failure: str | None = None


class ReportCallback(Callback):
    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        with interrupts.deferred():  # a signal inside an import leaves a half-made module the partial report needs
            from bench import plots  # noqa: F401  (matplotlib, imported whole)
            from bench.report import build_report
            from bench.runs import status_counts

        sweep_dir = Path(config.hydra.sweep.dir)
        try:
            report = build_report([sweep_dir])
        except Exception as err:  # the runs are safe on disk; say how to build the report again
            global report_failure  # Hydra swallows a callback's exception: the entry point reads this instead
            report_failure = (f"could not build the report: {failure_reason(err)}; the runs are kept in {sweep_dir}: "
                              f"retry with python -m bench.report {sweep_dir}")  # fmt: skip
            log.error("Could not build the report (%s); retry with: python -m bench.report %s", err, sweep_dir)
            return
        log.info("Sweep finished: %s", status_counts(report.runs))
        log.info("Report: %s (summary.csv, plots beside it)", sweep_dir / REPORT_FILE)
