"""The config layer: the schema Hydra types every key with, the checks types cannot express, and compose().

This module sits at the bottom of the flow (docs/architecture.md): it imports nothing from the engine.
Defaults live in one place each: top-level keys and ``step`` here, a group option's values in its YAML
file under ``conf/``. Components (``model``, ``dataset``, ``loader``) are ``_target_`` nodes: their keys
are checked against the signature of the class or function they name, so a typo or a ``+key`` that the
component does not take is refused before any work, in one line.
"""

from __future__ import annotations

import contextlib
import copy
import difflib
import functools
import importlib
import importlib.resources
import inspect
import math
import os
import re
import types
import typing
from collections.abc import Iterator, Sequence
from dataclasses import MISSING as MISSING_FIELD
from dataclasses import dataclass, field, fields
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, ListConfig, OmegaConf, open_dict
from omegaconf.errors import OmegaConfBaseException

from bench.errors import ConfigError


@dataclass
class DeviceConfig:
    name: str = MISSING


@dataclass
class PrecisionConfig:
    name: str = MISSING
    autocast_dtype: str | None = MISSING
    grad_scaler: bool = MISSING
    # TF32 tensor cores for fp32 matmuls and convolutions (CUDA, Ampere and newer).
    tf32: bool = MISSING


@dataclass
class StepConfig:
    """How one optimisation step is executed. Every choice computes the same model (docs/architecture.md)."""

    # auto: the fastest measured for the device (README "Performance"); default: torch's own pick.
    adam: str = "auto"
    set_to_none: bool = True
    non_blocking: bool = True
    # null: as measured (on for the CPU and for a captured CUDA step; off for CUDA's other steps).
    channels_last: bool | None = None
    # none (eager), default / reduce-overhead (torch.compile), cudagraph (the whole step captured, CUDA),
    # max (compiled model inside the captured step, input gather included), auto (the fastest measured).
    compile: str = "none"


@dataclass
class RecipeConfig:
    # lab: the lab's path; fast: the fastest measured for the device (conf/recipe/*.yaml set the choices).
    name: str = MISSING


@dataclass
class MaxBatchConfig:
    """task=max_batch (experiment=max_batch): the search for the largest batch that fits."""

    start: int = 16
    # Bisect until the smallest failing batch is within this share of the largest fitting one.
    tolerance: float = 0.05
    # Wall seconds per job; the search stops (and says so) when they are spent.
    budget_s: float = 60.0
    # Search within this share of the GPU's memory (torch.cuda.set_per_process_memory_fraction); null: all.
    memory_fraction: float | None = None


@dataclass
class Config:
    # Components: a _target_ (class or function) plus its own arguments, from conf/<group>/<option>.yaml.
    model: Any = MISSING
    device: DeviceConfig = field(default_factory=DeviceConfig)
    precision: PrecisionConfig = field(default_factory=PrecisionConfig)
    dataset: Any = MISSING
    loader: Any = MISSING
    step: StepConfig = field(default_factory=StepConfig)
    recipe: RecipeConfig = field(default_factory=RecipeConfig)
    # train: the measured training run; max_batch: the largest batch that fits (experiment=max_batch).
    task: str = "train"
    max_batch: MaxBatchConfig = field(default_factory=MaxBatchConfig)
    batch_size: int = 64
    workers: int = 2
    epochs: int = 3
    # Run the timed epochs this many times (each rolled back, so each trains the same) and record the
    # median, IQR and coefficient of variation of epoch time and samples/s across the repeats.
    repeat: int = 1
    lr: float = 1e-3
    seed: int = 0
    # Steps run before epoch 1 to pay one-time costs (CUDA init, cuDNN autotuning, worker start,
    # compilation); timed apart as warmup_time, then rolled back so training is as without them.
    warmup_steps: int = 5
    data_dir: str = "data"
    # Evaluate accuracy on the test split after training (not part of the epoch times).
    evaluate: bool = True
    # A torch.profiler trace (trace.json) of a few steps after the timed epochs (rolled back), and the top-10
    # operators in bench.log; outside the timed epochs.
    profile: bool = False
    # cuDNN autotuning (CUDA only). Off, as in the lab: its trial runs leave workspaces that change peak
    # memory, and the lab never enabled it. recipe=fast turns it on.
    cudnn_benchmark: bool = False
    # With -m and hydra.sweep.dir=<an earlier sweep>: run only its jobs that did not finish (bench.resume).
    resume: bool = False
    # Set by the experiment presets: which lab part a sweep reproduces, and the lab's figures.
    lab: Any = None


