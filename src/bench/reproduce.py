"""``python -m bench.reproduce RUN_DIR [overrides...]``: run an earlier run's config again, and compare.

A reproduction is a fresh run in a new folder (``outputs/runs/<time>_reproduce``); RUN_DIR is only read.
What runs is the saved ``RUN_DIR/.hydra/config.yaml``, so a later change to the YAML defaults cannot
change it silently. Extra overrides are applied on top: their effect is what Hydra's compose API makes of
them on top of the saved overrides, set key by key on the saved config, and each key or group they name
(``workers=2``, the whole ``model`` node of ``model=large``) as they compose it. The new folder gets its own
``.hydra/`` files, so it can be reproduced in turn, and ``reproduce.md``: config, environment, per-epoch
loss, time, memory and accuracy, side by side. On the CPU, same code and same environment, the losses are
identical (docs/architecture.md); a changed commit, a dirty tree or other package versions get a warning.

Exit codes: 0 ok, 1 the new run's status is not ok (after reproduce.md is written), 2 bad input.
"""

from __future__ import annotations

import argparse
import logging
import logging.config
import shutil
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from bench import interrupts, schema
from bench.diagnosis import PER_RUN_FIGURE
from bench.errors import (
    EXIT_RUN_FAILED,
    EXIT_USAGE,
    ConfigError,
    Interrupted,
    OneLineParser,
    UsageError,
    describe,
    exit_interrupted,
    fail,
    os_error_line,
)  # fmt: skip
from bench.folders import (
    CONFIG_FILE,
    CONFIG_SUBDIR,
    HYDRA_FILE,
    METRICS_FILE,
    OVERRIDES_FILE,
    RAN_IN_KEY,
    REPRODUCE_FILE,
    first_missing,
    hold_job,
    job_running,
    make_writable,
    refuse_inside_results,
    refuse_the_working_folder,
    remove_empty,
)
from bench.pair import ABSENT, CODE_CHANGED, change_text, code_notes, config_changes, render
from bench.results import MetricsError, load_metrics, write_atomically
from bench.runs import Source, load_source

log = logging.getLogger("bench.reproduce")

__all__ = ["CODE_CHANGED", "load_source", "main", "plan"]


@dataclass
class Plan:
    """What the reproduction runs, and how it differs from the saved run."""

    cfg: DictConfig
    overrides: list[str]
    config_changes: list[tuple[str, Any, Any]]
    notes: list[str] = field(default_factory=list)


# ----------------------------------------------------------------------------------------------- plan


def plan(source: Source, extra: Sequence[str]) -> Plan:
    """The saved config plus the effect of ``extra``, checked against the schema like any run."""
    schema.check_switches(extra)  # evaluate=2 ran as true
    hydra_keys = [o for o in extra if o.lstrip("+~").startswith(("hydra.", "hydra/"))]
    if hydra_keys:
        raise UsageError(f"{hydra_keys[0]}: hydra settings do not apply here; reproduce runs one job itself")
    # A lab preset is a sweep and resume picks a sweep's jobs: neither means anything for one job, and both
    # would be silently ignored.
    sweep_keys = [o for o in extra if schema.override_key(o) in ("experiment", "resume")]
    if sweep_keys:
        raise UsageError(f"{sweep_keys[0]}: a sweep setting; reproduce runs the one saved job (override its keys)")
    renamed = [o for o in extra if o.lstrip("+").split("=")[0] in (f"{g}.name" for g in schema.FIXED_NAMES)]
    if renamed:  # the option would run as it was, recorded under another name
        key, name = renamed[0].lstrip("+").split("=", 1)
        group = key.split(".")[0]
        raise UsageError(f"{renamed[0]}: the name of the {group} that runs; choose the option itself with "
                         f"{group}={name}")  # fmt: skip
    # A precision is its settings (schema._check_fixed_names): precision.autocast_dtype=bfloat16 ran bf16 and
    # recorded the saved run's fp32.
    changed = [o for o in extra if o.lstrip("+").split("=")[0].startswith("precision.")]
    if changed:
        raise UsageError(f"{changed[0]}: a precision's settings are its option's, which the results record by "
                         "name; choose another precision with precision=...")  # fmt: skip
    # Removing a key of the saved run took this checkout's default in its place, without a word (~epochs ran 3).
    removed = [o for o in extra if o.startswith("~")]
    if removed:
        raise UsageError(f"{removed[0]}: a reproduction keeps every setting of the saved run; give the key a "
                         "value instead (key=value)")  # fmt: skip
    base, target, notes = _compose_pair(source.overrides, list(extra))
    drift = config_changes(source.config, base)
    if drift and not notes:
        notes.append(
            "the configs in this checkout now compose differently: "
            + "; ".join(change_text(c) for c in drift)
            + " (the saved config is what runs)"
        )
    new = _apply(source.config, config_changes(base, target) + _named(target, extra))
    notes += _anchor_paths(new, source.cwd, extra)
    try:
        cfg = checked(new)
    except ConfigError as err:
        if extra and _fits(source.config):
            raise  # the overrides' fault, and the message names the key
        path = source.run_dir / CONFIG_SUBDIR / CONFIG_FILE
        raise ConfigError(f"{path}: {err} (the saved config is not valid in this checkout)") from None
    ran = OmegaConf.to_container(cfg, resolve=False)
    assert isinstance(ran, dict)
    return Plan(cfg, [*source.overrides, *extra], config_changes(source.config, ran), notes)


