"""Hydra callbacks: claim a run's or sweep's folder before Hydra writes into it, and report a finished sweep.

Both read and write only folders, never the jobs' return values, so they work the same with the basic
launcher, submitit on SLURM, or any other launcher.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from bench import interrupts
from bench.errors import Refused, UsageError, one_line
from bench.folders import claim_run_dir, claim_sweep_dir

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
                name = launcher.rsplit(".", 1)[-1]
                raise UsageError(f"the {name} runs a sweep's jobs, and this is a single run, which would train here "
                                 "in this process: add -m (one value per key makes a sweep of one job)")  # fmt: skip
            claim_run_dir(Path(_resolved(config, "hydra.run.dir")))
        except UsageError as err:
            raise Refused(str(err)) from None

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        sweep = OmegaConf.to_container(config.hydra.sweep, resolve=False)
        assert isinstance(sweep, dict)
        resume = bool(OmegaConf.select(config, "resume", default=False))
        sweeper = OmegaConf.select(config, "hydra.sweeper._target_", default=None)
        if resume and sweeper != BENCH_SWEEPER:  # another sweeper would run the finished jobs again, over them
            raise Refused(f"resume=true needs bench's sweeper, which skips finished jobs; this sweep has {sweeper} "
                          "(a saved config with --config-path, or hydra/sweeper=...): resume without it")  # fmt: skip
        try:
            claim_sweep_dir(Path(_resolved(config, "hydra.sweep.dir")), str(sweep.get("subdir")), resume=resume)
        except UsageError as err:
            raise Refused(str(err)) from None


def _resolved(config: DictConfig, key: str) -> str:
    """The folder ``key`` names, or a UsageError in one line: an interpolation that does not resolve
    (``${oc.env:NOPE}``) would otherwise become Hydra's multi-line warning, and the guard would not run."""
    try:
        return str(OmegaConf.select(config, key, throw_on_missing=True))
    except OmegaConfBaseException as err:
        raise UsageError(f"{key}: {one_line(err)}") from None


class ReportCallback(Callback):
    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        with interrupts.deferred():  # a signal inside an import leaves a half-made module the partial report needs
            from bench import plots  # noqa: F401  (matplotlib, imported whole)
            from bench.report import build_report

        sweep_dir = Path(config.hydra.sweep.dir)
        try:
            report = build_report([sweep_dir])
        except Exception as err:  # the runs are safe on disk; say how to build the report again
            log.error("Could not build the report (%s); retry with: python -m bench.report %s", err, sweep_dir)
            return
        counts = report.runs["status"].value_counts()
        log.info("Sweep finished: %s", ", ".join(f"{n} {s}" for s, n in counts.items()))
        log.info("Report: %s (summary.csv, plots beside it)", sweep_dir / "report.md")
