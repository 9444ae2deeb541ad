"""A run's result and its ``metrics.json``: written atomically, read back with validation.

``metrics.json`` is flat: the run's config and status, ``epochs_detail`` (one record per timed epoch), then
every run-level metric of :data:`bench.metrics.METRICS` under its own key (null where a run did not
measure it), then how the step ran, notes and the environment. docs/architecture.md lists the fields.
"""

from __future__ import annotations

import json
import math
import os
import secrets
import sys
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from bench.folders import METRICS_FILE
from bench.metrics import METRICS

SCHEMA = 1
STATUSES = ("ok", "oom", "failed", "diverged", "skipped", "interrupted")
REQUIRED = ("schema", "status", "model", "device", "precision", "batch_size")
#: measured figures that are above 0 whenever present
POSITIVE = ("samples_per_s", "avg_epoch_time", "samples_per_s_median", "epoch_time_median")
#: the JSON type each structured field must have; anything else makes the file unreadable, not a crash
SHAPES: dict[str, type] = {
    "epochs_detail": list, "env": dict, "step": dict, "notes": list, "memory": dict, "diagnosis": dict,
    "capacity": dict,
}  # fmt: skip


#: metrics.json's ``memory`` record: the parts of the peak, each ``<part>_mb``, and their names in words
MEMORY_PARTS = (
    "params", "grads", "optimizer", "dataset", "other_persistent", "activations", "graph_pool", "reserve",
)  # fmt: skip
MEMORY_LABELS = {
    "params": "parameters",
    "grads": "gradients",
    "optimizer": "optimizer state",
    "dataset": "resident dataset",
    "other_persistent": "other persistent",
    "activations": "activations & temporaries",
    "graph_pool": "CUDA graphs' pool",
    "reserve": "allocator reserve",
}


def parts_shown(breakdowns: Iterable[Mapping[str, float]]) -> list[str]:
    """The parts a table or bar of these breakdowns shows: every one, but the CUDA graphs' pool only where a
    run captured a graph (elsewhere, and in older metrics.json files, it is zero or absent and says nothing),
    and the resident dataset only where a run held one (the DataLoader's path: a column of zeros)."""
    breakdowns = list(breakdowns)
    held = {p for p in ("graph_pool", "dataset") if any(parts.get(f"{p}_mb") for parts in breakdowns)}
    return [p for p in MEMORY_PARTS if p not in ("graph_pool", "dataset") or p in held]


def lower_bound_reason(stopped: object, largest: float, smallest_failing: float | None) -> str | None:
    """Why a max-batch search's ``largest`` fitting batch is only a lower bound, in words ("its search stopped:
    time budget; 53,248 (8% more) ran out of memory"); None where the search bracketed it, or did not say (an
    older metrics.json). Plain values, so the run and a report of its metrics.json say it alike."""
    if not isinstance(stopped, str) or stopped.startswith("bracketed"):
        return None
    failing = smallest_failing
    if failing is None or math.isnan(failing):
        return f"its search stopped: {stopped}; no batch ran out of memory"
    return f"its search stopped: {stopped}; {failing:,.0f} ({failing / largest - 1:.0%} more) ran out of memory"


class MetricsError(ValueError):
    """metrics.json is missing, not JSON, or not a bench metrics file."""


class NotRecorded(Exception):
    """metrics.json could not be written (a full disk, a folder gone): the message carries what it would
    have said, since there is no other place left to say it."""

    def __init__(self, run_dir: Path, result: RunResult, err: OSError) -> None:
        reason = f"{err.strerror or err}" + (f": {err.filename}" if err.filename else "")
        headline = result.metrics.get("samples_per_s")
        ended = f"the run ended {result.status}" + (f", {headline:,.0f} samples/s" if headline else "")
        super().__init__(f"could not write {run_dir / METRICS_FILE} ({reason}); {ended}")


