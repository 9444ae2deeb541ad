"""Hydra callback that turns a finished (or partly failed) multirun into its report.

It reads the job folders' metrics.json files rather than the jobs' return values, so it works the same
with the basic launcher, submitit on SLURM, or any other launcher.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

log = logging.getLogger("bench")


class ReportCallback(Callback):
    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
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
