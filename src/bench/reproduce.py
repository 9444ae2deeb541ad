"""``python -m bench.reproduce RUN_DIR [overrides...]``: run an earlier run's config again, and compare.

A reproduction is a fresh run in a new folder (``outputs/runs/<time>_reproduce``); RUN_DIR is only read.
What runs is the saved ``RUN_DIR/.hydra/config.yaml``, so a later change to the YAML defaults cannot
change it silently. Extra overrides are applied on top: their effect is what Hydra's compose API makes of
them on top of the saved overrides, set key by key on the saved config. The new folder gets its own
``.hydra/`` files, so it can be reproduced in turn, and ``reproduce.md``: config, environment, per-epoch
loss, time, memory and accuracy, side by side. On the CPU, same code and same environment, the losses are
identical (DESIGN.md §4.6); a changed commit, a dirty tree or other package versions get a warning.

Exit codes: 0 ok, 1 the new run's status is not ok (after reproduce.md is written), 2 bad input.
"""

from __future__ import annotations

import argparse
import io
import logging
import logging.config
import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from importlib import resources
from pathlib import Path
from typing import Any, NoReturn

import yaml
from hydra import compose, initialize_config_module
from hydra.core.global_hydra import GlobalHydra
from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from bench import schema
from bench.cli import EXIT_RUN_FAILED, EXIT_USAGE, describe
from bench.errors import ConfigError, UsageError
from bench.results import METRICS_FILE, MetricsError, load_metrics

log = logging.getLogger("bench.reproduce")

REPORT_FILE = "reproduce.md"
CODE_CHANGED = "code changed since this run"
#: environment fields that say which code ran; a difference in any of them triggers the warning
CODE_FIELDS = ("git_commit", "git_dirty", "packages")
ENV_FIELDS = (
    "python", "torch", "torchvision", "cuda", "cudnn", "gpu", "driver", "cpu", "torch_threads", "hostname",
    "git_commit", "git_dirty",
)  # fmt: skip
_ABSENT: Any = type("Absent", (), {"__repr__": lambda self: "(absent)"})()


@dataclass
class Source:
    """The run to reproduce, as saved: its folder, config, command-line overrides and metrics."""

    run_dir: Path
    config: dict[str, Any]
    overrides: list[str]
    metrics: dict[str, Any] | None
    metrics_error: str | None = None


@dataclass
class Plan:
    """What the reproduction runs, and how it differs from the saved run."""

    cfg: DictConfig
    overrides: list[str]
    config_changes: list[tuple[str, Any, Any]]
    notes: list[str] = field(default_factory=list)


# ---------------------------------------------------------------------------------------------- input


def load_source(run_dir: Path) -> Source:
    """Read RUN_DIR's saved files; anything that makes it not a reproducible run is a UsageError."""
    if not run_dir.exists():
        raise UsageError(f"{run_dir}: no such folder")
    if not run_dir.is_dir():
        raise UsageError(f"{run_dir}: not a folder; pass a run folder such as outputs/runs/<time>")
    hydra_dir = run_dir / ".hydra"
    if not hydra_dir.is_dir():
        raise UsageError(f"{run_dir}: not a run folder (no .hydra/config.yaml){_sweep_hint(run_dir)}")
    config = _read_yaml(hydra_dir / "config.yaml")
    if not isinstance(config, dict) or not config:
        raise UsageError(f"{hydra_dir / 'config.yaml'}: not a saved bench config (expected a mapping of keys)")
    overrides = _read_yaml(hydra_dir / "overrides.yaml")
    if overrides in (None, {}):  # an empty file: no overrides
        overrides = []
    if not isinstance(overrides, list) or not all(isinstance(o, str) for o in overrides):
        raise UsageError(f"{hydra_dir / 'overrides.yaml'}: not a saved override list (expected a list of strings)")
    try:
        metrics, metrics_error = load_metrics(run_dir / METRICS_FILE), None
    except MetricsError as err:
        metrics, metrics_error = None, str(err)
    return Source(run_dir, config, overrides, metrics, metrics_error)