@dataclass
class EpochStats:
    epoch: int
    time_s: float
    samples: int
    samples_per_s: float
    loss: float
    data_wait_s: float
    #: the same epoch timed by CUDA events (null on CPU); must agree with time_s
    cuda_time_s: float | None = None
    #: CUDA events around each host-to-device copy, summed (null on CPU, 0 where batches are made on the GPU)
    copy_s: float | None = None
    #: CUDA events around each step, summed: the time the GPU stream spent on training steps (null on CPU)
    gpu_busy_s: float | None = None
    #: how far ahead of the GPU the host queued the epoch's steps, in steps (median; CUDA events, null on CPU):
    #: near 0, the GPU ran each step as soon as the host queued it, so the host set the pace
    host_lead_steps: float | None = None
    #: the GPU's energy over the epoch, from NVML's total-energy counter (null without NVML)
    energy_j: float | None = None
    #: which repeat of the timed epochs this epoch belongs to (repeat=N), from 1
    repeat: int = 1


#: an epoch's figures in metrics.json, every one a number or null
EPOCH_FIELDS = tuple(f.name for f in fields(EpochStats))


@dataclass
class RunResult:
    status: str = "ok"
    error: str | None = None
    task: str = "train"
    model: str | None = None
    device: str | None = None
    device_name: str | None = None
    precision: str | None = None
    dataset: str | None = None
    loader: str | None = None
    recipe: str | None = None
    batch_size: int | None = None
    workers: int | None = None
    epochs: int | None = None
    seed: int | None = None
    warmup_steps: int | None = None
    params: int | None = None
    classes: int | None = None
    #: the loss (the train labels' entropy, nats) and test accuracy (the largest train class's share of the test
    #: labels) of a guess that knows only the classes' shares: the learning check's chance where they differ
    prior_loss: float | None = None
    prior_accuracy: float | None = None
    cudnn_benchmark: bool | None = None
    train_samples: int | None = None
    test_samples: int | None = None
    epochs_detail: list[EpochStats] = field(default_factory=list)
    #: run-level numbers, keyed as in bench.metrics.METRICS; written flat into metrics.json
    metrics: dict[str, Any] = field(default_factory=dict)
    #: what peak memory is made of (bench.memory.breakdown), in MB
    memory: dict[str, Any] = field(default_factory=dict)
    #: where the time went and what to try next (bench.diagnosis.diagnose)
    diagnosis: dict[str, Any] = field(default_factory=dict)
    #: task=max_batch: every attempt of the search, and why it stopped (bench.capacity)
    capacity: dict[str, Any] = field(default_factory=dict)
    #: how the step ran (optimizer implementation, compile mode, ...), after 'auto' was resolved
    step: dict[str, Any] = field(default_factory=dict)
    #: facts a reader of the numbers should know, e.g. a config key the loader ignored
    notes: list[str] = field(default_factory=list)
    #: when the run began and ended (its data, warm-up and evaluation included), and when its timed epochs did,
    #: in Unix time (measure.timestamp: comparable across processes, unlike the clocks that time them), so that
    #: a report can tell a run timed while another was busy on the same machine
    ran_from: float | None = None
    ran_until: float | None = None
    timed_from: float | None = None
    timed_until: float | None = None
    env: dict[str, Any] = field(default_factory=dict)
    schema: int = SCHEMA

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        measured = data.pop("metrics")
        out: dict[str, Any] = {}
        for key, value in data.items():
            out[key] = value
            if key == "epochs_detail":  # the run-level numbers follow the epochs they summarize
                out.update({m.key: measured.pop(m.key, None) for m in METRICS})
                out.update(measured)
        return _finite(out)


#: the record's single-valued fields (its config, status, counts): a list or an object in one is hand-edited,
#: and a table cell or a match key made of it would crash whatever reads the runs
SCALARS = tuple(f.name for f in fields(RunResult) if f.name not in SHAPES and f.name != "metrics")


def _finite(value: Any) -> Any:
    """JSON has no NaN or Infinity; a diverged loss is stored as null rather than breaking readers."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def write_metrics(run_dir: Path, result: RunResult | dict[str, Any]) -> Path:
    """Write metrics.json so that a reader never sees half a file: temp file, fsync, rename."""
    run_dir.mkdir(parents=True, exist_ok=True)
    data = result.to_dict() if isinstance(result, RunResult) else _finite(result)
    return write_atomically(run_dir / METRICS_FILE, json.dumps(data, indent=2, allow_nan=False) + "\n")


def write_atomically(target: Path, text: str) -> Path:
    """``text`` into ``target`` whole or not at all (temp file, fsync, rename): a full disk or a signal leaves
    the earlier file, never half of one."""
    # Not mkstemp, which makes the file private (0600): results are read by others (a cluster's shared
    # folders), so the file gets the mode every other file here gets, 0666 less the umask.
    tmp = target.parent / f".{target.stem}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


class _NotJSON(ValueError):
    """NaN, Infinity or -Infinity, which Python's reader accepts and JSON does not."""