ConfigStore.instance().store(name="bench_schema", node=Config)


def compose(overrides: Sequence[str] = (), *, return_hydra_config: bool = False) -> DictConfig:
    """The config ``python -m bench OVERRIDES`` would run, composed by Hydra from the installed ``bench.conf``.

    The one way tests, benchmarks and ``bench.reproduce`` build a config; safe inside a running Hydra app.
    """
    from hydra import compose as hydra_compose
    from hydra import initialize_config_module

    with initialize_config_module(config_module="bench.conf", version_base="1.3"):
        return hydra_compose("config", overrides=list(overrides), return_hydra_config=return_hydra_config)


def instantiate(node: DictConfig, *args: Any, **runtime: Any) -> Any:
    """Build a component from its node with Hydra's ``instantiate``: the YAML's arguments plus ``runtime`` ones.

    The node is resolved against the whole config first (``${seed}``, ``${workers}``), and its ``name`` is
    dropped: a label for records, not an argument.
    """
    from hydra.errors import InstantiationException
    from hydra.utils import instantiate as hydra_instantiate

    kwargs: Any = OmegaConf.to_container(node, resolve=True)
    kwargs.pop("name", None)
    try:
        return hydra_instantiate(kwargs, *args, **runtime)
    except InstantiationException as err:
        # Hydra wraps what the component raised; the run needs the original (a missing dataset, an OOM).
        if err.__cause__ is not None:
            raise err.__cause__ from None
        # Hydra's own refusal (a target it blocklists, such as os.system): bad input, in its whole sentence,
        # which it wraps over several lines.
        raise ConfigError(f"_target_={kwargs.get('_target_')}: {' '.join(str(err).split())}") from None


# ------------------------------------------------------------------------------------------- checks

CHOICES: dict[str, tuple[Any, ...]] = {
    "device.name": ("auto", "cpu", "cuda"),
    "precision.autocast_dtype": (None, "float16", "bfloat16"),
    "step.adam": ("auto", "default", "forloop", "foreach", "fused"),
    "step.compile": ("none", "default", "reduce-overhead", "cudagraph", "max", "auto"),
    "task": ("train", "max_batch"),
}
CUDA_ONLY_COMPILE = ("reduce-overhead", "cudagraph")
#: the components' names, which metrics.json, the tables and the plots record as labels
NAMES = ("model.name", "precision.name", "dataset.name", "loader.name", "recipe.name")
#: groups whose name is the option that runs, never a label of one's own (a model or dataset variant may be
#: named freely: model.name=medium2x beside model.width=2)
FIXED_NAMES = ("precision", "loader", "recipe")
#: inclusive ranges; a key that a component does not have (e.g. loader.prefetch_factor) is skipped
RANGES: dict[str, tuple[int, int | None]] = {
    "batch_size": (1, 2**24),
    "workers": (0, None),
    "epochs": (1, 1_000_000),
    "repeat": (1, 1_000),
    "warmup_steps": (0, 1_000_000),
    "seed": (0, 2**32 - 1),  # numpy's seed range; every seed in it is valid for torch too
    "dataset.seed": (0, 2**32 - 1),  # the synthetic dataset's, numpy's range too
    "dataset.train_size": (1, None),
    "dataset.test_size": (1, None),
    "loader.prefetch_factor": (1, None),
    "max_batch.start": (1, 2**24),
    "model.width": (1, 2**16),  # the nets' channel multiplier, where a variant sets it (+model.width=2)
}
#: real-valued settings: (least, most, in words); null where the schema allows it means unset. max_batch's were
#: unchecked: memory_fraction=2 and budget_s=-1 ran, and a GPU job failed only then.
SHARES: dict[str, tuple[float, float, str]] = {
    "max_batch.memory_fraction": (1e-6, 1.0, "a share of the GPU's memory above 0 and at most 1 (or null: all)"),
    "max_batch.tolerance": (0.0, 1.0, "a share from 0 (bisect to the exact batch) to 1, e.g. 0.05"),
    "max_batch.budget_s": (1e-3, 7 * 24 * 3600.0, "seconds above 0, at most a week"),
}
#: DataLoader workers beyond this many per CPU core only add processes competing for the same cores
WORKERS_PER_CORE = 4
#: the lab swept workers 0/2/4/8 on a 2-core Colab box; that sweep stays legal on any machine
WORKERS_ALWAYS_ALLOWED = 8
#: the config groups whose option every run chooses (conf/config.yaml's defaults list): model=large, not model.x
GROUPS = ("model", "device", "precision", "dataset", "loader", "recipe")
#: arguments a component gets from the run, not from its YAML (docs/architecture.md, "Components")
RUNTIME_ARGUMENTS: dict[str, tuple[str, ...]] = {
    "model": ("num_classes",),
    "dataset": (),
    "loader": ("x", "y", "device", "batch_size", "shuffle", "channels_last"),
}
#: keys every component node has that are not arguments: the target, and the label used in records
LABEL_KEYS = ("_target_", "name")
#: bytes one synthetic image needs at the least: its uint8 32x32x3, and as much again once a loader holds a copy
#: (the resident loader's float copy on the CPU is counted apart; this refuses only what cannot fit at all)
SYNTHETIC_BYTES_PER_IMAGE = 2 * 32 * 32 * 3
#: bytes the resident loader's normalized copy of one image takes (float32), beside its uint8 original
RESIDENT_FLOAT_BYTES_PER_IMAGE = 4 * 32 * 32 * 3


