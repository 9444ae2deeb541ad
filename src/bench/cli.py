"""The Hydra app behind ``python -m bench``: compose, check, train, record.

Nothing reaches the user as a traceback (unless ``HYDRA_FULL_ERROR=1``). Bad input, Hydra's own parse
errors and an unusable output folder print one line and exit 2 before any work; a run that fails exits 1
with one line; SIGINT, SIGTERM and SIGHUP record the running job as ``interrupted``, write what can still be
written (a sweep's partial report) and exit 130, 143 or 129 (docs/architecture.md, "Failure"). Inside a sweep a
job never raises: its failure is its status, so the other jobs and the report still happen.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import logging
import os
import signal
import sys
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from bench import callbacks, folders, interrupts, schema
from bench.errors import (
    EXIT_RUN_FAILED,
    EXIT_USAGE,
    ConfigError,
    Interrupted,
    Refused,
    UsageError,
    describe,
    exit_interrupted,
    fail,
    os_error_line,
)  # fmt: skip

log = logging.getLogger("bench")
#: set in the environment of every job that submitit runs (SLURM and local)
SUBMITIT_JOB = "SUBMITIT_EXECUTOR"


@dataclass
class _Session:
    """What the entry point must know when something stops it: whether a job started, and where."""

    started: bool = False
    run_dir: Path | None = None
    sweep_dir: Path | None = None
    #: where the command was started: Hydra's runtime.cwd (with hydra.job.chdir=true a job runs in its folder)
    cwd: Path | None = None


SESSION = _Session()


@hydra.main(version_base="1.3", config_path="pkg://bench.conf", config_name="config")
def app(cfg: DictConfig) -> float | None:
    """One job: a single run, or one point of a sweep."""
    hydra_cfg = HydraConfig.get()
    run_dir = Path(hydra_cfg.runtime.output_dir)
    in_sweep = hydra_cfg.mode == RunMode.MULTIRUN
    SESSION.started, SESSION.run_dir, SESSION.cwd = True, run_dir, Path(hydra_cfg.runtime.cwd)
    if in_sweep:
        SESSION.sweep_dir = Path(hydra_cfg.sweep.dir)
    # Also here, not only in main(): under the submitit launchers each job runs in a process of its own.
    with interrupts.interruptible():
        try:
            return _job(cfg, run_dir, in_sweep)
        except Interrupted:
            if SUBMITIT_JOB not in os.environ:
                raise
            # A submitit job (SLURM's time limit, Ctrl-C on submitit_local): metrics.json says interrupted.
            # Ending normally lets submitit write the job's result, so the sweep and its report go on.
            return None


def _job(cfg: DictConfig, run_dir: Path, in_sweep: bool) -> float | None:
    # After composition, so that --help and config errors do not wait for torch; and whole: a signal halfway
    # through torch's import would leave a half-made module, which the partial report then trips over.
    try:
        with interrupts.deferred():
            from bench import train
            from bench.results import METRICS_FILE, NotRecorded, write_metrics
    except Interrupted as stop:  # before training: the job is still recorded, as interrupted
        with interrupts.deferred(reraise=False), contextlib.suppress(OSError):
            write_metrics(run_dir, train.result_for(cfg, status="interrupted", error=f"interrupted by {stop.name}"))
        raise

    with contextlib.ExitStack() as held:
        try:
            held.enter_context(folders.hold_job(run_dir))
        except UsageError as err:  # its own process still runs it (a stopped sweep's, resumed): nothing written
            if not in_sweep:
                fail(str(err), EXIT_USAGE)
            log.error("Job not run: %s", err)
            return None
        try:
            schema.validate(cfg)
            result = train.run(cfg, run_dir, raise_usage_errors=not in_sweep)
        except UsageError as err:
            # train.run has already recorded a missing device or dataset; a config error is recorded here.
            if not (run_dir / METRICS_FILE).exists():
                try:
                    write_metrics(run_dir, train.result_for(cfg, status="failed", error=f"config error: {err}"))
                except OSError as write_err:  # the error line below still tells the user what was wrong
                    log.debug("Could not record the config error: %s", write_err)
            if not in_sweep:
                fail(str(err), EXIT_USAGE)  # SystemExit passes through Hydra untouched
            log.error("Config error: %s", err)
            return None
        except (NotRecorded, OSError) as err:  # a full disk, a folder that went away
            message = str(err) if isinstance(err, NotRecorded) else f"could not record the run: {os_error_line(err)}"
            if not in_sweep:
                fail(message, EXIT_RUN_FAILED)
            log.error("%s", message)
            return None
        except Exception as err:  # a bug in bench: the job's status, never the end of the sweep
            if not in_sweep:
                raise
            log.error("Job failed: %s", describe(err))
            log.debug("Traceback", exc_info=True)
            return None
        if in_sweep:
            if result.status == "diverged":  # the others say so as they stop (train.run); this one had said nothing
                log.warning("Run diverged: %s", result.error)
            return result.metrics.get("samples_per_s")
        if result.status == "ok":  # a sweep ends with its report's path; a single run, with its folder's
            log.info("Results: %s (metrics.json, bench.log)", as_typed(run_dir))
            return result.metrics.get("samples_per_s")
        fail(f"run {result.status}: {result.error} (details in {as_typed(run_dir)})", EXIT_RUN_FAILED)


def main() -> None:
    """Console entry point: Hydra's own CLI, one line for every failure, and the exit codes of the README."""
    SESSION.__init__()  # type: ignore[misc]  # a fresh session (main() may run more than once in a process)
    callbacks.report_failure = None
    user_wants_traces = os.environ.get("HYDRA_FULL_ERROR") == "1"
    # Let Hydra's exceptions reach us instead of being printed as a multi-line report with exit code 1.
    os.environ["HYDRA_FULL_ERROR"] = "1"
    parser = _hydra_parser()
    sys.argv[1:] = options_first(sys.argv[1:], parser)
    args = _check_arguments(sys.argv[1:], parser)
    sys.argv[1:] = with_callbacks(sys.argv[1:], args)
    _register_sweeper()
    with folders.session(), interrupts.entry_point(), warnings.catch_warnings(), _hydra_config_kept():
        # A search path given on the command line that is not there (a typo, or a folder relative to elsewhere) is
        # bad input: Hydra's two-line warning, then "unknown model 'medium_x2'", pointed away from the cause.
        warnings.filterwarnings("error", SEARCHPATH_MISSING, UserWarning)
        try:
            own_config = not (args.config_path or args.config_name or args.config_dir)
            if args.cfg and args.package not in (None, "_global_") and own_config:
                _check_package(args.package, args.overrides)
            if own_config and not (args.multirun or args.cfg or args.help or args.hydra_help or args.info):
                _check_single_run(args.overrides)
            app()
            if callbacks.report_failure is not None:  # the jobs are kept; exit 0 would say the report is there too
                fail(callbacks.report_failure, EXIT_RUN_FAILED)
            if args.cfg in ("job", "all") and own_config:
                _check_printed(args.overrides)
        except Interrupted as stop:
            if _no_job_began() and _sweep_dir() is not None:
                folders.abandon_claim()  # while the sweep's jobs were checked: no report of jobs all "missing"
                exit_interrupted(stop, "no job had started; nothing was kept")
            exit_interrupted(stop, _stop_the_jobs(stop.signum) + _what_is_kept())
        except (UsageError, Refused) as err:
            folders.abandon_claim()
            fail(str(err), EXIT_USAGE)
        except Exception as err:
            if user_wants_traces:
                raise
            # Before any job started it was the input (Hydra's parser, composition, the output folder), unless the
            # disk was full: that is the machine's fault, not the command's (exit 1).
            if _no_job_began():
                folders.abandon_claim()  # e.g. model=small,nope: the corrected sweep may have the folder
                if _disk_full(err):
                    fail(f"could not write the output folder: {_one_line(err)}; nothing ran", EXIT_RUN_FAILED)
                fail(_one_line(err), EXIT_USAGE)
            # A sweep stopped between jobs, in Hydra's own code (the next job's .hydra/ on a full disk; under
            # Hydra's own submitit_local, a job killed outright): as after an interrupt, the jobs still running in
            # processes of their own are stopped (they ran on unwatched, and the report listed them as they were),
            # and what is kept is said, with the partial report if the disk takes it.
            refusal = _sbatch_refused(err)
            if refusal is not None:
                fail(refusal, EXIT_USAGE)
            if _sweep_dir():
                fail(f"{_one_line(err)}; the sweep stopped: {_stop_the_jobs(signal.SIGTERM)}{_what_is_kept()}",
                     EXIT_RUN_FAILED)  # fmt: skip
            fail(_one_line(err), EXIT_RUN_FAILED)


