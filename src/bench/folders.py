"""Run and sweep folders: what makes one, and claiming a new one without ever writing into another's.

Two sweeps started in the same second, a reused ``hydra.sweep.dir`` or a constant ``hydra.sweep.subdir``
would otherwise mix two runs in one folder (one's config beside the other's metrics). A new run or sweep
claims its folder atomically before Hydra writes anything there, and a folder that already holds a run or
a sweep is refused in one line. ``resume=true`` (see bench.resume) is the one way back into a sweep folder,
and only while no other process holds it: the sweep, or another resume, still running.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import re
import shutil
import tempfile
import time
from collections.abc import Collection, Iterator, Sequence
from pathlib import Path

from bench.errors import UsageError, os_error_line

METRICS_FILE = "metrics.json"
SWEEP_FILE = "multirun.yaml"
SUMMARY_FILE, REPORT_FILE = "summary.csv", "report.md"
#: a reproduction's comparison, and a profiled run's trace, in its run folder
REPRODUCE_FILE, TRACE_FILE = "reproduce.md", "trace.json"
#: a run's saved config and the overrides it was composed with, in its CONFIG_SUBDIR
CONFIG_FILE, OVERRIDES_FILE = "config.yaml", "overrides.yaml"
#: Hydra's own settings for the job, in its CONFIG_SUBDIR, and the key of the folder the command ran in (where a
#: run's relative paths lead from), the one setting there that bench reads (and a reproduction writes)
HYDRA_FILE, RAN_IN_KEY = "hydra.yaml", "hydra.runtime.cwd"
#: the jobs a resume added to a sweep, beside its first plan (SWEEP_FILE, which a resume leaves as it is)
ADDED_FILE = "added_jobs.yaml"
#: files a sweep folder gets besides its job folders
SWEEP_OUTPUTS = (SWEEP_FILE, SUMMARY_FILE, REPORT_FILE, ADDED_FILE)
#: a sweep's subdir: one folder per job, named by its number, which resume and the reports rely on
JOB_SUBDIR = "${hydra.job.num}"
#: where Hydra saves a run's config in its folder (``hydra.output_subdir``, which bench.callbacks holds to it):
#: bench.reproduce and the reports read it there, and claim_run_dir claims a folder by making it
CONFIG_SUBDIR = ".hydra"
#: the lock a sweep's process holds on its folder while it runs (flock: the kernel drops it however it ends)
LOCK_FILE = ".bench.lock"
_claimed: list[Path] = []  # the sweep folders this process claimed, latest last
_held: list[int] = []  # the open lock files of the sweep folders this process holds
#: the new sweep folders this process claimed, each with the topmost folder the claim made (the folder itself, a
#: parent such as outputs/ on a first sweep, or None where the folder was there already)
_new: dict[Path, Path | None] = {}
#: the launcher (its _target_) this process handed jobs to that runs them in processes of their own
#: (submitit): from then on they may write into the sweep folder whatever this process does, so it is never
#: given back; "" while none
_handed_over = ""
#: job arrays this process submitted to a cluster (sbatch accepted them)
_submitted = 0


@contextlib.contextmanager
def session() -> Iterator[None]:
    """An entry point's main: it starts with no claimed folder, and lets go of the folders it held when it
    ends (closing a lock file releases its lock), also in a process that goes on (a test, a notebook)."""
    forget_claims()
    try:
        yield
    finally:
        forget_claims()


def forget_claims() -> None:
    """Let go of every folder this process claimed, and of their locks."""
    global _handed_over, _submitted
    _claimed.clear()
    _new.clear()
    _handed_over, _submitted = "", 0
    while _held:
        os.close(_held.pop())


def hand_over(launcher: str) -> None:
    """The sweep's jobs go to ``launcher`` (its _target_), which runs them in processes of their own (submitit,
    locally or on SLURM): once submitted they may start, and write into the folder, at any time."""
    global _handed_over
    _handed_over = launcher


def submitted() -> None:
    """A submission (one sbatch call: an array of jobs) was accepted by the cluster."""
    global _submitted
    _submitted += 1


def submissions() -> int:
    """How many submissions this command made that the cluster accepted: a refused one after some is not "nothing
    was submitted" (a resumed sweep's second batch, a sweep in batches)."""
    return _submitted


def handed_over() -> str:
    """The launcher this process handed jobs to, or "" (none, or jobs run in this process)."""
    return _handed_over


@contextlib.contextmanager
def hold_job(run_dir: Path) -> Iterator[None]:
    """Hold a job's folder while the job runs (a lock on its ``.bench.lock``, which the kernel drops however the
    process ends). A job whose folder another live process holds (the same job, left running by a sweep that
    was stopped, and now resumed) is refused: its results would be written over."""
    fd = _lock(run_dir, str(run_dir), f"{run_dir} is in use by another process running this job; its results are "
               "not written over")  # fmt: skip
    try:
        yield
    finally:
        if fd >= 0:
            os.close(fd)