def workers_limit() -> int:
    return max(WORKERS_ALWAYS_ALLOWED, WORKERS_PER_CORE * (os.cpu_count() or 1))


#: what a lab preset's ``lab`` node says (conf/experiment/*.yaml), each key optional; others are ignored (a
#: config saved by an earlier bench may have one, such as its ``speedup``)
LAB_KEYS = ("part", "title", "ran_with", "note", "figures")


def lab_problem(lab: Any) -> str | None:
    """Why ``lab`` cannot be read as a lab preset's description (part, title, the settings its runs had, a
    note, and its figures: one mapping per row, the swept value first, then numbers or null), or None when it
    can. A malformed one (``lab={figures:5}``) stopped a sweep's report after every job had run."""
    from bench.metrics import METRICS  # no cycle: metrics imports nothing of bench's config

    if lab is None:
        return None
    if not isinstance(lab, dict):
        return f"{as_override(lab)} is not a mapping of {', '.join(LAB_KEYS)}"
    if not is_single_value(lab.get("part")):
        return f"part={as_override(lab['part'])} is not a single value"
    for key in ("title", "note"):
        if lab.get(key) is not None and not isinstance(lab[key], str):
            return f"{key}={as_override(lab[key])} is not text"
    ran_with = lab.get("ran_with")
    if ran_with is not None and (
        not isinstance(ran_with, dict) or not all(is_single_value(v) for v in ran_with.values())
    ):
        return f"ran_with={as_override(ran_with)} is not a mapping of settings to values"
    figures = lab.get("figures")
    if figures is None:
        return None
    if not isinstance(figures, list) or not all(isinstance(f, dict) and f for f in figures):
        return (f"figures={as_override(figures)} is not a list of rows (mappings, e.g. "
                "{batch_size: 16, avg_epoch_time: 20.4})")  # fmt: skip
    measures = {m.key for m in METRICS}
    for row in figures:
        for key, value in row.items():
            number = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
            if key in measures and not (number or value is None):  # null: a figure the lab did not give
                return f"figures: {key}={as_override(value)} is not a number"
            if not is_single_value(value):
                return f"figures: {key}={as_override(value)} is not a single value"
    return None


def is_single_value(value: Any) -> bool:
    """A number, a word, a flag or null: not a list or a mapping."""
    return value is None or isinstance(value, str | int | float | bool)