@contextlib.contextmanager
def _hydra_config_kept() -> Iterator[None]:
    """Hydra's global config as the command found it, when it ends: Hydra's --help, --info and --cfg left theirs
    set, and a later compose in the same process (a benchmark's checks after a test's command) read its choices as
    its own (loader=dataloader against the benchmark's loader=resident)."""
    held = HydraConfig.instance().cfg
    try:
        yield
    finally:
        HydraConfig.instance().cfg = held


def _check_single_run(overrides: list[str]) -> None:
    """A single run's values, checked before Hydra makes its folder: batch_size=0 took 3.7 s (torch's import)
    and left a run folder holding only its refusal, one more with every typo. A sweep's jobs are checked by its
    sweeper, and a composition error is left to Hydra's own run, which words it."""
    from bench.schema import compose, validate_job

    # As the sweeper checks its jobs: a signal after the check, not inside OmegaConf's work on a node or the
    # components' import of torch; and Hydra's config as it was after it (Hydra's run keeps what it finds).
    held = HydraConfig.instance().cfg
    try:
        with interrupts.deferred():
            try:
                cfg = compose(overrides, return_hydra_config=True)
            except Exception:
                return
            if cfg.hydra.mode == RunMode.MULTIRUN:  # experiment=batch_size
                return
            validate_job(cfg)
    finally:
        HydraConfig.instance().cfg = held