def _sweep_hint(folder: Path) -> str:
    jobs = sorted(p.name for p in folder.iterdir() if (p / ".hydra" / "config.yaml").is_file())
    if not jobs:
        return "; pass outputs/runs/<time> or one job of a sweep, outputs/sweeps/<time>/<job>"
    return f"; it looks like a sweep: pass one of its jobs, e.g. {folder / jobs[0]}"


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
        raise UsageError(f"{path}: not what Hydra writes ({_first_line(err)})") from None


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


# ----------------------------------------------------------------------------------------------- plan


def plan(source: Source, extra: Sequence[str]) -> Plan:
    """The saved config plus the effect of ``extra``, checked against the schema like any run."""
    hydra_keys = [o for o in extra if o.lstrip("+~").startswith(("hydra.", "hydra/"))]
    if hydra_keys:
        raise UsageError(f"{hydra_keys[0]}: hydra settings do not apply here; reproduce runs one job itself")
    base, target, notes = _compose_pair(source.overrides, list(extra))
    drift = changes(source.config, base)
    if drift and not notes:
        notes.append(
            "the configs in this checkout now compose differently: "
            + "; ".join(_change_text(c) for c in drift)
            + " (the saved config is what runs)"
        )
    new = _apply(source.config, changes(base, target))
    try:
        cfg = checked(new)
    except ConfigError as err:
        if extra and _fits(source.config):
            raise  # the overrides' fault, and the message names the key
        path = source.run_dir / ".hydra" / "config.yaml"
        raise ConfigError(f"{path}: {err} (the saved config is not valid in this checkout)") from None
    ran = OmegaConf.to_container(cfg, resolve=False)
    assert isinstance(ran, dict)
    return Plan(cfg, [*source.overrides, *extra], changes(source.config, ran), notes)


def _compose_pair(saved: list[str], extra: list[str]) -> tuple[dict, dict, list[str]]:
    """Compose the saved overrides with and without ``extra`` in this checkout."""
    notes: list[str] = []
    GlobalHydra.instance().clear()
    try:
        with initialize_config_module(config_module="bench.conf", version_base="1.3"):
            try:
                base = _compose(saved)
            except (HydraException, OmegaConfBaseException) as err:
                notes.append(
                    f"the saved overrides no longer compose in this checkout ({describe(err)}); "
                    "the saved config is what runs"
                )
                saved = []
                base = _compose(saved)
            target = _compose([*saved, *extra]) if extra else base
    finally:
        GlobalHydra.instance().clear()
    return base, target, notes


def _compose(overrides: list[str]) -> dict:
    container = OmegaConf.to_container(compose("config", overrides=overrides), resolve=False)
    assert isinstance(container, dict)
    return container


def changes(old: Any, new: Any, prefix: str = "") -> list[tuple[str, Any, Any]]:
    """Every key whose value differs, as (dotted key, old, new); a whole subtree where one side is not one."""
    if isinstance(old, dict) and isinstance(new, dict):
        found: list[tuple[str, Any, Any]] = []
        for key in [*old, *(k for k in new if k not in old)]:
            found += changes(old.get(key, _ABSENT), new.get(key, _ABSENT), f"{prefix}{key}.")
        return found
    return [] if _equal(old, new) else [(prefix[:-1], old, new)]


def _equal(old: Any, new: Any) -> bool:
    """Equal values of the same kind: 1 and 1.0 are the same number, but True is not 1 and None is not 0."""
    if isinstance(old, bool) or isinstance(new, bool):
        return type(old) is type(new) and old == new
    if isinstance(old, (int, float)) and isinstance(new, (int, float)):
        return old == new
    return type(old) is type(new) and old == new


def _apply(config: dict, found: list[tuple[str, Any, Any]]) -> DictConfig:
    """A copy of the saved config with each change set (or removed)."""
    cfg = OmegaConf.create(config)
    for key, _, value in found:
        if value is _ABSENT:
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
    except OmegaConfBaseException as err:
        key, msg = getattr(err, "full_key", None), _first_line(err)
        raise ConfigError(f"{key}: {msg}" if key else msg) from None
    assert isinstance(cfg, DictConfig)
    try:
        schema.validate(cfg)
    except OmegaConfBaseException as err:  # e.g. a mandatory key that the saved config lacks
        raise ConfigError(_first_line(err)) from None
    return cfg


