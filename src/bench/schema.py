"""The config schema: dataclasses registered in Hydra's ConfigStore, plus the checks types cannot express.

Types are enforced by OmegaConf when Hydra composes (``batch_size=abc`` fails there); choices and ranges
are checked by :func:`validate` before any work starts, so every bad value gets one line naming the key
and what is allowed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig

from bench.errors import ConfigError, DeviceUnavailable


@dataclass
class ModelConfig:
    name: str = MISSING


@dataclass
class DeviceConfig:
    name: str = "auto"


@dataclass
class PrecisionConfig:
    name: str = "fp32"
    autocast_dtype: str | None = None
    grad_scaler: bool = False


@dataclass
class DatasetConfig:
    name: str = "synthetic"
    # Synthetic: how many images to generate. Others: a deterministic subset of that many.
    train_size: int | None = None
    test_size: int | None = None
    # imagefolder: the folder holding train/ and test/.
    root: str | None = None
    # cifar10: fetch the archive when it is not in data_dir.
    download: bool = True


@dataclass
class LoaderConfig:
    name: str = "dataloader"
    pin_memory: bool = False
    persistent_workers: bool = False
    prefetch_factor: int | None = None


@dataclass
class StepConfig:
    """How one optimisation step is executed. Every choice computes the same model (DESIGN.md §4.5)."""

    # auto: the fastest measured for the device (see README "Performance"); default: torch's own pick.
    adam: str = "auto"
    set_to_none: bool = True
    non_blocking: bool = True
    # null: per device, as measured (on for the CPU, off for CUDA); true/false force it.
    channels_last: bool | None = None
    compile: str = "none"


@dataclass
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    device: DeviceConfig = field(default_factory=DeviceConfig)
    precision: PrecisionConfig = field(default_factory=PrecisionConfig)
    dataset: DatasetConfig = field(default_factory=DatasetConfig)
    loader: LoaderConfig = field(default_factory=LoaderConfig)
    step: StepConfig = field(default_factory=StepConfig)
    batch_size: int = 64
    workers: int = 2
    epochs: int = 3
    lr: float = 1e-3
    seed: int = 0
    warmup_steps: int = 5
    data_dir: str = "data"
    evaluate: bool = True
    cudnn_benchmark: bool = True
    # Set by the experiment presets: which lab part a sweep reproduces, and the lab's figures.
    lab: Any = None


ConfigStore.instance().store(name="bench_schema", node=Config)

CHOICES: dict[str, tuple[Any, ...]] = {
    "device.name": ("auto", "cpu", "cuda"),
    "precision.autocast_dtype": (None, "float16", "bfloat16"),
    "step.adam": ("auto", "default", "forloop", "foreach", "fused"),
    "step.compile": ("none", "default", "reduce-overhead", "cudagraph"),
}

CUDA_ONLY_COMPILE = ("reduce-overhead", "cudagraph")

MINIMUMS: dict[str, int] = {
    "batch_size": 1,
    "workers": 0,
    "epochs": 1,
    "warmup_steps": 0,
    "dataset.train_size": 1,
    "dataset.test_size": 1,
    "loader.prefetch_factor": 1,
}


def _registered_choices() -> dict[str, tuple[str, ...]]:
    # Imported lazily: the registries pull in torch, and the schema is needed before that (--help).
    from bench.data import DATASETS, LOADERS
    from bench.models import MODELS

    return {
        "model.name": tuple(sorted(MODELS)),
        "dataset.name": tuple(sorted(DATASETS)),
        "loader.name": tuple(sorted(LOADERS)),
    }


def _targets_cuda(device: str) -> bool:
    """Whether the run will ask for CUDA: train.resolve_device's rule, where a missing GPU still counts."""
    from bench.train import resolve_device  # lazily, like the registries: it imports torch

    try:
        return resolve_device(device).type == "cuda"
    except DeviceUnavailable:  # device=cuda on a machine without it: reported by the run itself
        return True


def _get(cfg: DictConfig, key: str) -> Any:
    node: Any = cfg
    for part in key.split("."):
        node = node[part]
    return node


def validate(cfg: DictConfig) -> None:
    """Raise ConfigError for the first value the schema's types cannot rule out but the run cannot use."""
    for key, allowed in {**CHOICES, **_registered_choices()}.items():
        value = _get(cfg, key)
        if value not in allowed:
            shown = ", ".join("null" if a is None else str(a) for a in allowed)
            raise ConfigError(f"{key}={value} is not allowed; choose one of: {shown}")
    for key, low in MINIMUMS.items():
        value = _get(cfg, key)
        if value is not None and value < low:
            raise ConfigError(f"{key}={value} is out of range; it must be an integer >= {low}")
    if not cfg.lr > 0:
        raise ConfigError(f"lr={cfg.lr} is out of range; it must be > 0")
    compile_mode = cfg.step.compile
    if compile_mode in CUDA_ONLY_COMPILE and not _targets_cuda(cfg.device.name):
        where = "cpu" if cfg.device.name == "cpu" else "this machine (no CUDA)"
        raise ConfigError(f"step.compile={compile_mode} needs CUDA; on {where} use none or default")
    if compile_mode == "cudagraph" and cfg.precision.grad_scaler:
        raise ConfigError("step.compile=cudagraph cannot capture GradScaler; use precision=fp32 or amp_bf16")
    if cfg.dataset.name == "imagefolder" and not cfg.dataset.root:
        raise ConfigError("dataset.root is not set; dataset=imagefolder needs dataset.root=/path/with/train+test")