def _check_printed(overrides: list[str]) -> None:
    """``--cfg job`` prints the config and runs nothing: a value the run would refuse (batch_size=0) says so after
    the print, exit 2, where the print alone read as an all-clear. A preset is a sweep (its ``hydra.sweeper.params``):
    each of its jobs is checked as the sweep would check it, and a line says that the print is before each job's own
    values; it had shown batch_size: 64, which no job of experiment=batch_size runs, and exit 0 for a sweep that
    refuses its job 3."""
    from omegaconf import OmegaConf

    from bench.schema import compose, validate_job
    from hydra_plugins.bench_sweeper import as_job, runs_here

    jobs = _preset_jobs(overrides)
    held = HydraConfig.instance().cfg  # each job checked with its own choices (precision=amp_fp16), as it runs
    try:
        for number, job in enumerate(jobs or [overrides]):
            cfg = compose(job, return_hydra_config=True)
            if jobs:  # as the sweep checks its jobs: numbered (seed=${hydra:job.num}), and a SLURM job's elsewhere
                as_job(cfg, number)
            try:
                validate_job(cfg, this_machine=runs_here(str(OmegaConf.select(cfg, "hydra.launcher._target_"))))
            except UsageError as err:
                own = " ".join(job[len(overrides) :])
                where = f"job {number} of the preset's sweep, {own}," if jobs else "the config above"
                raise UsageError(f"{err} ({where} would be refused)") from None
    finally:
        HydraConfig.instance().cfg = held
    if jobs:
        swept: dict[str, list[str]] = {}
        for job in jobs:
            for key, _, value in (o.partition("=") for o in job[len(overrides) :]):
                swept.setdefault(key, []).append(value)
        values = "; ".join(f"{key}={','.join(dict.fromkeys(v))}" for key, v in swept.items())
        # On stderr, below the print on stdout (which stays the config alone, for a pipe or a file); --cfg sets up
        # no logging.
        print(f"This preset is a sweep of {len(jobs)} job{'s' * (len(jobs) > 1)} ({values}): the config above is "
              "before each job's own values; every job's was checked", file=sys.stderr)  # fmt: skip


