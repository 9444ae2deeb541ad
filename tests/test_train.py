"""The training loop and metrics.json: metrics.json's fields, the measurement rules, the statuses."""

from __future__ import annotations

import functools
import io
import logging
import os
import re
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from bench import train
from bench.results import MetricsError, load_metrics, write_metrics
from conftest import TINY, only_run_dir, read_metrics, run_cli

SRC = Path(__file__).resolve().parents[1] / "src" / "bench"

METRICS_FIELDS = {
    "schema", "status", "error", "model", "device", "device_name", "precision", "dataset", "loader",
    "batch_size", "workers", "epochs", "seed", "params", "epochs_detail", "avg_epoch_time", "total_time",
    "warmup_time", "samples_per_s", "peak_memory_mb", "peak_reserved_mb", "peak_rss_mb", "dataset_memory_mb",
    "final_loss", "test_accuracy", "env",
}  # fmt: skip
EPOCH_FIELDS = {"epoch", "time_s", "samples", "samples_per_s", "loss", "data_wait_s"}
ENV_FIELDS = {
    "python",
    "torch",
    "torchvision",
    "cuda",
    "cudnn",
    "gpu",
    "driver",
    "cpu",
    "hostname",
    "git_commit",
}


def test_a_cli_run_writes_every_metric_and_logs_like_the_lab(tmp_path: Path) -> None:
    proc = run_cli(tmp_path, *TINY, "epochs=2", "model=small")
    assert proc.returncode == 0, proc.stderr
    run_dir = only_run_dir(tmp_path)
    assert (run_dir / ".hydra" / "config.yaml").exists() and (run_dir / ".hydra" / "overrides.yaml").exists()
    assert (run_dir / "bench.log").exists()
    metrics = read_metrics(run_dir)
    assert set(metrics) >= METRICS_FIELDS
    assert set(metrics["env"]) >= ENV_FIELDS
    assert metrics["schema"] == 1 and metrics["status"] == "ok" and metrics["error"] is None
    assert (metrics["model"], metrics["device"], metrics["batch_size"], metrics["params"]) == (
        "small",
        "cpu",
        32,
        378_866,
    )
    assert [e["epoch"] for e in metrics["epochs_detail"]] == [1, 2]
    for e in metrics["epochs_detail"]:
        assert set(e) >= EPOCH_FIELDS
        assert e["samples"] == 256 and e["samples_per_s"] == pytest.approx(256 / e["time_s"])
        assert 0 <= e["data_wait_s"] <= e["time_s"]
    times = [e["time_s"] for e in metrics["epochs_detail"]]
    assert metrics["total_time"] == pytest.approx(sum(times))
    assert metrics["avg_epoch_time"] == pytest.approx(sum(times) / 2)
    assert metrics["samples_per_s"] == pytest.approx(512 / sum(times))
    assert metrics["warmup_time"] > 0
    assert metrics["peak_memory_mb"] is None and metrics["peak_rss_mb"] > 0  # CPU run
    assert metrics["final_loss"] == metrics["epochs_detail"][-1]["loss"]
    assert 0 <= metrics["test_accuracy"] <= 1
    assert re.search(r"^Epoch 1/2 \| Loss: \d+\.\d{3} \| Time: \d+\.\d{2}s \| [\d,]+ samples/s$", proc.stdout, re.M)
    assert re.search(r"^Epoch 2/2 \| Loss: ", proc.stdout, re.M)


def _losses(cfg_for, tmp_path: Path, *overrides: str) -> list[float]:
    result = train.run(cfg_for("epochs=2", *overrides), tmp_path / f"run{len(list(tmp_path.iterdir()))}")
    assert result.status == "ok", result.error
    return [e.loss for e in result.epochs_detail]


def test_a_run_without_evaluation_records_no_test_images(tmp_path: Path) -> None:
    # It recorded test_samples 64 and logged "64 test images", though no test ran.
    proc = run_cli(tmp_path, *TINY, "evaluate=false")
    assert proc.returncode == 0, proc.stderr
    metrics = read_metrics(only_run_dir(tmp_path))
    assert metrics["test_samples"] is None and metrics["test_accuracy"] is None and metrics["train_samples"] == 256
    assert "256 train images, no test (evaluate=false)" in proc.stdout + proc.stderr


def test_same_seed_same_losses_on_cpu(cfg_for, tmp_path: Path) -> None:
    first = _losses(cfg_for, tmp_path, "device=cpu")
    second = _losses(cfg_for, tmp_path, "device=cpu")
    assert first == second
    assert first != _losses(cfg_for, tmp_path, "device=cpu", "seed=1")


def test_an_epochs_loss_is_the_mean_over_its_images_not_over_its_batches(cfg_for, tmp_path: Path) -> None:
    # A model that hardly moves (lr 1e-12) scores the same mean loss over the same 256 images whatever the
    # batches: one of 256, or 200 and a last, partial 56, which used to count as much as the 200.
    def loss(batch_size: int) -> float:
        run = cfg_for("device=cpu", "epochs=1", "lr=1e-12", "evaluate=false", f"batch_size={batch_size}")
        result = train.run(run, tmp_path / f"b{batch_size}")
        assert result.status == "ok", result.error
        return result.epochs_detail[0].loss

    assert loss(200) == pytest.approx(loss(256), rel=1e-5)


