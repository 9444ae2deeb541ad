"""Run folders → one DataFrame, the input of every report and comparison; and one run folder, read
strictly (:func:`load_source`), the input of a reproduction.

Rows come from each folder's ``metrics.json``, never from return values, so they can be collected after
any launcher, after an interrupted sweep, and across machines. A folder whose metrics are unreadable still
gives a row (``unreadable``) with its config read from ``.hydra/config.yaml``; a job number the sweep
should have but that has no folder gives a ``missing`` row.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import yaml
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from bench.diagnosis import diagnose
from bench.errors import UsageError, one_line
from bench.folders import (
    CONFIG_FILE,
    CONFIG_SUBDIR,
    HYDRA_FILE,
    OVERRIDES_FILE,
    RAN_IN_KEY,
    SWEEP_FILE,
    is_run_dir,
    job_number,
    job_running,
)
from bench.metrics import METRICS, finite, summarize
from bench.results import MetricsError, load_metrics
from bench.resume import planned_overrides
from bench.schema import as_override, is_single_value, lab_problem
from bench.tables import as_text, cell

log = logging.getLogger(__name__)

#: What a run was configured with: the columns a sweep can vary.
CONFIG_COLUMNS = [
    "model", "device", "precision", "dataset", "loader", "recipe", "batch_size", "workers", "epochs", "seed",
]  # fmt: skip
#: images in each of the lab's epochs (CIFAR-10's whole training set): its epoch times are per this many
LAB_EPOCH_IMAGES = 50_000
#: what a run resolved beyond its config: cuDNN autotuning, images per epoch (the dataset's size), and the
#: model's parameters
RUN_FACTS = ["cudnn_benchmark", "train_samples", "params", "step_as_timed"]
ENV_COLUMNS = [
    "env_gpu", "env_torch", "env_cuda", "env_cudnn", "env_cpu", "env_hostname", "env_git_commit", "env_git_dirty",
]  # fmt: skip
#: columns that count things: whole numbers in summary.csv even where a skipped or missing job leaves a gap
#: (pandas makes such a column float: 512.0 images, 1.0 repeats)
COUNT_COLUMNS = ["job", "batch_size", "workers", "epochs", "seed", "train_samples", "params", "repeats",
                 "timed_epochs", "flops_per_sample", "max_batch", "oom_batch"]  # fmt: skip
#: Statuses a run folder can have in a report besides metrics.json's own.
UNREADABLE = "unreadable"
MISSING = "missing"
#: a job folder without a metrics.json that a live process holds: the job has not finished (a report of a sweep
#: that is still running), which "unreadable" had called a run that did not finish writing one
RUNNING = "running"
#: the statuses of a row without a metrics.json to read
NOT_RECORDED = (MISSING, UNREADABLE, RUNNING)
DEFAULT_EXPERIMENT = "Runs"


#: columns from each run's diagnosis (bench.diagnosis): the verdict, its evidence, the next step, learning
DIAGNOSIS_COLUMNS = ["verdict", "evidence", "next", "learned", "noisy"]
#: task=max_batch (bench.capacity): why the search stopped, and the smallest batch that ran out of memory;
#: together they say whether max_batch is the largest batch that trains or only one that does
SEARCH_COLUMNS = ["search", "oom_batch"]


def summary_columns(settings: Sequence[str] = ()) -> list[str]:
    """summary.csv's columns: the config (and any other ``settings`` that vary), the status, the diagnosis,
    every metric of the table, then where the run is."""
    return ["job", "task", *CONFIG_COLUMNS, *settings, *RUN_FACTS, "status", *DIAGNOSIS_COLUMNS,
            *(m.key for m in METRICS), *SEARCH_COLUMNS, "device_name", "error", "experiment", "run_dir"]  # fmt: skip


def find_run_dirs(path: Path, *, planned: bool = False) -> list[Path]:
    """A run folder is itself; a sweep folder gives its job folders in job order (none yet if ``planned``)."""
    if not path.exists():
        raise UsageError(f"{path}: no such folder")
    if not path.is_dir():
        raise UsageError(f"{path} is not a folder")
    if is_run_dir(path) and not (path / SWEEP_FILE).is_file():  # a stray metrics.json does not unmake a sweep
        return [path]
    try:
        children = [p for p in path.iterdir() if p.is_dir() and is_run_dir(p)]
    except OSError as err:
        raise UsageError(f"{path}: cannot read: {err.strerror or err}") from None
    if not children and not planned:
        # A folder of sweeps (outputs/sweeps) holds runs a level further down: name its sweeps instead.
        sweeps = sorted(p for p in path.iterdir() if p.is_dir() and (p / SWEEP_FILE).is_file())
        if sweeps:
            raise UsageError(f"{path} holds {len(sweeps)} sweep(s), not runs: pass the sweeps themselves, e.g. "
                             f"{path / sweeps[-1].name} (the newest by name), or all of them: {path}/*")  # fmt: skip
        # A folder of those (outputs/, which holds runs/ and sweeps/): name them, as a place to start.
        below = [f"{sub} ({what})" for sub, what in _what_is_below(path)]
        if below:
            raise UsageError(
                f"{path} holds no bench runs itself, but its subfolders do: {', '.join(below)}; pass "
                "a folder of runs, or the sweeps themselves (a folder of sweeps is not one sweep)"
            )
        raise UsageError(f"{path} holds no bench runs (no metrics.json or .hydra/ in it or its subfolders)")
    return sorted(children, key=lambda p: (job_number(p) is None, job_number(p) or 0, p.name))


def _what_is_below(path: Path) -> list[tuple[Path, str]]:
    """The subfolders of ``path`` that hold runs or sweeps, each with how many: one level down, never deeper."""
    found = []
    for sub in sorted(p for p in path.iterdir() if p.is_dir()):
        try:
            folders = [q for q in sub.iterdir() if q.is_dir()]
        except OSError:  # unreadable: it holds nothing that can be reported on
            continue
        sweeps = sum((q / SWEEP_FILE).is_file() for q in folders)
        runs = sum(is_run_dir(q) and not (q / SWEEP_FILE).is_file() for q in folders)
        said = [f"{n} {kind}{'s' * (n > 1)}" for n, kind in ((runs, "run"), (sweeps, "sweep")) if n]
        if said:
            found.append((sub, " and ".join(said)))
    return found


def saved_config(run_dir: Path) -> dict[str, Any]:
    """The run's ``.hydra/config.yaml`` as plain data; {} when it is missing or broken."""
    try:
        cfg = OmegaConf.to_container(OmegaConf.load(run_dir / CONFIG_SUBDIR / CONFIG_FILE), resolve=False)
    except Exception:  # a missing or broken config only costs the row its labels
        return {}
    return cfg if isinstance(cfg, dict) else {}


