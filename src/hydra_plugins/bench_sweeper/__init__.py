"""bench's sweeper: Hydra's basic sweeper, plus every job's config checked before the first job runs, plus
``resume=true`` (see bench.resume).

It lives in the ``hydra_plugins`` namespace, where Hydra looks for plugins; bench's CLI also registers it
with ``Plugins.instance().register``, since an editable install hides it from Hydra's package scan.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
from pathlib import Path
from typing import Any

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import OmegaConf, open_dict

log = logging.getLogger(__name__)


#: the package of bench's launchers, which a sweep's hydra.launcher._target_ may name
BENCH_LAUNCHERS = "hydra_plugins.bench_launchers"


class BenchSweeper(BasicSweeper):
    """The basic sweeper, after bench's checks of every job; with ``resume=true``, only the jobs the sweep folder
    has not finished."""

    @staticmethod
    def split_arguments(overrides: Any, max_batch_size: int | None) -> list[list[list[str]]]:
        """Hydra's batches of jobs; none at all (``batch_size='glob(*)'``, a glob that matches no key's
        values) is bad input: exit 2, and the folder given back, not an empty sweep that exits 0."""
        batches = BasicSweeper.split_arguments(overrides, max_batch_size)
        if not any(batches):
            from bench.errors import UsageError

            raise UsageError("the sweep has no jobs: its sweep overrides expand to no values")
        return batches

    _checked = False  # every job composed and checked by bench, before the first batch

    def setup(self, *, hydra_context: Any, task_function: Any, config: Any) -> None:
        """The basic sweeper's, which makes the launcher. A launcher of bench's (hydra/launcher=local, slurm) is
        registered here, where it is made: an editable install hides the hydra_plugins namespace from Hydra's own
        scan, and no other command needs it. Without its package, one line says what to install."""
        target = str(OmegaConf.select(config, "hydra.launcher._target_", default=""))
        if target.startswith(f"{BENCH_LAUNCHERS}."):
            from hydra.core.plugins import Plugins

            from hydra_plugins import bench_launchers

            if not bench_launchers.AVAILABLE:
                from bench.errors import UsageError

                raise UsageError(f"{target.rsplit('.', 1)[1]} needs hydra-submitit-launcher, which is not installed: "
                                 "pip install -e '.[cluster]'")  # fmt: skip
            for launcher in (bench_launchers.LocalLauncher, bench_launchers.SlurmLauncher):
                Plugins.instance().register(launcher)
        super().setup(hydra_context=hydra_context, task_function=task_function, config=config)

    def validate_batch_is_legal(self, batch: Any) -> None:
        """Hydra's check that each job of a batch composes: done already, for every job, by ``_check_jobs``."""
        if not self._checked:
            super().validate_batch_is_legal(batch)

    def sweep(self, arguments: list[str]) -> Any:
        """Every job's config is composed and checked before the first job runs (a value out of range in any job,
        ``-m batch_size=16,-4``, is bad input, not a failed job after the others), whatever the batches."""
        assert self.config is not None and self.launcher is not None and self.hydra_context is not None
        loader = self.hydra_context.config_loader
        overrides = OverridesParser.create(config_loader=loader).parse_overrides([*self._parse_config(), *arguments])
        jobs = [job for batch in self.split_arguments(overrides, None) for job in batch]
        _check_one_experiment(jobs)
        _check_launcher(self.config)
        launcher = str(OmegaConf.select(self.config, "hydra.launcher._target_", default=""))
        configs = _check_jobs(self, jobs, launcher)
        self._checked = True
        from bench import folders

        if launcher.endswith("hydra_submitit_launcher.submitit_launcher.LocalLauncher") and len(jobs) > 1:
            log.warning("hydra/launcher=submitit_local starts all %d jobs at once on this machine: they compete "
                        "for it, and the report notes each run timed while another was busy; hydra/launcher=local "
                        "runs one job per GPU", len(jobs))  # fmt: skip
        # Jobs that run in processes of their own (submitit) may start, and write into the folder, as soon as they
        # are submitted: from here on the folder is never given back as unused.
        if not launcher.endswith("BasicLauncher"):
            folders.hand_over(launcher)
        with _quiet_submission(launcher):
            return self._sweep(arguments, configs, jobs)

    def _sweep(self, arguments: list[str], configs: list[Any], jobs: list[Any]) -> Any:
        """Hydra's own sweep, or, with resume=true, the jobs left to run."""
        assert self.config is not None and self.launcher is not None
        if not OmegaConf.select(self.config, "resume", default=False):
            return super().sweep(arguments)
        from bench import folders, resume
        from bench.errors import UsageError

        identities = [resume.job_hash(cfg) for cfg in configs]
        sweep_dir = Path(self.config.hydra.sweep.dir)
        existing = resume.existing_jobs(sweep_dir)
        # A sweep stopped while its jobs ran on in processes of their own (submitit's, its main process signalled
        # alone): running them again would write over what they are about to finish.
        running = [e.number for e in existing if folders.job_running(sweep_dir / str(e.number))]
        if running:
            raise UsageError(f"resume=true: job {', '.join(map(str, running))} of {sweep_dir} is still running in a "
                             "process of its own; wait for it to end (or stop it), then resume")  # fmt: skip
        earlier = resume.added_jobs(sweep_dir)  # refused, one line, where unreadable: its jobs would drop out
        planned = resume.planned_overrides(sweep_dir, earlier)
        the_plan = resume.plan(list(zip(jobs, identities, strict=True)), existing, planned)
        log.info("Resuming %s: %d of %d jobs finished already (kept as they are), %d to run",
                 sweep_dir, len(the_plan.skipped), len(jobs), len(the_plan.run))  # fmt: skip
        # Resuming with other values grows the sweep (its report covers every job): say so, in case it was a typo.
        if the_plan.added:
            resume.record_added(sweep_dir, {n: o for n, o in the_plan.run if n in the_plan.added}, earlier)
            one = len(the_plan.added) == 1
            log.warning("%s %s new to this sweep (not in its first plan): %s; the report shows %s beside the others",
                        _jobs(the_plan.added), "is" if one else "are",
                        _listed(jobs, the_plan.run, the_plan.added, planned),
                        "it" if one else "them")  # fmt: skip
        if the_plan.absent:
            one = len(the_plan.absent) == 1
            log.warning("%s of %s %s not in this command: kept as %s, and in the report", _jobs(the_plan.absent),
                        sweep_dir, "is" if one else "are", "it is" if one else "they are")  # fmt: skip
        if the_plan.unstarted:
            one = len(the_plan.unstarted) == 1
            added = [n for n in the_plan.unstarted if n in earlier]
            how = (f" ({_jobs(added)}: added by an earlier resume; {sweep_dir / folders.ADDED_FILE} lists the jobs "
                   "resumes added, and an entry removed there drops its job)") if added else ""  # fmt: skip
            log.warning("%s of %s's plan never started and %s not in this command: %s in the report as missing%s",
                        _unstarted(planned, the_plan.unstarted), sweep_dir, "is" if one else "are",
                        "it stays" if one else "they stay", how)  # fmt: skip
        returns = []
        for first, batch in the_plan.batches():
            results = self.launcher.launch(batch, initial_job_idx=first)
            for r in results:
                _ = r.return_value  # as the basic sweeper does: a job that raised stops the sweep
            returns.append(results)
        return returns