@pytest.mark.parametrize("warmup_steps", [4, 20])  # 20 > the 8 batches of an epoch: it passes over the data again
def test_warm_up_is_rolled_back(cfg_for, tmp_path: Path, warmup_steps: int) -> None:
    # Training after the warm-up must be exactly training without it.
    assert _losses(cfg_for, tmp_path, "device=cpu", "warmup_steps=0") == _losses(
        cfg_for, tmp_path, "device=cpu", f"warmup_steps={warmup_steps}"
    )


def test_a_long_epoch_without_a_progress_bar_says_how_far_it_got(cfg_for, tmp_path: Path, monkeypatch, caplog) -> None:
    # In a SLURM log or a pipe the bar is off, and an epoch of minutes was silent between the warm-up's line and
    # its own. Here every batch is "long enough", the first too (a DataLoader still starting its workers after
    # 30 s reads "0 of 50,000 images").
    from bench import loop

    monkeypatch.setattr(loop, "PROGRESS_EVERY_S", 0.0)
    # Its output not a terminal, as in a SLURM log (pytest -s in a terminal would show the bar instead).
    monkeypatch.setattr(loop, "tqdm", functools.partial(loop.tqdm, file=io.StringIO()))
    with caplog.at_level(logging.INFO, logger="bench.loop"):
        result = train.run(cfg_for("device=cpu", "epochs=1", "batch_size=64", "evaluate=false"), tmp_path / "run")
    assert result.status == "ok", result.error
    said = [r.getMessage() for r in caplog.records if r.name == "bench.loop"]
    lines = [line for line in said if line.startswith("Epoch")]
    assert len(lines) == 4 and lines[0].startswith("Epoch 1/1: 0 of 256 images after "), lines  # 4 batches
    assert lines[-1].startswith("Epoch 1/1: 192 of 256 images after ")
    # The warm-up too (TINY's 2 steps), which can outlast the epoch (fp16 autocast on a CPU: 199 s for 5 steps).
    warm = [line for line in said if line.startswith("Warm-up")]
    assert warm[0] == "Warm-up: 2 steps of 64 images, untimed (one-time costs: compilation, autotuning, workers' start)"
    assert len(warm) == 2 and warm[1].startswith("Warm-up: 1 of 2 steps after "), warm


@pytest.mark.parametrize("precision", ["fp32", "amp_bf16"])
def test_the_loop_reads_the_loss_once_per_epoch_not_per_step(
    cfg_for, tmp_path: Path, monkeypatch, precision: str
) -> None:
    # .item() on a CUDA tensor waits for the GPU. bench's own code may read once per epoch and once for
    # the test accuracy, never once per step. (torch's Adam reads its CPU step counter, which is no sync.)
    calls = 0
    original = torch.Tensor.item

    def counting_item(self: torch.Tensor):
        nonlocal calls
        if sys._getframe(1).f_globals.get("__name__", "").startswith("bench"):
            calls += 1
        return original(self)

    monkeypatch.setattr(torch.Tensor, "item", counting_item)
    cfg = cfg_for("device=cpu", "epochs=2", "batch_size=8", f"precision={precision}")  # 32 steps an epoch
    result = train.run(cfg, tmp_path / "run")
    assert result.status == "ok", result.error
    assert calls == cfg.epochs + 1


def test_intervals_are_never_timed_with_time_time() -> None:
    # time.time() jumps with NTP and has coarse resolution; intervals use perf_counter (docs/architecture.md).
    # One use is allowed: measure.timestamp(), when something happened (runs that timed at once), never how long.
    allowed = re.search(r"^def timestamp\(\) -> float:\n(?:    .*\n)*?    return time\.time\(\)$",
                        (SRC / "measure.py").read_text(), re.MULTILINE)  # fmt: skip
    offenders = [p.name for p in SRC.glob("*.py") for _ in re.finditer(r"\btime\.time\(\)", p.read_text())]
    assert allowed and offenders == ["measure.py"], offenders


def test_a_diverging_run_is_recorded_as_diverged(tmp_path: Path) -> None:
    proc = run_cli(tmp_path, *TINY, "lr=1e6", "epochs=2")
    assert proc.returncode == 1
    assert "run diverged" in proc.stderr and "Traceback" not in proc.stderr
    metrics = read_metrics(only_run_dir(tmp_path))
    assert metrics["status"] == "diverged" and "loss is" in metrics["error"]
    assert metrics["final_loss"] is None  # it ended non-finite, whatever an earlier epoch's loss was
    assert (proc.stdout + proc.stderr).count("diverged: loss is") == 1  # the error line alone
    # In a sweep, where the job's status is its end, a line says so as for a failed job (it had said nothing).
    proc = run_cli(tmp_path, "-m", *TINY, "lr=1e6", "epochs=2", "hydra.sweep.dir=S")
    assert proc.returncode == 0 and "Run diverged: loss is " in proc.stdout + proc.stderr, proc.stdout


