"""bench's sweeper: Hydra's basic sweeper, plus ``resume=true`` (see bench.resume).

It lives in the ``hydra_plugins`` namespace, where Hydra looks for plugins; bench's CLI also registers it
with ``Plugins.instance().register``, since an editable install hides it from Hydra's package scan.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import OmegaConf, open_dict

log = logging.getLogger(__name__)


class BenchSweeper(BasicSweeper):
    """The basic sweeper; with ``resume=true``, only the jobs the sweep folder has not finished."""

    @staticmethod
    def split_arguments(overrides: Any, max_batch_size: int | None) -> list[list[list[str]]]:
        """Hydra's batches of jobs; none at all (``batch_size='glob(*)'``, a glob that matches no key's
        values) is bad input: exit 2, and the folder given back, not an empty sweep that exits 0."""
        batches = BasicSweeper.split_arguments(overrides, max_batch_size)
        if not any(batches):
            from bench.errors import UsageError

            raise UsageError("the sweep has no jobs: its sweep overrides expand to no values")
        return batches

    def validate_batch_is_legal(self, batch: Any) -> None:
        """Hydra's check that every job composes, and bench's checks of every job's values: a value out of
        range (``-m batch_size=16,-4``) is bad input before the first job, not a failed job after the others."""
        super().validate_batch_is_legal(batch)
        _validate_jobs(self, batch)

    def sweep(self, arguments: list[str]) -> Any:
        if not OmegaConf.select(self.config, "resume", default=False):
            return super().sweep(arguments)
        from bench import resume

        assert self.config is not None and self.launcher is not None and self.hydra_context is not None
        loader = self.hydra_context.config_loader
        overrides = OverridesParser.create(config_loader=loader).parse_overrides([*self._parse_config(), *arguments])
        jobs = [job for batch in self.split_arguments(overrides, None) for job in batch]
        identities = [resume.job_hash(loader.load_sweep_config(self.config, list(job))) for job in jobs]
        sweep_dir = Path(self.config.hydra.sweep.dir)
        _validate_jobs(self, jobs)  # all of them now: their batches are launched one after another
        the_plan = resume.plan(list(zip(jobs, identities, strict=True)), resume.existing_jobs(sweep_dir))
        log.info("Resuming %s: %d of %d jobs finished already (kept as they are), %d to run",
                 sweep_dir, len(the_plan.skipped), len(jobs), len(the_plan.run))  # fmt: skip
        returns = []
        for first, batch in the_plan.batches():
            self.validate_batch_is_legal(batch)
            results = self.launcher.launch(batch, initial_job_idx=first)
            for r in results:
                _ = r.return_value  # as the basic sweeper does: a job that raised stops the sweep
            returns.append(results)
        return returns


def _validate_jobs(sweeper: BenchSweeper, jobs: Any) -> None:
    """bench's own checks (bench.schema.validate) on each job's composed config, as the job would run them."""
    from bench import interrupts
    from bench.errors import UsageError
    from bench.schema import validate

    with interrupts.deferred():  # the checks import torch: a signal halfway through would leave a half-made module
        import bench.device  # noqa: F401

    assert sweeper.config is not None and sweeper.hydra_context is not None
    loader = sweeper.hydra_context.config_loader
    common = set.intersection(*(set(job) for job in jobs)) if len(jobs) > 1 else set()
    for number, job in enumerate(jobs):
        cfg = loader.load_sweep_config(sweeper.config, list(job))
        with open_dict(cfg):
            del cfg["hydra"]  # the job's own config, as Hydra passes it to the task
        try:
            validate(cfg)
        except UsageError as err:
            swept = " ".join(o for o in job if o not in common) or " ".join(job)
            swept = re.sub(r"\\(.)", r"\1", swept)  # as typed: Hydra escapes ${...} in a job's overrides
            raise UsageError(f"{err} (in job {number}, {swept}; no job was run)") from None
