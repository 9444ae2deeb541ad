"""bench's submitit launchers (``hydra/launcher=local``, ``hydra/launcher=slurm``): hydra-submitit-launcher's own,
with one change: a job that ends without a result is that job's status, not the end of the sweep.

hydra-submitit-launcher 1.2 waits for a sweep's jobs with ``[j.results()[0] for j in jobs]``. A job whose process
ended without writing submitit's result (SIGKILL, the kernel's out-of-memory killer, a lost node, a job SLURM
failed or cancelled) raises there, which ended the whole sweep at that job: the jobs after it ran on unwatched,
and the report listed them as they were at that moment. Here each job is waited for in turn; one that ended
without a result is recorded as ``failed`` in its folder (a ``metrics.json`` the job wrote itself is kept as it
is), and the sweep and its report go on, as for any job's status.

Hydra takes launchers only from the ``hydra_plugins`` namespace, and imports every module there when it scans
for plugins. hydra-submitit-launcher is an optional dependency (``pip install -e '.[cluster]'``): without it this
module defines no launcher (``AVAILABLE`` is false), and bench's CLI says what to install.
"""

from __future__ import annotations

import contextlib
import io
import logging
import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from hydra.core.utils import JobReturn, JobStatus

from bench.errors import one_line, os_error_line

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


#: whether hydra-submitit-launcher is installed (the cluster extra): only then are these launchers registered
AVAILABLE = submitit_launcher is not None

if AVAILABLE:

    class LocalLauncher(_EachJobsOwnStatus, submitit_launcher.LocalLauncher):
        """submitit's local executor: each job in a process of its own on this machine."""

    class SlurmLauncher(_EachJobsOwnStatus, submitit_launcher.SlurmLauncher):
        """submitit's SLURM executor: one job array."""


@contextlib.contextmanager
def _lost_jobs_recorded(launcher: Any) -> Iterator[None]:
    """While the launcher waits for its jobs, submitit's ``Job.results`` answers a job that produced no result
    with that job's record instead of raising. The plugin offers no hook between submitting the jobs and waiting
    for them, hence the wrapper, which lasts only as long as the launch."""
    from submitit.core import core, utils
    from submitit.local.local import LocalJob

    wait = core.Job.results

    def results(job: core.Job) -> list[Any]:
        if isinstance(job, LocalJob):
            job._results_timeout_s = LOCAL_RESULT_WAIT_S
        sweep_dir = Path(str(launcher.config.hydra.sweep.dir))
        try:
            found = wait(job)
        except utils.UncompletedJobError as err:  # FailedJobError too: a subclass
            return [record_lost(sweep_dir, job, err)]
        say_done(sweep_dir, job, found)
        return found

    with _replaced(core.Job, "results", results):
        yield


@contextlib.contextmanager
def quiet_submission() -> Iterator[None]:
    """While a sweep hands its jobs to a submitit launcher (bench's or the plugin's own), submitit prints nothing of
    a submission it raises about: sbatch's refusal (a partition it does not know) is raised with sbatch's words,
    which bench's closing line gives, and submitit printed them as well, two lines of sbatch above that one."""
    from submitit.core import core

    from bench import folders

    submit = core.PicklingExecutor._submit_command

    def quiet_submit(executor: core.PicklingExecutor, command: str) -> core.Job:
        with contextlib.redirect_stderr(io.StringIO()):
            job = submit(executor, command)
        folders.submitted()
        return job

    with _replaced(core.PicklingExecutor, "_submit_command", quiet_submit):
        yield


@contextlib.contextmanager
def _replaced(owner: type, name: str, replacement: Any) -> Iterator[None]:
    """``owner.name`` is ``replacement`` inside the block, and what it was after it, however the block ends: the
    plugin offers no hooks, so bench's launchers wrap submitit's methods for as long as they need them."""
    original = getattr(owner, name)
    setattr(owner, name, replacement)
    try:
        yield
    finally:
        setattr(owner, name, original)