#: config keys recorded under a shorter column name
ALIASES = {f"{group}.name": group for group in ("model", "device", "precision", "dataset", "loader", "recipe")}
#: config keys that never define a run: labels of the preset, and Hydra's own control keys
NOT_SETTINGS = ("lab", "resume")


def flat_config(cfg: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """A saved config as ``{dotted key: value}``, named as summary.csv names its columns."""
    flat: dict[str, Any] = {}
    for key, value in cfg.items():
        dotted = f"{prefix}{key}"
        if dotted in NOT_SETTINGS or key == "_target_":
            continue
        if isinstance(value, dict):
            flat.update(flat_config(value, f"{dotted}."))
        else:
            flat[ALIASES.get(dotted, dotted)] = value
    return flat


#: a key's cell where a run's saved config lacks a key that another run's command added (+model.width=2)
NOT_SET = "(not set)"


def added_keys(run_dir: Path) -> set[str]:
    """The keys the run's command added with ``+`` (its ``.hydra/overrides.yaml``): ``+model.width=2``."""
    try:
        overrides = yaml.safe_load((Path(run_dir) / CONFIG_SUBDIR / OVERRIDES_FILE).read_text())
    except Exception:  # none saved (a run of another tool, a hand-made folder): it added nothing known
        return set()
    if not isinstance(overrides, list):
        return set()
    return {_column(str(o).split("=", 1)[0]) for o in overrides if str(o).startswith("+")}


def set_by_some(configs: Sequence[tuple[dict[str, Any], set[str]]]) -> set[str]:
    """Keys that some runs' commands added (``+model.width=2``) and other runs' saved configs lack: the wider net
    beside the plain model is another config, though no value of a shared key differs. Keys bench's own config
    gained between versions are no user's addition, so runs of an older bench still pair with a newer one's.
    ``configs``: (flat config, keys its command added) per run; an empty config (unreadable, or a missing job's)
    says nothing of which keys it had."""
    added = set().union(*(keys for _, keys in configs))
    return {key for key in added if any(cfg and key not in cfg for cfg, _ in configs)}


def _setting(config: dict[str, Any], key: str) -> Any:
    """A setting's value as the user writes it: null and true/false as in an override (a report's sentences
    name them so: step.channels_last=false). A setting a run gives as null (the device's choice) is a value
    of its own, not a gap: else null against false would read as nothing swept."""
    if key not in config:
        return None
    value = config[key]
    return as_override(value) if value is None or isinstance(value, bool) else value


def _unused_by_the_task(row: dict[str, Any]) -> dict[str, Any]:
    """A max_batch search picks its own batches and trains no epochs: the config's unused batch_size and epochs
    (64 and 3) sat beside the peak of the search's largest batch."""
    if row.get("task") == "max_batch":
        row.update(batch_size=None, epochs=None)
    return row


def _row(run_dir: Path, sweep: Path) -> dict[str, Any]:
    cfg = saved_config(run_dir)
    # A lab preset's description as saved; one of the wrong shape (a hand-edited config) is a plain run's.
    problem = lab_problem(cfg.get("lab"))
    if problem:
        log.warning("%s: its saved lab description is unreadable (%s); reported as a plain run", run_dir, problem)
    lab = cfg.get("lab") if isinstance(cfg.get("lab"), dict) and problem is None else {}
    row: dict[str, Any] = {
        "job": job_number(run_dir),
        "run_dir": str(run_dir),
        "sweep": str(sweep),
        "experiment": lab.get("title", DEFAULT_EXPERIMENT),
        "lab": lab or None,
        "_config": flat_config(cfg),
    }
    try:
        metrics = load_metrics(run_dir)
    except MetricsError as err:
        # Still say what the run was, from its saved config, so the reader can tell which point is lost.
        # Single values only: a list edited in where a number was (batch_size: [1, 2]) is no column's value.
        config = row["_config"]
        row.update({key: config.get(key) if is_single_value(config.get(key)) else None
                    for key in (*CONFIG_COLUMNS, "task")})  # fmt: skip
        if row["device"] == "auto":  # what it chose is in the metrics; "auto" beside "cpu" would read as swept
            row["device"] = None
        if job_running(run_dir):
            log.warning("%s is still running: its row says so, and its figures are not in this report yet", run_dir)
            row.update(status=RUNNING, error="still running: a live process holds its folder")
        else:
            row.update(status=UNREADABLE, error=str(err))
        return _unused_by_the_task(row)
    row.update({k: metrics.get(k) for k in (*CONFIG_COLUMNS, *RUN_FACTS, "status", "error", "device_name")})
    row["task"] = metrics.get("task") or "train"
    _unused_by_the_task(row)
    # Files written before a metric existed get it derived from their epochs, where it can be. A metric the
    # file has as null stays null: the report says what metrics.json says.
    derived = summarize(metrics.get("epochs_detail") or [])
    row.update({m.key: metrics[m.key] if m.key in metrics else derived.get(m.key) for m in METRICS})
    found = metrics.get("diagnosis") or (diagnose({**metrics, **row}) if metrics["status"] == "ok" else {})
    row.update({k: found.get(k) for k in DIAGNOSIS_COLUMNS})
    row["memory"] = metrics.get("memory") or None
    row["notes"] = [str(n) for n in metrics.get("notes") or []]  # what changes what its numbers mean (report.md)
    row["step"] = metrics.get("step") or None  # the step as timed, 'auto' resolved
    row["step_as_timed"] = step_text(row["step"])  # and as summary.csv's text: compile=none, adam=fused, ...
    capacity = metrics.get("capacity") or {}
    row.update(search=capacity.get("stopped"), oom_batch=capacity.get("smallest_failing"))
    env = metrics.get("env") or {}
    row.update({col: env.get(col.removeprefix("env_")) for col in ENV_COLUMNS})
    row.update({key: finite(metrics.get(key)) for key in SPANS}, gpu_uuid=env.get("gpu_uuid"))
    return row


def planned_jobs(sweep: Path) -> list[dict[str, Any]]:
    """Each job's overrides as ``{column: value}``, in job order, as Hydra's basic sweeper expands the
    sweep's ``multirun.yaml``; [] when there is none to read (a single run, another sweeper)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parser = OverridesParser.create()
    try:
        return [{_column(o.key_or_group): o.value() for o in parser.parse_overrides(job)}
                for job in planned_overrides(sweep)]  # fmt: skip
    except Exception:  # an unreadable plan only costs the report its `missing` rows past the last folder
        return []


def _column(key: str) -> str:
    key = key.lstrip("+~")
    return ALIASES.get(f"{key}.name", ALIASES.get(key, key))


def load_runs(paths: Sequence[Path]) -> pd.DataFrame:
    """One row per run folder under ``paths``, in the order given and by job number within a sweep.

    A job the sweep planned (``multirun.yaml``) or numbered below a present one, but that has no folder,
    becomes a ``missing`` row with the config its overrides give. Config keys that differ between the
    runs, beyond the standard columns, become columns of their own (e.g. ``lr``).
    """
    rows: list[dict[str, Any]] = []
    # Each folder given, and each run folder read, resolved: the same folder twice, a sweep beside one of its
    # jobs, or a link to a run read elsewhere would count runs twice in every table, plot and median.
    given: dict[Path, Path] = {}
    read: dict[Path, Path] = {}
    for path in paths:
        sweep = Path(path)
        if sweep.resolve() in given:
            raise UsageError(f"{sweep} is given twice{_also(sweep, given)}: its runs would count twice")
        given[sweep.resolve()] = sweep
        plan = planned_jobs(sweep)
        run_dirs = find_run_dirs(sweep, planned=bool(plan))
        for run_dir in run_dirs:
            if run_dir.resolve() in read:
                raise UsageError(f"{run_dir} is read twice{_also(run_dir, read)}: it would count twice")
            read[run_dir.resolve()] = run_dir
        present = {n for n in (job_number(p) for p in run_dirs) if n is not None}
        for run_dir in run_dirs:
            rows.append(_row(run_dir, sweep))
        if run_dirs != [sweep]:
            last = max(present, default=-1) + 1
            for n in range(max(last, len(plan))):
                if n not in present:
                    rows.append(_missing_row(sweep, n, plan[n] if n < len(plan) else None, rows))
    df = pd.DataFrame(rows)
    recorded = [r["_config"] if r.get("status") != MISSING else {} for r in rows]  # a missing job's: its overrides
    unset = set_by_some([(cfg, added_keys(Path(r["run_dir"]))) for cfg, r in zip(recorded, rows, strict=True)])
    extras = _varying_settings(df, unset)
    for key in extras:
        df[key] = [NOT_SET if key in unset and full and key not in full else _setting(cfg or {}, key)
                   for cfg, full in zip(df["_config"], recorded, strict=True)]  # fmt: skip
    for col in [*summary_columns(), *ENV_COLUMNS, *RECORD_PARTS]:
        if col not in df:
            df[col] = None
    order = {str(p): i for i, p in enumerate(paths)}
    df["_order"] = df["sweep"].map(order)
    return df.sort_values(["_order", "job"], kind="stable", na_position="last").drop(columns=["_order", "_config"])


def _also(path: Path, seen: dict[Path, Path]) -> str:
    earlier = seen[path.resolve()]
    return "" if earlier == path else f" (also as {earlier})"


#: the config group whose options set other columns (recipe=fast sets the loader); an experiment does too, but one
#: sweep runs one experiment
COMPOSITE_GROUP = "recipe"


def _missing_row(
    sweep: Path, job: int, overrides: dict[str, Any] | None, rows: list[dict[str, Any]]
) -> dict[str, Any]:  # fmt: skip
    """A job without a folder: its overrides where the sweep's plan gives them (None where it does not), and each
    other config column that every job of its sweep that ran shares: the sweep's own setting, which the job
    would have run with too, so that a comparison pairs it with its config. Only where its overrides are known
    and choose no recipe the others did not run: with no plan it would take another job's batch size, and as
    recipe=fast's job, recipe=lab's loader."""
    lab = next((r["lab"] for r in reversed(rows) if r.get("lab")), None)
    ran = [r for r in rows if r.get("sweep") == str(sweep) and r.get("status") not in NOT_RECORDED]
    shared = {}
    recipe = (overrides or {}).get(COMPOSITE_GROUP)
    if overrides is not None and (recipe is None or all(r.get(COMPOSITE_GROUP) == recipe for r in ran)):
        for key in CONFIG_COLUMNS:
            values = {repr(r.get(key)): r.get(key) for r in ran}
            if len(values) == 1 and key not in overrides:
                shared[key] = next(iter(values.values()))
    overrides = overrides or {}
    return {
        **shared,
        **{k: v for k, v in overrides.items() if k in CONFIG_COLUMNS},
        "job": job, "run_dir": str(sweep / str(job)), "sweep": str(sweep), "lab": lab,
        "experiment": lab.get("title", DEFAULT_EXPERIMENT) if lab else DEFAULT_EXPERIMENT,
        "status": MISSING, "error": "no job folder: the job never started or its folder was removed",
        "_config": overrides,
    }  # fmt: skip


def _varying_settings(df: pd.DataFrame, unset: set[str]) -> list[str]:
    """Config keys, other than the standard columns, that take more than one value across the runs, or that
    some set and others do not (``unset``, from set_by_some).

    A key of a group's option (``precision.grad_scaler``) counts only where it varies within one option:
    otherwise the option's column already says it.
    """
    seen: dict[str, set[str]] = {}
    within: dict[str, set[tuple[str, str]]] = {}
    for cfg in df.get("_config", []):
        cfg = cfg or {}
        for key, value in cfg.items():
            seen.setdefault(key, set()).add(repr(value))
            group = key.split(".", 1)[0]
            if "." in key and group in cfg:
                within.setdefault(key, set()).add((repr(cfg[group]), repr(value)))
    standard = set(summary_columns())

    def varies(key: str) -> bool:
        if key in within:  # varies only if one option of the group takes two values
            options = [option for option, _ in within[key]]
            return len(options) != len(set(options))
        return len(seen[key]) > 1

    return [k for k in seen if k not in standard and (k in unset or varies(k))]


def unlike_the_lab(runs: pd.DataFrame, lab: dict[str, Any], swept: str) -> list[tuple[str, list[str], str]]:
    """Each setting the lab's runs had (its preset's ``ran_with``) that ours do not, other than the swept one:
    (key, our values, the lab's value); the report's sentence and the figure's legend both say it."""
    differ = []
    for key, theirs in (lab.get("ran_with") or {}).items():
        if key == swept or key not in runs:
            continue
        # A job missing from a sweep makes a number column float: 512.0 is the lab's 512.
        plain = {cell(v) for v in runs[key].dropna()}
        ours = sorted(plain - {str(theirs)})
        if ours:
            differ.append((key, ours, str(theirs)))
    return differ


#: when a run was busy and when it was timed (metrics.json's Unix times), for timed_together
SPANS = ("ran_from", "ran_until", "timed_from", "timed_until")
#: the parts of a record a row carries beside its columns: nodes whole (lab, memory, notes, step), and when and
#: on which GPU it ran (for timed_together)
RECORD_PARTS = ("lab", "memory", "notes", "step", *SPANS, "gpu_uuid")


def timed_together(df: pd.DataFrame) -> dict[Any, str]:
    """The rows (index → hostname) whose timed epochs overlapped another run on the same machine, from its start
    (data, warm-up, compilation) to its end (evaluation): both on its CPU, one on the CPU beside a GPU run (whose
    host side it slows), or both on one GPU (the same uuid). Such a run competed for the machine and reads
    slower than alone: Hydra's submitit_local starts every job of a sweep at once, and two sweeps started
    together do the same."""
    runs = [
        (i, run)
        for i, run in df.iterrows()  # a skipped run did nothing while it was "busy"
        if finite(run.get("ran_from")) and finite(run.get("ran_until")) and run.get("status") != "skipped"
    ]
    found: dict[Any, str] = {}
    for i, timed in runs:
        if not (finite(timed.get("timed_from")) and finite(timed.get("timed_until"))):
            continue
        host = timed.get("env_hostname")
        for j, other in runs:
            if j == i or not host or host != other.get("env_hostname"):
                continue
            if timed["device"] == other["device"] == "cuda" and (
                not timed.get("gpu_uuid") or timed["gpu_uuid"] != other.get("gpu_uuid")
            ):
                continue  # two GPUs, each a job's own (hydra/launcher=local), or not known to be one
            if timed["timed_from"] < other["ran_until"] and other["ran_from"] < timed["timed_until"]:
                found[i] = str(host)
                break
    return found


def step_text(step: Any) -> str | None:
    """A run's step as timed, in overrides: ``compile=none, adam=fused, channels_last=true``."""
    if not isinstance(step, dict):
        return None
    text = ", ".join(f"{k}={as_override(step.get(k))}" for k in ("compile", "adam", "channels_last"))
    return f"{text}, GradScaler" if step.get("grad_scaler") else text


def settings(df: pd.DataFrame) -> list[str]:
    """The columns load_runs added for config keys that vary beyond the standard ones (e.g. ``lr``)."""
    known = {*summary_columns(), *ENV_COLUMNS, "sweep", *RECORD_PARTS}
    return [c for c in df.columns if c not in known]


def swept_variables(df: pd.DataFrame) -> list[str]:
    """The config columns that take more than one value: what the sweep (or the combination) varied."""
    return [c for c in [*CONFIG_COLUMNS, *settings(df)] if df[c].dropna().astype(str).nunique() > 1]


def status_counts(runs: pd.DataFrame) -> str:
    """How the runs ended, the most common first: "2 ok, 1 diverged" (the report, its command, the sweep's end
    and a stopped sweep's last line say it alike)."""
    return ", ".join(f"{n} {s}" for s, n in runs["status"].value_counts().items())


def trains(runs: pd.DataFrame) -> bool:
    """Whether an experiment's runs train (not task=max_batch), the one test of it for the report, its sentences
    and its figures; a missing job, whose task is unknown, does not say, and a skipped search still searched."""
    tasks = runs["task"].dropna()
    return tasks.empty or bool((tasks != "max_batch").any())


def images_per_epoch(runs: pd.DataFrame) -> pd.Series:
    """Each run's training images per epoch as numbers (NaN where unknown or not a number): the one reading
    behind every comparison of our epoch times with the lab's 50,000-image ones."""
    column = runs["train_samples"] if "train_samples" in runs else pd.Series(index=runs.index, dtype=float)
    return pd.to_numeric(column, errors="coerce")


def resident_dataset_mb(runs: pd.DataFrame) -> pd.Series:
    """Each run's resident dataset on the device in MB, 0 where it held none (the DataLoader's path) or did not
    say: what comes off our peak beside the lab's, which had no dataset on its GPU."""
    return pd.to_numeric(runs["dataset_memory_mb"], errors="coerce").fillna(0.0)


def relative_iqr(run: pd.Series) -> float | None:
    """A run's samples/s IQR / median, over its repeats (else its epochs); None where it has none: the spread
    that bench.compare's noise band and the report's "no measurable difference" judge by."""
    iqr, median = finite(run.get("samples_per_s_iqr")), finite(run.get("samples_per_s_median"))
    return iqr / median if iqr is not None and median else None


def code_version(commit: object, dirty: object) -> str | None:
    """A run's code as reports and comparisons name it: its commit (10 digits), with "+ uncommitted changes" where
    the tree had some, since the commit alone does not say what ran; None where it recorded no commit."""
    if not isinstance(commit, str):
        return None
    return f"{commit[:10]} + uncommitted changes" if bool(dirty == True) else commit[:10]  # noqa: E712 (numpy bools)


def is_numeric(col: pd.Series) -> bool:
    """True for batch sizes and worker counts, also when pandas 3 stores them as strings or objects; never for
    true/false settings (step.channels_last), which are names to tell apart, not an axis to plot along."""
    values = col.dropna()
    if values.empty or pd.api.types.is_bool_dtype(values) or values.map(lambda v: isinstance(v, bool)).any():
        return False
    return bool(pd.to_numeric(values, errors="coerce").notna().all())


def x_axis(runs: pd.DataFrame, varied: list[str]) -> str:
    """The variable a sweep is told along: the first numeric swept one, else the first swept one."""
    numeric = [v for v in varied if is_numeric(runs[v])]
    return (numeric or varied)[0]


def run_names(runs: pd.DataFrame) -> list[str]:
    """Each run's short name, as the report's notes and tables and the plots' bars call it: its job number
    (sweep/job where the runs come from several sweeps), else its folder's name."""
    several = runs["sweep"].nunique() > 1
    names = []
    for _, run in runs.iterrows():
        job = run["job"]
        name = Path(str(run["run_dir"])).name if pd.isna(job) else str(int(job))
        names.append(f"{Path(str(run['sweep'])).name}/{name}" if several and not pd.isna(job) else name)
    return names


#: more swept variables than this and a run is named by its job (or folder), not by its values: a bar labelled
#: with sixteen "key=value" lines is unreadable
MAX_NAMING_VALUES = 4


def repeats_a_config(runs: pd.DataFrame, varied: Sequence[str]) -> bool:
    """Whether two runs share every value of ``varied`` (a config run twice): nothing in them tells those apart."""
    return bool(runs[list(varied)].astype(str).duplicated().any())


def named_by_run(runs: pd.DataFrame, varied: Sequence[str]) -> bool:
    """Whether the report's table and bars name each run (run_names) rather than by its swept values alone: where
    runs share every swept value (a config run twice), or too many are swept for a label to hold them."""
    return len(varied) > MAX_NAMING_VALUES or repeats_a_config(runs, varied)


def values(col: pd.Series) -> list[str]:
    """The distinct values of a column, as text (tables.as_text: a 64 that a column with a gap made 64.0 is 64), in
    order of appearance."""
    return list(dict.fromkeys(as_text(v) for v in col.dropna()))


def along(runs: pd.DataFrame, varied: list[str]) -> pd.DataFrame:
    """The rows along the swept variables, as the plots draw them: numbers ascending, names in the order they came
    (a resumed sweep's new batch size 32, job 2, had come after 64)."""
    keys = {}
    for i, column in enumerate(varied):
        if is_numeric(runs[column]):
            keys[f"_along{i}"] = pd.to_numeric(runs[column], errors="coerce")
        else:
            rank = {v: n for n, v in enumerate(values(runs[column]))}
            keys[f"_along{i}"] = runs[column].map(lambda v, rank=rank: rank.get(as_text(v)))  # None: no value
    ordered = runs.assign(**keys).sort_values(list(keys), kind="stable", na_position="last") if keys else runs
    return ordered.drop(columns=list(keys))


# ------------------------------------------------------------------------ one run, read strictly


@dataclass
class Source:
    """The run to reproduce, as saved: its folder, config, command-line overrides and metrics."""

    run_dir: Path
    config: dict[str, Any]
    overrides: list[str]
    metrics: dict[str, Any] | None
    metrics_error: str | None = None
    #: the folder its command ran in, where its relative paths (data_dir=data) lead; None if not saved
    cwd: Path | None = None


def load_source(run_dir: Path) -> Source:
    """Read RUN_DIR's saved files; anything that makes it not a reproducible run is a UsageError."""
    if not run_dir.exists():
        raise UsageError(f"{run_dir}: no such folder")
    if not run_dir.is_dir():
        raise UsageError(f"{run_dir}: not a folder; pass a run folder such as outputs/runs/<time>")
    hydra_dir = run_dir / CONFIG_SUBDIR
    if not hydra_dir.is_dir():
        raise UsageError(f"{run_dir}: not a run folder (no {CONFIG_SUBDIR}/{CONFIG_FILE}){_sweep_hint(run_dir)}")
    config = _read_yaml(hydra_dir / CONFIG_FILE)
    if not isinstance(config, dict) or not config:
        raise UsageError(f"{hydra_dir / CONFIG_FILE}: not a saved bench config (expected a mapping of keys)")
    overrides = _read_yaml(hydra_dir / OVERRIDES_FILE)
    if overrides in (None, {}):  # an empty file: no overrides
        overrides = []
    if not isinstance(overrides, list) or not all(isinstance(o, str) for o in overrides):
        raise UsageError(f"{hydra_dir / OVERRIDES_FILE}: not a saved override list (expected a list of strings)")
    try:
        metrics, metrics_error = load_metrics(run_dir), None
    except MetricsError as err:
        metrics, metrics_error = None, str(err)
    return Source(run_dir, config, overrides, metrics, metrics_error, _ran_in(hydra_dir / HYDRA_FILE))


def _ran_in(hydra_file: Path) -> Path | None:
    """The working folder Hydra saved for the run (``hydra.runtime.cwd``); None where it is missing or unreadable:
    it only anchors relative paths, and a run without it is still reproduced from where the command runs."""
    try:
        saved = OmegaConf.select(OmegaConf.load(hydra_file), RAN_IN_KEY, default=None)
    except Exception:  # missing, unreadable, not YAML
        return None
    return Path(saved) if isinstance(saved, str) and Path(saved).is_absolute() else None


def _sweep_hint(folder: Path) -> str:
    runs = sorted(p.name for p in folder.iterdir() if (p / CONFIG_SUBDIR / CONFIG_FILE).is_file())
    if not runs:
        return "; pass outputs/runs/<time> or one job of a sweep, outputs/sweeps/<time>/<job>"
    if all(job_number(folder / name) is not None for name in runs):
        return f"; it looks like a sweep: pass one of its jobs, e.g. {folder / runs[0]}"
    return f"; it holds runs: pass one of them, e.g. {folder / runs[0]}"  # outputs/ with hydra.run.dir=outputs/a


def _read_yaml(path: Path) -> Any:
    """Plain data, read as Hydra wrote it: with OmegaConf's YAML rules (``1e-3`` is a float)."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise UsageError(f"{path}: missing; the run folder is incomplete") from None
    except (OSError, UnicodeDecodeError) as err:
        raise UsageError(f"{path}: cannot read: {err}") from None
    try:
        return OmegaConf.to_container(OmegaConf.load(io.StringIO(text)), resolve=False)
    except yaml.YAMLError as err:
        where = getattr(err, "problem_mark", None)
        at = f" at line {where.line + 1}" if where is not None else ""
        raise UsageError(f"{path}: not valid YAML{at}") from None
    except (OmegaConfBaseException, OSError, ValueError, TypeError) as err:
        raise UsageError(f"{path}: not what Hydra writes ({one_line(err)})") from None
