"""A run's result and its ``metrics.json`` (DESIGN.md §3): written atomically, read back with validation."""

from __future__ import annotations

import json
import math
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

SCHEMA = 1
METRICS_FILE = "metrics.json"
STATUSES = ("ok", "oom", "failed", "diverged", "skipped")
REQUIRED = ("schema", "status", "model", "device", "precision", "batch_size")


class MetricsError(ValueError):
    """metrics.json is missing, not JSON, or not a bench metrics file."""


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


@dataclass
class RunResult:
    status: str = "ok"
    error: str | None = None
    model: str | None = None
    device: str | None = None
    device_name: str | None = None
    precision: str | None = None
    dataset: str | None = None
    loader: str | None = None
    batch_size: int | None = None
    workers: int | None = None
    epochs: int | None = None
    seed: int | None = None
    params: int | None = None
    train_samples: int | None = None
    test_samples: int | None = None
    epochs_detail: list[EpochStats] = field(default_factory=list)
    avg_epoch_time: float | None = None
    total_time: float | None = None
    warmup_time: float | None = None
    warmup_steps: int | None = None
    samples_per_s: float | None = None
    peak_memory_mb: float | None = None
    peak_reserved_mb: float | None = None
    peak_rss_mb: float | None = None
    dataset_memory_mb: float | None = None
    final_loss: float | None = None
    test_accuracy: float | None = None
    eval_time: float | None = None
    #: how the step ran (optimizer implementation, compile mode, ...), after 'auto' was resolved
    step: dict[str, Any] = field(default_factory=dict)
    #: facts a reader of the numbers should know, e.g. a config key the loader ignored
    notes: list[str] = field(default_factory=list)
    env: dict[str, Any] = field(default_factory=dict)
    schema: int = SCHEMA

    def to_dict(self) -> dict[str, Any]:
        return _finite(asdict(self))


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
    target = run_dir / METRICS_FILE
    fd, tmp = tempfile.mkstemp(prefix=".metrics.", suffix=".tmp", dir=run_dir)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=2, allow_nan=False)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


def load_metrics(path: Path) -> dict[str, Any]:
    """Read a metrics.json (or the one in a run folder), raising MetricsError with a one-line reason."""
    path = Path(path)
    if path.is_dir():
        path = path / METRICS_FILE
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise MetricsError(f"{path}: no metrics.json (the run did not finish writing one)") from None
    except (OSError, UnicodeDecodeError) as err:
        raise MetricsError(f"{path}: cannot read: {err}") from None
    except json.JSONDecodeError as err:
        raise MetricsError(f"{path}: not valid JSON ({err.msg} at line {err.lineno})") from None
    if not isinstance(data, dict):
        raise MetricsError(f"{path}: expected a JSON object, found {type(data).__name__}")
    missing = [k for k in REQUIRED if k not in data]
    if missing:
        raise MetricsError(f"{path}: not a bench metrics file (missing {', '.join(missing)})")
    if data["schema"] != SCHEMA:
        raise MetricsError(f"{path}: metrics schema {data['schema']!r}, this bench reads {SCHEMA}")
    if data["status"] not in STATUSES:
        raise MetricsError(f"{path}: unknown status {data['status']!r}")
    return data