def validate(cfg: DictConfig, *, this_machine: bool = True) -> None:
    """Raise ConfigError for the first value the run cannot use; called before any work.

    ``this_machine=False``: the run will run elsewhere (a SLURM job, checked on the login node), so what only
    its own machine can tell (CUDA, the cores, the memory) is left to the run."""
    # A top-level key removed with ~, before resolving: ~step failed as "loader.non_blocking: Interpolation key
    # 'step.non_blocking' not found", naming a key the user never touched.
    _check_removed("", Config, cfg)
    _resolve_all(cfg)
    # The config groups (the typed nodes and the components): a saved config run with --config-path has none.
    for group in (*(prefix[:-1] for prefix in _TYPED_NODES if prefix), *RUNTIME_ARGUMENTS):
        node = OmegaConf.select(cfg, group, default=None)
        if node is not None and not isinstance(node, DictConfig):  # model=large on a saved config.yaml
            raise ConfigError(f"{group}={node}: this config has no {group} group to choose from (a run's saved "
                              f"config, run with --config-path?); python -m bench.reproduce RUN_DIR {group}={node} "
                              "applies a group to a saved run")  # fmt: skip
    _check_keys(cfg)
    # The top-level numbers first: they need no import, and the components' checks import their classes (torch,
    # ~3 s), which batch_size=0 waited for before its one line. A component's own keys after its check, which
    # words a wrong type better (loader.prefetch_factor=abc "is not an integer or null").
    _check_ranges(cfg, this_machine, [key for key in RANGES if "." not in key])
    if isinstance(cfg.lr, bool) or not isinstance(cfg.lr, int | float):
        raise ConfigError(f"lr={cfg.lr} is not a number")
    if not (math.isfinite(cfg.lr) and cfg.lr > 0):
        raise ConfigError(f"lr={cfg.lr} is out of range; it must be a finite number > 0")
    for group in RUNTIME_ARGUMENTS:
        _check_component(group, cfg[group])
    for key in NAMES:  # the labels every table and plot shows: a word, not a list or a node
        value = OmegaConf.select(cfg, key, default=None)
        if not isinstance(value, str) or not value.strip():
            typed = set_by_the_command()
            if value is None and typed is not None and key not in typed:  # an option's YAML file without name:
                group = key.split(".", 1)[0]
                chosen = _choices().get(group) or "..."
                raise ConfigError(f"{key} is not set: the YAML file of {group}={chosen} needs a name: line, its "
                                  f"label in every table (name: {chosen})")  # fmt: skip
            raise ConfigError(f"{key}={value} is not a name; write a word, e.g. {key}=mine")
    _check_fixed_names(cfg)
    lab = OmegaConf.to_container(cfg.lab) if isinstance(cfg.get("lab"), DictConfig | ListConfig) else cfg.get("lab")
    problem = lab_problem(lab)
    if problem:  # a preset's own, or one given on the command line: the report reads it after every job
        raise ConfigError(f"lab: {problem}")
    for key, allowed in CHOICES.items():
        value = OmegaConf.select(cfg, key)
        if value not in allowed:
            shown = ", ".join("null" if a is None else str(a) for a in allowed)
            raise ConfigError(f"{key}={value} is not allowed; choose one of: {shown}")
    _check_ranges(cfg, this_machine, [key for key in RANGES if "." in key])
    # The loader's workers follow `workers`, which the range above bounds and metrics.json records.
    loader_workers = OmegaConf.select(cfg, "loader.workers", default=None)
    if loader_workers is not None and loader_workers != cfg.workers:
        raise ConfigError(f"loader.workers={loader_workers}: set workers={loader_workers} instead; the loader takes "
                          "it from there, and the records and checks know it")  # fmt: skip
    for key, (low, high, says) in SHARES.items():
        value = OmegaConf.select(cfg, key, default=None)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)
                                  or not (math.isfinite(value) and low <= value <= high)):  # fmt: skip
            raise ConfigError(f"{key}={value} is out of range; it must be {says}")
    _check_combinations(cfg, this_machine)


def validate_job(cfg: DictConfig, *, this_machine: bool = True) -> None:
    """:func:`validate` on a composed config that still has its ``hydra`` node, as its job will see it: Hydra's
    config set from it (the check of fixed names reads the options chosen there), the job's own config without
    the node, as Hydra's run passes it to the task. Before a job runs (the sweeper's checks, a single run's);
    the caller puts back the HydraConfig it held."""
    from hydra.core.hydra_config import HydraConfig

    HydraConfig.instance().set_config(cfg)
    task = copy.deepcopy(cfg)
    with open_dict(task):
        del task["hydra"]
    validate(task, this_machine=this_machine)


def _check_ranges(cfg: DictConfig, this_machine: bool, keys: list[str]) -> None:
    """RANGES' integers among ``keys``; ``workers`` up to this machine's limit, unless it runs elsewhere."""
    for key in keys:
        low, high = RANGES[key]
        value = OmegaConf.select(cfg, key, default=None)
        if key == "workers":
            high = workers_limit() if this_machine else None
        # The schema types these; a config without it (a run's saved config.yaml, with --config-path) may not.
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            raise ConfigError(f"{key}={value} is not an integer")
        if value is not None and (value < low or (high is not None and value > high)):
            bound = f"from {low} to {high:,}" if high is not None else f">= {low}"
            raise ConfigError(f"{key}={value} is out of range; it must be an integer {bound}")