#: the config's paths, read relative to the folder the command runs in
PATH_KEYS = ("data_dir", "dataset.root", "dataset.cache_dir")


def _anchor_paths(cfg: DictConfig, ran_in: Path | None, extra: Sequence[str]) -> list[str]:
    """Make the saved run's relative paths lead where they led for it, when this command runs in another folder:
    ``dataset.root=imgs`` named the images beside that run's command, and from elsewhere the reproduction was
    refused (or, for ``data_dir``, looked for CIFAR-10 in another place). A path the overrides give, or one made
    of others (``${data_dir}/…``), is left as it is. Returns the note that says so, if any was changed."""
    if ran_in is None or ran_in.resolve() == Path.cwd().resolve():
        return []
    given = {o.lstrip("+").split("=")[0] for o in extra}
    raw = OmegaConf.to_container(cfg, resolve=False)
    assert isinstance(raw, dict)
    # data_dir only where the dataset reads it: a synthetic run's is unused, and moving it would be a change
    uses_data_dir = any(isinstance(v, str) and "${data_dir}" in v for v in (raw.get("dataset") or {}).values())
    moved = []
    for key in (k for k in PATH_KEYS if k != "data_dir" or uses_data_dir):
        node: Any = raw
        for part in key.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        if (
            key in given
            or not isinstance(node, str)
            or "${" in node
            or not node
            or Path(node).expanduser().is_absolute()
        ):
            continue  # ~/imgs is the user's home, wherever the command runs (datasets expand it)
        OmegaConf.update(cfg, key, str(ran_in / node), merge=False)
        moved.append(f"{key}={node}")
    if not moved:
        return []
    return [f"{', '.join(moved)}: relative to the folder the run was started in, {ran_in}, and read from there"]


def _compose_pair(saved: list[str], extra: list[str]) -> tuple[dict, dict, list[str]]:
    """Compose the saved overrides with and without ``extra`` in this checkout."""
    notes: list[str] = []
    try:
        base = _compose(saved)
    except (HydraException, OmegaConfBaseException) as err:
        notes.append(
            f"the saved overrides no longer compose in this checkout ({describe(err)}); the saved config is what runs"
        )
        saved = []
        base = _compose(saved)
    target = _compose([*saved, *extra]) if extra else base
    return base, target, notes


