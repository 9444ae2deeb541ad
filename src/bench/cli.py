"""The Hydra app behind ``python -m bench``: compose, check, train, record.

Bad input never ends in a traceback wall: composition errors (an unknown option, a wrong type), range
errors and a missing device or dataset print one line and exit with code 2 (DESIGN.md §6). Inside a sweep
the job records a status instead, so the other jobs and the report still happen.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import NoReturn

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.errors import HydraException, MissingConfigException
from hydra.types import RunMode
from omegaconf import DictConfig
from omegaconf.errors import OmegaConfBaseException

from bench import schema
from bench.errors import UsageError

log = logging.getLogger("bench")

EXIT_USAGE = 2
EXIT_RUN_FAILED = 1


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
            _fail(str(err), EXIT_USAGE)  # SystemExit passes through Hydra untouched
        log.error("Config error: %s", err)
        return None
    if in_sweep or result.status == "ok":
        return result.samples_per_s
    _fail(f"run {result.status}: {result.error} (details in {run_dir})", EXIT_RUN_FAILED)


def _fail(message: str, code: int) -> NoReturn:
    print(f"bench: error: {message}", file=sys.stderr)
    sys.exit(code)


def describe(err: BaseException) -> str:
    """Hydra's and OmegaConf's multi-line messages, cut down to the one line a user needs."""
    if isinstance(err, MissingConfigException) and err.missing_cfg_file and "/" in err.missing_cfg_file:
        group, _, option = err.missing_cfg_file.rpartition("/")
        if err.options:
            return f"unknown {group} '{option}'; choose one of: {', '.join(sorted(err.options))}"
    cause = err.__cause__
    if isinstance(cause, OmegaConfBaseException):
        key = getattr(cause, "full_key", None)
        msg = str(cause).strip().splitlines()[0]
        return f"{key}: {msg}" if key else msg
    lines = [line.strip() for line in str(err).strip().splitlines() if line.strip()]
    if isinstance(err, MissingConfigException) and len(lines) > 1:
        return " ".join(lines[:2])
    return lines[0] if lines else type(err).__name__


def main() -> None:
    """Console entry point: Hydra's own CLI, with one-line errors and exit code 2 for bad input."""
    user_wants_traces = os.environ.get("HYDRA_FULL_ERROR") == "1"
    # Let Hydra's exceptions reach us instead of being printed as a multi-line report with exit code 1.
    os.environ["HYDRA_FULL_ERROR"] = "1"
    try:
        app()
    except UsageError as err:
        _fail(str(err), EXIT_USAGE)
    except (HydraException, OmegaConfBaseException) as err:
        if user_wants_traces:
            raise
        _fail(describe(err), EXIT_USAGE)
