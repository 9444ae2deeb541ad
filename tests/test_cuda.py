"""CUDA-only measurement rules; skipped cleanly without a GPU, run by `make gpu-check` on one."""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import pytest
import torch

from bench import train
from conftest import needs_cuda, read_metrics, run_cli

pytestmark = [pytest.mark.cuda, needs_cuda]


def _run(cfg_for, tmp_path: Path, *overrides: str) -> train.RunResult:
    run_dir = tmp_path / f"run{len(list(tmp_path.iterdir()))}"
    result = train.run(cfg_for("device=cuda", "warmup_steps=3", *overrides), run_dir)
    assert result.status == "ok", result.error
    return result


def test_peak_memory_is_reset_per_run_and_grows_with_batch_size(cfg_for, tmp_path: Path) -> None:
    data = ("dataset.train_size=4096", "dataset.test_size=256", "epochs=1", "loader=resident")  # no decoding
    small = _run(cfg_for, tmp_path, *data, "batch_size=64")
    big = _run(cfg_for, tmp_path, *data, "batch_size=1024")
    small_again = _run(cfg_for, tmp_path, *data, "batch_size=64")
    assert big.metrics["peak_memory_mb"] > 2 * small.metrics["peak_memory_mb"]
    # Had the counters not been reset, the second small run would report the big run's peak.
    assert small_again.metrics["peak_memory_mb"] == pytest.approx(small.metrics["peak_memory_mb"], rel=0.10)
    assert small.metrics["peak_reserved_mb"] >= small.metrics["peak_memory_mb"]


def test_cuda_events_and_synchronized_wall_clock_agree(cfg_for, tmp_path: Path) -> None:
    # The resident loader keeps the GPU busy, so the clocks are compared on GPU work (and it costs ~3 s, not ~10).
    result = _run(cfg_for, tmp_path, "dataset.train_size=16384", "dataset.test_size=256", "epochs=2", "batch_size=256",
                  "loader=resident")  # fmt: skip
    for epoch in result.epochs_detail:
        assert epoch.cuda_time_s is not None
        assert epoch.cuda_time_s == pytest.approx(epoch.time_s, rel=0.05)
    # Averaged, within the 2% past which a run notes that its clocks disagree.
    assert not [n for n in result.notes if "CUDA-event time" in n]
    # The driver's version, read through NVML (nvidia-smi only where NVML cannot load): "580.95.05".
    assert re.fullmatch(r"\d+(\.\d+)+", result.env["driver"] or ""), result.env["driver"]


def test_the_hosts_lead_tells_a_launch_bound_step_from_a_gpu_bound_one(cfg_for, tmp_path: Path) -> None:
    # The events around each step count the gaps between its kernels as busy: on an H200, MediumNet's eager
    # step at batch 16 read "GPU busy 95%", at 0.1% of the dense peak and ~2 ms a step at every batch from 16
    # to 1,024, and was judged compute-bound. The host's lead is what tells it from a step the GPU is slow at.
    from bench.diagnosis import LAUNCH_LEAD_STEPS

    data = ("dataset.test_size=256", "epochs=1", "loader=resident", "precision=fp32")
    launched = _run(cfg_for, tmp_path, *data, "model=medium", "batch_size=16", "dataset.train_size=1600")
    heavy = _run(cfg_for, tmp_path, *data, "model=large", "batch_size=512", "dataset.train_size=10240")
    lead = launched.metrics["host_lead_steps"]
    assert lead < LAUNCH_LEAD_STEPS and launched.diagnosis["verdict"] == "launch-bound", launched.diagnosis
    assert launched.diagnosis["next"] == "step.compile=max"
    assert heavy.metrics["host_lead_steps"] >= 1 and heavy.diagnosis["verdict"] != "launch-bound", heavy.diagnosis
    assert all(e.host_lead_steps is not None for e in (*launched.epochs_detail, *heavy.epochs_detail))
    # A copy from pageable memory (the lab's DataLoader, unpinned) waits for the GPU every step: no lead.
    blocking = _run(cfg_for, tmp_path, "dataset.test_size=64", "epochs=1", "loader=dataloader", "workers=0",
                    "batch_size=16", "dataset.train_size=320")  # fmt: skip
    assert blocking.metrics["host_lead_steps"] is None