def _named(target: dict, extra: Sequence[str]) -> list[tuple[str, Any, Any]]:
    """What each override names, as composed with it: the whole node of a config group (``model=large``),
    the value of a key. The difference of the two compositions misses a key whose value this checkout
    composes already, where the saved config has another (a run made from another primary config, or
    defaults changed since): ``workers=2`` where the saved run had 0 and the defaults now say 2."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    found = []
    for override in OverridesParser.create().parse_overrides(list(extra)):
        node: Any = target
        for part in override.key_or_group.split("."):
            node = node.get(part, ABSENT) if isinstance(node, dict) else ABSENT
        if node is not ABSENT:  # a group without a node of its own (recipe) is all in the difference
            found.append((override.key_or_group, None, node))
    return found


def _compose(overrides: list[str]) -> dict:
    container = OmegaConf.to_container(schema.compose(overrides), resolve=False)
    assert isinstance(container, dict)
    return container


def _apply(config: dict, found: list[tuple[str, Any, Any]]) -> DictConfig:
    """A copy of the saved config with each change set (or removed)."""
    cfg = OmegaConf.create(config)
    for key, _, value in found:
        if value is ABSENT:
            parent, _, leaf = key.rpartition(".")
            node = OmegaConf.select(cfg, parent) if parent else cfg
            if isinstance(node, DictConfig):
                node.pop(leaf, None)
        else:
            OmegaConf.update(cfg, key, value, merge=False, force_add=True)
    return cfg


def checked(config: DictConfig | dict) -> DictConfig:
    """Typed by the schema and range-checked by schema.validate, as ``python -m bench`` does."""
    try:
        cfg = OmegaConf.merge(OmegaConf.structured(schema.Config), config)
    except OmegaConfBaseException as err:  # an unknown key gets the closest one, as in python -m bench
        raise ConfigError(describe(err)) from None
    assert isinstance(cfg, DictConfig)
    schema.validate(cfg)
    return cfg


def _fits(config: dict) -> bool:
    try:
        checked(config)
    except ConfigError:
        return False
    return True


# ----------------------------------------------------------------------------------------------- run


def new_run_dir(out: Path | None, source: Path) -> tuple[Path, Path | None]:
    """A folder that does not exist yet (or is empty), never the source run or inside it, made; and the outermost
    folder that making it created (first_missing), to be taken back if the reproduction never starts."""
    if out is None:
        out = Path("outputs") / "runs" / f"{datetime.now():%Y-%m-%d_%H-%M-%S_%f}_reproduce"
    src, dst = source.resolve(), out.resolve()
    if dst == src or src in dst.parents:
        raise UsageError(f"--out {out}: inside the run being reproduced; reproduce never writes there")
    refuse_the_working_folder(out, "--out")  # an empty working folder would become a run's, refusing all later
    # Inside a sweep's folder it would be read as one of its jobs (a resume, a report); inside another run's,
    # that run's folder would hold two.
    refuse_inside_results(out, "--out")
    if dst.exists() and not dst.is_dir():
        raise UsageError(f"--out {out}: that is a file, not a folder; reproduce writes a run's folder there")
    if dst.exists() and any(dst.iterdir()):
        raise UsageError(f"--out {out}: already exists and is not empty; reproduce never overwrites")
    made = first_missing(out)
    make_writable(out, "--out")
    return out, made


def write_hydra_files(run_dir: Path, the_plan: Plan) -> None:
    """The new folder's own ``.hydra/`` files, so it can be reproduced in turn."""
    hydra_dir = run_dir / CONFIG_SUBDIR
    hydra_dir.mkdir(parents=True, exist_ok=True)
    OmegaConf.save(the_plan.cfg, hydra_dir / CONFIG_FILE)
    OmegaConf.save(OmegaConf.create(the_plan.overrides), hydra_dir / OVERRIDES_FILE)
    # The one setting of Hydra's own file that bench reads: where the command ran, which its relative paths
    # lead from (a reproduction of this reproduction, from another folder).
    ran_in = OmegaConf.create()
    OmegaConf.update(ran_in, RAN_IN_KEY, str(Path.cwd().resolve()), force_add=True)
    OmegaConf.save(ran_in, hydra_dir / HYDRA_FILE)


def setup_logging(run_dir: Path) -> None:
    """Log as ``python -m bench`` does, from the same file (conf/hydra/job_logging/bench.yaml): the message
    alone on the console, timestamps and tracebacks in ``run_dir/bench.log``."""
    spec = yaml.safe_load(resources.files("bench.conf").joinpath("hydra/job_logging/bench.yaml").read_text())
    spec["handlers"]["file"]["filename"] = str(run_dir / "bench.log")
    logging.config.dictConfig(spec)