def _choices() -> Any:
    """The option Hydra chose for each config group (its file's name), by group; empty where no Hydra run says
    (bench.compose() in a benchmark, or a reproduction)."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return {}
    return OmegaConf.select(HydraConfig.get(), "runtime.choices", default=None) or {}


def _check_fixed_names(cfg: DictConfig) -> None:
    """``precision.name=amp_bf16`` on fp32 ran fp32 and recorded amp_bf16, which every report and comparison
    then matched on. Where Hydra says which option was chosen, its name must be that option's."""
    choices = _choices()
    for group in FIXED_NAMES:
        chosen, name = choices.get(group), OmegaConf.select(cfg, f"{group}.name", default=None)
        if chosen is not None and name != chosen:
            raise ConfigError(f"{group}.name={name}: {group}={chosen} is what runs, and its name is what the "
                              f"results record; choose the option itself with {group}={name}")  # fmt: skip
    # A precision is its settings: precision.autocast_dtype=bfloat16 on fp32 ran bf16 recorded as fp32, and
    # amp_fp16 without its GradScaler was still amp_fp16 in every table. Each option is held to what its own
    # file states; another combination is another option (a YAML of one's own, with its own name).
    chosen = choices.get("precision")
    for key, value in (_precision_states(chosen) if chosen else {}).items():
        given = OmegaConf.select(cfg, f"precision.{key}", default=None)
        if given != value:
            setting, stated = as_override(given), as_override(value)
            raise ConfigError(f"precision.{key}={setting}: precision={chosen} is {key}={stated}, and the "
                              "results record the precision by its name; choose another precision, or add your "
                              "own (conf/precision/<name>.yaml)")  # fmt: skip


@functools.cache
def _precision_states(name: str) -> dict[str, Any]:
    """What conf/precision/<name>.yaml itself states as values: not its name or defaults list, nor an
    interpolation (a user's own precision may build on another, or take a value from elsewhere); {} where
    there is no such file. Read once per process: a sweep's check validates every job."""
    own = importlib.resources.files("bench.conf").joinpath("precision", f"{name}.yaml")
    if not own.is_file():
        return {}
    defined = OmegaConf.create(own.read_text())
    return {
        str(key): defined[key]
        for key in defined
        if key not in ("name", "defaults") and not OmegaConf.is_interpolation(defined, str(key))
    }


def override_key(override: str) -> str:
    """The key an override sets, as typed: ``+model.width=2`` and ``~lab`` set ``model.width`` and ``lab``."""
    return override.split("=", 1)[0].lstrip("+~")


def as_override(value: Any) -> str:
    """A value as an override writes it: null, true, false (the reports and reproduce.md name them so too)."""
    return "null" if value is None else str(value).lower() if isinstance(value, bool) else str(value)


def _resolve_all(cfg: DictConfig) -> None:
    """Resolve every interpolation and find every unset value now, not halfway through a run."""
    try:
        OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)
    except OmegaConfBaseException as err:
        key = getattr(err, "full_key", None) or "the config"
        first = str(err).strip().splitlines()[0]
        group = key.removesuffix(".name")
        if "Missing mandatory value" in first and group in GROUPS:  # ~precision, or an option's YAML without a name
            raise ConfigError(f"{key} is not set: choose a {group} with {group}=... (each option's YAML sets its "
                              "name)") from None  # fmt: skip
        if "Missing mandatory value" in first:
            raise ConfigError(f"{key} is not set; choose one with {key}=...") from None
        raise ConfigError(f"{key}: {first}") from None


def _check_keys(cfg: DictConfig) -> None:
    """A key added with ``+`` that bench does not know is a typo, not a setting: refuse it."""
    for prefix, schema in _TYPED_NODES.items():
        node = cfg[prefix[:-1]] if prefix else cfg
        known = [f.name for f in fields(schema)]
        for key in node:
            if key not in known:
                raise ConfigError(_unknown(f"{prefix}{key}", known, prefix))
        _check_removed(prefix, schema, node)