def _preset_jobs(overrides: list[str]) -> list[list[str]]:
    """The jobs of the sweep a preset makes (``hydra.mode: MULTIRUN`` with ``hydra.sweeper.params``), each as the
    command's overrides followed by the job's own; [] for a single run. As Hydra's basic sweeper expands it: the
    preset's values, then the command's, a value typed once replacing the preset's list."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from bench.resume import sweep_jobs
    from bench.schema import compose

    cfg = compose(overrides, return_hydra_config=True)
    params = cfg.hydra.sweeper.get("params") or {}
    if cfg.hydra.mode != RunMode.MULTIRUN or not params:
        return []
    typed = {o.key_or_group for o in OverridesParser.create().parse_overrides(overrides)}
    jobs = [[*overrides, *(o for o in job if schema.override_key(o) not in typed)]
            for job in sweep_jobs(params, overrides)]  # fmt: skip
    # experiment=batch_size batch_size=32 (or ++batch_size=32, which Hydra's split keeps apart from the preset's
    # key, four times the same job): one run, and the print is its config
    return [] if all(job == overrides for job in jobs) else jobs


def _check_package(package: str, overrides: list[str]) -> None:
    """``--cfg job -p KEY`` for a KEY the config does not have: Hydra wrote its own line and exit 1."""
    from omegaconf import OmegaConf

    from bench.schema import compose

    if OmegaConf.select(compose(overrides, return_hydra_config=True), package, default=None) is None:
        raise UsageError(f"-p {package}: the config has no value at {package}; name a key or node it has, such as "
                         "model, step or batch_size (--cfg job prints them all)")  # fmt: skip


def _sweep_dir() -> Path | None:
    """This command's sweep folder: its jobs' (a job ran here), else the one FolderGuard claimed (the jobs run
    in other processes under the submitit launchers, or none has started)."""
    return SESSION.sweep_dir or folders.claimed_sweep_dir()


def _no_job_began() -> bool:
    """Whether no job of this command has started. Under the submitit launchers the jobs run in other
    processes: there, once they were submitted, they may start at any time (a queued SLURM array)."""
    sweep = _sweep_dir()
    return (
        not SESSION.started and not folders.handed_over() and not (sweep is not None and folders.holds_run_dirs(sweep))
    )


#: seconds a stopped sweep waits for its jobs' own processes to record how they ended
JOBS_STOP_S = 30


def _stop_the_jobs(signum: int) -> str:
    """Under the submitit launchers the jobs are processes of their own, which a signal to this process alone
    (`kill PID`, not Ctrl-C, which reaches the whole group) does not stop: they ran on, and a resume then ran
    them again. Here they get the signal too, and the partial report waits for them to record how they ended.
    What is left to say (jobs that did not end, or went to SLURM) is the start of the closing line."""
    launcher = folders.handed_over()
    if not launcher:
        return ""
    with interrupts.deferred(reraise=False):
        alive = interrupts.stop_descendants(signum, JOBS_STOP_S)
    sweep = _sweep_dir()
    said = ""
    if alive:
        said += f"{len(alive)} job process(es) did not end within {JOBS_STOP_S} s and may still write into {sweep}; "
    if not launcher.endswith("LocalLauncher"):  # SLURM: the jobs run on other machines, queued or started
        said += f"jobs handed to the cluster go on: cancel them with scancel (their ids: {sweep}/.submitit); "
    return said


def _sbatch_refused(err: BaseException) -> str | None:
    """The closing line where sbatch refused the sweep's job array (a partition or account it does not know), else
    None. Nothing went to the cluster: the line had told the user to scancel jobs that do not exist and to resume
    with the same bad value, and the folder of "missing" jobs was kept. A new sweep's folder is given back."""
    import subprocess

    if folders.submissions():  # an earlier batch of the sweep went to the cluster: its jobs run on
        return None
    seen: BaseException | None = err
    while seen is not None and not (
        isinstance(seen, subprocess.CalledProcessError) and seen.cmd and Path(str(seen.cmd[0])).name == "sbatch"
    ):
        seen = seen.__cause__ or seen.__context__
    if seen is None:
        return None
    said = [line.strip().removeprefix("sbatch: error: ") for line in str(seen.stderr or "").splitlines()]
    words = "; ".join(line for line in said if line) or f"exit {seen.returncode}"
    folders.hand_over("")  # the array was never queued: no job of it can write into the folder
    sweep = _sweep_dir()
    given_back = sweep is not None and folders.abandon_claim(also=(SUBMITIT_DIR,))
    kept = "" if given_back or sweep is None else f"; {as_typed(sweep)} is as it was"
    return f"sbatch refused the sweep's jobs: {words}; nothing was submitted{kept}"


#: the folder submitit keeps its pickled jobs, sbatch script and logs in, inside the sweep's
SUBMITIT_DIR = ".submitit"


#: Hydra's warning for a folder named in hydra.searchpath on the command line that it cannot read (errors.HYDRA_LINES
#: words it)
SEARCHPATH_MISSING = r"provider=hydra\.searchpath in command-line, path=.* is not available"


