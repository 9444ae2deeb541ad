"""The Hydra app behind ``python -m bench``: compose, check, train, record.

Bad input never ends in a traceback wall: composition errors (an unknown option, a wrong type), range
errors and a missing device or dataset print one line and exit with code 2 (docs/architecture.md,
"Failure"). Inside a sweep the job records a status instead, so the other jobs and the report still happen.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.errors import HydraException
from hydra.types import RunMode
from omegaconf import DictConfig
from omegaconf.errors import OmegaConfBaseException

from bench import schema
from bench.errors import EXIT_RUN_FAILED, EXIT_USAGE, UsageError, describe, fail

log = logging.getLogger("bench")


@hydra.main(version_base="1.3", config_path="pkg://bench.conf", config_name="config")
def app(cfg: DictConfig) -> float | None:
    """One job: a single run, or one point of a sweep."""
    hydra_cfg = HydraConfig.get()
    run_dir = Path(hydra_cfg.runtime.output_dir)
    in_sweep = hydra_cfg.mode == RunMode.MULTIRUN

    from bench import train  # after composition, so that --help and config errors do not wait for torch
    from bench.results import METRICS_FILE, RunResult, write_metrics

    try:
        schema.validate(cfg)
        result: RunResult = train.run(cfg, run_dir, raise_usage_errors=not in_sweep)
    except UsageError as err:
        # train.run has already recorded a missing device or dataset; a config error is recorded here.
        if not (run_dir / METRICS_FILE).exists():
            write_metrics(run_dir, train.result_for(cfg, status="failed", error=f"config error: {err}"))
        if not in_sweep:
            fail(str(err), EXIT_USAGE)  # SystemExit passes through Hydra untouched
        log.error("Config error: %s", err)
        return None
    if in_sweep or result.status == "ok":
        return result.metrics.get("samples_per_s")
    fail(f"run {result.status}: {result.error} (details in {run_dir})", EXIT_RUN_FAILED)


def main() -> None:
    """Console entry point: Hydra's own CLI, with one-line errors and exit code 2 for bad input."""
    user_wants_traces = os.environ.get("HYDRA_FULL_ERROR") == "1"
    # Let Hydra's exceptions reach us instead of being printed as a multi-line report with exit code 1.
    os.environ["HYDRA_FULL_ERROR"] = "1"
    try:
        app()
    except UsageError as err:
        fail(str(err), EXIT_USAGE)
    except (HydraException, OmegaConfBaseException) as err:
        if user_wants_traces:
            raise
        fail(describe(err), EXIT_USAGE)