def _check_removed(prefix: str, schema: type, node: DictConfig) -> None:
    """A key removed with ~ (~batch_size, ~step): the run would fail on it halfway, or another key's
    interpolation of it would."""
    for f in fields(schema):
        key = f"{prefix}{f.name}"
        if f.name in node:
            continue
        if key in GROUPS:  # as for a group left unset (model: ???)
            raise ConfigError(f"{key} is not set; choose one with {key}=...")
        if f.default_factory is not MISSING_FIELD:  # a node of its own (step, max_batch): its keys are set apart
            raise ConfigError(f"{key} was removed; bench needs it: drop ~{key}, and set its keys with {key}.KEY=...")
        raise ConfigError(f"{key} was removed; bench needs it: set it with {key}=...")


_TYPED_NODES = {
    "": Config, "device.": DeviceConfig, "precision.": PrecisionConfig, "step.": StepConfig,
    "max_batch.": MaxBatchConfig, "recipe.": RecipeConfig,
}  # fmt: skip


@functools.cache
def _switches() -> dict[str, bool]:
    """The schema's true/false settings by their full keys (evaluate, step.set_to_none, …), each with whether it
    may be null as well (step.channels_last)."""
    found = {}
    for prefix, node in _TYPED_NODES.items():
        for name, hint in typing.get_type_hints(node).items():
            if hint is bool or hint == (bool | None):
                found[prefix + name] = hint is not bool
    return found


def check_switches(overrides: Sequence[str]) -> None:
    """Refuse a true/false setting given any other value, before any work: OmegaConf reads a non-zero number (and
    yes or on) as true, so ``evaluate=2``, ``profile=-7`` or ``resume=2`` ran as ``true`` without a word."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.core.override_parser.types import ChoiceSweep

    try:
        parsed = OverridesParser.create().parse_overrides(list(overrides))
    except Exception:  # not an override at all: Hydra's own parser says so, in its own line, when it runs
        return
    for text, override in zip(overrides, parsed, strict=True):
        nullable = _switches().get(override.key_or_group)
        if nullable is None or override.is_delete():
            continue
        value = override.value()
        for v in value.list if isinstance(value, ChoiceSweep) else [value]:
            # 'true' quoted is still true, and ${oc.env:RESUME,false} is resolved later, by OmegaConf's rules
            if isinstance(v, str) and (v.lower() in ("true", "false") or "${" in v):
                continue
            if not isinstance(v, bool) and not (v is None and nullable):
                either = "true, false or null" if nullable else "true or false"
                raise ConfigError(f"{text}: {override.key_or_group} is {either}")


def _unknown(key: str, known: Sequence[str], prefix: str = "") -> str:
    leaf = key.removeprefix(prefix)
    close = difflib.get_close_matches(leaf, known, n=1)
    hint = f"; did you mean {prefix}{close[0]}?" if close else f"; known keys: {', '.join(known)}"
    return f"{key} is not a bench setting{hint}"


def unknown_key(key: str, parent: DictConfig) -> str | None:
    """The line for an override of a key that ``parent`` (the node it would go in) does not have, with the
    closest known key; None where OmegaConf's own message says more: the key is an argument of a component's
    class that its YAML does not list (added with ``+``), or the node has no keys to suggest. For what Hydra's
    composition refuses: ``epoch=1``, ``step.adamm=fused``, ``model.nmae=x``."""
    leaf = key.rsplit(".", 1)[-1]
    prefix = key[: len(key) - len(leaf)]
    known = [str(k) for k in parent if k not in ("_target_", "hydra")]
    if key.startswith("hydra."):  # Hydra's own nodes: their keys, in Hydra's words
        if not known:
            return None
        return _unknown(key, known, prefix).replace("is not a bench setting", f"is not a key of {prefix.rstrip('.')}")
    if "_target_" not in parent:
        return _unknown(key, known, prefix) if known else None
    group, option = prefix.rstrip("."), f"{prefix.rstrip('.')}={parent.get('name', '?')}"
    if leaf in RUNTIME_ARGUMENTS.get(group, ()):  # as _check_component says it, with + or without
        return f"{key} is set by the run, not by {option}"
    try:
        _, params = _parameters(target_of(parent))
    except (ConfigError, TypeError, ValueError):
        return None
    # The keys _check_component lets a node set: named arguments only, a class's **kwargs notwithstanding.
    arguments = [p for p in params if p not in RUNTIME_ARGUMENTS.get(group, ())]
    if leaf in arguments:
        return None  # an argument its YAML does not list: added with +model.width=2
    candidates = list(dict.fromkeys([*known, *arguments]))
    close = difflib.get_close_matches(leaf, candidates, n=1)
    # A key the YAML takes from a top-level setting (loader.workers: ${workers}) is set there.
    raw = OmegaConf.to_container(parent, resolve=False)
    value = raw.get(close[0]) if close and isinstance(raw, dict) else None
    if isinstance(value, str) and value.startswith("${") and value.endswith("}"):
        return f"{key} is not an option of {option}; did you mean {value[2:-1]}?"
    return _not_an_option(key, candidates, prefix, option, listed=known)


def _not_an_option(key: str, known: Sequence[str], prefix: str, option: str, listed: Sequence[str] = ()) -> str:
    """``_unknown``'s line for a component's key: ``model.nmae is not an option of model=medium; ...``. A
    suggested key that its YAML does not list (``listed``: an argument of the class) is suggested with the
    ``+`` it needs: ``did you mean +model.width?``."""
    line = _unknown(key, known, prefix).replace("is not a bench setting", f"is not an option of {option}")
    close = difflib.get_close_matches(key.removeprefix(prefix), known, n=1)
    if close and close[0] not in listed:
        line = line.replace(f"did you mean {prefix}{close[0]}?", f"did you mean +{prefix}{close[0]}?")
    return line


def _parameters(target: Any) -> tuple[Any, dict[str, inspect.Parameter]]:
    """What a component's ``_target_`` is called through (a class's ``__init__``), and its named parameters:
    the keys a component node may set (not ``self``, ``*args`` or ``**kwargs``)."""
    call = target.__init__ if inspect.isclass(target) else target
    params = {
        p.name: p
        for p in inspect.signature(call).parameters.values()
        if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD) and p.name != "self"
    }
    return call, params


def target_of(node: DictConfig | dict) -> Any:
    """The class or function a component node names with ``_target_``."""
    path = str(node.get("_target_") or "")
    module, _, name = path.rpartition(".")
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError, ValueError) as err:
        raise ConfigError(f"_target_={path or '(none)'} cannot be imported ({err})") from None


#: the overrides of a command that runs a job outside Hydra's run (bench.reproduce: the original's and its own)
_command: list[str] | None = None


@contextlib.contextmanager
def command_overrides(overrides: Sequence[str]) -> Iterator[None]:
    """Within it, :func:`set_by_the_command` reads ``overrides``: a reproduction said "Unused here: workers" of
    a default the original's command never set, and its report listed it."""
    global _command
    held, _command = _command, list(overrides)
    try:
        yield
    finally:
        _command = held