@pytest.mark.parametrize(("adam", "syncs"), [("fused", False), ("foreach", True)])
def test_fp16s_grad_scaler_syncs_every_step_only_beside_a_non_fused_adam(
    cfg_for, tmp_path: Path, adam: str, syncs: bool
) -> None:
    # GradScaler.step reads the overflow check on the host (found_inf.item()) unless the optimizer takes it
    # into its kernel, as fused Adam does; after that sync nothing is queued ahead however slow the GPU is. At
    # LargeNet·4096 the GPU sets the pace: even captured and compiled, bf16 LargeNet took 2.4 ms per 1,024
    # images on an H200 (~10 ms a step here), against an eager step's ~2-3 ms of launches. So the host runs
    # ahead unless it waits. The verdict reads the lead only where no such sync hides it.
    # (The rule is read from torch.amp.GradScaler.step; both cases passed on an H200.)
    from bench.diagnosis import LAUNCH_LEAD_STEPS, scaler_syncs

    # 12 steps; no evaluation, to keep it short. A host h s a step against a GPU's X falls (1 - h/X) of a step
    # further behind each step, so the median over steps 7 to 12 reads ~8.5 (1 - h/X): 1 or more where the GPU
    # step is 1.13 times the host's or longer.
    run = _run(cfg_for, tmp_path, "model=large", "precision=amp_fp16", f"step.adam={adam}", "loader=resident",
               "batch_size=4096", "dataset.train_size=49152", "dataset.test_size=64", "evaluate=false",
               "epochs=1")  # fmt: skip
    lead, step = run.metrics["host_lead_steps"], run.step
    assert step["grad_scaler"] and step["adam"] == adam and scaler_syncs(step) == syncs
    if syncs:
        assert lead < LAUNCH_LEAD_STEPS and "ahead of the GPU" not in run.diagnosis["evidence"], (lead, run.diagnosis)
    else:
        assert lead >= 1 and "ahead of the GPU" in run.diagnosis["evidence"], (lead, run.diagnosis)
    assert run.diagnosis["verdict"] != "launch-bound", run.diagnosis


def test_amp_fp16_lowers_largenets_peak_memory(cfg_for, tmp_path: Path) -> None:
    data = ("model=large", "batch_size=512", "dataset.train_size=2048", "dataset.test_size=256", "epochs=1")
    fp32 = _run(cfg_for, tmp_path, *data, "precision=fp32")
    amp = _run(cfg_for, tmp_path, *data, "precision=amp_fp16")
    assert amp.metrics["peak_memory_mb"] < 0.8 * fp32.metrics["peak_memory_mb"]


def test_cuda_out_of_memory_is_a_status(cfg_for, tmp_path: Path) -> None:
    # More activation memory than the run may use: it must end as `oom`, not as a crash. A cap of 2% of the
    # GPU keeps the dataset small; overflowing the whole card took ~600,000 generated images and 16 s.
    from bench.maxbatch import memory_cap

    cap = 0.02
    images = int(cap * torch.cuda.get_device_properties(0).total_memory / (32 * 32 * 32 * 4)) + 1
    with memory_cap(cap):  # LargeNet's first conv output alone exceeds the cap
        result = train.run(
            cfg_for("device=cuda", "model=large", "loader=resident", f"batch_size={images}",
                    f"dataset.train_size={images}", "dataset.test_size=64", "warmup_steps=1"),
            tmp_path / "oom",
        )  # fmt: skip
    assert result.status == "oom", result.error