def _quiet_submission(launcher: str) -> contextlib.AbstractContextManager[None]:
    """bench_launchers.quiet_submission under a submitit launcher (the cluster extra is installed then)."""
    if "submitit" not in launcher and not launcher.startswith("hydra_plugins.bench_launchers."):
        return contextlib.nullcontext()
    from hydra_plugins.bench_launchers import quiet_submission

    return quiet_submission()


def _jobs(numbers: list[int]) -> str:
    """'Job 3' or 'Jobs 2, 5'."""
    return f"Job{'s' * (len(numbers) > 1)} {', '.join(map(str, numbers))}"


def _listed(
    jobs: list[list[str]], run: list[tuple[int, list[str]]], numbers: list[int], planned: list[list[str]]
) -> str:  # fmt: skip
    """Each of ``numbers`` as #N and the overrides that set it apart: from the command's other jobs, and from the
    sweep's first plan (``planned``). A value every job of the command shares but the plan never had
    (dataset.train_size=2000 where the sweep ran 20000) is what is new; it had gone unsaid."""
    shared = set.intersection(*(set(job) for job in jobs)) if len(jobs) > 1 else set()
    in_plan = {o for job in planned for o in job}
    return "; ".join(f"#{n} " + " ".join(o for o in overrides if (o not in shared or o not in in_plan)
                                         and not o.startswith("resume="))
                     for n, overrides in sorted(run) if n in numbers)  # fmt: skip


def _unstarted(planned: list[list[str]], numbers: list[int]) -> str:
    """'Job 2 (batch_size=128)' or 'Jobs 2 (…), 3 (…)': each with the overrides that set it apart from the plan's
    other jobs (every job's dataset.train_size=256 said nothing)."""
    jobs = [set(job) for job in planned if job]
    shared = set.intersection(*jobs) if len(jobs) > 1 else set()
    said = [f"{n} ({' '.join(o for o in planned[n] if o not in shared) or 'as planned'})" for n in numbers]
    return f"Job{'s' * (len(numbers) > 1)} {', '.join(said)}"


def _check_one_experiment(jobs: Any) -> None:
    """Several lab parts (``-m experiment=a,b``) in one sweep: exit 2 (bench.errors.several_experiments says why)."""
    from bench.errors import UsageError, several_experiments
    from bench.schema import override_key

    chosen = [o.split("=", 1)[1] for job in jobs for o in job
              if "=" in o and override_key(o) == "experiment"]  # fmt: skip
    # experiment=[a,b] composes both parts into one sweep (the last one's lab node): several parts too.
    parts = list(dict.fromkeys(p.strip() for value in chosen for p in value.strip("[]").split(",") if p.strip()))
    if len(parts) > 1:
        raise UsageError(several_experiments(",".join(parts)))