def report(source: Source, new_dir: Path, the_plan: Plan, new: dict[str, Any], argv: Sequence[str]) -> str:
    """reproduce.md: the original and the reproduction side by side."""
    old = source.metrics or {}
    lines = [
        "# Reproduction",
        "",
        f"reproduced_from: {source.run_dir.resolve()}",
        "",
        f"- new run: `{new_dir}`",
        f"- command: `python -m bench.reproduce {' '.join(argv)}`",
        f"- status: original {old.get('status', 'unknown')}, new {new.get('status')}"
        + (f" ({new.get('error')})" if new.get("error") else ""),
    ]
    notes = [f"note: {n}" for n in the_plan.notes] + code_notes(old.get("env"), new.get("env") or {})

    # Each run's own notes where the other lacks them: "its figures are of the 1 timed epoch it finished before
    # it stopped" says why a row below has no ratio, and a setting one run did not use why its figures differ.
    # Each note as its kind: "did not learn: final loss 2.302 is ..." whatever the figure.
    kinds = [{n: PER_RUN_FIGURE.sub(r"\1 \3", n) for n in run.get("notes") or []} for run in (old, new)]
    for side, mine, other in (("original", kinds[0], kinds[1]), ("new", kinds[1], kinds[0])):
        notes += [f"the {side} run's note: {n}" for n, kind in mine.items() if kind not in other.values()]
    if source.metrics_error:
        notes.insert(0, f"note: the original run's metrics are unreadable: {source.metrics_error}")
    if notes:
        lines += ["", "## Notes", "", *(f"- {n}" for n in notes)]
    lines += ["", *render(old, new, the_plan.config_changes)]
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------------------------ CLI


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = OneLineParser(
        prog="python -m bench.reproduce",
        description="Run an earlier run's saved config again into a new folder, and compare the two\n"
        "(reproduce.md in the new folder). RUN_DIR is never written to.",
        epilog="example:\n  python -m bench.reproduce outputs/runs/2025-01-01_12-00-00_000000 epochs=1",
        formatter_class=argparse.RawDescriptionHelpFormatter,  # the example on one line, as it is typed
    )
    parser.add_argument(
        "run_dir",
        type=Path,
        nargs="?",
        metavar="RUN_DIR",
        help="a run folder, outputs/runs/<time>, or a sweep job, outputs/sweeps/<time>/<job>",
    )
    parser.add_argument(
        "overrides",
        nargs="*",
        metavar="OVERRIDE",
        help="key=value or group=option, applied on top of the saved config (e.g. epochs=1)",
    )
    parser.add_argument("--out", type=Path, default=None, metavar="DIR",
                        help="the new run folder (default: outputs/runs/<time>_reproduce)")  # fmt: skip
    args = parser.parse_intermixed_args(argv)
    if args.run_dir is None:
        parser.error("RUN_DIR is missing: pass a run folder, e.g. outputs/runs/<time>")
    return args


def prepare(args: argparse.Namespace) -> tuple[Source, Plan, Path, Path | None]:
    """Everything that can be wrong with the input, checked before any folder is made; then the new folder, and
    the outermost folder made for it (first_missing)."""
    source = load_source(args.run_dir)
    if job_running(Path(args.run_dir)):  # its timings would compete with the reproduction's, and it has none yet
        raise UsageError(f"{args.run_dir} is still running (a live process holds it): reproduce it once it has "
                         "finished")  # fmt: skip
    the_plan = plan(source, args.overrides)
    return source, the_plan, *new_run_dir(args.out, args.run_dir)


class NotStarted(Interrupted):
    """A signal before the reproduction's run began: nothing was recorded, and its new folder is taken back."""