def test_job_0_reads_no_higher_than_an_identical_later_job(tmp_path: Path) -> None:
    # Job 0 is the first CUDA work of its process (a fresh one): the warm-up's one-time transients
    # (CUDA init, autotuning, library workspaces) must stay out of its steady-state peak.
    data = ("dataset.train_size=4096", "dataset.test_size=256", "epochs=1", "batch_size=64", "workers=0")
    proc = run_cli(tmp_path, "-m", *data, "device=cuda", "cudnn_benchmark=true", "hydra.sweep.dir=S",
                   "model=medium,large,medium", isolated=True)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    first, third = (read_metrics(tmp_path / "S" / job) for job in ("0", "2"))
    assert third["peak_memory_mb"] == pytest.approx(first["peak_memory_mb"], rel=0.02)
    assert first["warmup_peak_memory_mb"] is not None  # recorded apart
    # One warm-up said per job: the memory baseline's step after it had announced a second one on CUDA.
    assert (proc.stdout + proc.stderr).count("Warm-up: 5 steps of 64 images, untimed") == 3, proc.stdout
    assert "Warm-up: 1 step of" not in proc.stdout + proc.stderr


@pytest.mark.parametrize("model", ["medium", "large"])
def test_the_breakdown_sums_to_the_peak(cfg_for, tmp_path: Path, model: str) -> None:
    from bench.memory import MIB, PARTS

    result = _run(cfg_for, tmp_path, f"model={model}", "loader=resident", "dataset.train_size=4096",
                  "dataset.test_size=256", "epochs=1", "batch_size=256")  # fmt: skip
    parts = result.memory
    assert parts["params_mb"] * MIB == 4 * result.params  # fp32
    allocated = sum(parts[f"{p}_mb"] for p in PARTS if p != "reserve")
    assert allocated == pytest.approx(result.metrics["peak_memory_mb"], abs=1.0)
    assert allocated + parts["reserve_mb"] == pytest.approx(result.metrics["peak_reserved_mb"], abs=1.0)
    assert parts["activations_mb"] > 0 and parts["reserve_mb"] >= 0


def test_a_captured_steps_activations_count_in_its_peak(cfg_for, tmp_path: Path) -> None:
    # Between replays torch counts a CUDA graph's activations as reserved, not allocated: without its pool, a
    # captured step's peak would be its persistent tensors alone (4,096 images in batches of 256 leave no
    # partial batch, whose eager step would allocate in the open).
    data = ("loader=resident", "dataset.train_size=4096", "dataset.test_size=256", "epochs=1", "batch_size=256")
    eager = _run(cfg_for, tmp_path, *data)
    captured = _run(cfg_for, tmp_path, *data, "step.compile=cudagraph")
    activations = eager.memory["activations_mb"]
    held = captured.memory["activations_mb"] + captured.memory["graph_pool_mb"]
    assert eager.memory["graph_pool_mb"] == 0 and captured.memory["graph_pool_mb"] > 0
    # About the eager step's: the pool reuses blocks freed within the capture, and rounds its segments up.
    assert 0.5 * activations <= held <= 5 * activations + 64, (eager.memory, captured.memory)
    assert captured.metrics["peak_memory_mb"] == pytest.approx(captured.memory["peak_allocated_mb"])
    assert any("held by captured CUDA graphs" in note for note in captured.notes), captured.notes


@pytest.mark.parametrize("compile_mode", ["none", "cudagraph"])
def test_profile_traces_the_gpus_work_after_the_timed_epochs(
    cfg_for, tmp_path: Path, caplog, compile_mode: str
) -> None:
    # profile=true on CUDA adds CUPTI's activities (kernels, copies, runtime calls) to the CPU's; a captured step
    # replays one CUDA graph a step. Evaluation runs after the profiler: its accuracy says that the work after
    # the profiler still ran.
    with caplog.at_level(logging.DEBUG, logger="bench.train"):
        run = _run(cfg_for, tmp_path, "profile=true", f"step.compile={compile_mode}", "loader=resident",
                   "batch_size=256", "dataset.train_size=2048", "dataset.test_size=256", "epochs=1")  # fmt: skip
    run_dir = next(p for p in tmp_path.iterdir() if (p / "trace.json").exists())
    events = json.loads((run_dir / "trace.json").read_text())["traceEvents"]
    categories = {str(e.get("cat", "")).lower() for e in events}
    names = " ".join(str(e.get("name", "")) for e in events)
    assert "cuda_runtime" in categories, sorted(categories)
    if compile_mode == "none":
        assert "kernel" in categories and "Self CUDA" in caplog.text, sorted(categories)
    else:
        assert "GraphLaunch" in names, sorted(categories)
    assert run.metrics["test_accuracy"] is not None