def job_running(run_dir: Path) -> bool:
    """Whether a live process holds the job folder ``run_dir`` (see :func:`hold_job`)."""
    try:
        fd = os.open(run_dir / LOCK_FILE, os.O_RDWR)
    except OSError:
        return False  # no lock file: a job from before locks, or one that never started
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as err:
        return err.errno in (errno.EWOULDBLOCK, errno.EACCES)
    finally:
        os.close(fd)
    return False


def abandon_claim(also: Sequence[str] = ()) -> bool:
    """Give back the new sweep folder this process claimed, when no job has written into it: the sweep was
    refused before its first job (an option one of its values does not have), and the corrected command must
    be able to have the folder. A resumed sweep's folder is never touched. ``also``: folders inside it that the
    refused command wrote (submitit's, of an array sbatch refused). Whether the folder is gone."""
    path = claimed_sweep_dir()
    if path is None or path not in _new or holds_run_dirs(path) or _handed_over:
        return False
    for name in (SWEEP_FILE, LOCK_FILE):
        (path / name).unlink(missing_ok=True)
    for name in also:
        shutil.rmtree(path / name, ignore_errors=True)
    with contextlib.suppress(OSError):  # a job folder Hydra made before a signal stopped it: still empty
        for child in path.iterdir():
            if child.is_dir() and job_number(child) is not None and not any(child.iterdir()):
                child.rmdir()
    remove_empty(path, _new[path])  # with the parents the claim made (a first sweep's outputs/sweeps/)
    return not path.exists()


def claimed_sweep_dir() -> Path | None:
    """The sweep folder this process claimed last (the launching process, whose jobs may run elsewhere)."""
    return _claimed[-1] if _claimed else None


def is_run_dir(path: Path) -> bool:
    return (path / METRICS_FILE).is_file() or (path / CONFIG_SUBDIR).is_dir()


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


def first_missing(path: Path) -> Path | None:
    """The outermost folder of ``path`` that does not exist yet (``path`` itself at the deepest), or None:
    what making ``path`` would create, to be taken back if what needed it fails."""
    missing = None
    for folder in (path, *path.parents):
        if folder.exists():
            break
        missing = folder
    return missing


def remove_empty(path: Path, top: Path | None) -> None:
    """Remove ``path`` and its parents up to ``top`` (from :func:`first_missing`), each only while empty: a
    refused command leaves none of the folders it made behind."""
    if top is None:
        return
    for folder in (path, *path.parents):
        try:
            folder.rmdir()
        except OSError:  # not empty (something was written there), or gone
            return
        if folder == top:
            return


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


def refuse_inside_results(path: Path, key: str) -> None:
    """A new run or sweep never goes inside another's folder: a finished run's ``.hydra/`` would get a second
    run's files, and a sweep's unrun job folder a run that its resume would then adopt as one of its jobs."""
    for parent in Path(os.path.abspath(path)).parents:
        if is_run_dir(parent) or (parent / SWEEP_FILE).is_file():
            raise UsageError(f"{key}={path} is inside {parent}, which holds a run or a sweep; bench never writes "
                             "into one: choose a folder outside it")  # fmt: skip


def refuse_the_working_folder(path: Path, key: str) -> None:
    """``hydra.run.dir=`` (empty) or ``.`` would put a run's files among the user's own, and make the folder a
    run's, inside which every later run is refused: a run or sweep needs a folder of its own."""
    here = Path.cwd().resolve()
    if path.resolve() == here or path.resolve() in here.parents:
        where = "the current folder" if path.resolve() == here else f"a folder above the current one ({path.resolve()})"
        raise UsageError(f"{key}={path} is {where}: a run or sweep needs a folder of "
                         f"its own, e.g. {key}=outputs/mine")  # fmt: skip