def reproduce(source: Source, the_plan: Plan, new_dir: Path, made: Path | None, argv: Sequence[str]) -> dict[str, Any]:
    """Train into ``new_dir`` and write reproduce.md; returns the new run's metrics. ``made``: the outermost folder
    new_run_dir created (first_missing), taken back with what this wrote where a signal comes before the run."""
    try:
        with interrupts.deferred():  # whole: a signal halfway through torch's import leaves a half-made module
            import torch  # here, so that --help and bad input do not wait for torch

            from bench import train  # noqa: F401  (imported whole here; _run runs it)
            from bench.environment import environment
        # Held while it runs, as a sweep's job is: a second reproduction of it was accepted (an original
        # "unknown", training beside this one) and a report read it as unreadable, not running.
        with hold_job(new_dir):
            setup_logging(new_dir)
            write_hydra_files(new_dir, the_plan)
            log.info("Reproducing %s into %s", source.run_dir, new_dir)
            if source.metrics_error:
                log.warning("note: the original run's metrics are unreadable: %s", source.metrics_error)
            for line in the_plan.notes:
                log.warning("note: %s", line)
            for line in code_notes((source.metrics or {}).get("env"), environment(torch.device("cpu"))):
                log.warning("%s", line)  # before training, so that a long run does not hide it
            return _run(source, the_plan, new_dir, argv)
    except Interrupted as stop:
        if (new_dir / METRICS_FILE).is_file():
            raise
        # Stopped before its run began: "the reproduction is recorded in DIR (reproduce.md)" was said of a folder
        # holding only its config, which the same command, run again, then refused as not empty.
        with interrupts.deferred(reraise=False):
            for handler in [h for h in logging.root.handlers if isinstance(h, logging.FileHandler)
                            and Path(h.baseFilename).resolve().parent == new_dir.resolve()]:  # fmt: skip
                logging.root.removeHandler(handler)  # its bench.log goes with the folder
                handler.close()
            for child in new_dir.iterdir() if new_dir.is_dir() else ():
                shutil.rmtree(child) if child.is_dir() and not child.is_symlink() else child.unlink()
            remove_empty(new_dir, made)
        raise NotStarted(stop.signum) from stop


def _run(source: Source, the_plan: Plan, new_dir: Path, argv: Sequence[str]) -> dict[str, Any]:
    """The run itself, the keys its command set being the original's and this one's (an "Unused here" note of a
    default the original's command never set had been said, recorded and listed in its report), and
    reproduce.md however it ended."""
    from bench import train

    try:
        with schema.command_overrides(the_plan.overrides):
            train.run(the_plan.cfg, new_dir, raise_usage_errors=True)
    except UsageError as err:
        _finish(source, the_plan, new_dir, argv)
        fail(f"{err} (details in {new_dir})", EXIT_USAGE)  # e.g. a cuda run on a machine without one
    except Interrupted:
        with interrupts.deferred(reraise=False):  # the comparison of what ran is still worth writing
            _finish(source, the_plan, new_dir, argv)
        raise
    return _finish(source, the_plan, new_dir, argv)


def _finish(source: Source, the_plan: Plan, new_dir: Path, argv: Sequence[str]) -> dict[str, Any]:
    new = load_metrics(new_dir)
    text = report(source, new_dir, the_plan, new, argv)
    write_atomically(new_dir / REPRODUCE_FILE, text)  # whole or not at all, as every result file
    print(f"\n{text}", end="", flush=True)
    log.debug("Wrote %s", new_dir / REPRODUCE_FILE)
    return new


def main(argv: Sequence[str] | None = None) -> None:
    """Console entry point: one line and exit 2 on bad input, 1 when the new run fails, 130/143 when stopped."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    with interrupts.entry_point():
        try:
            source, the_plan, new_dir, made = prepare(args)
        except UsageError as err:
            fail(str(err), EXIT_USAGE)
        except Interrupted as stop:
            exit_interrupted(stop, "nothing was started")
        except Exception as err:  # Hydra's parser and composition: the overrides were not valid
            fail(describe(err), EXIT_USAGE)
        try:
            new = reproduce(source, the_plan, new_dir, made, argv)
        except NotStarted as stop:
            kept = "left empty, as it was" if new_dir.exists() else "removed"
            exit_interrupted(stop, f"the reproduction had not started; nothing was recorded ({new_dir} is {kept})")
        except UsageError as err:  # another process took the new folder between its check and its lock
            fail(str(err), EXIT_USAGE)
        except Interrupted as stop:
            exit_interrupted(stop, f"the reproduction is recorded in {new_dir} ({REPRODUCE_FILE})")
        except (OSError, MetricsError) as err:  # a full disk, a folder removed under the run
            fail(f"could not record the reproduction in {new_dir}: {_reason(err)}", EXIT_RUN_FAILED)
    if new.get("status") != "ok":
        fail(f"run {new.get('status')}: {new.get('error')} (details in {new_dir})", EXIT_RUN_FAILED)
    print(f"Reproduction: {new_dir / REPRODUCE_FILE}")


def _reason(err: Exception) -> str:
    return os_error_line(err) if isinstance(err, OSError) else str(err)


if __name__ == "__main__":
    main()
