"""One optimisation step, built once per run from the ``step`` and ``precision`` config.

Every variant computes the same update (DESIGN.md §4.5): Adam is Adam whether it runs as a Python loop, as
foreach kernels or fused; channels_last and compilation change memory layout and kernels, not the maths.
A test compares their losses with the plain step's.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from omegaconf import DictConfig
from torch import Tensor, nn

StepFn = Callable[[Tensor, Tensor], Tensor]

# What `step.adam=auto` resolves to, per device type; chosen by benchmarks/step_options.py (README
# "Performance"). On CUDA, fused Adam also lets GradScaler skip its per-step found-inf sync.
AUTO_ADAM = {"cuda": "fused", "cpu": "foreach"}
_ADAM_KWARGS: dict[str, dict[str, bool]] = {
    "default": {},
    "forloop": {"foreach": False},
    "foreach": {"foreach": True},
    "fused": {"fused": True},
}


@dataclass
class Step:
    """The step function plus what a reader of the metrics should know about how it ran."""

    fn: StepFn
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    settings: dict[str, object]


def resolve_adam(choice: str, device: torch.device) -> str:
    return AUTO_ADAM.get(device.type, "default") if choice == "auto" else choice


def build_step(model: nn.Module, cfg: DictConfig, device: torch.device) -> Step:
    """Adam (lr from cfg) + cross-entropy, under the configured precision and step options."""
    adam = resolve_adam(cfg.step.adam, device)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr, **_ADAM_KWARGS[adam])
    criterion = nn.CrossEntropyLoss()
    dtype = getattr(torch, cfg.precision.autocast_dtype) if cfg.precision.autocast_dtype else None
    scaler = torch.amp.GradScaler(device.type, enabled=bool(cfg.precision.grad_scaler))
    set_to_none = bool(cfg.step.set_to_none)

    def step(x: Tensor, y: Tensor) -> Tensor:
        optimizer.zero_grad(set_to_none=set_to_none)
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            loss = criterion(model(x), y)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        # Detached, never .item(): reading the value here would sync with the GPU every step.
        return loss.detach()

    settings = {
        "adam": adam,
        "set_to_none": set_to_none,
        "channels_last": bool(cfg.step.channels_last),
        "compile": cfg.step.compile,
        "autocast": cfg.precision.autocast_dtype,
        "grad_scaler": scaler.is_enabled(),
    }
    return Step(step, optimizer, scaler, settings)
