"""Resume a sweep: run only the jobs whose folder has no ``ok`` (or ``diverged``) metrics.json, never touching a
finished one.

``python -m bench -m <the same sweep> hydra.sweep.dir=D resume=true``. A job is identified by a hash of its
composed config (not by its number, which Hydra reassigns from 0 in every sweep): a job whose config
already finished ``ok`` or ``diverged`` in D is skipped; one that started but did not finish (``interrupted``,
``failed``, no metrics.json) runs again in its own folder; a job D has never seen gets the number the sweep's first plan
(``multirun.yaml``) gave it, else its number in this sweep, where that folder is free and the first plan gave
that number to no job, else the next such one. The
sweeper (hydra_plugins.bench_sweeper.BenchSweeper, Hydra's basic sweeper otherwise) launches the jobs in
runs of consecutive numbers, so any launcher (local, submitit) places them in the right folders.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from bench.errors import UsageError, one_line, os_error_line
from bench.folders import ADDED_FILE, CONFIG_FILE, CONFIG_SUBDIR, METRICS_FILE, SWEEP_FILE, job_number
from bench.schema import override_key

#: keys that do not define a job: how it was started, not what it runs
NOT_THE_JOB = ("hydra", "resume")
#: a job's statuses that are its result, kept by a resume: a run that diverged diverges again with its seed, and
#: its rerun, stopped, had turned a finished "diverged" into "interrupted"
FINISHED = ("ok", "diverged")


def job_hash(config: DictConfig | dict[str, Any]) -> str:
    """A job's identity: its config as composed (interpolations unresolved, as Hydra saves it)."""
    data = OmegaConf.to_container(config, resolve=False) if isinstance(config, DictConfig) else dict(config)
    assert isinstance(data, dict)
    kept = {k: v for k, v in data.items() if k not in NOT_THE_JOB}
    return hashlib.sha256(json.dumps(kept, sort_keys=True, default=str).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Existing:
    number: int
    hash: str | None
    finished: bool


def existing_jobs(sweep_dir: Path) -> list[Existing]:
    """The numbered job folders of a sweep: each one's config hash and whether it finished (FINISHED)."""
    found = []
    for folder in sorted(p for p in sweep_dir.iterdir() if p.is_dir() and job_number(p) is not None):
        try:
            saved = OmegaConf.load(folder / CONFIG_SUBDIR / CONFIG_FILE)
            identity: str | None = job_hash(saved)
        except Exception:  # no saved config: the folder is a job that cannot be matched, never overwritten
            identity = None
        try:
            finished = json.loads((folder / METRICS_FILE).read_text()).get("status") in FINISHED
        except (OSError, ValueError, AttributeError):
            finished = False
        found.append(Existing(job_number(folder) or 0, identity, finished))
    return found


@dataclass
class Plan:
    """Which jobs run, in which folders (job numbers); which are skipped as finished."""

    run: list[tuple[int, list[str]]] = field(default_factory=list)
    skipped: list[tuple[int, list[str]]] = field(default_factory=list)
    #: numbers of jobs to run that neither the folder nor the sweep's first plan holds: this command grows the sweep
    added: list[int] = field(default_factory=list)
    #: numbers of the folder's jobs that this command does not list: kept, and in the report
    absent: list[int] = field(default_factory=list)
    #: numbers of planned jobs that never started and that this command does not list: missing in the report
    unstarted: list[int] = field(default_factory=list)

    def batches(self) -> list[tuple[int, list[list[str]]]]:
        """The jobs to run as runs of consecutive numbers: (first number, their overrides)."""
        out: list[tuple[int, list[list[str]]]] = []
        for number, overrides in sorted(self.run):
            if out and out[-1][0] + len(out[-1][1]) == number:
                out[-1][1].append(overrides)
            else:
                out.append((number, [overrides]))
        return out


def planned_overrides(sweep_dir: Path, added: dict[int, list[str]] | None = None) -> list[list[str]]:
    """Each job's overrides in the sweep's first plan (its ``multirun.yaml``, which a resume leaves as it is),
    in job order, as Hydra's basic sweeper expands them, then the jobs resumes added (``added``, as added_jobs
    reads them; else read here) at their numbers ([] for a number neither gave); [] when there is none to read
    (another sweeper)."""
    try:
        saved = OmegaConf.load(sweep_dir / SWEEP_FILE)
        sweeper = str(OmegaConf.select(saved, "hydra.sweeper._target_", default=""))
        if not sweeper.endswith(("BasicSweeper", "BenchSweeper")):  # another sweeper plans its own way
            return []
        params = OmegaConf.select(saved, "hydra.sweeper.params") or {}
        jobs = sweep_jobs(params, list(OmegaConf.select(saved, "hydra.overrides.task") or []))
    except Exception:  # an unreadable plan only costs a new job its planned number
        return []
    for number, overrides in sorted((_added(sweep_dir) if added is None else added).items()):
        jobs += [[] for _ in range(number + 1 - len(jobs))]
        jobs[number] = jobs[number] or overrides
    return jobs


def _added(sweep_dir: Path, strict: bool = False) -> dict[int, list[str]]:
    """The jobs earlier resumes added (ADDED_FILE): {number: overrides}; {} where none did. One that cannot be read
    is {} too (a report then misses their rows), or, ``strict``, a UsageError (a resume would write over it)."""
    path = sweep_dir / ADDED_FILE
    if not path.exists():
        return {}
    try:
        saved = OmegaConf.to_container(OmegaConf.load(path))
        return {int(n): [str(o) for o in overrides] for n, overrides in saved.items()}  # type: ignore[union-attr]
    except Exception as err:
        if strict:
            raise UsageError(f"{path} cannot be read ({one_line(err)}): it lists the jobs earlier resumes added "
                             "to the sweep; mend or remove it") from None  # fmt: skip
        return {}


def added_jobs(sweep_dir: Path) -> dict[int, list[str]]:
    """The jobs earlier resumes added to the sweep, {number: overrides}; a UsageError where ADDED_FILE exists but
    cannot be read (a resume refuses it: the jobs it lists would silently drop out of the plan and the report)."""
    return _added(sweep_dir, strict=True)


def record_added(sweep_dir: Path, jobs: dict[int, list[str]], earlier: dict[int, list[str]] | None = None) -> None:
    """Record the jobs this resume adds to the sweep (beside ``earlier``, as added_jobs read them; else read here),
    before they run: stopped before one of them started, the partial report had no row for it ("3 ok", not "3 ok,
    1 missing") and the closing line no resume hint."""
    from bench.results import write_atomically

    now = {n: [o for o in overrides if override_key(o) != "resume"] for n, overrides in jobs.items()}
    merged = {**(added_jobs(sweep_dir) if earlier is None else earlier), **now}
    try:
        write_atomically(sweep_dir / ADDED_FILE, OmegaConf.to_yaml({str(n): merged[n] for n in sorted(merged)}))
    except OSError as err:
        raise UsageError(f"hydra.sweep.dir={sweep_dir}: cannot record the jobs this resume adds ({os_error_line(err)})"
                         "; nothing was run") from None  # fmt: skip


def sweep_jobs(params: Any, overrides: Sequence[str]) -> list[list[str]]:
    """Each job's overrides, in job order, as Hydra's basic sweeper expands a sweep: the config's
    ``hydra.sweeper.params`` (a preset's), then the command's overrides."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parsed = OverridesParser.create().parse_overrides([*(f"{k}={v}" for k, v in params.items()), *overrides])
    return [list(job) for batch in BasicSweeper.split_arguments(parsed, None) for job in batch]


def _what_it_runs(overrides: Sequence[str]) -> tuple[str, ...]:
    """A job's overrides without those that do not define it (resume=true), in any order."""
    return tuple(sorted(o for o in overrides if override_key(o).split(".")[0] not in NOT_THE_JOB))


def plan(jobs: Sequence[tuple[list[str], str]], existing: Sequence[Existing],
         planned: Sequence[Sequence[str]] = ()) -> Plan:  # fmt: skip
    """Match the sweep's jobs (overrides, config hash) with the folders already there; a job no folder holds
    takes its number in ``planned`` (the sweep's first plan), where that folder is free."""
    # A sweep may hold the same config twice (model=medium,large,medium): folders are matched one to one.
    finished: dict[str, list[int]] = {}
    unfinished: dict[str, list[int]] = {}
    for e in existing:
        if e.hash:
            (finished if e.finished else unfinished).setdefault(e.hash, []).append(e.number)
    taken = {e.number for e in existing}
    result = Plan()
    new: list[tuple[int, list[str]]] = []
    for index, (overrides, identity) in enumerate(jobs):
        if finished.get(identity):
            result.skipped.append((finished[identity].pop(0), overrides))
        elif unfinished.get(identity):
            result.run.append((unfinished[identity].pop(0), overrides))
        else:
            new.append((index, overrides))
    # A config the folder has never seen takes the number the first plan gave it (a job that never started, or
    # whose folder was removed, resumed with the values in another order), else its own number in this sweep,
    # where that folder is free, so the report's plan finds it; else the next free one.
    numbers = {number for number, _ in result.run} | taken
    first_plan: dict[tuple[str, ...], list[int]] = {}
    for number, overrides in enumerate(planned):
        first_plan.setdefault(_what_it_runs(overrides), []).append(number)
    placed: dict[int, int] = {}  # index in this sweep → number: first the first plan's, so none is taken
    for index, overrides in new:
        free = [n for n in first_plan.get(_what_it_runs(overrides), []) if n not in numbers]
        if free:
            placed[index] = free[0]
            numbers.add(free[0])
    # The first plan's numbers stay its jobs' even where this command does not run them: a config new to the sweep
    # in one of them took the place of a planned job that never ran, whose "missing" row the report then lost.
    reserved = set(range(len(planned)))
    for index, overrides in new:
        if index not in placed:
            held = numbers | reserved
            placed[index] = index if index not in held else max(held, default=-1) + 1
            numbers.add(placed[index])
        # With no first plan to read, whether a job is new cannot be told.
        if planned and _what_it_runs(overrides) not in first_plan:
            result.added.append(placed[index])
        result.run.append((placed[index], overrides))
    result.absent = sorted(n for left in (*finished.values(), *unfinished.values()) for n in left)
    # Planned (by the first plan or a resume) but never started, and not in this command: the report keeps them
    # as missing, which a resume with the first plan's values had not said (a typo a stopped resume recorded).
    running = {number for number, _ in result.run}
    result.unstarted = [n for n, job in enumerate(planned) if job and n not in taken and n not in running]
    return result