def say_done(sweep_dir: Path, job: Any, found: Sequence[Any] = ()) -> None:
    """One line as each job's result comes in, from its own record: the jobs' output goes to their .submitit/
    logs, and between the plan's lines and "Sweep finished" nothing had said how far a sweep had got. The job's
    number is its JobReturn's (its pickled submission, a read of it per job, only where that is missing)."""
    from omegaconf import OmegaConf

    from bench.folders import METRICS_FILE
    from bench.results import load_metrics

    try:
        hydra_cfg = getattr(found[0], "hydra_cfg", None) if found else None
        number = OmegaConf.select(hydra_cfg, "hydra.job.num") if hydra_cfg is not None else None
        if number is None:
            number = job.submission().args[2]
        record = load_metrics(sweep_dir / str(number) / METRICS_FILE)
    except Exception:  # progress only: the report says what each job recorded, or that it is unreadable
        return
    speed = record.get("samples_per_s")
    rate = f", {speed:,.0f} samples/s" if isinstance(speed, (int, float)) and record.get("status") == "ok" else ""
    log.info("Job %s done: %s%s (%s)", number, record.get("status"), rate, sweep_dir / str(number))


#: SLURM's states for a job that ended without a result, as the status its record gets (else ``failed``)
STATE_STATUS = {"OUT_OF_MEMORY": "oom", "CANCELLED": "interrupted", "TIMEOUT": "interrupted",
                "PREEMPTED": "interrupted", "DEADLINE": "interrupted"}  # fmt: skip


def record_lost(sweep_dir: Path, job: Any, err: Exception) -> JobReturn:
    """Record a job that ended without a result in its folder: ``failed`` (``oom`` or ``interrupted`` where SLURM's
    state says so), unless the job recorded its own status. A job that never started (no ``.hydra/`` in its
    folder: cancelled while queued, a node that failed first) stays without a folder, the report's ``missing``,
    so that a resume runs it again under its own number."""
    from omegaconf import OmegaConf
    from submitit.core import utils

    from bench.folders import CONFIG_FILE, CONFIG_SUBDIR, METRICS_FILE
    from bench.results import write_metrics
    from bench.train import result_for

    try:
        overrides, _, number, *_ = job.submission().args
    except Exception as unread:  # its pickle is gone too: the report lists the job as missing
        log.error("A job ended without a result (%s); which one is unknown (%s)", one_line(err), one_line(unread))
        return JobReturn(status=JobStatus.COMPLETED)
    done = JobReturn(overrides=list(overrides), status=JobStatus.COMPLETED, _return_value=None)
    run_dir = sweep_dir / str(number)  # bench keeps hydra.sweep.subdir the job's number
    lines = [line.strip() for line in str(err).strip().splitlines() if line.strip()]
    # FailedJobError is an UncompletedJobError: the job raised, and its trace is the message.
    if not isinstance(err, utils.FailedJobError):  # "Job 12 (task: 0) with path P" / "has not produced any output"
        said = lines[1] if len(lines) > 1 else one_line(err)
        state = re.search(r"\(state: ([A-Z_]+)", said)
        status = STATE_STATUS.get(state[1], "failed") if state else "failed"
        why = (f"the job's process ended without a result (submitit job {job.job_id} {said}): killed "
               "outright (SIGKILL, the kernel's out-of-memory killer), stopped by the scheduler, or its node was "
               "lost")  # fmt: skip
    else:  # the job's process raised outside bench's run, which records its own failures: the trace's last line
        status = "failed"
        why = (f"the job's process failed outside the run (submitit job {job.job_id}: {lines[-1] if lines else err}); "
               f"its log: {job.paths.stderr}")  # fmt: skip
    if (run_dir / METRICS_FILE).exists():
        log.error("Job %s ended without a result, after recording its own status: %s", number, why)
        return done
    if not (run_dir / CONFIG_SUBDIR / CONFIG_FILE).is_file():
        log.error("Job %s never started (it is missing from the report; resume=true runs it): %s", number, why)
        return done
    log.error("Job %s %s: %s", number, status, why)
    try:
        cfg = OmegaConf.load(run_dir / CONFIG_SUBDIR / CONFIG_FILE)  # the job's own config, as Hydra saved it
        result = result_for(cfg, status=status, error=why)
        if OmegaConf.select(cfg, "device.name") == "auto":  # what auto chose was the job's node's to say
            result.device = None
        write_metrics(run_dir, result)
    except Exception as write_err:  # the report then lists the job as unreadable
        said = os_error_line(write_err) if isinstance(write_err, OSError) else one_line(write_err)
        log.error("Could not record job %s: %s", number, said)
    return done