def _fits(config: dict) -> bool:
    try:
        checked(config)
    except ConfigError:
        return False
    return True


# ----------------------------------------------------------------------------------------------- run


def new_run_dir(out: Path | None, source: Path) -> Path:
    """A folder that does not exist yet (or is empty), never the source run or inside it."""
    if out is None:
        out = Path("outputs") / "runs" / f"{datetime.now():%Y-%m-%d_%H-%M-%S_%f}_reproduce"
    src, dst = source.resolve(), out.resolve()
    if dst == src or src in dst.parents:
        raise UsageError(f"--out {out}: inside the run being reproduced; reproduce never writes there")
    if dst.exists() and (not dst.is_dir() or any(dst.iterdir())):
        raise UsageError(f"--out {out}: already exists and is not empty; reproduce never overwrites")
    return out


def write_hydra_files(run_dir: Path, the_plan: Plan) -> None:
    """The new folder's own ``.hydra/`` files, so it can be reproduced in turn."""
    hydra_dir = run_dir / ".hydra"
    hydra_dir.mkdir(parents=True, exist_ok=True)
    OmegaConf.save(the_plan.cfg, hydra_dir / "config.yaml")
    OmegaConf.save(OmegaConf.create(the_plan.overrides), hydra_dir / "overrides.yaml")


def setup_logging(run_dir: Path) -> None:
    """Log as ``python -m bench`` does, from the same file (conf/hydra/job_logging/bench.yaml): the message
    alone on the console, timestamps and tracebacks in ``run_dir/bench.log``."""
    spec = yaml.safe_load(resources.files("bench.conf").joinpath("hydra/job_logging/bench.yaml").read_text())
    spec["handlers"]["file"]["filename"] = str(run_dir / "bench.log")
    logging.config.dictConfig(spec)


def code_changes(then: dict[str, Any] | None, now: dict[str, Any]) -> list[str]:
    """What differs in the code that ran: git commit, uncommitted changes, package versions."""
    if not then:
        return []
    found = []  # a field the original did not record (an older bench) cannot be compared
    if "git_commit" in then and then["git_commit"] != now.get("git_commit"):
        found.append(f"git commit {_short(then['git_commit'])} → {_short(now.get('git_commit'))}")
    if "git_dirty" in then and then["git_dirty"] != now.get("git_dirty"):
        found.append(f"uncommitted changes {_yes_no(then['git_dirty'])} → {_yes_no(now.get('git_dirty'))}")
    if "packages" not in then:
        return found
    old_pkgs, new_pkgs = then.get("packages") or {}, now.get("packages") or {}
    for name in sorted(set(old_pkgs) | set(new_pkgs)):
        if old_pkgs.get(name) != new_pkgs.get(name):
            found.append(f"{name} {old_pkgs.get(name)} → {new_pkgs.get(name)}")
    return found


def _short(commit: Any) -> str:
    return str(commit)[:10] if commit else "unknown"


def _yes_no(flag: Any) -> str:
    return "unknown" if flag is None else ("yes" if flag else "no")


def code_notes(then: dict[str, Any] | None, now: dict[str, Any]) -> list[str]:
    """Warnings about the code, for the console and reproduce.md."""
    if not then:
        return ["note: the original run recorded no environment; cannot tell whether the code changed"]
    found = code_changes(then, now)
    if found:
        return [f"warning: {CODE_CHANGED}: " + "; ".join(found)]
    if then.get("git_dirty") and now.get("git_dirty"):
        return ["note: the code had uncommitted changes then and has now; they may not be the same changes"]
    return []