def set_by_the_command() -> set[str] | None:
    """The config keys the running command set (a sweep's job: its own values too), as Hydra records them, or as
    :func:`command_overrides` gives them; None where neither says (the compose API in a benchmark or a test)."""
    from hydra.core.hydra_config import HydraConfig

    if _command is not None:
        return {override_key(o) for o in _command}
    if not HydraConfig.initialized():
        return None
    task = OmegaConf.select(HydraConfig.get(), "overrides.task", default=None)
    return None if task is None else {override_key(str(o)) for o in task}


def _check_component(group: str, node: DictConfig) -> None:
    name = node.get("name", "?")
    call, params = _parameters(target_of(node))
    hints = typing.get_type_hints(call)
    settable = [p for p in params if p not in RUNTIME_ARGUMENTS[group]]
    for key in node:
        if key in LABEL_KEYS:
            continue
        if key in RUNTIME_ARGUMENTS[group]:
            raise ConfigError(f"{group}.{key} is set by the run, not by {group}={name}")
        if key not in params:
            listed = [str(k) for k in node if k in params]  # what the YAML (or a + override) already sets
            line = _not_an_option(f"{group}.{key}", settable, f"{group}.", f"{group}={name}", listed)
            typed = set_by_the_command()
            if typed is not None and f"{group}.{key}" not in typed:  # a key of the option's YAML file (widht: 2):
                # its fix is in the file, where a key has no + and no prefix
                line = re.sub(rf"did you mean \+?{group}\.(\w+)\?", r"did you mean \1?", line)
                line = line.replace(f"{group}={name};", f"{group}={name}, whose YAML file sets it ({key}: ...);", 1)
            raise ConfigError(line)
        value = node[key]
        if value is None and key in hints and not _fits(None, hints[key]):
            raise ConfigError(f"{group}.{key} is not set; {group}={name} needs {group}.{key}=...")
        if key in hints and not _fits(value, hints[key]):
            raise ConfigError(f"{group}.{key}={value} is not {_describe_type(hints[key])}")


