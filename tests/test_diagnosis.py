"""Why is it fast or slow: the time split, FLOPs, the verdict with its next step, the learning check, the
report's sentences and readable numbers. On the CPU here; the CUDA parts are in test_cuda.py."""

from __future__ import annotations

import json
import logging
import math
import re
import time
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
from matplotlib.axes import Axes

from bench import diagnosis, train
from bench.loaders import ResidentSource
from bench.metrics import significant, summarize
from bench.report import build_report
from bench.results import EpochStats, write_metrics
from conftest import TINY, run_cli

DATA = ("dataset.train_size=1024", "dataset.test_size=64", "epochs=1", "batch_size=32", "device=cpu")


def _run(cfg_for, tmp_path: Path, *overrides: str) -> train.RunResult:
    result = train.run(cfg_for(*DATA, *overrides), tmp_path / f"run{len(list(tmp_path.iterdir()))}")
    assert result.status == "ok", result.error
    return result


class SlowSource(ResidentSource):
    """The resident loader, made slow on purpose: it waits before every batch, as a slow disk would."""

    def __init__(self, *args: Any, delay_s: float = 0.02, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.delay_s = delay_s

    def batches(self, seed: int | None = None) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for batch in super().batches(seed):
            time.sleep(self.delay_s)
            yield batch


def test_a_slow_data_path_is_input_bound_and_the_resident_loader_is_not(cfg_for, tmp_path: Path) -> None:
    # A loader is a component: this one is the resident loader with a wait before each batch (40 ms: input-bound
    # even when other work on the box slows the steps down).
    slow = _run(cfg_for, tmp_path, "loader=resident", f"loader._target_={__name__}.SlowSource", "model=small",
                "+loader.delay_s=0.04")  # fmt: skip
    fast = _run(cfg_for, tmp_path, "loader=resident", "model=small")
    assert slow.metrics["data_wait_frac"] >= diagnosis.INPUT_BOUND_WAIT
    assert slow.diagnosis["verdict"] == "input-bound" and slow.diagnosis["next"] == "batch_size=64"
    assert f"{slow.metrics['data_wait_frac']:.0%}" in slow.diagnosis["evidence"]
    assert fast.metrics["data_wait_frac"] < diagnosis.INPUT_BOUND_WAIT
    assert fast.diagnosis["verdict"] == "compute-bound (CPU)"
    for run in (slow, fast):  # on the CPU the epoch is data wait + compute; no GPU figures
        assert all(e.gpu_busy_s is None and e.copy_s is None and e.host_lead_steps is None for e in run.epochs_detail)
        assert run.metrics["gpu_busy_frac"] is None and run.metrics["host_lead_steps"] is None


@pytest.mark.parametrize(
    ("run", "verdict", "next_step"),
    [
        ({"data_wait_frac": 0.5, "loader": "dataloader", "device": "cuda"}, "input-bound", "loader=resident"),
        ({"data_wait_frac": 0.05, "gpu_busy_frac": 0.3, "device": "cuda", "batch_size": 64, "step": {}},
         "launch-bound", "step.compile=max"),
        ({"data_wait_frac": 0.05, "gpu_busy_frac": 0.3, "device": "cuda", "batch_size": 64,
          "step": {"compile": "cudagraph"}}, "launch-bound", "batch_size=128"),
        ({"data_wait_frac": 0.02, "gpu_busy_frac": 0.95, "device": "cuda", "precision": "fp32",
          "peak_flops_frac": 0.4}, "compute-bound", "precision=amp_bf16"),
        ({"data_wait_frac": 0.1, "gpu_busy_frac": 0.7, "device": "cuda", "step": {}}, "host overhead",
         "step.compile=max"),
        # Busy by the events, but the GPU reached each step as it was queued: the host's launches set the pace.
        ({"data_wait_frac": 0.04, "gpu_busy_frac": 0.95, "device": "cuda", "precision": "fp32", "step": {},
          "peak_flops_frac": 0.001, "host_lead_steps": 0.01}, "launch-bound", "step.compile=max"),
        ({"data_wait_frac": 0.04, "gpu_busy_frac": 0.95, "device": "cuda", "batch_size": 256,
          "step": {"compile": "max"}, "host_lead_steps": 0.3}, "launch-bound", "batch_size=512"),
        ({"data_wait_frac": 0.02, "gpu_busy_frac": 0.95, "device": "cuda", "precision": "fp32",
          "peak_flops_frac": 0.4, "host_lead_steps": 6.5}, "compute-bound", "precision=amp_bf16"),
        # fp16's GradScaler beside a non-fused Adam syncs every step, after which nothing is queued ahead: busy
        # alone is read. Fused Adam takes the overflow check into its kernel: no sync, and the lead stands.
        ({"data_wait_frac": 0.02, "gpu_busy_frac": 0.95, "device": "cuda", "precision": "amp_fp16",
          "step": {"grad_scaler": True, "adam": "foreach"}, "peak_flops_frac": 0.4, "host_lead_steps": 0.01},
         "compute-bound", None),
        ({"data_wait_frac": 0.02, "gpu_busy_frac": 0.95, "device": "cuda", "precision": "amp_fp16",
          "batch_size": 64, "step": {"grad_scaler": True, "adam": "fused"}, "peak_flops_frac": 0.001,
          "host_lead_steps": 0.01}, "launch-bound", "batch_size=128"),  # step.compile=max refuses GradScaler
        # Input-bound outranks it: a host waiting for data queues nothing ahead either.
        ({"data_wait_frac": 0.5, "gpu_busy_frac": 0.4, "device": "cuda", "loader": "dataloader",
          "host_lead_steps": 0.0}, "input-bound", "loader=resident"),
    ],
)  # fmt: skip
def test_the_thresholds_decide_the_verdict(run: dict, verdict: str, next_step: str | None) -> None:
    found = diagnosis.diagnose(run)
    assert (found["verdict"], found["next"]) == (verdict, next_step)
    if verdict == "compute-bound":
        assert "40% of the GPU's dense peak" in found["evidence"]
    if diagnosis.scaler_syncs(run.get("step") or {}):
        assert "ahead of the GPU" not in found["evidence"]
    if verdict == "launch-bound" and "host_lead_steps" in run:
        lead = f"host {run['host_lead_steps']:.2f} steps ahead of the GPU (the events count the gaps"
        assert lead in found["evidence"]


@pytest.mark.parametrize(
    ("lead", "verdict", "shown"),
    [(0.4999, "launch-bound", "0.49"), (0.5, "compute-bound", "0.50"), (12.345, "compute-bound", "12.35")],
)
def test_the_hosts_lead_beside_its_threshold_stays_on_its_side(lead: float, verdict: str, shown: str) -> None:
    run = {"data_wait_frac": 0.01, "gpu_busy_frac": 0.95, "device": "cuda", "step": {}, "host_lead_steps": lead}
    found = diagnosis.diagnose(run)
    assert found["verdict"] == verdict and f", host {shown} steps ahead of the GPU" in found["evidence"]


@pytest.mark.parametrize(
    ("wait", "verdict", "shown"),
    [(0.2951, "compute-bound (CPU)", "data wait 29.5%"), (0.3049, "input-bound", "data wait 30.5% of the epoch"),
     (0.3, "input-bound", "data wait 30% of the epoch"), (0.62, "input-bound", "data wait 62% of the epoch"),
     # and the CPU's 10%, from which the resident loader is the next step: 9.7% read "10%" beside device=cuda
     (0.0971, "compute-bound (CPU)", "data wait 9.7%;"), (0.12, "compute-bound (CPU)", "data wait 12%;"),
     (0.2999, "compute-bound (CPU)", "data wait 29.9%;")],  # rounded down: "30.0%" would be input-bound's
)  # fmt: skip
def test_a_share_beside_the_threshold_is_not_rounded_onto_it(wait: float, verdict: str, shown: str) -> None:
    # 29.5% read "data wait 30%" beside "input-bound from 30%", under a verdict that was not input-bound.
    found = diagnosis.diagnose({"data_wait_frac": wait, "loader": "dataloader", "workers": 0, "device": "cpu"})
    assert found["verdict"] == verdict and shown in found["evidence"], found["evidence"]
    # The tables' data wait column too: "30%" on a row judged compute-bound, its evidence saying 29.5%.
    from bench.metrics import metric

    assert metric("data_wait_frac").format(wait) in shown


def test_on_the_cpu_the_evidence_says_the_workers_share_the_cores() -> None:
    # The workers' decoding is not data wait, yet it takes cores from the step: the evidence must say so.
    found = diagnosis.diagnose({"data_wait_frac": 0.05, "loader": "dataloader", "workers": 2, "device": "cpu"})
    assert found["verdict"] == "compute-bound (CPU)" and "2 worker processes" in found["evidence"]
    alone = diagnosis.diagnose({"data_wait_frac": 0.05, "loader": "dataloader", "workers": 0, "device": "cpu"})
    assert "worker" not in alone["evidence"]
    # Without workers the decoding is all in the 5% wait: the resident loader is not the next step.
    assert found["next"] == "loader=resident" and alone["next"] == "step.channels_last=true"
    # fp16 autocast on the CPU (the lab's AMP part run here) is the slow part, whatever the loader.
    fp16 = diagnosis.diagnose({"data_wait_frac": 0.01, "loader": "dataloader", "workers": 2, "device": "cpu",
                               "precision": "amp_fp16"})  # fmt: skip
    assert fp16["next"] == "precision=fp32" and "no fast path on the CPU" in fp16["evidence"]


def test_a_run_that_did_not_learn_is_flagged_but_stays_ok(tmp_path: Path) -> None:
    proc = run_cli(tmp_path, "-m", *[t for t in TINY if "batch_size" not in t], "hydra.sweep.dir=S", "lr=1e-9,0.001")
    assert proc.returncode == 0, proc.stderr
    summary = pd.read_csv(tmp_path / "S" / "summary.csv")
    assert list(summary["status"]) == ["ok", "ok"]
    assert summary.loc[0, "learned"] == False  # noqa: E712  (a CSV boolean)
    metrics = json.loads((tmp_path / "S" / "0" / "metrics.json").read_text())
    assert any(note.startswith(diagnosis.DID_NOT_LEARN) for note in metrics["notes"])
    assert abs(metrics["final_loss"] - math.log(10)) <= diagnosis.NEAR_CHANCE_LOSS * math.log(10)
    report = (tmp_path / "S" / "report.md").read_text()
    assert "did not learn" in report
    # workers=0: the pipeline line said "DataLoader workers" of a DataLoader that had none.
    assert "loader=dataloader (the lab's path: DataLoader in the main process (workers=0), per-sample" in report


@pytest.mark.parametrize(
    ("busy", "verdict", "shown"),
    [(0.4951, "launch-bound", "GPU busy 49.5%"), (0.8999, "host overhead", "GPU busy 89.9%"),
     (0.9, "compute-bound", "GPU busy 90%"), (0.7, "host overhead", "GPU busy 70%")],
)  # fmt: skip
def test_gpu_busy_beside_its_thresholds_stays_on_its_side(busy: float, verdict: str, shown: str) -> None:
    # 0.4951 read "GPU busy 50%" beside "launch-bound" (under 50%), and a share of the dense peak of 0.4%
    # read "0%".
    run = {"data_wait_frac": 0.01, "gpu_busy_frac": busy, "device": "cuda", "step": {}, "peak_flops_frac": 0.004}
    found = diagnosis.diagnose(run)
    assert found["verdict"] == verdict and found["evidence"].startswith(shown + " of the epoch"), found["evidence"]
    assert (", 0.4% of the GPU's dense peak" in found["evidence"]) == (verdict == "compute-bound")
    from bench.metrics import metric

    assert shown.endswith(metric("gpu_busy_frac").format(busy))


def test_a_loss_above_a_uniform_guesss_is_no_learning_either() -> None:
    # Only a two-sided band around ln(10) = 2.303 used to fail: a final loss of 3.5, worse than guessing,
    # passed as "learned" where no test accuracy said otherwise (evaluate=false).
    def check(loss: float, accuracy: float | None = None) -> tuple[bool | None, str | None]:
        found = diagnosis.diagnose({"final_loss": loss, "test_accuracy": accuracy, "classes": 10})
        return found["learned"], found["learning"]

    assert check(3.5) == (False, "did not learn: final loss 3.500 is above ln(10) = 2.303, the loss of a uniform guess")
    assert check(2.30)[1].startswith("did not learn: final loss 2.300 is within 2% of ln(10) = 2.303, the loss")
    assert check(3.0, accuracy=0.6) == (True, None)  # 6× chance: learning, whatever the loss (overconfident)
    assert check(3.0, accuracy=0.2)[0] is False  # 2× chance, over images not counted: not enough to outrank the loss
    assert check(2.2) == (True, None)  # 4.5% below a guess's
    assert check(2.2, accuracy=0.12) == (
        False,
        "did not learn: test accuracy 12.0% is under 1.5× chance, 15% (chance: 10%)",
    )  # the accuracy says it did not
    assert check(float("nan")) == (None, None)
    # With 100 classes: 1.5% and 1%, not "2% (chance: 1%)".
    many = diagnosis.diagnose({"final_loss": 1.0, "test_accuracy": 0.01, "classes": 100})["learning"]
    assert many.endswith("under 1.5× chance, 1.5% (chance: 1%)"), many
    # lr=1e8 blew the loss up to 29 digits, printed in full to 3 decimals.
    assert check(4.7404e28)[1].startswith("did not learn: final loss 4.74e+28 is above ln(10)")


def test_unequal_classes_are_judged_against_a_guess_that_knows_their_shares(tmp_path: Path) -> None:
    # Noise images, 90% of them one class: the run scored 90% and a loss of 0.34 and read as learned, which is
    # what always guessing the larger class scores (its loss: the shares' entropy, 0.325).
    from PIL import Image

    rng = np.random.default_rng(0)
    for split, counts in (("train", {"a": 45, "b": 5}), ("test", {"a": 18, "b": 2})):
        for name, n in counts.items():
            (tmp_path / "imgs" / split / name).mkdir(parents=True)
            for i in range(n):
                Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(
                    tmp_path / "imgs" / split / name / f"{i}.png")  # fmt: skip
    proc = run_cli(tmp_path, "dataset=imagefolder", "dataset.root=imgs", "dataset.train_size=null",
                   "dataset.test_size=null", "batch_size=10", "epochs=2", "warmup_steps=1",
                   "hydra.run.dir=R")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    metrics = json.loads((tmp_path / "R" / "metrics.json").read_text())
    entropy = -(0.9 * math.log(0.9) + 0.1 * math.log(0.1))
    assert metrics["prior_loss"] == pytest.approx(entropy) and metrics["prior_accuracy"] == pytest.approx(0.9)
    assert metrics["diagnosis"]["learned"] is False, metrics["diagnosis"]
    assert metrics["diagnosis"]["learning"].endswith(
        f"{entropy:.3f}, the loss of a guess that knows only the classes' shares (unequal here: always naming the "
        "largest training class, it scores 90% of the test images)")  # fmt: skip

    # The same thresholds against that guess: fewer errors than it makes, by the factors a uniform guess's
    # accuracy is multiplied by (90% × 1.5 is out of reach).
    def check(loss: float, accuracy: float) -> tuple[bool | None, str | None]:
        run = {"final_loss": loss, "test_accuracy": accuracy, "classes": 2, "test_samples": 2000,
               "prior_loss": entropy, "prior_accuracy": 0.9}  # fmt: skip
        found = diagnosis.diagnose(run)
        return found["learned"], found["learning"]

    assert check(0.34, 0.9)[0] is False
    assert check(0.2, 0.92) == (False, "did not learn: test accuracy 92.0% is under 1.5 times fewer errors than "
                                       "chance, 93.3% (chance: 90%)")  # fmt: skip
    assert check(0.2, 0.94) == (True, None)
    assert check(0.5, 0.96) == (True, None)  # clearly above: 2.5 times fewer errors, 9 standard errors
    # Random labels of nearly equal shares keep the uniform guess and its words; 64 of them fall short of ln(10)
    # by more than 2% by chance alone, and their test share of the largest class (3%) had set chance: 1/10 stays.
    near = diagnosis.diagnose({"final_loss": 2.29, "classes": 10, "prior_loss": 2.29, "prior_accuracy": 0.11})
    assert near["learning"].endswith("ln(10) = 2.303, the loss of a uniform guess")
    few = {"final_loss": 2.1, "test_accuracy": 0.12, "classes": 10, "prior_loss": 2.2, "prior_accuracy": 0.031,
           "train_samples": 64, "test_samples": 64}  # fmt: skip
    assert diagnosis.diagnose(few)["learning"] == ("did not learn: test accuracy 12.0% is under 1.5× chance, 15% "
                                                   "(chance: 10%)")  # fmt: skip
    # Their loss is still judged against the shares' entropy: a model that learned only the shares reaches it.
    shares_only = {**few, "final_loss": 2.2, "test_accuracy": 0.16, "prior_accuracy": 0.16}
    said = diagnosis.diagnose(shares_only)["learning"]
    assert said.startswith("did not learn: final loss 2.200 is within 2% of 2.200, the loss of a guess that knows")
    # A test set without the largest training class: the guess scores 0% there, which every accuracy beat.
    absent = {"final_loss": 5.0, "test_accuracy": 0.0, "classes": 2, "test_samples": 20, "prior_loss": entropy,
              "prior_accuracy": 0.0}  # fmt: skip
    assert diagnosis.diagnose(absent)["learned"] is False
    # evaluate=false: no test, and still the loss of the guess that knows the shares (0.466 is worse than it).
    untested = {"final_loss": 0.466, "classes": 2, "prior_loss": entropy, "prior_accuracy": None, "train_samples": 50}
    said = diagnosis.diagnose(untested)["learning"]
    assert said.startswith(f"did not learn: final loss 0.466 is above {entropy:.3f}")


def test_a_test_accuracy_clearly_above_chance_outranks_a_guesss_loss() -> None:
    # On an H200, one epoch of 10,000 images at batch 256: the epoch's mean loss 2.283 (within 2% of ln 10, most
    # of the epoch on the plateau), and the model tested after it scored 22.1% of 2,000 images, 18 standard
    # errors above chance. It read "did not learn", which only 30% (3× chance) outranked.
    def learned(loss: float, accuracy: float, tested: int | np.integer | None) -> bool | None:
        run = {"final_loss": loss, "test_accuracy": accuracy, "classes": 10, "test_samples": tested}
        return diagnosis.diagnose(run)["learned"]

    assert learned(2.283, 0.221, 2000) is True
    assert learned(2.283, 0.221, np.int64(2000)) is True  # a count from a table: numpy's int
    assert learned(2.30, 0.20, 10_000) is True  # exactly 2× chance, 33 standard errors above it
    assert learned(2.30, 0.17, 10_000) is False  # 23 standard errors, but under 2× chance: the loss decides
    assert learned(2.20, 0.17, 10_000) is True  # ... as it does here, 4.5% under a guess's
    assert learned(2.20, 0.14, 10_000) is False  # under 1.5× chance: not learning, whatever the loss
    assert learned(2.30, 0.22, 64) is False  # of 64 images, 14 right where a guess gets 6.4: 3.2 standard errors
    assert learned(2.30, 0.30, 64) is True  # 19 right: 5.3 standard errors
    assert learned(2.30, 0.22, None) is False  # images not counted (an older metrics.json): 3× chance, as before
    assert learned(2.30, 0.30, None) is True


def test_flops_and_achieved_tflops_are_recorded(cfg_for, tmp_path: Path) -> None:
    run = _run(cfg_for, tmp_path, "loader=resident")
    assert run.metrics["flops_per_sample"] == 12_084_720  # MediumNet: forward 4,655,440, plus the backward
    assert run.metrics["tflops"] == pytest.approx(12_084_720 * run.metrics["samples_per_s"] / 1e12)
    assert run.metrics.get("peak_flops_frac") is None  # no dense peak for a CPU


def test_the_report_explains_a_sweep_in_sentences_and_readable_numbers(tmp_path: Path) -> None:
    tiny = [t for t in TINY if "batch_size" not in t and "workers" not in t]
    proc = run_cli(tmp_path, "-m", *tiny, "hydra.sweep.dir=S", "loader=resident", "batch_size=8,64", "workers=0")
    assert proc.returncode == 0, proc.stderr
    report = (tmp_path / "S" / "report.md").read_text()
    summary = pd.read_csv(tmp_path / "S" / "summary.csv")
    first, last = summary.iloc[0], summary.iloc[-1]
    # The sentence's numbers are the sweep's own, formatted as everywhere else.
    assert (
        f"Throughput goes from {first['samples_per_s']:,.0f} samples/s at batch_size=8 to "
        f"{last['samples_per_s']:,.0f} at batch_size=64"
    ) in report
    # (the same share at both, as timings may make it, is said once: "is 3% at every batch_size")
    share = diagnosis.wait_share(first["data_wait_frac"])
    assert f"from {share} at batch_size=8" in report or f"is {share} at every batch_size" in report
    assert "### Why it is fast or slow" in report and "compute-bound (CPU)" in report
    assert (tmp_path / "S" / "runs_time.png").exists() and "![Where the time goes](runs_time.png)" in report
    tables = [line for line in report.splitlines() if line.startswith("|")]
    assert not any(re.search(r"\d\.\d+e[+-]\d+", line) for line in tables)  # no 2.659e+04 in any table
    assert any(f" {first['samples_per_s']:,.0f} " in line for line in tables)  # formatted as in the sentence


def test_profile_writes_a_trace_and_changes_nothing(cfg_for, tmp_path: Path, caplog) -> None:
    plain = _run(cfg_for, tmp_path, "loader=resident", "epochs=2")
    with caplog.at_level(logging.DEBUG, logger="bench.train"):
        profiled = _run(cfg_for, tmp_path, "loader=resident", "epochs=2", "profile=true")
    assert [e.loss for e in profiled.epochs_detail] == [e.loss for e in plain.epochs_detail]
    run_dir = next(p for p in tmp_path.iterdir() if (p / "trace.json").exists())
    trace = json.loads((run_dir / "trace.json").read_text())
    assert trace["traceEvents"]
    assert "Top operators by self time" in caplog.text  # bench.log, where a CLI run logs DEBUG
    # After the timed epochs: a profiler may leave CUDA's tracing on, slowing what follows it.
    messages = [r.getMessage() for r in caplog.records]
    profiled_at = next(i for i, m in enumerate(messages) if m.startswith("Profiled "))
    assert profiled_at > max(i for i, m in enumerate(messages) if m.startswith("Epoch 2/2"))
    # The steps it profiled, at most an epoch's: "Profiled 5 steps" was printed over an epoch of 2.
    from bench.train import PROFILE_STEPS

    steps = min(PROFILE_STEPS, -(-profiled.train_samples // profiled.batch_size))
    assert messages[profiled_at].startswith(f"Profiled {steps} step{'s' * (steps != 1)} (rolled back)")
    assert messages[profiled_at].endswith("the top operators by self time are in bench.log")  # where to look
    # Those steps alone: the one before them, which bears the profiler's own start, is traced and thrown away.
    marks = [e["name"] for e in trace["traceEvents"] if str(e.get("name", "")).startswith("ProfilerStep#")]
    assert len(marks) == steps, marks
    with caplog.at_level(logging.INFO, logger="bench.train"):
        _run(cfg_for, tmp_path, "loader=resident", "dataset.train_size=64", "batch_size=32", "profile=true")
    assert "Profiled 2 steps (rolled back)" in caplog.text


def test_profile_on_the_cpu_prints_no_lines_of_kinetos_own(tmp_path: Path) -> None:
    # A process of its own: Kineto reads its log level when first used in a process.
    proc = run_cli(tmp_path, *TINY, "profile=true", "hydra.run.dir=run", isolated=True)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "run" / "trace.json").exists()
    kineto = re.compile(r"^(USDT|ERROR|WARNING):\S+ \S+ \d+:\d+ ", re.MULTILINE)  # its C++ log lines' start
    assert not kineto.search(proc.stdout + proc.stderr), proc.stderr


def test_old_metrics_files_get_a_diagnosis_in_the_report(tmp_path: Path) -> None:
    from test_report import _fake_run

    _fake_run(tmp_path / "s", 0, "cpu", 64, 2.0)  # data wait 0.1 s of 2 s: 5%
    report = build_report([tmp_path / "s"])
    assert report.runs.loc[0, "verdict"] == "compute-bound (CPU)"


def test_repeats_train_the_same_and_record_their_spread(cfg_for, tmp_path: Path) -> None:
    run = _run(cfg_for, tmp_path, "loader=resident", "epochs=2", "repeat=3")
    assert [(e.repeat, e.epoch) for e in run.epochs_detail] == [(r, e) for r in (1, 2, 3) for e in (1, 2)]
    losses = {r: [e.loss for e in run.epochs_detail if e.repeat == r] for r in (1, 2, 3)}
    assert losses[1] == losses[2] == losses[3]  # each repeat is rolled back: the same training, timed again
    m = run.metrics
    assert m["repeats"] == 3
    per_repeat = sorted(
        sum(e.samples for e in run.epochs_detail if e.repeat == r)
        / sum(e.time_s for e in run.epochs_detail if e.repeat == r)
        for r in (1, 2, 3)
    )
    assert m["samples_per_s_median"] == pytest.approx(per_repeat[1])
    assert m["samples_per_s_iqr"] == pytest.approx((per_repeat[2] - per_repeat[0]) / 2)  # numpy's 25th..75th
    assert m["samples_per_s_cv"] >= 0
    # The plots' whiskers: the slowest and fastest repeat, with the run's own figure between them.
    assert (m["samples_per_s_min"], m["samples_per_s_max"]) == pytest.approx((per_repeat[0], per_repeat[2]))
    assert m["samples_per_s_min"] <= m["samples_per_s"] <= m["samples_per_s_max"]
    assert m["epoch_time_min"] <= m["avg_epoch_time"] <= m["epoch_time_max"]
    assert run.diagnosis["noisy"] == (m["samples_per_s_cv"] > diagnosis.NOISY_CV)


def test_one_measurement_has_no_spread_and_energy_pairs_with_its_own_epochs() -> None:
    from bench.metrics import summarize

    one = summarize([{"epoch": 1, "time_s": 2.0, "samples": 100, "samples_per_s": 50.0, "loss": 1.0}])
    assert one["samples_per_s_median"] == 50.0 and one["samples_per_s_iqr"] is None and one["samples_per_s_cv"] is None
    assert one["samples_per_s_min"] is None and one["epoch_time_max"] is None  # no whiskers from one epoch
    # 50 J over the 1 s epoch that has a reading; the epoch without one must not dilute the watts.
    epochs = [{"time_s": 1.0, "samples": 100, "energy_j": 50.0}, {"time_s": 1.0, "samples": 100, "energy_j": None}]
    figures = summarize(epochs)
    assert figures["avg_power_w"] == 50.0 and figures["samples_per_joule"] == 2.0


def test_the_report_shows_median_and_iqr_and_flags_noise(tmp_path: Path) -> None:
    from bench.results import load_metrics, write_metrics
    from test_report import _fake_run

    for job, cv in ((0, 0.01), (1, 0.2)):
        _fake_run(tmp_path / "s", job, "cpu", 64 * (job + 1), 2.0)
        metrics = load_metrics(tmp_path / "s" / str(job))
        metrics.update(repeats=5, samples_per_s_median=500.0, samples_per_s_iqr=20.0, samples_per_s_cv=cv)
        write_metrics(tmp_path / "s" / str(job), metrics)
    build_report([tmp_path / "s"])
    text = (tmp_path / "s" / "report.md").read_text()
    # The IQR is a width, not a ± around the median (500 ± 20 would read as 480-520).
    assert "samples/s: median (IQR) over the repeats" in text and "500 (IQR 20) " in text
    assert "500 (IQR 20; noisy: CV 20.0%)" in text and "noisy: CV 1.0%" not in text
    assert "Noisy: batch_size=128 (CV 20.0% over its repeats) varied by more than 5%, so a difference" in text
    # A run alone (the one run of a report, or of its folder beside another): its cell said noisy, no sentence did.
    build_report([tmp_path / "s" / "1"])
    text = (tmp_path / "s" / "1" / "report.md").read_text()
    assert "Noisy: model=medium (CV 20.0% over its repeats) varied by more than 5%, so its figures are that " in text


def test_a_run_of_one_repeat_beside_repeated_ones_says_its_spread_is_over_its_epochs(tmp_path: Path) -> None:
    # The column read "over the repeats" for every row, the run of repeat=1 included, whose median and IQR are
    # over its 3 epochs.
    tiny = [t for t in TINY if not t.startswith("epochs=")]
    proc = run_cli(tmp_path, "-m", *tiny, "epochs=3", "loader=resident", "repeat=1,2", "hydra.sweep.dir=S")
    assert proc.returncode == 0, proc.stderr
    # The console's closing line: the repeats' median and IQR, which metrics.json had and the console did not.
    console = proc.stdout + proc.stderr
    assert re.search(r"samples/s over all epochs \(median of 2 repeats [\d,]+, IQR [\d,]+", console), console
    assert re.search(r"peak RSS [\d,]+ MB \(main process\)", console), console
    lines = (tmp_path / "S" / "report.md").read_text().splitlines()
    at = next(i for i, line in enumerate(lines) if "samples/s: median (IQR) over the repeats (else the epochs)" in line)
    once, twice = lines[at + 2], lines[at + 3]
    assert re.search(r"\| [\d,]+ \(IQR [\d,]+, over 3 epochs(; noisy: CV [\d.]+%)?\)", once), once  # noisy: timing
    assert re.search(r"\| [\d,]+ \(IQR [\d,]+(; noisy: CV [\d.]+%)?\)", twice) and "epochs)" not in twice, twice
    # The epochs it timed, not its config's: a run stopped after 3 of its 5 epochs is a spread over 3.
    record = json.loads((tmp_path / "S" / "0" / "metrics.json").read_text())
    assert record["timed_epochs"] == 3
    (tmp_path / "S" / "0" / "metrics.json").write_text(json.dumps({**record, "epochs": 5, "status": "interrupted"}))
    build_report([tmp_path / "S"])
    assert ", over 3 epochs" in (tmp_path / "S" / "report.md").read_text()
    # Without the run of one repeat (its record lost), no row's spread is over epochs: the plain header.
    (tmp_path / "S" / "0" / "metrics.json").unlink()
    build_report([tmp_path / "S"])
    report = (tmp_path / "S" / "report.md").read_text()
    assert "samples/s: median (IQR) over the repeats |" in " ".join(report.split()), report


def test_noise_over_the_epochs_of_a_single_repeat_is_shown_too(tmp_path: Path) -> None:
    from bench.results import load_metrics, write_metrics
    from test_report import _fake_run

    for job, cv in ((0, 0.01), (1, 0.2), (2, 0.3)):
        _fake_run(tmp_path / "s", job, "cpu", 64 * (job + 1), 2.0)
        metrics = load_metrics(tmp_path / "s" / str(job))
        metrics.update(samples_per_s_cv=cv)  # repeats=1: the CV is over the epochs
        write_metrics(tmp_path / "s" / str(job), metrics)
    build_report([tmp_path / "s"])
    text = (tmp_path / "s" / "report.md").read_text()
    assert "samples/s spread over the epochs" in text and "CV 20.0% (noisy)" in text and "CV 1.0% " in text
    assert (
        "Noisy: batch_size=128 (CV 20.0% over its epochs), batch_size=192 (CV 30.0% over its epochs) varied by "
        "more than 5%, so a difference between runs smaller than that spread is not a finding; `repeat=3` "
        "measures it."
    ) in text
    # A steady sweep gets neither the column nor the sentence.
    for job in (1, 2):
        metrics = load_metrics(tmp_path / "s" / str(job))
        write_metrics(tmp_path / "s" / str(job), {**metrics, "samples_per_s_cv": 0.02})
    build_report([tmp_path / "s"])
    text = (tmp_path / "s" / "report.md").read_text()
    assert "spread over the epochs" not in text and "Noisy:" not in text and "Unmeasured noise" not in text


def test_runs_of_one_epoch_each_say_their_noise_is_unmeasured(tmp_path: Path) -> None:
    # epochs=1: no CV, so a 10x "finding" between two runs on a busy box came with no word of caution.
    from bench.results import load_metrics, write_metrics
    from test_report import _fake_run

    for job in (0, 1):
        _fake_run(tmp_path / "s", job, "cpu", 64 * (job + 1), 2.0)
        metrics = load_metrics(tmp_path / "s" / str(job))
        one = {"epochs": 1, "epochs_detail": metrics["epochs_detail"][:1], "samples_per_s_cv": None}
        write_metrics(tmp_path / "s" / str(job), {**metrics, **one})
    build_report([tmp_path / "s"])
    text = (tmp_path / "s" / "report.md").read_text()
    assert "Unmeasured noise: each run timed a single epoch" in text and "`epochs=3` or `repeat=3`" in text


def test_the_reports_sentence_and_its_verdict_table_agree_on_input_bound(tmp_path: Path, monkeypatch) -> None:
    # Two CUDA runs that both waited for data 35-40% of the epoch: at batch 64 the GPU was idle meanwhile
    # (input-bound); at batch 256 it was busy with steps 95% of it (a full launch queue makes even a resident
    # gather wait), which the verdict calls compute-bound. The sentence must not say otherwise.
    for job, (batch, wait, busy) in enumerate([(64, 0.4, 0.5), (256, 0.35, 0.95)]):
        epochs = [EpochStats(e, 1.0, 1000, 1000.0, 1.0, wait, 1.0, 0.0, busy) for e in (1, 2)]
        result = train.RunResult(
            model="medium", device="cuda", precision="fp32", dataset="synthetic", loader="resident",
            batch_size=batch, workers=0, epochs=2, seed=0, epochs_detail=epochs,
            metrics=summarize([asdict(e) for e in epochs]), step={"compile": "none"},
        )  # fmt: skip
        result.diagnosis = diagnosis.diagnose({**asdict(result), **result.metrics})
        write_metrics(tmp_path / "S" / str(job), result)
        (tmp_path / "S" / str(job) / ".hydra").mkdir()
    tops: dict[str, list[float]] = {}  # "Where the time goes": the GPU's timeline, stacked, never over 100%
    bar = Axes.bar

    def spy(ax: Axes, x, height, *args, bottom=0, **kwargs):
        tops[kwargs["label"]] = [float(b + h) for b, h in zip(np.broadcast_to(bottom, len(x)), height, strict=True)]
        return bar(ax, x, height, *args, bottom=bottom, **kwargs)

    monkeypatch.setattr(Axes, "bar", spy)
    written: list[str] = []  # shares alone drew a 1.2 s and a 16 s epoch as the same bar: each says its seconds
    annotate = Axes.annotate
    monkeypatch.setattr(Axes, "annotate", lambda ax, text, *a, **k: written.append(text) or annotate(ax, text, *a, **k))
    runs = build_report([tmp_path / "S"]).runs
    assert tops["GPU idle"] == pytest.approx([100.0, 100.0])  # copy + busy + idle: the whole epoch
    assert {f"{significant(t)} s" for t in runs["avg_epoch_time"]} <= set(written), written
    assert "data wait" not in tops  # the host's wait overlaps the GPU's work: a point, not a slice
    report = (tmp_path / "S" / "report.md").read_text()
    rows = [row.split("|") for row in report.splitlines() if "GPU busy 95%" in row]
    assert rows and rows[0][1].strip() == "256" and rows[0][3].strip() == "compute-bound", rows
    assert "input-bound at batch_size=64." in report  # and only there: not "every run is input-bound"


def test_a_sweep_of_names_states_a_range_not_a_trend(tmp_path: Path) -> None:
    # Models have no order: "from 5% at small to 2% at large" would hide medium's 36% in the middle.
    from bench.results import load_metrics, write_metrics
    from test_report import _fake_run

    for job, (model, wait) in enumerate([("small", 0.05), ("medium", 0.36), ("large", 0.02)]):
        _fake_run(tmp_path / "s", job, "cpu", 64, 2.0)
        metrics = load_metrics(tmp_path / "s" / str(job))
        write_metrics(tmp_path / "s" / str(job), {**metrics, "model": model, "data_wait_frac": wait})
    build_report([tmp_path / "s"])
    text = (tmp_path / "s" / "report.md").read_text()
    assert "The data path's share of the epoch ranges from 2% at model=large to 36% at model=medium: " in text


@pytest.mark.skipif(torch.cuda.is_available(), reason="the line names a GPU as absent only where there is none")
def test_the_console_says_where_device_cuda_can_be_tried(tmp_path: Path) -> None:
    # A CPU run whose next step is a GPU, on a machine without one: the advice is still the run's, but the
    # console does not send the user to an override that would fail here.
    proc = run_cli(tmp_path, *TINY, "loader=resident", "model=small")
    assert proc.returncode == 0, proc.stderr
    verdict = next(line for line in (proc.stdout + proc.stderr).splitlines() if "Verdict: " in line)
    assert verdict.endswith("; try device=cuda, on a machine with a CUDA GPU (none is usable here)"), verdict
    # Its last line says where the run's files are (a sweep's, where its report is).
    last = (proc.stdout + proc.stderr).strip().splitlines()[-1]
    run_dir = next((tmp_path / "outputs" / "runs").iterdir())
    assert last.endswith(f"Results: {run_dir.relative_to(tmp_path)} (metrics.json, bench.log)"), last
