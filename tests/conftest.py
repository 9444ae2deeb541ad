"""Shared fixtures: the CLI in a subprocess, Hydra's compose API in-process, and tiny overrides."""

from __future__ import annotations

import contextlib
import importlib
import io
import json
import logging
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
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


ENTRY_POINTS = {
    "bench": "bench.cli",
    "bench.report": "bench.report",
    "bench.reproduce": "bench.reproduce",
    "bench.compare": "bench.compare",
}


def run_cli(
    cwd: Path, *args: str, module: str = "bench", timeout: float = 600, isolated: bool = False
) -> subprocess.CompletedProcess:
    """`python -m <module> ARGS` from ``cwd`` (never the repository), as a user would type it.

    It runs the entry point's real ``main()`` in this process (a new Python process costs seconds of
    imports on 2 cores); ``isolated=True`` starts one, for what needs a process of its own (the installed
    configs found from anywhere, signals, concurrency).
    """
    if isolated:
        return subprocess.run(
            [sys.executable, "-m", module, *args], cwd=cwd, env=offline_env(), capture_output=True, text=True,
            timeout=timeout,
        )  # fmt: skip
    return _in_process(cwd, module, list(args))


def _in_process(cwd: Path, module: str, args: list[str]) -> subprocess.CompletedProcess:
    from hydra.core.global_hydra import GlobalHydra

    main = importlib.import_module(ENTRY_POINTS[module]).main
    out, err = io.StringIO(), io.StringIO()
    saved = (os.getcwd(), sys.argv, dict(os.environ), logging.root.handlers[:])
    os.environ.update({k: v for k, v in offline_env().items() if k.lower().endswith("_proxy")})
    os.environ.pop("HYDRA_FULL_ERROR", None)
    GlobalHydra.instance().clear()
    code: int | str | None = 0
    try:
        os.chdir(cwd)
        sys.argv = [module, *args]
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                main(args) if module != "bench" else main()
            except SystemExit as stop:
                code = stop.code
    finally:
        os.chdir(saved[0])
        sys.argv = saved[1]
        os.environ.clear()
        os.environ.update(saved[2])
        GlobalHydra.instance().clear()
        for handler in logging.root.handlers[:]:  # Hydra configured the job's logging: put pytest's back
            if handler not in saved[3]:
                logging.root.removeHandler(handler)
                handler.close()
        for handler in saved[3]:
            if handler not in logging.root.handlers:
                logging.root.addHandler(handler)
    returncode = code if isinstance(code, int) else (0 if code is None else 1)
    return subprocess.CompletedProcess([module, *args], returncode, out.getvalue(), err.getvalue())


@pytest.fixture(autouse=True)
def _no_signal_carried_over() -> Iterator[None]:
    """A signal a test sends in this process (to a command run in-process) is remembered by bench.interrupts until
    the next entry point, and keeps the unraisable hook it installed: a later test's train.run read its own
    ValueError as "a signal came first" and stopped the whole session. Each test starts clean."""
    from bench import interrupts

    hook = sys.unraisablehook
    yield
    interrupts.reset()
    sys.unraisablehook = hook


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