#: submitit's numeric launcher keys and their least value: below it, submitit failed only after the jobs had
#: been made (timeout_min=0: every job "has not produced any output"; tasks_per_node=0: a traceback)
LAUNCHER_MINIMUM = {"timeout_min": 1, "nodes": 1, "tasks_per_node": 1, "gpus_per_node": 0, "cpus_per_task": 1,
                    "mem_gb": 1, "array_parallelism": 1}  # fmt: skip


def _check_launcher(config: Any) -> None:
    """The launcher's numbers, before any job is made: one line and exit 2 for a value submitit cannot use; a SLURM
    launcher on a machine without SLURM; and for ``hydra/launcher=local``, the GPUs ``$BENCH_LOCAL_GPUS`` names must
    be this machine's."""
    from bench.errors import UsageError

    for key, least in LAUNCHER_MINIMUM.items():
        value = OmegaConf.select(config, f"hydra.launcher.{key}", default=None)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float) or value < least):
            raise UsageError(f"hydra.launcher.{key}={value}: it must be a number of at least {least}")
    if str(OmegaConf.select(config, "hydra.launcher._target_", default="")).endswith("SlurmLauncher"):
        from submitit.slurm.slurm import SlurmExecutor

        if SlurmExecutor.affinity() < 0:  # submitit's own test for SLURM, which its executor fails on after the folder
            raise UsageError('a SLURM launcher needs SLURM, and this machine has no "srun": submit the sweep from a '
                             "SLURM login node, or run its jobs here with hydra/launcher=local")  # fmt: skip
    setup = OmegaConf.select(config, "hydra.launcher.setup", default=None)
    gpus = os.environ.get("BENCH_LOCAL_GPUS", "")
    if gpus and "BENCH_LOCAL_GPUS" in str(setup):  # bench's local preset reads it; empty is unset there too
        from bench.device import check_local_gpus

        check_local_gpus(gpus)


#: sweeps of more jobs than this say that their jobs are being checked (it takes seconds)
CHECKS_SHOWN_FROM = 20
#: launchers whose jobs run on this machine: the checks of what this machine has (CUDA, cores, memory) hold
LOCAL_LAUNCHERS = ("BasicLauncher", "LocalLauncher")


def as_job(cfg: Any, number: int) -> None:
    """A sweep job's composed config (with its ``hydra`` node) given Hydra's job number and output folder, as its
    launcher gives them (``${hydra:job.num}``), for the checks before any job runs."""
    with open_dict(cfg):
        cfg.hydra.job.num = cfg.hydra.job.id = number
        cfg.hydra.runtime.output_dir = str(Path(cfg.hydra.sweep.dir) / str(cfg.hydra.sweep.subdir))


def runs_here(launcher: str) -> bool:
    """Whether the jobs of ``launcher`` (its _target_) run on this machine, where its checks of CUDA, cores and
    memory hold; a SLURM job runs on a node of other hardware."""
    return launcher.endswith(LOCAL_LAUNCHERS)


def _check_jobs(sweeper: BenchSweeper, jobs: Any, launcher: str) -> list[Any]:
    """Each job's composed config (with its ``hydra`` node), after bench's own checks (bench.schema.validate) of
    what the job would run, with Hydra's job number set as its launcher sets it (``${hydra:job.num}``)."""
    from hydra.core.hydra_config import HydraConfig

    from bench import interrupts
    from bench.errors import UsageError, describe
    from bench.schema import validate_job

    assert sweeper.config is not None and sweeper.hydra_context is not None
    loader = sweeper.hydra_context.config_loader
    here = runs_here(launcher)
    common = set.intersection(*(set(job) for job in jobs)) if len(jobs) > 1 else set()
    if len(jobs) > CHECKS_SHOWN_FROM:  # about 0.1 s a job on 2 cores: say what the wait is
        log.info("Checking the configs of all %d jobs before the first one runs", len(jobs))
    configs = []
    hydra_config = HydraConfig.instance().cfg
    try:
        for number, job in enumerate(jobs):
            # A signal is taken between jobs, not inside OmegaConf's work on a node (cut there, a context
            # manager's exit met the half-made node and its AttributeError replaced the interruption), nor inside
            # the first check's import of torch (a half-made module).
            swept = " ".join(o for o in job if o not in common) or " ".join(job)
            swept = re.sub(r"\\(.)", r"\1", swept)  # as typed: Hydra escapes ${...} in a job's overrides
            with interrupts.deferred():
                try:
                    cfg = loader.load_sweep_config(sweeper.config, list(job))
                except Exception as err:  # an option that does not exist (-m model=small,nope): Hydra's, in one line
                    raise UsageError(f"{describe(err)} (in job {number}, {swept}; no job was run)") from None
                as_job(cfg, number)
                try:
                    validate_job(cfg, this_machine=here)
                except UsageError as err:
                    raise UsageError(f"{err} (in job {number}, {swept}; no job was run)") from None
            configs.append(cfg)
    finally:
        HydraConfig.instance().cfg = hydra_config
    return configs