def _register_sweeper() -> None:
    """bench's sweeper (resume=true) by Hydra's public registration: an editable install hides the
    hydra_plugins namespace from Hydra's own scan. The sweeper registers bench's launchers when a sweep names one."""
    from hydra.core.plugins import Plugins

    plugins = Plugins.instance()  # first: its scan re-executes Hydra's core plugin modules, BasicSweeper's too
    from hydra_plugins.bench_sweeper import BenchSweeper  # after the scan, on purpose

    plugins.register(BenchSweeper)


def _hydra_parser() -> argparse.ArgumentParser:
    """Hydra's own argument parser, built once per command, answering an error with one line and exit 2
    instead of its usage screen."""
    from hydra._internal.utils import get_args_parser

    parser = get_args_parser()

    def error(message: str) -> NoReturn:
        fail(message, EXIT_USAGE)

    parser.error = error  # type: ignore[method-assign]
    return parser


def options_first(argv: list[str], parser: argparse.ArgumentParser) -> list[str]:
    """``argv`` with Hydra's options (``-m``, ``--cfg job``, ``-cn NAME`` ...) ahead of the overrides, each option
    with its value, the overrides in their order: so ``recipe=fast -m batch_size=16,64`` is a sweep, as typed.
    Hydra's argparse parser takes the overrides in one run only, and refuses any after an option."""
    actions = {flag: action for action in parser._actions for flag in action.option_strings}
    options: list[str] = []
    overrides: list[str] = []
    last: list[str] = []  # an option whose value is optional, given none (--info): after the overrides
    i = 0
    while i < len(argv):
        arg = argv[i]
        i += 1
        if not arg.startswith("-"):
            overrides.append(arg)
            continue
        action = actions.get(arg)
        # The next word is this option's value: always for one that takes a value (-cn NAME), and for
        # --info only when it is one of its choices (--info config), since its value is optional.
        takes_next = action is not None and i < len(argv) and (
            action.nargs is None or (action.nargs == "?" and argv[i] in (action.choices or ())))  # fmt: skip
        if takes_next:
            options += [arg, argv[i]]
            i += 1
        elif action is not None and action.nargs == "?":  # ahead of an override, it would take it as its value
            last.append(arg)
        else:
            options.append(arg)  # an unknown option too: the parser says so in one line
    return options + overrides + last


def _check_arguments(argv: list[str], parser: argparse.ArgumentParser) -> argparse.Namespace:
    """Hydra's parsed arguments; what its parser would answer with a usage screen, or a deep ValueError, is one
    line and exit 2."""
    args = parser.parse_args(argv)
    if args.experimental_rerun is not None:  # Hydra's rerun reads a config.pickle, which bench does not write
        fail("--experimental-rerun: bench does not keep Hydra's pickle; rerun a run with "
             "python -m bench.reproduce RUN_DIR", EXIT_USAGE)  # fmt: skip
    for arg in args.overrides:  # the overrides alone: `--cfg hydra` names a package, not a key
        if arg.startswith("="):  # Hydra's parser lets this through to a ValueError deep in composition
            fail(f"{arg}: an override needs a key before '=' (key=value)", EXIT_USAGE)
        # Without the guard, Hydra writes a new .hydra/ over a finished run's before any check of bench's runs:
        # refused whether it is named (hydra.callbacks.folders...) or replaced with the node above it.
        key = schema.override_key(arg)
        if key in ("hydra", "hydra.callbacks") or _names(key, "hydra.callbacks.folders"):
            fail(f"{arg}: the folder guard stays; it keeps finished runs from being overwritten", EXIT_USAGE)
        # A component's setting removed: its class's default would run where the records show none (or the
        # run would fail after its start, for a setting without one). Settings are set, never removed.
        if arg.startswith("~") and key.split(".")[0] in ("model", "dataset", "loader") and "." in key:
            fail(f"{arg}: a component's setting cannot be removed; set it instead: {key}=...", EXIT_USAGE)
        # Without it a sweep ended with no report and no word (~hydra.callbacks.report), or with 8 lines of
        # Hydra's warnings (hydra.callbacks.report=null). A callback of one's own is added beside it.
        if _names(key, "hydra.callbacks.report"):
            fail(f"{arg}: the sweep's report stays (it is built at the end of every sweep); add a callback of your "
                 "own with +hydra.callbacks.NAME._target_=...", EXIT_USAGE)  # fmt: skip
    try:
        schema.check_switches(args.overrides)
    except ConfigError as err:
        fail(str(err), EXIT_USAGE)
    return args