BLOWS_UP = """
from bench.models import MediumNet

class BlowsUp(MediumNet):
    \"\"\"MediumNet whose output turns infinite after ``steps`` forward passes: a run that diverges in its second
    epoch, on every machine (no learning rate does that reliably).\"\"\"

    def __init__(self, num_classes: int = 10, width: int = 1, steps: int = 0) -> None:
        super().__init__(num_classes, width)
        self.steps, self.calls = steps, 0

    def forward(self, x):
        self.calls += 1
        out = super().forward(x)
        return out * float("inf") if self.calls > self.steps else out
"""


def test_a_run_that_diverges_later_keeps_the_figures_of_the_epochs_before(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The epoch it diverged in ran on non-finite weights: not timed (its samples/s had stood beside ok runs'), and
    # its final loss is none (the last finite epoch's had been brought in with the figures of the epochs before).
    (tmp_path / "blowsup.py").write_text(BLOWS_UP)
    monkeypatch.syspath_prepend(str(tmp_path))
    # 8 steps an epoch; the warm-up's 2 steps and the FLOP count's passes come first: it blows up in epoch 2.
    proc = run_cli(tmp_path, *TINY, "epochs=3", "loader=resident", "model._target_=blowsup.BlowsUp",
                   "+model.steps=14", "hydra.run.dir=R")  # fmt: skip
    assert proc.returncode == 1, proc.stderr
    metrics = read_metrics(tmp_path / "R")
    losses = [e["loss"] for e in metrics["epochs_detail"]]
    assert metrics["status"] == "diverged" and len(losses) == 2 and losses[0] is not None and losses[1] is None
    first = metrics["epochs_detail"][0]
    assert metrics["avg_epoch_time"] == pytest.approx(first["time_s"]) and metrics["final_loss"] is None
    assert ("its figures are of the 1 timed epoch before the one it diverged in, which is not counted (diverged)"
            in metrics["notes"])  # fmt: skip


def test_a_failing_run_still_writes_metrics(cfg_for, tmp_path: Path) -> None:
    root = tmp_path / "imgs"
    for split in ("train", "test"):
        for cls in ("a", "b"):
            (root / split / cls).mkdir(parents=True)
            Image.fromarray(np.zeros((8, 8, 3), dtype=np.uint8)).save(root / split / cls / "ok.png")
    (root / "train" / "a" / "broken.png").write_bytes(b"not a png")
    cfg = cfg_for(
        "dataset=imagefolder",
        f"dataset.root={root}",
        f"data_dir={tmp_path}",
        "dataset.train_size=null",
        "dataset.test_size=null",
    )
    result = train.run(cfg, tmp_path / "run")
    assert result.status == "failed" and "broken.png" in result.error
    assert load_metrics(tmp_path / "run")["status"] == "failed"


def test_metrics_are_written_atomically(tmp_path: Path, monkeypatch) -> None:
    write_metrics(tmp_path, train.RunResult(status="ok", model="small", device="cpu", precision="fp32", batch_size=8))

    def disk_full(*args, **kwargs):  # the temp file is written; making it durable fails, as on a full disk
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", disk_full)
    with pytest.raises(OSError):
        write_metrics(tmp_path, train.RunResult(status="failed"))
    assert load_metrics(tmp_path)["model"] == "small"  # the earlier file is whole
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]  # and no temp file is left


def test_results_are_as_readable_as_any_other_file(tmp_path: Path) -> None:
    # The atomic writer's temp file was mkstemp's, private to its owner (0600): metrics.json and summary.csv
    # could not be read by the rest of a group sharing a cluster's folder, while the plots beside them could.
    old = os.umask(0o022)
    try:
        write_metrics(tmp_path, train.RunResult(status="ok", model="small"))
        (tmp_path / "plain.txt").write_text("x")
    finally:
        os.umask(old)
    modes = {name: (tmp_path / name).stat().st_mode & 0o777 for name in ("metrics.json", "plain.txt")}
    assert modes == {"metrics.json": 0o644, "plain.txt": 0o644}


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        ("{not json", "not valid JSON"),
        ('{"status": "o', r"not valid JSON \(Unterminated string starting at line 1\)"),  # had read "at at line 1"
        ("[1, 2]", "expected a JSON object"),
        ('{"schema": 1}', "missing status"),
        # Hand-edited or foreign: read back as numbers, it was an `ok` run with inf samples/s in the report.
        ('{"status": "ok", "samples_per_s": Infinity}', "Infinity is not a JSON value"),
    ],
)
def test_corrupt_metrics_are_reported_in_one_line(tmp_path: Path, content: str, reason: str) -> None:
    (tmp_path / "metrics.json").write_text(content)
    with pytest.raises(MetricsError, match=reason):
        load_metrics(tmp_path)
    with pytest.raises(MetricsError, match="no metrics.json"):
        load_metrics(tmp_path / "elsewhere")