def _not_json(constant: str) -> Any:
    raise _NotJSON(f"{constant} is not a JSON value")


def load_metrics(path: Path) -> dict[str, Any]:
    """Read a metrics.json (or the one in a run folder), raising MetricsError with a one-line reason."""
    path = Path(path)
    if path.is_dir():
        path = path / METRICS_FILE
    try:
        # bench writes NaN and infinities as null (strict JSON); Python would read them back as numbers.
        data = json.loads(path.read_text(), parse_constant=_not_json)
    except FileNotFoundError:
        raise MetricsError(f"{path}: no metrics.json (the run did not finish writing one)") from None
    except (OSError, UnicodeDecodeError) as err:
        raise MetricsError(f"{path}: cannot read: {err}") from None
    except json.JSONDecodeError as err:
        # json's "Unterminated string starting at" ends in "at" already: "at at line 1"
        raise MetricsError(f"{path}: not valid JSON ({err.msg.removesuffix(' at')} at line {err.lineno})") from None
    except _NotJSON as err:
        raise MetricsError(f"{path}: not valid JSON ({err})") from None
    except RecursionError:
        raise MetricsError(f"{path}: not valid JSON (nested too deeply)") from None
    if not isinstance(data, dict):
        raise MetricsError(f"{path}: expected a JSON object, found {type(data).__name__}")
    missing = [k for k in REQUIRED if k not in data]
    if missing:
        raise MetricsError(f"{path}: not a bench metrics file (missing {', '.join(missing)})")
    if data["schema"] != SCHEMA:
        raise MetricsError(f"{path}: metrics schema {data['schema']!r}, this bench reads {SCHEMA}")
    if data["status"] not in STATUSES:
        raise MetricsError(f"{path}: unknown status {data['status']!r}")
    _check_shapes(path, data)
    _check_numbers(path, data)
    return data


def _check_numbers(path: Path, value: Any) -> None:
    """An integer beyond a float's range (10**400, written by hand) would stop every table built from it."""
    if isinstance(value, dict):
        for item in value.values():
            _check_numbers(path, item)
    elif isinstance(value, list):
        for item in value:
            _check_numbers(path, item)
    elif isinstance(value, int) and not isinstance(value, bool) and abs(value) > sys.float_info.max:
        raise MetricsError(f"{path}: a number too large for any measurement ({str(value)[:12]}...)")


def _check_shapes(path: Path, data: dict[str, Any]) -> None:
    """Valid JSON of the wrong shape (a string where the epochs should be) is as unreadable as bad JSON."""
    for key, kind in SHAPES.items():
        if data.get(key) is not None and not isinstance(data[key], kind):
            raise MetricsError(f"{path}: {key} is a {type(data[key]).__name__}, expected a {kind.__name__}")
    for key in SCALARS:
        if isinstance(data.get(key), list | dict):
            raise MetricsError(f"{path}: {key} is a {type(data[key]).__name__}, expected a single value")
    for epoch in data.get("epochs_detail") or []:
        if not isinstance(epoch, dict):
            raise MetricsError(f"{path}: epochs_detail holds a {type(epoch).__name__}, expected objects")
        for key in EPOCH_FIELDS:  # every figure of an epoch is a number (the loss "2.30" is text, not a loss)
            value = epoch.get(key)
            if value is not None and not _number(value):
                raise MetricsError(f"{path}: an epoch's {key} is {value!r}, expected a number or null")
    packages = (data.get("env") or {}).get("packages")
    if packages is not None and not isinstance(packages, dict):
        raise MetricsError(f"{path}: env.packages is a {type(packages).__name__}, expected an object")
    for m in METRICS:
        value = data.get(m.key)
        if value is not None and not _number(value):
            raise MetricsError(f"{path}: {m.key} is {value!r}, expected a number or null")
    for key in POSITIVE:  # a rate or an epoch of 0 s or less was never measured: every ratio of it would mislead
        value = data.get(key)
        if value is not None and value <= 0:
            raise MetricsError(f"{path}: {key} is {value!r}, expected a positive number or null")


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)