def _names(key: str, node: str) -> bool:
    """Whether ``key`` is ``node`` or a key inside it (not another node whose name begins the same)."""
    return key == node or key.startswith(f"{node}.")


#: bench's callbacks, which a config without bench's defaults list would run without
CALLBACKS = {"folders": "bench.callbacks.FolderGuard", "report": "bench.callbacks.ReportCallback"}


def with_callbacks(argv: list[str], args: argparse.Namespace) -> list[str]:
    """``argv``, plus bench's callbacks where ``args`` (Hydra's parsed options) choose another primary config
    (-cp, -cn, -cd: a run's saved .hydra/config.yaml, README "Reproducing"): it has no defaults list, so
    without them nothing would guard its folder (a finished run's, given as hydra.run.dir, would be
    overwritten) and a sweep would get no report."""
    if not (args.config_path or args.config_name or args.config_dir):
        return argv
    return [*argv, *(f"++hydra.callbacks.{name}._target_={target}" for name, target in CALLBACKS.items())]


def _one_line(err: BaseException) -> str:
    """An OSError anywhere in the chain says which path and why; anything else, Hydra's message cut short."""
    if type(err).__name__ == "UncompletedJobError":  # submitit: "Job 12 (task: 0) with path P" / "has not produced
        first, *rest = str(err).strip().splitlines()  # any output (state: ...)": the reason is on its second line
        return f"submitit {first[0].lower()}{first[1:]} {rest[0].strip() if rest else ''}".strip()
    found = next(_os_errors(err), None)
    return os_error_line(found) if found is not None else describe(err)


def _os_errors(err: BaseException) -> Iterator[OSError]:
    """The filesystem's errors in the exception's chain, outermost first. Hydra's MissingConfigException is an
    IOError without an errno: a config error, not the filesystem, so not one of them."""
    cause: BaseException | None = err
    while cause is not None:
        if isinstance(cause, OSError) and cause.errno is not None:
            yield cause
        cause = cause.__cause__ or cause.__context__


def _disk_full(err: BaseException) -> bool:
    """Whether a full disk (or a file-size or quota limit) is anywhere in the exception's chain."""
    return any(cause.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG) for cause in _os_errors(err))


def as_typed(path: Path) -> str:
    """A run's folder as the closing lines write it: relative to where the command started, where it is under
    it (as Hydra's default, outputs/runs/<time>, and most hydra.run.dir values are typed), else in full."""
    start = SESSION.cwd or Path.cwd()
    return os.path.relpath(path, start) if Path(path).absolute().is_relative_to(start) else str(path)


def _status(run_dir: Path) -> str | None:
    """A run's recorded status, None where its metrics.json is absent or cannot be read."""
    from bench.results import load_metrics

    try:
        return load_metrics(run_dir).get("status")
    except Exception:
        return None


def _what_is_kept() -> str:
    """After a stop (a signal, or a sweep that cannot go on): write what can still be written (a sweep's
    partial report) and say where the results are."""
    sweep_dir = _sweep_dir()
    with interrupts.deferred(reraise=False):
        if sweep_dir is None:
            if not SESSION.run_dir:
                return "nothing was started"
            # A signal in the moment after the run ended: it had finished, which "recorded" alone did not say.
            said = "had finished (ok) and is" if _status(Path(SESSION.run_dir)) == "ok" else "is"
            return f"the run {said} recorded in {as_typed(SESSION.run_dir)}"
        from bench.report import build_report
        from bench.runs import NOT_RECORDED, status_counts

        try:
            report = build_report([sweep_dir])
        except Exception as err:  # the job folders are safe on disk; the report can be built later
            return (f"finished jobs are kept in {sweep_dir} (no report: {_one_line(err)}; build it later with "
                    f"python -m bench.report {sweep_dir})")  # fmt: skip
        done = status_counts(report.runs)
        # How to finish it, where a job is left to run: the partial report alone did not say.
        unfinished = bool(report.runs["status"].isin(["interrupted", *NOT_RECORDED]).any())
        resume = f"; to finish it: the same command with hydra.sweep.dir={sweep_dir} resume=true" * unfinished
        # A signal after the last job ended (in the report's own writing) leaves no job to finish: not "partial".
        return f"{done}; {'partial ' * unfinished}report: {sweep_dir / folders.REPORT_FILE}{resume}"
