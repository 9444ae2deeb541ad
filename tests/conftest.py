"""Shared fixtures: the CLI in a subprocess, Hydra's compose API in-process, and tiny overrides."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from omegaconf import DictConfig

from bench.schema import compose

# A run small enough for 2 CPU cores: a few hundred images, one epoch, no worker processes.
TINY = (
    "dataset.train_size=256",
    "dataset.test_size=64",
    "epochs=1",
    "workers=0",
    "warmup_steps=2",
    "batch_size=32",
)

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def offline_env() -> dict[str, str]:
    """The environment for CLI subprocesses: any download attempt fails at once, as on a machine offline."""
    env = dict(os.environ)
    env.update(
        https_proxy="http://127.0.0.1:9",
        http_proxy="http://127.0.0.1:9",
        HTTPS_PROXY="http://127.0.0.1:9",
        HTTP_PROXY="http://127.0.0.1:9",
        MPLBACKEND="Agg",
    )
    env.pop("HYDRA_FULL_ERROR", None)
    return env


def run_cli(cwd: Path, *args: str, module: str = "bench", timeout: float = 600) -> subprocess.CompletedProcess:
    """`python -m <module> ARGS` from ``cwd`` (never the repository), as a user would type it."""
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=cwd,
        env=offline_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def only_run_dir(root: Path) -> Path:
    runs = sorted((root / "outputs" / "runs").iterdir())
    assert len(runs) == 1, runs
    return runs[0]


def read_metrics(run_dir: Path) -> dict:
    return json.loads((run_dir / "metrics.json").read_text())


@pytest.fixture
def cfg_for() -> Callable[..., DictConfig]:
    """Compose the app's config the way the CLI does, with overrides (TINY first unless tiny=False)."""

    def make(*overrides: str, tiny: bool = True) -> DictConfig:
        return compose([*(TINY if tiny else ()), *overrides])

    return make
