"""Run and sweep folders: what makes one, and claiming a new one without ever writing into another's.

Two sweeps started in the same second, a reused ``hydra.sweep.dir`` or a constant ``hydra.sweep.subdir``
would otherwise mix two runs in one folder (one's config beside the other's metrics). A new run or sweep
claims its folder atomically before Hydra writes anything there, and a folder that already holds a run or
a sweep is refused in one line. ``resume=true`` (see bench.resume) is the one way back into a sweep folder.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from bench.errors import UsageError, os_error_line

METRICS_FILE = "metrics.json"
SWEEP_FILE = "multirun.yaml"
#: files a sweep folder gets besides its job folders
SWEEP_OUTPUTS = (SWEEP_FILE, "summary.csv", "report.md")
#: a sweep's subdir: one folder per job, named by its number, which resume and the reports rely on
JOB_SUBDIR = "${hydra.job.num}"
_claimed: list[Path] = []  # the sweep folders this process claimed, latest last


def forget_claims() -> None:
    """A new session (an entry point's main) starts with no claimed folder."""
    _claimed.clear()


def claimed_sweep_dir() -> Path | None:
    """The sweep folder this process claimed last (the launching process, whose jobs may run elsewhere)."""
    return _claimed[-1] if _claimed else None


def is_run_dir(path: Path) -> bool:
    return (path / METRICS_FILE).is_file() or (path / ".hydra").is_dir()


def job_number(path: Path) -> int | None:
    """The job number Hydra names a sweep's job folder by (``0``, ``12``), or None for any other name: not
    ``01`` (Hydra would write job 1 into ``1``, beside it) nor a Unicode digit such as ``②``."""
    name = path.name
    return int(name) if name.isascii() and name.isdigit() and str(int(name)) == name else None


def holds_runs(path: Path) -> bool:
    """Whether ``path`` is a run folder, or a sweep folder with results or job folders in it."""
    if not path.is_dir():
        return False
    return any((path / name).exists() for name in SWEEP_OUTPUTS) or holds_run_dirs(path)


def holds_run_dirs(path: Path) -> bool:
    """Whether ``path`` is a run folder or has one in it (a sweep's job): its results, not a report of them."""
    if not path.is_dir():
        return False
    if is_run_dir(path):
        return True
    try:
        # A child that is a run, or a whole sweep copied or moved in (where a new sweep's job 0 would write).
        return any(child.is_dir() and (is_run_dir(child) or (child / SWEEP_FILE).is_file()) for child in path.iterdir())
    except OSError:
        return False


def make_writable(path: Path, key: str) -> None:
    """Create ``path`` (and its parents) and prove it can be written, or say in one line why not."""
    if path.exists() and not path.is_dir():
        raise UsageError(f"{key}={path}: that is a file, not a folder")
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as err:
        raise UsageError(f"{key}={path}: cannot write there ({os_error_line(err)})") from None


def claim_run_dir(path: Path, key: str = "hydra.run.dir") -> None:
    """Make ``path`` a new run's folder: refused if it holds another run, cannot be made, or cannot be written."""
    if holds_runs(path):
        raise UsageError(f"{key}={path} already holds a run; bench never writes over one: choose a new folder")
    make_writable(path, key)
    try:
        (path / ".hydra").mkdir()  # atomic: of two runs racing for one folder, exactly one gets it
    except FileExistsError:
        raise UsageError(f"{key}={path} is being used by another run: choose a new folder") from None
    except OSError as err:
        raise UsageError(f"{key}={path}: cannot write there ({os_error_line(err)})") from None


def claim_sweep_dir(path: Path, subdir: str, *, resume: bool = False) -> None:
    """Make ``path`` a new sweep's folder (or, with ``resume``, take back an existing one).

    ``subdir`` is the unresolved ``hydra.sweep.subdir``: it must be the job's number, so that two jobs
    never share a folder and resume and the reports can find every job.
    """
    if subdir != JOB_SUBDIR:
        same = "" if "hydra.job" in subdir else " is the same for every job, so jobs would overwrite each other;"
        raise UsageError(
            f"hydra.sweep.subdir={subdir}{same} bench keeps one folder per job named by its number "
            f"(resume and the reports rely on it): leave hydra.sweep.subdir at {JOB_SUBDIR}"
        )
    if resume:
        if not (path / SWEEP_FILE).is_file():
            raise UsageError(f"resume=true: {path} holds no sweep to resume (no {SWEEP_FILE}); check hydra.sweep.dir")
        make_writable(path, "hydra.sweep.dir")
        _claimed.append(path)
        return
    if holds_runs(path):
        raise UsageError(
            f"hydra.sweep.dir={path} already holds a sweep; bench never writes over one: choose a new folder, "
            "or add resume=true to run only its unfinished jobs"
        )
    make_writable(path, "hydra.sweep.dir")
    try:
        # Claimed atomically: Hydra's sweeper overwrites this placeholder with the sweep's config.
        fd = os.open(path / SWEEP_FILE, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        os.close(fd)
    except FileExistsError:
        raise UsageError(f"hydra.sweep.dir={path} is being used by another sweep: choose a new folder") from None
    except OSError as err:
        raise UsageError(f"hydra.sweep.dir={path}: cannot write there ({os_error_line(err)})") from None
    _claimed.append(path)