# -------------------------------------------------------------------------------------------- compare


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
    if source.metrics_error:
        notes.insert(0, f"note: the original run's metrics are unreadable: {source.metrics_error}")
    if notes:
        lines += ["", "## Notes", "", *(f"- {n}" for n in notes)]
    lines += ["", *_config_section(the_plan), "", *_env_section(old.get("env") or {}, new.get("env") or {})]
    lines += ["", *_loss_section(old, new), "", *_numbers_section(old, new)]
    return "\n".join(lines) + "\n"


def _table(header: Sequence[str], rows: list[Sequence[Any]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return out + ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]


def _cell(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value).replace("|", "\\|").replace("\n", " ")


def _change_text(change: tuple[str, Any, Any]) -> str:
    key, old, new = change
    return f"{key}: {_cell(old)} → {_cell(new)}"


def _config_section(the_plan: Plan) -> list[str]:
    head = ["## Config differences", ""]
    if not the_plan.config_changes:
        return [*head, "None: the same config ran."]
    return head + _table(("key", "original", "new"), [list(c) for c in the_plan.config_changes])


def _env_section(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    keys = [*ENV_FIELDS, *(k for k in {**old, **new} if k not in ENV_FIELDS and k != "packages")]
    rows = [(k, old.get(k), new.get(k)) for k in keys]
    old_pkgs, new_pkgs = old.get("packages") or {}, new.get("packages") or {}
    rows += [(f"packages.{p}", old_pkgs.get(p), new_pkgs.get(p)) for p in {**old_pkgs, **new_pkgs}]
    differing = [r for r in rows if r[1] != r[2]]
    table = _table(("field", "original", "new", "same"), [(*r, "yes" if r[1] == r[2] else "**no**") for r in rows])
    summary = f"{len(differing)} of {len(rows)} fields differ." if differing else "None: the same environment."
    return ["## Environment differences", "", summary, "", *table]


def _losses(metrics: dict[str, Any]) -> dict[int, Any]:
    return {e.get("epoch"): e.get("loss") for e in metrics.get("epochs_detail") or []}


def _loss_section(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    before, after = _losses(old), _losses(new)
    epochs = sorted(set(before) | set(after), key=lambda e: (e is None, e))
    rows = [(e, before.get(e), after.get(e), _identical(before.get(e), after.get(e))) for e in epochs]
    both = [r for r in rows if r[1] is not None and r[2] is not None]
    same = sum(r[3] == "yes" for r in both)
    if not both:
        summary = "No epochs to compare."
    elif same == len(both):
        summary = f"All {len(both)} compared epoch losses are identical."
    else:
        gap = max(abs(r[1] - r[2]) for r in both)
        summary = f"{len(both) - same} of {len(both)} compared epoch losses differ (largest gap {gap:.3g})."
    head = ["## Loss per epoch", "", summary, ""]
    return head + _table(
        ("epoch", "original", "new", "identical"), [(e, _exact(a), _exact(b), s) for e, a, b, s in rows]
    )


def _exact(loss: Any) -> Any:
    return repr(loss) if isinstance(loss, float) else loss


def _identical(a: Any, b: Any) -> str:
    if a is None or b is None:
        return "n/a"
    return "yes" if a == b else "no"


def _numbers_section(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    rows = [
        ("avg epoch time (s)", *_pair(old, new, "avg_epoch_time"), _ratio(old, new, "avg_epoch_time")),
        ("samples/s", *_pair(old, new, "samples_per_s"), _ratio(old, new, "samples_per_s")),
        (
            "peak CUDA memory allocated (MB)",
            *_pair(old, new, "peak_memory_mb"),
            _diff(old, new, "peak_memory_mb"),
        ),
        ("peak RSS (MB)", *_pair(old, new, "peak_rss_mb"), _diff(old, new, "peak_rss_mb")),
        ("final loss", *_pair(old, new, "final_loss"), _diff(old, new, "final_loss")),
        ("test accuracy", *_pair(old, new, "test_accuracy"), _diff(old, new, "test_accuracy")),
    ]
    return ["## Time, memory, accuracy", "", *_table(("metric", "original", "new", "new vs original"), rows)]


def _pair(old: dict[str, Any], new: dict[str, Any], key: str) -> tuple[Any, Any]:
    return (_num(old.get(key)), _num(new.get(key)))


def _num(value: Any) -> Any:
    return "n/a" if value is None else value


def _both(old: dict[str, Any], new: dict[str, Any], key: str) -> tuple[float, float] | None:
    a, b = old.get(key), new.get(key)
    ok = all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in (a, b))
    return (a, b) if ok else None


def _ratio(old: dict[str, Any], new: dict[str, Any], key: str) -> str:
    pair = _both(old, new, key)
    return f"× {pair[1] / pair[0]:.3f} (new / original)" if pair and pair[0] else "n/a"


def _diff(old: dict[str, Any], new: dict[str, Any], key: str) -> str:
    pair = _both(old, new, key)
    return f"{pair[1] - pair[0]:+.6g}" if pair else "n/a"


# ------------------------------------------------------------------------------------------------ CLI


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line, like every other bad input
        _fail(f"{message} (see python -m bench.reproduce --help)", EXIT_USAGE)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = _Parser(
        prog="python -m bench.reproduce",
        description="Run an earlier run's saved config again into a new folder, and compare the two "
        "(reproduce.md in the new folder). RUN_DIR is never written to.",
        epilog="example: python -m bench.reproduce outputs/runs/2025-01-01_12-00-00_000000 epochs=1",
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


def _fail(message: str, code: int) -> NoReturn:
    print(f"bench: error: {message}", file=sys.stderr)
    sys.exit(code)


def prepare(args: argparse.Namespace) -> tuple[Source, Plan, Path]:
    """Everything that can be wrong with the input, checked before any folder is made."""
    source = load_source(args.run_dir)
    return source, plan(source, args.overrides), new_run_dir(args.out, args.run_dir)


def reproduce(source: Source, the_plan: Plan, new_dir: Path, argv: Sequence[str]) -> dict[str, Any]:
    """Train into ``new_dir`` and write reproduce.md; returns the new run's metrics."""
    import torch  # here, so that --help and bad input do not wait for torch

    from bench import measure, train

    new_dir.mkdir(parents=True, exist_ok=True)
    setup_logging(new_dir)
    write_hydra_files(new_dir, the_plan)
    log.info("Reproducing %s into %s", source.run_dir, new_dir)
    if source.metrics_error:
        log.warning("note: the original run's metrics are unreadable: %s", source.metrics_error)
    for line in the_plan.notes:
        log.warning("note: %s", line)
    for line in code_notes((source.metrics or {}).get("env"), measure.environment(torch.device("cpu"))):
        log.warning("%s", line)  # before training, so that a long run does not hide it
    try:
        train.run(the_plan.cfg, new_dir, raise_usage_errors=True)
    except UsageError as err:
        _finish(source, the_plan, new_dir, argv)
        _fail(f"{err} (details in {new_dir})", EXIT_USAGE)  # e.g. a cuda run on a machine without one
    return _finish(source, the_plan, new_dir, argv)


def _finish(source: Source, the_plan: Plan, new_dir: Path, argv: Sequence[str]) -> dict[str, Any]:
    new = load_metrics(new_dir)
    text = report(source, new_dir, the_plan, new, argv)
    (new_dir / REPORT_FILE).write_text(text)
    print(f"\n{text}", end="", flush=True)
    log.debug("Wrote %s", new_dir / REPORT_FILE)
    return new


def main(argv: Sequence[str] | None = None) -> None:
    """Console entry point: one line and exit 2 on bad input, exit 1 when the new run fails."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    try:
        source, the_plan, new_dir = prepare(args)
    except UsageError as err:
        _fail(str(err), EXIT_USAGE)
    except (HydraException, OmegaConfBaseException) as err:
        _fail(describe(err), EXIT_USAGE)
    new = reproduce(source, the_plan, new_dir, argv)
    if new.get("status") != "ok":
        _fail(f"run {new.get('status')}: {new.get('error')} (details in {new_dir})", EXIT_RUN_FAILED)
    print(f"Reproduction: {new_dir / REPORT_FILE}")


if __name__ == "__main__":
    main()
