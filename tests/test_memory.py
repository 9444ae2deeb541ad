"""What peak memory is made of: the breakdown's wiring and arithmetic, on the CPU with a stand-in allocator.

The CUDA runs of the same code (the real caching allocator, job 0 against an identical later job, the lab
comparison like for like) are in test_cuda.py.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import pandas as pd
import pytest

from bench import memory, train
from bench.memory import MIB
from bench.metrics import significant
from bench.report import build_report
from bench.results import RunResult, write_metrics
from conftest import TINY, read_metrics, run_cli


class StandInAllocator:
    """An allocator whose counters follow a script: the warm-up peaks high, the steady state lower."""

    def __init__(self) -> None:
        self.steady = False
        self.calls: list[str] = []
        self.pool = 0  # what a captured CUDA graph's pool would hold beyond its live tensors

    def allocated(self) -> int:
        self.calls.append("allocated")
        return 7 * MIB

    def peak_allocated(self) -> int:
        self.calls.append("peak_allocated")
        return (19 if self.steady else 50) * MIB

    def peak_reserved(self) -> int:
        return (24 if self.steady else 64) * MIB

    def start_steady_state(self) -> None:
        self.calls.append("start_steady_state")
        self.steady = True

    def reset_peaks(self) -> None:
        self.calls.append("reset_peaks")

    def graph_pool(self) -> int | None:
        self.calls.append("graph_pool")
        return self.pool


@pytest.fixture
def stand_in(monkeypatch) -> StandInAllocator:
    allocator = StandInAllocator()
    monkeypatch.setattr(memory, "allocator_for", lambda device: allocator)
    return allocator


def test_the_breakdown_adds_up_to_the_steady_state_peak(stand_in, cfg_for, tmp_path: Path) -> None:
    cfg = cfg_for("device=cpu", "loader=resident", "model=medium", "warmup_steps=3", "epochs=2")
    result = train.run(cfg, tmp_path / "run")
    assert result.status == "ok", result.error
    parts = result.memory
    assert parts["params_mb"] * MIB == 4 * result.params  # fp32 weights: 4 bytes each
    assert parts["grads_mb"] == parts["params_mb"]
    assert parts["optimizer_mb"] >= 2 * parts["params_mb"]  # Adam's two moments (and its step counts)
    assert parts["dataset_mb"] == pytest.approx(result.metrics["dataset_memory_mb"])
    total = sum(parts[f"{p}_mb"] for p in memory.PARTS if p != "reserve")
    assert total == pytest.approx(19) and parts["peak_allocated_mb"] == 19
    assert total + parts["reserve_mb"] == pytest.approx(24) == parts["peak_reserved_mb"]
    assert parts["activations_mb"] == pytest.approx(19 - 7)
    # The warm-up's peak is recorded apart; the run's peak is the timed epochs' own.
    assert result.metrics["warmup_peak_memory_mb"] == 50 and result.metrics["peak_memory_mb"] == 19
    assert stand_in.calls.count("start_steady_state") == 1
    assert stand_in.calls.index("start_steady_state") < len(stand_in.calls) - 1
    # The cache that start_steady_state released is refilled by one more step before the epochs, whose
    # peaks then start afresh: after the baseline was read, so the refill is no part of it.
    assert stand_in.calls.index("reset_peaks") > stand_in.calls.index("graph_pool")


def test_without_a_warm_up_nothing_refills_the_cache(stand_in, cfg_for, tmp_path: Path) -> None:
    # warmup_steps=0 asks to see the cold costs in the first epoch: no step runs before it.
    result = train.run(cfg_for("device=cpu", "loader=resident", "warmup_steps=0"), tmp_path / "run")
    assert result.status == "ok", result.error
    assert "reset_peaks" not in stand_in.calls and "start_steady_state" in stand_in.calls


def test_a_cpu_run_without_a_warm_up_still_sizes_its_gradients_and_adams_state(cfg_for, tmp_path: Path) -> None:
    # Read before any step had made them, they were 0 MB in metrics.json, with no note saying why.
    result = train.run(cfg_for("device=cpu", "loader=resident", "warmup_steps=0"), tmp_path / "run")
    assert result.status == "ok", result.error
    parts = result.memory
    assert parts["grads_mb"] == parts["params_mb"] > 0 and parts["optimizer_mb"] >= 2 * parts["params_mb"]


def test_a_captured_graphs_pool_counts_in_the_peak_and_comes_out_of_the_reserve(
    stand_in, cfg_for, tmp_path: Path
) -> None:
    # Between replays torch counts a CUDA graph's activations as reserved, not allocated: the pool is read
    # once before the timed epochs and added to the peak, which would otherwise leave the activations out.
    stand_in.pool = 3 * MIB
    result = train.run(cfg_for("device=cpu", "loader=resident", "warmup_steps=3"), tmp_path / "run")
    assert result.status == "ok", result.error
    parts = result.memory
    assert parts["graph_pool_mb"] == 3 and parts["activations_mb"] == pytest.approx(19 - 7)
    assert result.metrics["peak_memory_mb"] == parts["peak_allocated_mb"] == 19 + 3
    assert parts["reserve_mb"] == pytest.approx(24 - 19 - 3) and result.metrics["peak_reserved_mb"] == 24
    assert sum(parts[f"{p}_mb"] for p in memory.PARTS) == pytest.approx(parts["peak_reserved_mb"])
    assert stand_in.calls.index("graph_pool") > stand_in.calls.index("start_steady_state")
    assert any("3.0 MB held by captured CUDA graphs" in note for note in result.notes), result.notes
    # The report's memory table shows the pool as its own part; without a captured step it has no such column.
    write_metrics(tmp_path / "S" / "0", result)
    (tmp_path / "S" / "0" / ".hydra").mkdir()
    build_report([tmp_path / "S"])
    text = (tmp_path / "S" / "report.md").read_text()
    assert "CUDA graphs' pool" in text
    assert "in the timed epochs, plus a captured step's CUDA graphs' pool" in text  # what the panels' peak is
    # and the note under the table says the reserve is what is left after the pool (it said "reserved minus
    # allocated", with no word of the pool).
    assert "the allocator reserve is reserved minus allocated minus that pool." in " ".join(text.split())


def test_a_cpu_run_reports_its_persistent_tensors_beside_peak_rss(cfg_for, tmp_path: Path) -> None:
    result = train.run(cfg_for("device=cpu", "loader=resident"), tmp_path / "run")
    assert result.status == "ok", result.error
    assert result.memory["params_mb"] * MIB == 4 * result.params
    assert result.memory["dataset_mb"] == pytest.approx(result.metrics["dataset_memory_mb"])
    assert "activations_mb" not in result.memory  # the CPU has no per-tensor allocator to read
    assert result.metrics["peak_rss_mb"] > 0 and result.metrics["peak_memory_mb"] is None


def test_each_cpu_run_reports_its_own_peak_rss(cfg_for, tmp_path: Path) -> None:
    # A sweep's jobs share one process: without the reset, a small job after a large one would report the
    # large one's peak. 20,000 resident images hold ~300 MB (uint8 and float32 copies).
    if not Path("/proc/self/clear_refs").exists():
        pytest.skip("the peak RSS resets on Linux only")
    large = train.run(cfg_for("device=cpu", "loader=resident", "model=small", "dataset.train_size=20000",
                              "batch_size=1000", "evaluate=false"), tmp_path / "large")  # fmt: skip
    small = train.run(cfg_for("device=cpu", "loader=resident", "model=small"), tmp_path / "small")
    assert large.status == small.status == "ok", (large.error, small.error)
    assert small.metrics["peak_rss_mb"] < large.metrics["peak_rss_mb"] - 150, (small.metrics, large.metrics)


def test_the_recorded_peak_rss_is_the_runs_not_the_environment_readings(tmp_path: Path) -> None:
    # A process of its own, as job 0 of every sweep: asking torch for cuDNN's version after the run used to
    # load the library and add ~50 MB to metrics.json's peak, above the figure the run printed.
    proc = run_cli(tmp_path, *TINY, "hydra.run.dir=run", isolated=True)
    assert proc.returncode == 0, proc.stderr
    printed = re.search(r"peak RSS ([\d,]+) MB", proc.stdout + proc.stderr)
    assert printed, proc.stdout + proc.stderr
    metrics = read_metrics(tmp_path / "run")
    assert metrics["peak_rss_mb"] == pytest.approx(float(printed[1].replace(",", "")), abs=1)
    assert metrics["env"]["cudnn"] is None  # the CPU run does not load it


def test_a_run_frees_cycles_made_after_the_first_run(cfg_for, tmp_path: Path) -> None:
    # Runs freeze what survives their first collection (the imports) so later collections are cheap; what is
    # made after it, here a cycle like those a model or a captured graph leaves, must still be freed, also
    # when it was alive through a later run (as a run's own model is through its collections).
    import gc
    import weakref

    class Node:
        pass

    def cycle() -> weakref.ref:
        node = Node()
        node.self = node
        return weakref.ref(node)

    first = train.run(cfg_for("device=cpu"), tmp_path / "first")
    dead = cycle()  # garbage before the next run starts
    alive = Node()
    alive.self = alive  # in use through the next run, garbage after it
    held = weakref.ref(alive)
    gc.disable()  # only the runs' own collections may free them
    try:
        second = train.run(cfg_for("device=cpu"), tmp_path / "second")
        assert dead() is None
        del alive
        third = train.run(cfg_for("device=cpu"), tmp_path / "third")
    finally:
        gc.enable()
    assert first.status == second.status == third.status == "ok", (first.error, second.error, third.error)
    assert held() is None
    assert gc.get_freeze_count() > 100_000  # torch and Hydra's objects: frozen, not walked by every run


def _gpu_run(root: Path, job: int, batch: int, peak: float, dataset: int = 154_140_000) -> None:
    sizes = {"params": 484_728, "grads": 484_728, "optimizer": 969_464, "dataset": dataset}
    breakdown = memory.breakdown(sizes, baseline=int(160 * MIB), peak_allocated=int(peak * MIB),
                                 peak_reserved=int((peak + 20) * MIB))  # fmt: skip
    write_metrics(
        root / str(job),
        RunResult(
            status="ok", model="medium", device="cuda", precision="fp32", dataset="synthetic",
            loader="resident" if dataset else "dataloader", batch_size=batch, workers=2, epochs=1, seed=0,
            cudnn_benchmark=False, memory=breakdown,
            metrics={"avg_epoch_time": 1.0, "samples_per_s": 1000.0, "peak_memory_mb": peak,
                     "peak_reserved_mb": peak + 20, "dataset_memory_mb": sizes["dataset"] / MIB},
            env={"torch": "2.x", "gpu": "Test GPU"},
        ),
    )  # fmt: skip
    (root / str(job) / ".hydra").mkdir()
    lab = {"part": 2, "title": "Batch size", "figures": [{"batch_size": 16, "peak_memory_mb": 27},
                                                         {"batch_size": 64, "peak_memory_mb": 39}]}  # fmt: skip
    (root / str(job) / ".hydra" / "config.yaml").write_text(f"lab: {lab}\nbatch_size: {batch}\n")


def test_the_report_shows_the_breakdown_and_compares_with_the_lab_like_for_like(tmp_path: Path, monkeypatch) -> None:
    from matplotlib.axes import Axes

    _gpu_run(tmp_path / "s", 0, 16, 200.0)
    _gpu_run(tmp_path / "s", 1, 64, 260.0)
    drawn = {}  # the figure's lines by label: ours drew its peak with the dataset beside the lab's without one
    plot = Axes.plot

    def spy(ax: Axes, *args, **kwargs):
        drawn[kwargs.get("label")] = [float(v) for v in args[1]] if len(args) > 1 else []
        return plot(ax, *args, **kwargs)

    monkeypatch.setattr(Axes, "plot", spy)
    report = build_report([tmp_path / "s"])
    dataset = 154_140_000 / MIB
    assert drawn["bench, without its resident dataset"] == pytest.approx([200.0 - dataset, 260.0 - dataset])
    assert [200.0, 260.0] not in drawn.values()  # the peak with its dataset is not drawn beside the lab's
    text = (tmp_path / "s" / "report.md").read_text()
    assert "### What peak memory is made of" in text and (tmp_path / "s" / "batch_size_memory.png").exists()
    assert "activations & temporaries" in text and "allocator reserve" in text
    assert "CUDA graphs' pool" not in text  # no captured step: no column of zeros
    assert "cudnn_benchmark" in text  # recorded in every CUDA run's row
    # Like for like: the lab had no resident dataset, so ours is shown without it.
    dataset = 154_140_000 / MIB
    cells = " ".join(text.split())  # tables are padded for reading; compare their cells
    assert f"| {significant(200.0 - dataset)} |" in cells and f"| {significant(260.0 - dataset)} |" in cells
    assert "; our peak memory leaves out our resident dataset, which the lab did not have:" in cells
    assert "Of our peak with medium at 16 images per batch (our first run with a breakdown)" in text
    assert set(report.runs["batch_size"]) == {16, 64}
    # The lab's own DataLoader path holds no dataset on the GPU: our peak is whole, and the sentence said
    # otherwise of every run with a GPU peak.
    _gpu_run(tmp_path / "d", 0, 16, 200.0, dataset=0)
    build_report([tmp_path / "d"])
    cells = " ".join((tmp_path / "d" / "report.md").read_text().split())
    assert "| 16 | cuda | dataloader | ok | 27 | 200 |" in cells and "leaves out our resident dataset" not in cells
    # Nor a column of zeros for a dataset no run held, or a note that speaks of one.
    assert "resident dataset" not in cells and "Parameters, gradients and optimizer state are measured" in cells


# ---------------------------------------------------------------------------------- the largest batch


def test_max_batch_without_a_gpu_is_a_skipped_row_that_says_why(tmp_path: Path) -> None:
    from conftest import run_cli

    proc = run_cli(tmp_path, "experiment=max_batch", "device=cpu", "hydra.sweep.dir=S")
    assert proc.returncode == 0, proc.stderr
    summary = pd.read_csv(tmp_path / "S" / "summary.csv")
    assert len(summary) == 9 and (summary["status"] == "skipped").all()
    assert summary["error"].str.contains("needs a CUDA GPU").all()
    # The search picks its batches and trains no epochs: the config's 64 and 3, unused, sat beside its peak.
    assert summary["batch_size"].isna().all() and summary["epochs"].isna().all()
    assert "## Largest batch that fits" in (tmp_path / "S" / "report.md").read_text()


def test_max_batch_records_the_search_and_the_fit(monkeypatch, cfg_for, tmp_path: Path) -> None:
    from bench import capacity

    # A stand-in for one CUDA training step: peak = 30 MB + 0.25 MB per image, out of memory above 3,000.
    monkeypatch.setattr(capacity, "_cuda_trial", lambda cfg, device: lambda b: 30 + 0.25 * b if b <= 3000 else None)
    sweep = tmp_path / "s"
    for job, model in enumerate(("small", "large")):
        result = train.run(cfg_for("task=max_batch", f"model={model}", "device=cpu"), sweep / str(job))
        assert result.status == "ok", result.error
        assert 3000 / 1.05 <= result.metrics["max_batch"] <= 3000
        assert result.metrics["mem_mb_per_image"] == pytest.approx(0.25)
        assert result.metrics["mem_intercept_mb"] == pytest.approx(30)
        assert result.metrics["images_per_gb"] == pytest.approx(4096)
        attempts = result.capacity["attempts"]
        assert ([a["batch"] for a in attempts][:3] == [16, 32, 64] and not attempts[-1]["fits"]) or attempts
    build_report([sweep])
    text = (sweep / "report.md").read_text()
    assert "max batch" in text and "images/GB" in text and "4,096" in text
    assert "each GB of memory holds about 4,096 more images" in text  # computed from the fit
    assert "| bracketed within 5% " in text and "lower bound" not in text
    # Where the search stopped short of pinning the largest batch down, the sentence gives both ends.
    largest, failing = result.metrics["max_batch"], result.capacity["smallest_failing"]
    assert f"large in fp32 trains at least {largest:,} and under {failing:,} images per batch ({failing:,} ran out " \
           "of memory; bracketed within 5%)" in text  # fmt: skip


def test_a_search_where_nothing_fits_records_no_peak_memory(monkeypatch, cfg_for, tmp_path: Path) -> None:
    from bench import capacity, measure

    # Not even batch 1 fits. The allocator's peak is then the attempt that ran out of memory, which the run's end
    # had recorded as the search's "peak CUDA memory allocated" (here a stand-in for that CUDA read).
    monkeypatch.setattr(capacity, "_cuda_trial", lambda cfg, device: lambda batch: None)
    monkeypatch.setattr(measure, "peak_memory_mb", lambda device: (9999.0, 10240.0))
    result = train.run(cfg_for("task=max_batch", "model=small", "device=cpu", "max_batch.start=1"), tmp_path / "0")
    assert result.metrics["max_batch"] is None and result.capacity["attempts"], result.error
    assert result.metrics["peak_memory_mb"] is None and result.metrics.get("peak_reserved_mb") is None


def test_a_search_records_the_step_it_ran_and_notes_a_compile_mode_it_did_not(
    monkeypatch, cfg_for, tmp_path: Path
) -> None:
    from bench import capacity

    # Its attempts are eager steps: recipe=fast's compile mode was dropped without a word, and metrics.json's
    # step was empty.
    monkeypatch.setattr(capacity, "_cuda_trial", lambda cfg, device: lambda b: 30 + 0.25 * b if b <= 64 else None)
    cfg = cfg_for("task=max_batch", "model=small", "device=cpu", "step.compile=default", "step.adam=foreach")
    result = train.run(cfg, tmp_path / "0")
    assert result.step == {"compile": "none", "adam": "foreach", "channels_last": True, "grad_scaler": False}
    assert ("step.compile=default is ignored by task=max_batch: each attempt is an eager step on a new model, so "
            "the batch found is the eager step's") in result.notes  # fmt: skip
    quiet = train.run(cfg_for("task=max_batch", "model=small", "device=cpu"), tmp_path / "1")
    assert not any("is ignored by task" in note for note in quiet.notes), quiet.notes


@pytest.mark.parametrize("oom_at", [None, 32], ids=["before-any-oom", "before-bracketing"])
def test_a_search_cut_short_by_its_budget_reports_a_lower_bound(
    monkeypatch, cfg_for, tmp_path: Path, oom_at: int | None
) -> None:
    from bench import capacity

    # Batch 16 fits at once; batch 32 takes 0.6 s (and fits, or runs out of memory), past the 0.5 s budget.
    def trial(batch: int) -> float | None:
        if batch > 16:
            time.sleep(0.6)
        return None if oom_at is not None and batch >= oom_at else 30 + 0.25 * batch

    monkeypatch.setattr(capacity, "_cuda_trial", lambda cfg, device: trial)
    sweep = tmp_path / "s"
    # Job 1 only: job 0 is a `missing` row (as in a sweep cut short), which must not hide the search column.
    result = train.run(cfg_for("task=max_batch", "model=small", "device=cpu", "max_batch.budget_s=0.5"), sweep / "1")
    assert result.status == "ok" and result.capacity["stopped"] == "time budget", result.error
    largest = 16 if oom_at else 32
    assert result.metrics["max_batch"] == largest
    build_report([sweep])
    text = (sweep / "report.md").read_text()
    assert "| missing " in text and "| search " in text and "| time budget " in text  # why it stopped
    assert "| loader " not in text  # a max_batch table, though one row's task is unknown
    cause = "32 (100% more) ran out of memory" if oom_at else "no batch ran out of memory"
    sentence = f"small in fp32 trains at least {largest} images per batch (its search stopped: time budget; {cause})"
    assert sentence in text
    assert "trains at up to" not in text
    assert any(note.startswith(f"max_batch {largest} is a lower bound") for note in result.notes), result.notes


def test_a_search_with_too_few_fitting_batches_records_no_fit_and_says_why(
    monkeypatch, cfg_for, tmp_path: Path
) -> None:
    from bench import capacity

    # Out of memory above 17 images: 16 and 17 fit, a line through them would claim R² 1.
    monkeypatch.setattr(capacity, "_cuda_trial", lambda cfg, device: lambda b: 30 + 0.25 * b if b <= 17 else None)
    result = train.run(cfg_for("task=max_batch", "model=small", "device=cpu"), tmp_path / "s" / "0")
    assert result.status == "ok" and result.metrics["max_batch"] == 17, result.error
    assert all(result.metrics.get(k) is None for k in ("mem_fit_r2", "mem_mb_per_image", "images_per_gb"))
    assert "no straight-line fit of peak memory to batch: it needs 3 batches that fit, the largest at least 2× " \
           "the smallest; these fit: 16, 17" in result.notes  # fmt: skip


def test_a_fit_that_is_not_a_straight_line_is_called_rough(monkeypatch, cfg_for, tmp_path: Path) -> None:
    from bench import capacity

    # The peaks an H100 measured for MediumNet in fp32 under a 10% cap (torch 2.11): near the cap a larger
    # batch peaked lower (49,152 images at 7,699 MB, 32,768 at 7,842), so the line fits with R² 0.92.
    h100 = {16: 69.3, 32: 71.8, 64: 89.3, 128: 110.1, 256: 151.4, 512: 232.3, 1024: 397.2, 2048: 722.0,
            4096: 1376.0, 8192: 2681.0, 16384: 5293.1, 32768: 7842.2, 49152: 7699.2, 51200: 8017.2}  # fmt: skip
    monkeypatch.setattr(capacity, "_cuda_trial", lambda cfg, device: lambda b: h100.get(b))
    sweep = tmp_path / "s"
    result = train.run(cfg_for("task=max_batch", "model=medium", "device=cpu"), sweep / "0")
    assert result.status == "ok", result.error
    assert result.metrics["max_batch"] == 51200 and result.metrics["mem_fit_r2"] < 0.95
    build_report([sweep])
    text = (sweep / "report.md").read_text()
    assert "not a straight line in the batch" in text and "read the per-GB figure as rough" in text