def _fits(value: Any, hint: Any) -> bool:
    """Whether a YAML value can be passed where ``hint`` is annotated (the common primitive cases)."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_fits(value, arg) for arg in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    return True  # anything richer is the component's own business


def _describe_type(hint: Any) -> str:
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return " or ".join(_describe_type(a) for a in typing.get_args(hint))
    names = {bool: "true/false", int: "an integer", float: "a number", str: "a string", type(None): "null"}
    return names.get(hint, getattr(hint, "__name__", str(hint)))


def _check_combinations(cfg: DictConfig, this_machine: bool = True) -> None:
    from bench.device import targets_cuda  # lazily: it imports torch, and --help must not wait for it

    def cuda() -> bool:  # elsewhere, any device but the CPU may be a GPU
        return targets_cuda(cfg.device.name) if this_machine else cfg.device.name != "cpu"

    compile_mode = cfg.step.compile
    if compile_mode in CUDA_ONLY_COMPILE and not cuda():
        where = "cpu" if cfg.device.name == "cpu" else "this machine (no CUDA)"
        raise ConfigError(f"step.compile={compile_mode} needs CUDA; on {where} use auto, none, default or max")
    captures = compile_mode == "cudagraph" or (compile_mode == "max" and cuda())
    if captures and cfg.precision.grad_scaler:
        raise ConfigError(
            f"step.compile={compile_mode} cannot capture GradScaler; use precision=fp32, tf32 or amp_bf16"
        )
    train_size = cfg.dataset.get("train_size")
    if cfg.task == "train" and isinstance(train_size, int) and train_size < cfg.batch_size:
        raise ConfigError(batch_exceeds_data(cfg.batch_size, train_size))
    # By what the node builds, not its name: a variant may be named anything (dataset.name is free).
    sizes = (cfg.dataset.get("train_size"), cfg.dataset.get("test_size"))
    if (
        this_machine
        and cfg.dataset.get("_target_") == "bench.datasets.synthetic"
        and all(isinstance(n, int) for n in sizes)
    ):
        # The resident loader's normalized float copy is in this machine's memory too where it trains on the CPU:
        # 2,000,000 images passed at 6 GiB and then needed 31 on a box of 24. One split's at a time (the test
        # set's is made once the training set's is freed), and normalized unless its YAML says otherwise.
        resident = cfg.loader.get("_target_") == "bench.loaders.ResidentSource" and cfg.loader.get("normalized", True)
        _check_synthetic_fits(sum(sizes), max(sizes) if resident and not cuda() else 0)


def batch_exceeds_data(batch_size: int, images: int, *, whole_dataset: bool = False) -> str:
    """Why a batch larger than the training set is refused: its every step would be one partial batch.
    ``whole_dataset``: the images are all the dataset has, so only the batch can change."""
    fix = "lower batch_size" + (" (the dataset has no more)" if whole_dataset else " or raise dataset.train_size")
    return (f"batch_size={batch_size} is larger than the {images:,} training images: each epoch would be one batch "
            f"of {images:,}, timed and reported as batch {batch_size:,}; {fix}")  # fmt: skip


def _check_synthetic_fits(images: int, float_copies: int = 0) -> None:
    """The synthetic images are generated in memory: refuse a size this machine cannot hold at all, with the
    resident loader's float copy of ``float_copies`` images (the larger split's) where it is in the same memory."""
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return
    need = images * SYNTHETIC_BYTES_PER_IMAGE
    copy = float_copies * RESIDENT_FLOAT_BYTES_PER_IMAGE
    if need + copy > total:
        also = (f", and loader=resident's normalized float copy of {float_copies:,} of them "
                f"{copy / 2**30:,.1f} GiB more (loader.normalized=false keeps them uint8)") if copy else ""  # fmt: skip
        raise ConfigError(
            f"dataset.train_size/test_size: {images:,} synthetic images need {need / 2**30:,.1f} GiB of memory"
            f"{also}; this machine has {total / 2**30:,.1f} GiB"
        )