def claim_run_dir(path: Path, key: str = "hydra.run.dir") -> None:
    """Make ``path`` a new run's folder: refused if it holds another run or lies inside one or a sweep, is the
    working folder (or above it), cannot be made, or cannot be written."""
    refuse_the_working_folder(path, key)
    if holds_runs(path):
        # A run that recorded nothing (a full disk stopped it before its metrics.json) left its folder too: the
        # retry of the same command was refused with no word of why, or of what to do.
        nothing = is_run_dir(path) and not (path / METRICS_FILE).is_file() and not job_running(path)
        why = (" that recorded nothing (no metrics.json: it stopped before it could); if you do not need its "
               "log, remove the folder, or" if nothing else "; bench never writes over one:")  # fmt: skip
        raise UsageError(f"{key}={path} already holds a run{why} choose a new folder")
    refuse_inside_results(path, key)
    make_writable(path, key)
    try:
        (path / CONFIG_SUBDIR).mkdir()  # atomic: of two runs racing for one folder, exactly one gets it
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
        why = (" does not name job folders by their number alone:" if "hydra.job" in subdir
               else " is the same for every job, so jobs would overwrite each other;")  # fmt: skip
        raise UsageError(
            f"hydra.sweep.subdir={subdir}{why} bench keeps one folder per job named by its number alone "
            f"(resume and the reports rely on it): leave hydra.sweep.subdir at {JOB_SUBDIR}"
        )
    if resume:
        if not (path / SWEEP_FILE).is_file():
            if holds_runs(path):  # the plan is gone: which jobs are unfinished?
                raise UsageError(
                    f"resume=true: {path} holds runs but not the sweep's {SWEEP_FILE} (its plan of "
                    "jobs): put that file back to resume it, or run the sweep again in a new folder"
                )
            raise UsageError(f"resume=true: {path} holds no sweep to resume (no {SWEEP_FILE}); check hydra.sweep.dir")
        make_writable(path, "hydra.sweep.dir")
        _hold(path)
        _claimed.append(path)
        return
    refuse_the_working_folder(path, "hydra.sweep.dir")  # a resume from inside its sweep's folder is fine
    if holds_runs(path):
        resumable = ", or add resume=true to run only its unfinished jobs" if (path / SWEEP_FILE).is_file() else ""
        raise UsageError(f"hydra.sweep.dir={path} already holds a sweep; bench never writes over one: choose a new "
                         f"folder{resumable}")  # fmt: skip
    refuse_inside_results(path, "hydra.sweep.dir")
    made = first_missing(path)
    make_writable(path, "hydra.sweep.dir")
    _hold(path)
    try:
        # Claimed atomically: Hydra's sweeper overwrites this placeholder with the sweep's config.
        fd = os.open(path / SWEEP_FILE, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        os.close(fd)
    except FileExistsError:
        raise UsageError(f"hydra.sweep.dir={path} is being used by another sweep: choose a new folder") from None
    except OSError as err:
        raise UsageError(f"hydra.sweep.dir={path}: cannot write there ({os_error_line(err)})") from None
    _claimed.append(path)
    _new[path] = made


def _hold(path: Path) -> None:
    """Lock the sweep folder ``path`` for this session, or refuse it if another process holds it: two resumes
    of one sweep, or a resume of a sweep still running, would train the same jobs into the same folders."""
    busy = (f"hydra.sweep.dir={path} is in use by another bench process (the sweep itself, or a resume of it, "
            "still running): wait for it to end, or stop it, then resume")  # fmt: skip
    fd = _lock(path, f"hydra.sweep.dir={path}", busy)
    if fd >= 0:
        _held.append(fd)


def _lock(folder: Path, key: str, busy: str) -> int:
    """An exclusive lock on ``folder``'s LOCK_FILE, held while the returned descriptor is open (the kernel drops
    it however the process ends); -1 on a filesystem without locks (some network mounts), where the folder is
    used unlocked, as before. UsageError where it cannot be written (``key`` names it), or where another live
    process holds it (``busy`` says so)."""
    try:
        fd = os.open(folder / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o666)
    except OSError as err:
        raise UsageError(f"{key}: cannot write there ({os_error_line(err)})") from None
    # job_running() takes the lock for an instant to ask whether a process holds it (bench.report on a live sweep,
    # a resume): a job starting in that instant must wait it out, not be refused as if its folder were in use.
    deadline = time.monotonic() + LOCK_PATIENCE_S
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return fd
        except OSError as err:
            if err.errno in (errno.EWOULDBLOCK, errno.EACCES) and time.monotonic() < deadline:
                time.sleep(0.02)
                continue
            os.close(fd)
            if err.errno in (errno.EWOULDBLOCK, errno.EACCES):
                raise UsageError(busy) from None
            return -1


#: how long a lock held by another process is waited for before the folder counts as in use: far longer than a
#: probe holds it, far shorter than any job
LOCK_PATIENCE_S = 0.5


#: a figure a report or comparison links by its plain name, in its own folder: ``![What …](runs.png)``
_FIGURE_LINK = re.compile(r"!\[[^\]]*\]\(([^()/\\]+\.png)\)")
#: report.md's last line: the figures the report drew, the only files a later report into its folder removes (a
#: figure the user linked into it by hand is theirs)
FIGURES_NOTE = "<!-- figures bench drew: {} -->"
_FIGURES_NOTE = re.compile(r"^<!-- figures bench drew: (.*) -->$", re.MULTILINE)


def linked_figures(text_file: Path) -> set[str]:
    """The figures an earlier ``report.md`` or ``compare.md`` linked, read before it is replaced (none if absent)."""
    try:
        return set(_FIGURE_LINK.findall(text_file.read_text(errors="replace")))
    except OSError:
        return set()


def drawn_figures(text_file: Path) -> set[str]:
    """The figures an earlier report said it drew (its FIGURES_NOTE), read before it is replaced; none if absent."""
    try:
        found = _FIGURES_NOTE.search(text_file.read_text(errors="replace"))
    except OSError:
        return set()
    names = found.group(1).split() if found else []
    return {n for n in names if n.endswith(".png") and "/" not in n and "\\" not in n}


def remove_unlinked(folder: Path, earlier: set[str], written: Collection[Path]) -> None:
    """Remove the figures an earlier report or comparison drew that this command did not draw again: beside the
    new text they read as its own (a comparison's plot of another candidate, a report's figure of runs it no
    longer has). ``earlier`` holds only what bench drew there (drawn_figures, compare.png): a user's own files in
    the folder are never touched."""
    for name in earlier - {path.name for path in written}:
        with contextlib.suppress(FileNotFoundError):
            (folder / name).unlink()
