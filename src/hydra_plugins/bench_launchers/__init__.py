"""bench's submitit launchers (``hydra/launcher=local``, ``hydra/launcher=slurm``): hydra-submitit-launcher's own,
with one change: a job that ends without a result is that job's status, not the end of the sweep.

hydra-submitit-launcher 1.2 waits for a sweep's jobs with ``[j.results()[0] for j in jobs]``. A job whose process
ended without writing submitit's result (SIGKILL, the kernel's out-of-memory killer, a lost node, a job SLURM
failed or cancelled) raises there, which ended the whole sweep at that job: the jobs after it ran on unwatched,
and the report listed them as they were at that moment. Here each job is waited for in turn; one that ended
without a result is recorded as ``failed`` in its folder (a ``metrics.json`` the job wrote itself is kept as it
is), and the sweep and its report go on, as for any job's status.

Hydra takes launchers only from the ``hydra_plugins`` namespace, and imports every module there when it scans
for plugins; hydra-submitit-launcher is an optional dependency (``pip install -e '.[cluster]'``), so without it
these names stand for a launcher that says how to install it.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from hydra.core.utils import JobReturn, JobStatus
from omegaconf import open_dict

from bench.errors import UsageError, one_line, os_error_line

try:
    from hydra_plugins.hydra_submitit_launcher import submitit_launcher
except ImportError:  # bench without its cluster extra
    submitit_launcher = None

log = logging.getLogger(__name__)

#: seconds to wait for a local job's result file once its process has ended. submitit waits 15 s for a file
#: system shared across nodes (NFS) to show it; a local job writes it on this machine before it exits.
LOCAL_RESULT_WAIT_S = 2


class _EachJobsOwnStatus:
    """The launcher's own ``launch``, with each job's missing result turned into that job's ``failed`` record."""

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        with _lost_jobs_recorded(self):
            return super().launch(job_overrides, initial_job_idx)  # type: ignore[misc]


if submitit_launcher is not None:

    class LocalLauncher(_EachJobsOwnStatus, submitit_launcher.LocalLauncher):
        """submitit's local executor: each job in a process of its own on this machine."""

    class SlurmLauncher(_EachJobsOwnStatus, submitit_launcher.SlurmLauncher):
        """submitit's SLURM executor: one job array."""

else:
    from hydra.plugins.launcher import Launcher

    class LocalLauncher(Launcher):  # type: ignore[no-redef]
        def __init__(self, **_: Any) -> None:
            raise UsageError("this launcher needs hydra-submitit-launcher: pip install -e '.[cluster]'")

    class SlurmLauncher(LocalLauncher):  # type: ignore[no-redef]
        pass


@contextlib.contextmanager
def _lost_jobs_recorded(launcher: Any) -> Iterator[None]:
    """While the launcher waits for its jobs, submitit's ``Job.results`` answers a job that produced no result
    with that job's record instead of raising. The plugin offers no hook between submitting the jobs and
    waiting for them, hence the wrapper, which lasts only as long as the wait."""
    from submitit.core import core, utils
    from submitit.local.local import LocalJob

    wait = core.Job.results

    def results(job: core.Job) -> list[Any]:
        if isinstance(job, LocalJob):
            job._results_timeout_s = LOCAL_RESULT_WAIT_S
        try:
            return wait(job)
        except (utils.UncompletedJobError, utils.FailedJobError) as err:
            return [_record_lost(launcher, job, err)]

    core.Job.results = results  # type: ignore[method-assign]
    try:
        yield
    finally:
        core.Job.results = wait  # type: ignore[method-assign]


def _record_lost(launcher: Any, job: Any, err: Exception) -> JobReturn:
    """Record a job that ended without a result as ``failed`` in its folder, unless it recorded itself."""
    from submitit.core import utils

    from bench.folders import METRICS_FILE
    from bench.results import write_metrics
    from bench.train import result_for

    try:
        overrides, _, number, *_ = job.submission().args
    except Exception as unread:  # its pickle is gone too: the report lists the job as missing
        log.error("A job ended without a result (%s); which one is unknown (%s)", one_line(err), one_line(unread))
        return JobReturn(status=JobStatus.COMPLETED)
    run_dir = Path(str(launcher.config.hydra.sweep.dir)) / str(number)  # bench keeps hydra.sweep.subdir the number
    if isinstance(err, utils.UncompletedJobError):  # "Job 12 (task: 0) with path P" / "has not produced any output"
        said = str(err).strip().splitlines()[1:2] or [one_line(err)]
        why = (f"the job's process ended without a result (submitit job {job.job_id} {said[0].strip()}): killed "
               "outright (SIGKILL, the kernel's out-of-memory killer), or its node was lost")  # fmt: skip
    else:  # the job's process raised before or after bench's own run, which records its own failures
        why = (f"the job's process failed outside the run (submitit job {job.job_id}: {one_line(err)}); its log: "
               f"{job.paths.stderr}")  # fmt: skip
    if (run_dir / METRICS_FILE).exists():
        log.error("Job %s ended without a result, after recording its own status: %s", number, why)
    else:
        log.error("Job %s failed: %s", number, why)
        try:
            cfg = launcher.hydra_context.config_loader.load_sweep_config(launcher.config, list(overrides))
            with open_dict(cfg):
                del cfg["hydra"]
            write_metrics(run_dir, result_for(cfg, status="failed", error=why))
        except Exception as write_err:  # the report then lists the job as missing or unreadable
            said = os_error_line(write_err) if isinstance(write_err, OSError) else one_line(write_err)
            log.error("Could not record job %s: %s", number, said)
    return JobReturn(overrides=list(overrides), status=JobStatus.COMPLETED, _return_value=None)
