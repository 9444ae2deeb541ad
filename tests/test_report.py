"""Sweeps end in a report; `python -m bench.report` rebuilds one from any run or sweep folders."""

from __future__ import annotations

import json
import math
import re
import shutil
from dataclasses import asdict
from itertools import pairwise, product
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from hydra.types import RunMode
from matplotlib.axes import Axes
from PIL import Image

from bench.metrics import summarize
from bench.report import build_report, lab_comparison, overall_speedup, speedup_table
from bench.results import EpochStats, RunResult, write_metrics
from conftest import TINY, run_cli

SUMMARY_COLUMNS = [
    "model", "device", "precision", "loader", "batch_size", "workers", "status", "avg_epoch_time",
    "total_time", "samples_per_s", "peak_memory_mb", "test_accuracy", "run_dir",
]  # fmt: skip


def _sweep_dir(root: Path) -> Path:
    sweeps = list((root / "outputs" / "sweeps").iterdir())
    assert len(sweeps) == 1
    return sweeps[0]


def _assert_png(path: Path) -> None:
    with Image.open(path) as img:
        img.verify()
    with Image.open(path) as img:
        assert img.format == "PNG" and img.size[0] > 400 and img.size[1] > 200


@pytest.fixture(scope="module")
def two_variable_sweep(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("sweep")
    proc = run_cli(root, "-m", *TINY, "model=small,medium", "batch_size=16,32")
    assert proc.returncode == 0, proc.stderr
    return _sweep_dir(root)


def test_a_multirun_ends_in_summary_report_and_plots(two_variable_sweep: Path) -> None:
    summary = pd.read_csv(two_variable_sweep / "summary.csv")
    assert set(SUMMARY_COLUMNS) <= set(summary.columns)
    assert list(summary["job"]) == [0, 1, 2, 3]
    # Hydra's basic sweeper varies the first swept key fastest.
    assert list(summary["model"]) == ["small", "medium", "small", "medium"]
    assert list(summary["batch_size"]) == [16, 16, 32, 32]
    assert (summary["status"] == "ok").all() and (summary["avg_epoch_time"] > 0).all()
    report = (two_variable_sweep / "report.md").read_text()
    assert "Swept: **model** = small, medium; **batch_size** = 16, 32" in report
    assert "## Environment" in report and "## Status of every run" in report
    # The sentences go along batch_size within each model, never from one model's run to another's.
    for model in ("small", "medium"):
        rows = summary[summary["model"] == model]
        first, last = rows.iloc[0]["samples_per_s"], rows.iloc[-1]["samples_per_s"]
        assert (f"**model={model}**: Throughput goes from {first:,.0f} samples/s at batch_size=16 to "
                f"{last:,.0f} at batch_size=32") in report  # fmt: skip
    pngs = sorted(two_variable_sweep.glob("*.png"))
    assert [p.name for p in pngs] == ["runs.png", "runs_time.png"]  # the experiment, and where its time goes
    for png in pngs:
        assert f"]({png.name})" in report
        _assert_png(png)


def test_report_survives_a_deleted_job_and_a_corrupt_metrics_file(two_variable_sweep: Path, tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    shutil.copytree(two_variable_sweep, sweep)
    for name in ("summary.csv", "report.md"):
        (sweep / name).unlink()
    shutil.rmtree(sweep / "1")
    (sweep / "2" / "metrics.json").write_text('{"status": "ok", "trunc')
    # Valid JSON, but a number no float holds (edited by hand): unreadable too, not an OverflowError.
    huge = (
        (sweep / "3" / "metrics.json")
        .read_text()
        .replace('"samples_per_s": ', '"samples_per_s": 1' + "0" * 400 + ', "x": ', 1)
    )
    (sweep / "3" / "metrics.json").write_text(huge)
    proc = run_cli(tmp_path, str(sweep), module="bench.report")
    assert proc.returncode == 0, proc.stderr
    summary = pd.read_csv(sweep / "summary.csv")
    assert list(summary["job"]) == [0, 1, 2, 3]
    assert list(summary["status"]) == ["ok", "missing", "unreadable", "unreadable"]
    assert "a number too large" in summary.loc[3, "error"]
    assert summary.loc[2, "model"] == "small" and summary.loc[2, "batch_size"] == 32  # from .hydra/config.yaml
    assert "not valid JSON" in summary.loc[2, "error"]
    assert "unreadable" in (sweep / "report.md").read_text()
    # Its saved device=auto is not a device: beside the others' cpu, it made this a sweep over devices.
    assert pd.isna(summary.loc[2, "device"]) and set(summary["device"].dropna()) == {"cpu"}
    swept = next(line for line in (sweep / "report.md").read_text().splitlines() if line.startswith("Swept: "))
    assert "device" not in swept and "GPU speedup" not in (sweep / "report.md").read_text()


def test_a_config_field_edited_into_a_list_is_unreadable_not_a_crash(two_variable_sweep: Path, tmp_path: Path) -> None:
    # The report stopped at "TypeError: unhashable type: 'list'" and left a summary.csv with the row as ok.
    sweep = tmp_path / "sweep"
    shutil.copytree(two_variable_sweep, sweep)
    for job, key, value in (("0", "model", ["medium"]), ("1", "device", {"a": 1})):
        metrics = json.loads((sweep / job / "metrics.json").read_text())
        (sweep / job / "metrics.json").write_text(json.dumps({**metrics, key: value}))
    proc = run_cli(tmp_path, str(sweep), "--out", "rep", module="bench.report")
    assert proc.returncode == 0, proc.stderr
    summary = pd.read_csv(tmp_path / "rep" / "summary.csv")
    assert list(summary["status"]) == ["unreadable", "unreadable", "ok", "ok"]
    assert "model is a list, expected a single value" in summary.loc[0, "error"]
    assert "device is a dict, expected a single value" in summary.loc[1, "error"]


def test_a_sweep_over_true_false_and_null_is_reported_by_those_names(tmp_path: Path) -> None:
    # A true/false sweep finished without its report (plots took false from true as numbers), and null against
    # a value said that nothing was swept.
    proc = run_cli(tmp_path, "-m", *TINY, "loader=resident", "step.channels_last=null,false,true", "hydra.sweep.dir=S")
    assert proc.returncode == 0, proc.stderr
    report = (tmp_path / "S" / "report.md").read_text()
    assert "Swept: **step.channels_last** = null, false, true" in report
    # The sentences name the runs they rank (which ones depends on their timings) as an override writes them.
    assert any(f"step.channels_last={v}" in report for v in ("null", "false", "true"))
    assert not any(f"step.channels_last={v}" in report for v in ("None", "False", "True"))
    assert (tmp_path / "S" / "runs.png").is_file()
    assert "peak RSS MB (main process)" in report  # a CPU run's memory figure, in the table too (not only in the plot)
    assert list(pd.read_csv(tmp_path / "S" / "summary.csv", keep_default_na=False)["step.channels_last"]) == [
        "null", "false", "true"]  # fmt: skip


def test_failed_skipped_and_ok_jobs_share_one_sweep_and_report(tmp_path: Path) -> None:
    # An image folder of 8 training images: batch 16 fails when its job reads the data (a size no config
    # states, so no check before the sweep can know it); batch 4 trains.
    root = tmp_path / "imgs"
    for split, n in (("train", 4), ("test", 2)):
        for cls in ("a", "b"):
            (root / split / cls).mkdir(parents=True)
            for i in range(n):
                Image.new("RGB", (32, 32), (40 * i, 100, 200)).save(root / split / cls / f"{i}.png")
    tiny = [t for t in TINY if "_size=" not in t]
    proc = run_cli(tmp_path, "-m", *tiny, "dataset=imagefolder", f"dataset.root={root}", "model=small",
                   "device=cpu,cuda", "batch_size=16,4")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    summary = pd.read_csv(_sweep_dir(tmp_path) / "summary.csv")
    by_config = {(r.device, r.batch_size): r.status for r in summary.itertuples()}
    assert by_config[("cpu", 16)] == "failed" and by_config[("cpu", 4)] == "ok"
    import torch

    assert by_config[("cuda", 16)] == ("failed" if torch.cuda.is_available() else "skipped")
    assert by_config[("cuda", 4)] == ("ok" if torch.cuda.is_available() else "skipped")
    assert "batch_size=16 is larger than the 8 training images" in summary.loc[0, "error"]
    # Counts stay whole numbers beside the jobs that have none (pandas wrote 8.0 images, 1.0 repeats).
    text = pd.read_csv(_sweep_dir(tmp_path) / "summary.csv", dtype=str, keep_default_na=False)
    assert set(text["train_samples"]) <= {"8", ""} and "8" in set(text["train_samples"])
    assert set(text["repeats"]) <= {"1", ""} and set(text["flops_per_sample"]) - {""} and not any(
        v.endswith(".0") for v in text["flops_per_sample"])  # fmt: skip


# -------------------------------------------------------------------- reports from crafted metrics


def _fake_run(
    root: Path, job: int, device: str, batch_size: int, epoch_time: float, status: str = "ok", cudnn: bool = False,
    loader: str = "dataloader", epoch_times: tuple[float, ...] | None = None,
) -> None:  # fmt: skip
    """A run folder as a sweep job leaves it, with made-up timings (so CPU and GPU can pair up here)."""
    run_dir = root / str(job)
    ok = status == "ok"
    times = epoch_times or (epoch_time, epoch_time)
    epochs = [EpochStats(e, t, 1000, 1000 / t, 1.0, 0.01 * t) for e, t in enumerate(times, 1)] if ok else []
    measured = summarize([asdict(e) for e in epochs])
    if device == "cuda" and ok:
        measured["peak_memory_mb"] = 50.0 * batch_size / 64
    write_metrics(
        run_dir,
        RunResult(
            status=status, model="medium", device=device, precision="fp32", dataset="synthetic",
            loader=loader, batch_size=batch_size, workers=2, epochs=2, seed=0,
            epochs_detail=epochs, metrics=measured, cudnn_benchmark=cudnn,
            env={"torch": "2.x", "gpu": "Test GPU" if device == "cuda" else None, "cuda": "13.0",
                 "cudnn": 92400 if device == "cuda" else None},
        ),
    )  # fmt: skip
    (run_dir / ".hydra").mkdir()


def test_a_report_into_an_earlier_ones_folder_leaves_none_of_its_figures(tmp_path: Path) -> None:
    # Rebuilt over runs that draw no figure (all failed), the earlier report's figures stayed beside the new
    # report.md, as if of these runs. A user's own file in the folder is kept.
    for job, bs in enumerate((64, 128)):
        _fake_run(tmp_path / "ok", job, "cpu", bs, 2.0)
        _fake_run(tmp_path / "failed", job, "cpu", bs, 2.0, status="failed")
    first = build_report([tmp_path / "ok"], tmp_path / "r")
    drawn = {p.name for p in first.files if p.suffix == ".png"}
    assert drawn, first.files
    (tmp_path / "r" / "mine.png").write_bytes(b"not the report's")
    with (tmp_path / "r" / "report.md").open("a") as report:  # linked in by hand: the user's, not the report's
        report.write("\n![my own figure](mine.png)\n")
    build_report([tmp_path / "failed"], tmp_path / "r")
    assert sorted(p.name for p in (tmp_path / "r").iterdir()) == ["mine.png", "report.md", "summary.csv"]
    assert "figures bench drew" not in (tmp_path / "r" / "report.md").read_text()  # it drew none: no empty list


def test_a_sweep_whose_jobs_all_went_missing_has_no_empty_environment_table(tmp_path: Path) -> None:
    # A plan and no job folder (a sweep stopped before its first job wrote anything): the Environment table was
    # a header without rows.
    sweep = tmp_path / "S"
    sweep.mkdir()
    plan = {"hydra": {"sweeper": {"_target_": "hydra._internal.core_plugins.basic_sweeper.BasicSweeper"},
                      "overrides": {"task": ["batch_size=16,32"]}}}  # fmt: skip
    (sweep / "multirun.yaml").write_text(yaml.safe_dump(plan))
    text = (build_report([sweep]).out / "report.md").read_text()
    assert "Runs: 2 (2 missing)" in text
    assert "## Environment\n\n_No run recorded its environment._\n" in text


def test_the_report_ends_with_what_its_columns_and_terms_mean(tmp_path: Path) -> None:
    # "CV", "IQR", "data wait", "s/epoch" (of what?): a student doing the lab had the README to ask, not the report.
    sweep = tmp_path / "MB-runs"  # a folder's name is no term of the report's
    for job, bs in enumerate((64, 128)):
        _fake_run(sweep, job, "cpu", bs, 2.0, epoch_times=(2.0, 2.6))  # noisy: the CV column
    text = (build_report([sweep]).out / "report.md").read_text()
    legend = text.split("## What the columns and terms mean\n\n")[1]
    named = re.findall(r"^- \*\*(.+?)\*\*: ", legend, re.MULTILINE)
    # Each once, in the order the report first uses it: the tables' columns, then the words of its text.
    assert named == ["status", "verdict", "samples/s spread over the epochs", "s/epoch", "samples/s (all epochs)",
                     "data wait", "learning", "CV", "IQR"], named  # fmt: skip
    assert "- **data wait**: the share of the epoch the training loop waited for its next batch" in legend
    # As the learning check judges it: 2.277 against ln(10) = 2.303 is within 2%, no learning.
    assert "or where its final loss (the last timed epoch's mean) is within 2% of a uniform guess's" in legend
    # Only what this report shows: a CPU sweep has no GPU busy column, and no MB but in its folder's name.
    assert "GPU busy" not in legend and "MB" not in legend


def test_the_throughput_sentence_names_a_dip_between_the_ends_and_noise_as_noise(tmp_path: Path) -> None:
    # "goes from 100 to 200 (2.00×)" hid that batch 128, between them, ran at 25; "the fastest ... the
    # slowest" ranked runs whose gap was inside their own spread; "goes from 1% to 1%" said nothing.
    for job, (bs, t) in enumerate([(64, 10.0), (128, 40.0), (256, 5.0)]):
        _fake_run(tmp_path / "dip", job, "cpu", bs, t)
    text = " ".join((build_report([tmp_path / "dip"]).out / "report.md").read_text().split())
    assert ("Throughput goes from 100 samples/s at batch_size=64 to 200 at batch_size=256 (2.00×); the fastest run "
            "is batch_size=256 at 200 samples/s, the slowest batch_size=128 at 25.") in text  # fmt: skip
    assert "The data path's share of the epoch is 1% at every batch_size: no run is input-bound" in text
    # The same share at both ends, another between: "goes from 2% at batch_size=64 to 2% at ..." hid it.
    for job, wait in enumerate((0.02, 0.12, 0.02)):
        metrics = tmp_path / "dip" / str(job) / "metrics.json"
        metrics.write_text(json.dumps({**json.loads(metrics.read_text()), "data_wait_frac": wait}))
    text = " ".join((build_report([tmp_path / "dip"]).out / "report.md").read_text().split())
    assert ("The data path's share of the epoch is 2% at batch_size=64 and at batch_size=256, from 2% to 12% "
            "between") in text  # fmt: skip
    for job, (bs, times) in enumerate([(64, (10.0, 12.0)), (128, (10.5, 12.5))]):  # 91 and 87 samples/s
        _fake_run(tmp_path / "noise", job, "cpu", bs, 11.0, epoch_times=times)
    text = " ".join((build_report([tmp_path / "noise"]).out / "report.md").read_text().split())
    assert "(0.96×); the fastest run is batch_size=64 at 91 samples/s, but the fastest and the slowest differ by " \
           "less than their own spread (IQR / median, 17.8% together): no measurable difference." in text  # fmt: skip
    # A slow third run made the ends a finding; the fastest still stood inside its runner-up's spread, unsaid.
    _fake_run(tmp_path / "noise", 2, "cpu", 256, 40.0, epoch_times=(40.0, 40.0))
    text = " ".join((build_report([tmp_path / "noise"]).out / "report.md").read_text().split())
    assert ("the fastest run is batch_size=64 at 91 samples/s (batch_size=128, at 87, is within the two runs' "
            "spread: IQR / median, 17.8% together)") in text and "no measurable difference" not in text  # fmt: skip


def test_the_time_and_throughput_panels_draw_each_runs_slowest_and_fastest_as_whiskers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A point alone hid that a run's epochs went from 83 to 100 samples/s: a gap between runs smaller than that
    # is no finding, and the figure must show it as the table's CV does.
    drawn, titles = [], []
    errorbar, bar, title = Axes.errorbar, Axes.bar, Axes.set_title

    def spy_errorbar(ax: Axes, x, y, yerr=None, **kwargs):
        drawn.append((list(map(float, y)), np.asarray(yerr, dtype=float).round(2).tolist()))
        return errorbar(ax, x, y, yerr=yerr, **kwargs)

    def spy_bar(ax: Axes, x, height, *args, yerr=None, **kwargs):
        if yerr is not None:
            drawn.append((list(map(float, height)), np.asarray(yerr, dtype=float).round(2).tolist()))
        return bar(ax, x, height, *args, yerr=yerr, **kwargs)

    monkeypatch.setattr(Axes, "errorbar", spy_errorbar)
    monkeypatch.setattr(Axes, "bar", spy_bar)
    monkeypatch.setattr(Axes, "set_title", lambda ax, text, *a, **k: titles.append(text) or title(ax, text, *a, **k))
    _fake_run(tmp_path / "batch", 0, "cpu", 64, 11.0, epoch_times=(10.0, 12.0))  # 100 and 83.3 samples/s
    _fake_run(tmp_path / "batch", 1, "cpu", 128, 5.0)  # two equal epochs: nothing to draw
    build_report([tmp_path / "batch"])
    rate = 2000 / 22  # the run's own figure: all its images over all its time, between its epochs' rates
    assert ([11.0, 5.0], [[1.0, 0.0], [1.0, 0.0]]) in drawn  # epoch time: 10 to 12 s around the mean 11 s
    assert ([rate, 200.0], [[round(rate - 1000 / 12, 2), 0.0], [round(100 - rate, 2), 0.0]]) in drawn
    assert titles.count("Samples/s\nwhiskers: slowest to fastest epoch") == 1
    # Over names (bars), the same whiskers; a sweep whose runs' epochs all agree draws none and says none.
    drawn.clear(), titles.clear()
    for job, device in enumerate(("cpu", "cuda")):
        _fake_run(tmp_path / "device", job, device, 64, 3.0, epoch_times=(2.0, 4.0) if device == "cpu" else None)
    build_report([tmp_path / "device"])
    assert ([3.0, 3.0], [[1.0, 0.0], [1.0, 0.0]]) in drawn
    # A run of one epoch has no whiskers; the title says so, or it would read as epochs that agreed exactly.
    titles.clear()
    _fake_run(tmp_path / "one", 0, "cpu", 64, 3.0, epoch_times=(2.0, 4.0))
    _fake_run(tmp_path / "one", 1, "cpu", 128, 3.0, epoch_times=(3.0,))
    build_report([tmp_path / "one"])
    # (wrapped to the panel's width: read as one line)
    said = [t.split("\n", 1)[0] + "\n" + " ".join(t.split("\n")[1:]) for t in titles]
    assert "Samples/s\nwhiskers: slowest to fastest epoch; none for a run of one epoch" in said, titles
    drawn.clear(), titles.clear()
    _fake_run(tmp_path / "flat", 0, "cpu", 64, 2.0)
    _fake_run(tmp_path / "flat", 1, "cpu", 128, 1.0)
    build_report([tmp_path / "flat"])
    assert drawn == [] and not [t for t in titles if "whiskers" in t]


def test_speedup_is_cpu_time_over_gpu_time_per_matching_config(tmp_path: Path) -> None:
    cpu, gpu = tmp_path / "cpu_sweep", tmp_path / "gpu_sweep"
    for job, (bs, t) in enumerate([(64, 25.0), (256, 20.0)]):
        _fake_run(cpu, job, "cpu", bs, t)
    for job, (bs, t) in enumerate([(64, 12.5), (256, 4.0), (1024, 3.0)]):
        _fake_run(gpu, job, "cuda", bs, t)
    report = build_report([cpu, gpu], tmp_path / "combined")
    table = speedup_table(report.runs)
    assert dict(zip(table["batch_size"], table["speedup"], strict=True)) == {64: 2.0, 256: 5.0}
    assert overall_speedup(table) == pytest.approx((50 + 40) / (25 + 8))
    text = (tmp_path / "combined" / "report.md").read_text()
    assert "Overall GPU speedup: 2.73×** (total training time, CPU ÷ GPU" in text
    # How many times, beside the two ends (amp_fp16's half of fp32's reads at a glance).
    assert "Peak memory allocated goes from 50.0 MB at batch_size=64 to 800.0 MB at batch_size=1024 (16.00×)" in text
    assert "| CPU s/epoch |" in " ".join(text.split()) and "avg_epoch_time_cpu" not in text
    # Numbers right-aligned, the ratios ("2.00×") too: they used to be left-aligned as if words.
    speedups = text.split("### GPU speedup")[1].split("\n\n")[1].splitlines()
    header = [h.strip() for h in speedups[0].strip("|").split("|")]
    align = dict(zip(header, speedups[1].strip("|").split("|"), strict=True))
    assert align["speedup (s/epoch, CPU ÷ GPU)"].endswith(":") and align["CPU s/epoch"].endswith(":"), align
    assert "Swept: **device** = cpu, cuda; **batch_size** = 64, 256, 1024" in text
    assert "allocated* by tensors (`torch.cuda.max_memory_allocated`) in the timed epochs; reserved" in text
    # The CUDA that torch was built for is not a GPU in use; cuDNN's code is shown as its version.
    env = [" ".join(line.split()) for line in text.split("## Environment")[1].split("##")[0].splitlines()]
    assert (
        "| device | device_name | gpu | torch | CUDA (torch build) | cudnn | hostname | git_commit | job numbers |"
        in env
    )
    assert any(line.startswith("| cuda | n/a | Test GPU | 2.x | 13.0 | 9.24.0 |") for line in env), env
    assert any(line.endswith("| gpu_sweep: 0–2 |") for line in env), env  # which folder's jobs ran where
    summary = pd.read_csv(tmp_path / "combined" / "summary.csv")
    assert len(summary) == 5 and list(summary["device"]) == ["cpu", "cpu", "cuda", "cuda", "cuda"]
    _assert_png(next((tmp_path / "combined").glob("*.png")))


def test_a_cpu_run_beside_gpu_runs_is_its_own_time_split_not_gpu_idle() -> None:
    # A CPU sweep and a GPU sweep in one report: the CPU bars were drawn whole as "GPU idle".
    from bench.plots import STEPS_STACK, time_shares

    runs = pd.DataFrame({"data_wait_frac": [0.2, 0.1], "gpu_busy_frac": [None, 0.6], "copy_frac": [None, 0.05]})
    stacks, marks = time_shares(runs)
    assert stacks["GPU idle"] == [0.0, pytest.approx(0.35)] and stacks[STEPS_STACK] == [0.0, 0.6]
    assert stacks["data wait (CPU run)"] == [0.2, 0.0] and stacks["compute (CPU run)"] == [0.8, 0.0]
    assert marks is not None and math.isnan(marks["host waiting for data"][0])  # a GPU run's point only
    assert marks["host waiting for data"][1] == 0.1
    cpu_only, none = time_shares(runs.iloc[:1])
    assert cpu_only == {"data wait": [0.2], "compute (CPU)": [0.8]} and none is None


def test_peak_memory_of_the_one_gpu_run_beside_a_cpu_run_is_no_range(tmp_path: Path) -> None:
    # "Peak memory allocated ranges from 50.0 MB at device=cuda to 50.0 MB at device=cuda."
    _fake_run(tmp_path / "cpu", 0, "cpu", 64, 25.0)
    _fake_run(tmp_path / "gpu", 0, "cuda", 64, 12.5)
    text = (build_report([tmp_path / "cpu", tmp_path / "gpu"], tmp_path / "both").out / "report.md").read_text()
    assert "Peak memory allocated is 50.0 MB at device=cuda, the only run with a CUDA figure." in text
    assert "ranges from 50.0 MB" not in text


def test_the_learning_column_says_learned_beside_did_not_learn(tmp_path: Path) -> None:
    # A blank beside "did not learn" read as a check that was not made.
    for job, bs in enumerate((64, 256)):
        _fake_run(tmp_path / "s", job, "cpu", bs, 2.0)
    metrics = json.loads((tmp_path / "s" / "1" / "metrics.json").read_text())
    metrics["final_loss"] = math.log(10)  # a uniform guess
    (tmp_path / "s" / "1" / "metrics.json").write_text(json.dumps(metrics))
    text = " ".join((build_report([tmp_path / "s"]).out / "report.md").read_text().split())
    assert "| learned |" in text and "| did not learn |" in text
    # Where every run learned, no column of "learned".
    shutil.rmtree(tmp_path / "s" / "1")
    text = (build_report([tmp_path / "s"], tmp_path / "one").out / "report.md").read_text()
    assert "did not learn" not in text and "| learning" not in text.split("## Why")[0]


def test_the_memory_panels_say_what_a_max_batch_searchs_peak_is(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A search times nothing: its peak is the attempt at the largest batch, not "the timed epochs".
    labels: list[str] = []  # each panel's y label
    save = Axes.set_ylabel
    monkeypatch.setattr(Axes, "set_ylabel", lambda ax, text, *a, **k: labels.append(text) or save(ax, text, *a, **k))
    for job, (model, largest) in enumerate([("medium", 8192), ("large", 2048)]):
        run_dir = tmp_path / "s" / str(job)
        write_metrics(run_dir, RunResult(
            status="ok", task="max_batch", model=model, device="cuda", precision="fp32", dataset="synthetic",
            loader="dataloader", batch_size=64, workers=2, epochs=1, seed=0,
            metrics={"max_batch": largest, "peak_memory_mb": largest / 10}, env={"gpu": "Test GPU"},
        ))  # fmt: skip
        (run_dir / ".hydra").mkdir()
    build_report([tmp_path / "s"])
    text = (tmp_path / "s" / "report.md").read_text()
    assert "in the attempt at each run's largest batch (a fresh model, a few steps); nothing was timed." in text
    assert "in the timed epochs" not in text
    # Each panel's axis is its unit; the max batch label's own parenthesis once left "task=max_batch) (images".
    assert {"images", "MB"} <= set(labels) and not any("(" in label for label in labels), labels


def test_gpu_runs_that_differ_in_autotuning_each_pair_with_the_same_cpu_run(tmp_path: Path) -> None:
    _fake_run(tmp_path / "s", 0, "cpu", 64, 25.0)
    _fake_run(tmp_path / "s", 1, "cuda", 64, 12.5, cudnn=False)
    _fake_run(tmp_path / "s", 2, "cuda", 64, 10.0, cudnn=True)
    table = speedup_table(build_report([tmp_path / "s"]).runs)
    assert dict(zip(table["cudnn_benchmark"], table["speedup"], strict=True)) == {False: 2.0, True: 2.5}


def test_without_cuda_the_report_says_gpu_runs_were_skipped(tmp_path: Path) -> None:
    _fake_run(tmp_path / "s", 0, "cpu", 64, 25.0)
    _fake_run(tmp_path / "s", 1, "cuda", 64, 1.0, status="skipped")
    build_report([tmp_path / "s"])
    text = (tmp_path / "s" / "report.md").read_text()
    assert "the GPU runs were **skipped**" in text


def test_lab_figures_match_ours_even_when_a_job_is_missing(tmp_path: Path) -> None:
    lab = {"part": 2, "title": "Batch size", "figures": [{"batch_size": 16, "avg_epoch_time": 20.4},
                                                         {"batch_size": 64, "avg_epoch_time": 12.9}]}  # fmt: skip
    for job, bs in ((0, 16), (2, 64)):  # job 1 is gone, so batch_size becomes a float column
        _fake_run(tmp_path / "s", job, "cpu", bs, 2.0)
        (tmp_path / "s" / str(job) / ".hydra" / "config.yaml").write_text(json.dumps({"lab": lab, "batch_size": bs}))
    report = build_report([tmp_path / "s"])
    assert report.runs["batch_size"].dtype == "float64"  # the gap made it float
    comparison = lab_comparison(report.runs, lab)
    assert list(comparison["lab s/epoch"]) == [20.4, 12.9]
    assert list(comparison["ours s/epoch"]) == [2.0, 2.0]
    text = (tmp_path / "s" / "report.md").read_text()
    assert "Lab part 2: Batch size" in text
    # Our CPU beside the lab's GPU is two machines, not "like for like"; figures to 3 significant digits.
    assert "ours ran on the CPU where the lab's ran on its GPU, so these rows compare machines" in text
    assert "like for like" not in text and "| 20.4 |" in " ".join(text.split()).replace("  ", " ")


def test_lab_figures_that_none_of_ours_matches_stand_alone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # batch_size=32 against the lab's 16 and 64: a table of n/a rows headed "beside ours, like for like", and a
    # note on an "ours s/epoch" column that was not there.
    lab = {"part": 2, "title": "Batch size", "figures": [{"batch_size": 16, "avg_epoch_time": 20.4},
                                                         {"batch_size": 64, "avg_epoch_time": 12.9}]}  # fmt: skip
    _fake_run(tmp_path / "s", 0, "cpu", 32, 2.0)
    (tmp_path / "s" / "0" / ".hydra" / "config.yaml").write_text(json.dumps({"lab": lab, "batch_size": 32}))
    drawn = []  # the figure drew the lab's 16-to-64 line through our 32: a lab figure the lab never measured
    plot = Axes.plot

    def spy(ax: Axes, *args, **kwargs):
        drawn.append(kwargs.get("label"))
        return plot(ax, *args, **kwargs)

    monkeypatch.setattr(Axes, "plot", spy)
    text = (build_report([tmp_path / "s"]).out / "report.md").read_text()
    assert not [label for label in drawn if label and label.startswith("lab")], drawn
    assert "none of our runs has a batch_size the lab ran (16, 64), so there is nothing of ours to set" in text
    assert "like for like" not in text and "ours s/epoch" not in text
    section = text.split("The lab's figures")[1].split("## Status")[0]
    assert "n/a" not in section and "| 20.4 |" in " ".join(section.split()), section
    # Our one run is told along what the lab swept: its table shows the batch size it names, not the model.
    table = " ".join(text.split("## Lab part 2")[1].split("![")[0].split())
    assert "| batch_size | loader |" in table and "| 32 | dataloader |" in table, table


def test_a_lab_part_on_the_cpu_says_its_memory_is_rss_not_the_labs_gpu_memory(tmp_path: Path) -> None:
    # "Batch size vs epoch time and peak GPU memory" headed a CPU sweep whose memory panel was the process's RSS.
    lab = {"part": 2, "title": "Batch size vs epoch time and peak GPU memory",
           "figures": [{"batch_size": 64, "avg_epoch_time": 12.93, "peak_memory_mb": 38.63}]}  # fmt: skip
    _fake_run(tmp_path / "s", 0, "cpu", 64, 2.0)
    (tmp_path / "s" / "0" / ".hydra" / "config.yaml").write_text(json.dumps({"lab": lab, "batch_size": 64}))
    text = " ".join((build_report([tmp_path / "s"]).out / "report.md").read_text().split())
    assert "## Lab part 2: Batch size vs epoch time and peak memory (RSS: no GPU run)" in text
    assert "No run here measured GPU memory: our memory figures are the main process's peak RSS" in text
    assert "| 64 | cpu | dataloader | ok | 12.93 | 2.00 | 38.63 |" in text  # the lab's figures as it printed them


def test_the_lab_part_3_report_sets_its_flat_times_beside_the_models_flops(tmp_path: Path) -> None:
    # The lab read 10.73 → 11.99 s (12%) as the models' cost; LargeNet does 80× SmallNet's work per image.
    lab = {"part": 3, "title": "Model complexity", "figures": [
        {"model": "small", "avg_epoch_time": 10.73, "params": 378_866},
        {"model": "medium", "avg_epoch_time": 11.71, "params": 121_182},
        {"model": "large", "avg_epoch_time": 11.99, "params": 4_502_602}]}  # fmt: skip
    nets = (("small", 6_028_320, 378_866), ("medium", 12_084_720, 121_182), ("large", 482_000_000, 4_502_602))

    def report(folder: str, width: int) -> str:
        for job, (model, flops, params) in enumerate(nets):
            _fake_run(tmp_path / folder, job, "cuda", 128, 2.0)
            metrics = tmp_path / folder / str(job) / "metrics.json"
            record = json.loads(metrics.read_text())
            record |= {"model": model, "flops_per_sample": flops * width**2, "params": params * width**2}
            metrics.write_text(json.dumps(record))
            config = {"lab": lab, "model": {"name": model}, "batch_size": 128}
            (tmp_path / folder / str(job) / ".hydra" / "config.yaml").write_text(json.dumps(config))
        return " ".join((build_report([tmp_path / folder]).out / "report.md").read_text().split())

    assert ("The lab's epoch times differ by only 12% across these models (10.73 to 11.99 s), while their training "
            "FLOPs per image differ 80× (counted on ours, the same nets): its epochs were not set by the models' "
            "compute") in report("lab_nets", 1)  # fmt: skip
    # +model.width=2 keeps the names but not the nets: their FLOPs are not the lab's to count.
    wider = report("wider", 2)
    assert "The lab's epoch times differ" not in wider
    assert "model=large (1,928 million)" in wider  # not 1.93e+03 million
    text = report("again", 1)
    assert "| parameters | FLOP/sample |" in text
    # SmallNet has three times MediumNet's parameters and half its FLOPs: which one is the work, said once.
    sizes = ("By parameters the models rank model=medium (121,182) < model=small (378,866) < model=large "
             "(4,502,602), and by training FLOPs per image model=small (6.03 million) < model=medium (12.1 million) "
             "< model=large (482 million): a convolution's weights work at every position of the image and a fully "
             "connected layer's once per image, so the FLOPs, not the parameters, are the work.")  # fmt: skip
    assert sizes in text
    # Beside a second swept variable: once, not in each precision's paragraph (nor in none, along batch_size).
    two = shutil.copytree(tmp_path / "again", tmp_path / "two")
    for job in range(3):
        shutil.copytree(two / str(job), two / str(job + 3))
        metrics = two / str(job + 3) / "metrics.json"
        metrics.write_text(json.dumps({**json.loads(metrics.read_text()), "precision": "amp_bf16"}))
    text = " ".join((build_report([two]).out / "report.md").read_text().split())
    assert text.count(sizes) == 1 and "**precision=amp_bf16**: " in text, text
    # Runs recorded before params was (no such field): no column of n/a.
    for job in range(3):
        metrics = tmp_path / "again" / str(job) / "metrics.json"
        metrics.write_text(json.dumps({k: v for k, v in json.loads(metrics.read_text()).items() if k != "params"}))
    text = " ".join((build_report([tmp_path / "again"], tmp_path / "old").out / "report.md").read_text().split())
    assert "| parameters |" not in text and "| FLOP/sample |" in text


def test_a_batch_sweep_says_what_sets_a_steps_time(tmp_path: Path) -> None:
    # Why is a larger batch faster? On an H200 MediumNet's eager step took 2.0-2.3 ms at every batch from 16 to
    # 1,024: a cost paid once a step. On a CPU the step's time grows with its images. The sentence says which.
    cases = (("flat", (0.517, 0.129, 0.0323)), ("work", (1.0, 1.0, 1.0)), ("costlier", (1.0, 1.0, 1.3)),
             ("saves", (1.0, 1.0, 0.75)))  # fmt: skip
    for name, times in cases:
        for job, (batch, t) in enumerate(zip((16, 64, 256), times, strict=True)):
            _fake_run(tmp_path / name, job, "cuda", batch, t)
            metrics = tmp_path / name / str(job) / "metrics.json"
            metrics.write_text(json.dumps({**json.loads(metrics.read_text()), "train_samples": 4096}))
    flat = " ".join((build_report([tmp_path / "flat"]).out / "report.md").read_text().split())
    assert ("A step's own time (the epoch less its data wait, per step) goes from 2.00 ms at batch_size=16 to "
            "2.00 ms at batch_size=256: 1.00× the time for 16× the images: a cost paid once a step (launching its "
            "kernels, the host's work), not the images, sets it") in flat  # fmt: skip
    # The same on a CPU names a CPU's costs, not kernel launches; and an end that is noisy (a loaded machine: 0.90x
    # the time for 4x the images beside a verdict of compute-bound) gets no mechanism, only its uncertainty.
    for name, cv in (("cpu", 0.0), ("noisy", 0.093)):
        for job, (batch, t) in enumerate(zip((16, 64, 256), cases[0][1], strict=True)):
            _fake_run(tmp_path / name, job, "cpu", batch, t)
            metrics = tmp_path / name / str(job) / "metrics.json"
            metrics.write_text(json.dumps({**json.loads(metrics.read_text()), "train_samples": 4096,
                                           "samples_per_s_cv": cv if job == 2 else 0.01}))  # fmt: skip
    cpu = " ".join((build_report([tmp_path / "cpu"]).out / "report.md").read_text().split())
    assert ("a cost paid once a step (each operator's fixed cost, the optimizer's pass over every weight), not the "
            "images, sets it") in cpu, cpu  # fmt: skip
    noisy = " ".join((build_report([tmp_path / "noisy"]).out / "report.md").read_text().split())
    assert ("1.00× the time for 16× the images; a run at an end varied by CV 9% from epoch to epoch (or repeat), so "
            "this ratio is that uncertain and says nothing of what sets a step's time.") in noisy, noisy  # fmt: skip
    assert "a cost paid once a step" not in noisy
    work = " ".join((build_report([tmp_path / "work"]).out / "report.md").read_text().split())
    assert ("16.00× the time for 16× the images: the images' own work sets most of it; each image took 1.00× as long "
            "at batch_size=256 as at batch_size=16.") in work  # fmt: skip
    # A quarter saved had read "a larger batch saves little per image".
    saves = " ".join((build_report([tmp_path / "saves"]).out / "report.md").read_text().split())
    assert "each image took 0.75× as long at batch_size=256 as at batch_size=16, 25% less." in saves, saves
    # More than the images grew (a CPU at batch 1,024: 81× the time for 64×): it had read "saves little" too.
    costlier = " ".join((build_report([tmp_path / "costlier"]).out / "report.md").read_text().split())
    assert ("20.80× the time for 16× the images: each image took 1.30× as long at batch_size=256 as at "
            "batch_size=16, so a larger batch costs more per image here") in costlier  # fmt: skip
    # Runs that share a batch size are no growth: two at 64 (beside a run in another precision, so that batch_size is
    # swept) had read "from 12.4 ms at batch_size=64 to 11.1 ms at batch_size=64: 0.89× the time for 1× the images",
    # and the memory and data path sentences the same way. With a third run at 256, each end is its runs' median.
    for job, (batch, t) in enumerate(((64, 1.0), (64, 1.2), (16, 1.0), (256, 0.5))):
        _fake_run(tmp_path / "twice", job, "cuda", batch, t)
        metrics = tmp_path / "twice" / str(job) / "metrics.json"
        precision = "amp_bf16" if batch == 16 else "fp32"
        metrics.write_text(json.dumps({**json.loads(metrics.read_text()), "train_samples": 4096, "precision": precision,
                                       "data_wait_frac": 0.05 * t}))  # fmt: skip
        if job == 2:
            twice = (build_report([tmp_path / "twice"]).out / "report.md").read_text()
            fp32 = " ".join(next(p for p in twice.split("\n\n") if p.startswith("**precision=fp32**")).split())
            assert "A step's own time" not in fp32 and "at batch_size=64 to" not in fp32, fp32
            assert "ranges from 5% at batch_size=64 (run 0) to 6% at batch_size=64 (run 1)" in fp32, fp32
            assert "Peak memory allocated is 50.0 MB in every run." in fp32, fp32
    twice = (build_report([tmp_path / "twice"]).out / "report.md").read_text()
    fp32 = " ".join(next(p for p in twice.split("\n\n") if p.startswith("**precision=fp32**")).split())
    assert ("per step) goes from 16.2 ms at batch_size=64 (the median of its 2 runs) to 30.5 ms at batch_size=256"
            in fp32), fp32  # fmt: skip
    assert "goes from 6% at batch_size=64 (the median of its 2 runs) to 2% at batch_size=256" in fp32, fp32
    # Which of two runs that share a value is input-bound: it had read "input-bound at model=medium".
    for job, wait in enumerate((0.05, 0.35)):
        _fake_run(tmp_path / "bound", job, "cuda", 64, 1.0)
        metrics = tmp_path / "bound" / str(job) / "metrics.json"
        metrics.write_text(json.dumps({**json.loads(metrics.read_text()), "data_wait_frac": wait}))
    bound = " ".join((build_report([tmp_path / "bound"]).out / "report.md").read_text().split())
    assert "to 35% at model=medium (run 1): input-bound at model=medium (run 1)." in bound, bound
    # Not without the images per epoch (an older metrics.json): no step count to divide by.
    for job, (batch, t) in enumerate(zip((16, 64, 256), (0.517, 0.129, 0.0323), strict=True)):
        _fake_run(tmp_path / "old", job, "cuda", batch, t)
    assert "A step's own time" not in (build_report([tmp_path / "old"]).out / "report.md").read_text()


def test_lab_figures_beside_runs_with_other_settings_say_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # experiment=amp batch_size=64: our batch 64 sat beside the lab's batch 512, and nothing said so.
    lab = {"part": 5, "title": "AMP", "ran_with": {"model": "medium", "batch_size": 512, "workers": 2},
           "figures": [{"precision": "fp32", "avg_epoch_time": 11.6}]}  # fmt: skip
    _fake_run(tmp_path / "s", 0, "cuda", 64, 2.0)  # MediumNet, 2 workers, as the lab; batch 64, not 512
    (tmp_path / "s" / "0" / ".hydra" / "config.yaml").write_text(json.dumps({"lab": lab, "batch_size": 64}))
    labels: list[str] = []  # the figure's lab points: its legend says they ran at batch 512 (the title says 64)
    plot = Axes.plot
    monkeypatch.setattr(Axes, "plot", lambda ax, *a, **k: labels.append(k.get("label") or "") or plot(ax, *a, **k))
    text = (build_report([tmp_path / "s"]).out / "report.md").read_text()
    assert any(" ".join(label.split()).endswith("; the lab ran batch_size=512") for label in labels), labels
    # Ours on synthetic images: the same work per image as CIFAR-10's, which the sentence says, not other pictures.
    ours = "beside ours (ours on synthetic images, 32×32 RGB as CIFAR-10's: the same work per image, other pictures)"
    assert f"{ours}, with settings of ours that the lab's runs did not have (below)" in text
    assert ("Our runs differ from the lab's in batch_size (ours 64; the lab's 512): these rows compare different "
            "workloads") in " ".join(text.split())  # fmt: skip
    assert "like for like" not in text and "workers (ours" not in text
    # A job missing from the sweep makes batch_size a float column: 512.0 is still the lab's 512.
    _fake_run(tmp_path / "t", 1, "cuda", 512, 2.0)
    (tmp_path / "t" / "1" / ".hydra" / "config.yaml").write_text(json.dumps({"lab": lab, "batch_size": 512}))
    text = (build_report([tmp_path / "t"]).out / "report.md").read_text()
    # The lab's settings, never its machine ("like for like" said more than that).
    assert "Our runs differ" not in text and "like for like" not in text
    assert f"{ours}, with the lab's settings, on this machine's hardware, not the lab's Colab one" in text
    # The resident loader beside the lab's DataLoader path was "like for like"; on the CPU, "compare machines,
    # not code paths" then "not only code paths".
    lab["ran_with"] |= {"loader": "dataloader"}
    for device, how in (
        ("cuda", f"{ours}, with settings of ours"),
        ("cpu", "ours ran on the CPU where the lab's ran on its GPU, and with settings of ours"),
    ):
        _fake_run(tmp_path / device, 0, device, 512, 2.0, loader="resident")
        (tmp_path / device / "0" / ".hydra" / "config.yaml").write_text(json.dumps({"lab": lab, "batch_size": 512}))
        text = " ".join((build_report([tmp_path / device]).out / "report.md").read_text().split())
        assert how in text and "like for like" not in text and "compare machines" not in text, text
        # The resident loader feeds the same maths: another code path, not another workload.
        assert ("Our runs differ from the lab's in loader (ours resident; the lab's dataloader): these rows compare "
                "the same work by another code path") in text  # fmt: skip


def test_lab_epoch_times_are_compared_per_epoch_of_the_labs_size(tmp_path: Path, monkeypatch) -> None:
    # The lab's epochs were CIFAR-10's 50,000 images; ours here had 25,000, so 2.0 s is 4.0 s of the lab's.
    lab = {"part": 2, "title": "Batch size", "figures": [{"batch_size": 16, "avg_epoch_time": 20.4},
                                                         {"batch_size": 64, "avg_epoch_time": 12.9}]}  # fmt: skip
    for job, batch in enumerate((16, 64)):
        _fake_run(tmp_path / "s", job, "cuda", batch, 2.0)
        metrics = tmp_path / "s" / str(job) / "metrics.json"
        # Job 1 as a hand-edited file might have it, the number as text: read as the number it says.
        samples = 25000 if job == 0 else "25000"
        metrics.write_text(json.dumps({**json.loads(metrics.read_text()), "train_samples": samples}))
        (tmp_path / "s" / str(job) / ".hydra" / "config.yaml").write_text(json.dumps({"lab": lab, "batch_size": batch}))
    drawn = []  # the lines the figure draws, by label: the lab's goes the other way, to our epoch size
    plot = Axes.plot

    def spy(ax: Axes, *args, **kwargs):
        drawn.append((kwargs.get("label"), [float(v) for v in args[1]]))
        return plot(ax, *args, **kwargs)

    monkeypatch.setattr(Axes, "plot", spy)
    report = build_report([tmp_path / "s"])
    assert list(lab_comparison(report.runs, lab)["ours s/epoch"]) == [4.0, 4.0]
    assert list(report.runs["avg_epoch_time"]) == [2.0, 2.0]  # the runs' own figures are unchanged
    text = (tmp_path / "s" / "report.md").read_text()
    assert "The lab's epochs had 50,000 images and ours 25,000" in text
    # The table's header says its times are scaled, beside the runs table's s/epoch as measured.
    assert (
        "| ours s/epoch, scaled to 50,000 images |" in " ".join(text.split())
        and '"ours s/epoch, scaled to 50,000 images" is' in text
    )
    assert "other pictures), with the lab's settings, on this machine's hardware" in text  # GPU against GPU
    assert ("lab (Colab GPU), times per 25,000 images", [10.2, 6.45]) in drawn  # 20.4 and 12.9 s per 50,000


def test_values_far_apart_over_names_are_points_with_their_values_not_bars(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # On a log axis a bar starts at an arbitrary floor: the CPU's 40 s looked a few times the GPU's 0.5 s.
    for job, (loader, t) in enumerate((("dataloader", 40.0), ("resident", 0.5))):
        _fake_run(tmp_path / "s", job, "cpu", 64, t, loader=loader)
    bars, said = [], []
    bar, annotate = Axes.bar, Axes.annotate

    def bar_spy(ax: Axes, x, height, *args, **kwargs):  # type: ignore[no-untyped-def]
        bars.append(list(height) if hasattr(height, "__len__") else [height])
        return bar(ax, x, height, *args, **kwargs)

    def annotate_spy(ax: Axes, text: str, *args, **kwargs):  # type: ignore[no-untyped-def]
        said.append(text)
        return annotate(ax, text, *args, **kwargs)

    monkeypatch.setattr(Axes, "bar", bar_spy)
    monkeypatch.setattr(Axes, "annotate", annotate_spy)
    build_report([tmp_path / "s"])
    assert {"40.0", "0.500", "25.0", "2,000"} <= set(said), said  # each point its value, never "2e+03"
    text = " ".join((tmp_path / "s" / "report.md").read_text().split())
    assert ("loader=resident is the fastest at 2,000 samples/s; loader=dataloader is the slowest at 25 samples/s, "
            "and the fastest runs at 80.00× its rate.") in text  # fmt: skip
    # A tie has no fastest and no slowest ("small is the fastest; small is the slowest (1.00×)").
    for job, loader in enumerate(("dataloader", "resident")):
        _fake_run(tmp_path / "tie", job, "cpu", 64, 2.0, loader=loader)
    tie = " ".join((build_report([tmp_path / "tie"]).out / "report.md").read_text().split())
    assert "Every run ran at 500 samples/s." in tie and "is the fastest" not in tie
    assert not any(40.0 in h or 25.0 in h for h in bars), bars  # no bar for either panel's far-apart values


def test_a_sweep_whose_jobs_ran_other_code_says_which_jobs_ran_which(tmp_path: Path) -> None:
    # Jobs 0-2 ran commit aaaa with uncommitted changes, job 3 commit bbbb: the table had two rows, no jobs
    # and no word of the changes, and read as one clean sweep.
    for job in range(4):
        _fake_run(tmp_path / "s", job, "cpu", 16 * 2**job, 2.0)
        metrics = tmp_path / "s" / str(job) / "metrics.json"
        record = json.loads(metrics.read_text())
        record["env"] |= {"git_commit": "a" * 40, "git_dirty": True} if job < 3 else {"git_commit": "b" * 40}
        metrics.write_text(json.dumps(record))
    text = " ".join((build_report([tmp_path / "s"]).out / "report.md").read_text().split())
    assert f"| {'a' * 10} + uncommitted changes | 0–2 |" in text and f"| {'b' * 10} | 3 |" in text, text
    assert "These runs ran on 2 versions of the code (commits, or uncommitted changes; jobs per version above)" in text
    # Beside another sweep, job numbers repeat: each is named with its sweep's folder.
    _fake_run(tmp_path / "t", 0, "cuda", 16, 2.0)
    both = build_report([tmp_path / "s", tmp_path / "t"], tmp_path / "both").out
    text = " ".join((both / "report.md").read_text().split())
    assert f"| {'a' * 10} + uncommitted changes | s: 0–2 |" in text and "| n/a | t: 0 |" in text, text
    # Runs that are no sweep's jobs (outputs/runs/<time>) are named by their folders; their rows had read "n/a".
    for name, commit in (("2026-01-01_run", "a" * 40), ("2026-01-02_run", "b" * 40)):
        _fake_run(tmp_path / "runs", 0, "cpu", 16, 2.0)
        (tmp_path / "runs" / "0").rename(tmp_path / "runs" / name)
        metrics = tmp_path / "runs" / name / "metrics.json"
        metrics.write_text(json.dumps({**(record := json.loads(metrics.read_text())),
                                       "env": record["env"] | {"git_commit": commit}}))  # fmt: skip
    text = " ".join((build_report([tmp_path / "runs"]).out / "report.md").read_text().split())
    assert f"| {'a' * 10} | 2026-01-01_run |" in text and f"| {'b' * 10} | 2026-01-02_run |" in text, text
    assert "(commits, or uncommitted changes; runs per version above)" in text


def test_the_notes_runs_recorded_are_in_the_report(tmp_path: Path) -> None:
    # A CPU sweep over precision=fp32,tf32 showed "tf32" as a precision of its own; its note ("tf32 is fp32
    # here") was only in metrics.json.
    tf32 = "precision=tf32 is fp32 here: TF32 is a GPU tensor-core format"
    notes = {0: ["workers is ignored by loader=resident"], 1: ["workers is ignored by loader=resident", tf32]}
    for job, batch in enumerate((16, 64)):
        _fake_run(tmp_path / "s", job, "cpu", batch, 2.0)
        metrics = tmp_path / "s" / str(job) / "metrics.json"
        metrics.write_text(json.dumps({**json.loads(metrics.read_text()), "notes": notes[job]}))
    text = (build_report([tmp_path / "s"]).out / "report.md").read_text()
    # Settings a run did not use, apart from the notes that change how to read a result (every resident run's
    # "workers is ignored" had stood beside "did not learn").
    section = text.split("## Settings the runs did not use\n\n")[1].split("\n\n")[0]
    assert section.splitlines() == [
        "- workers is ignored by loader=resident — every run",
        f"- {tf32} — job 1",
    ]
    assert "## Notes the runs recorded" not in text
    learned = "did not learn: final loss 2.302 is within 2% of ln(10) = 2.303, the loss of a uniform guess"
    metrics = tmp_path / "s" / "0" / "metrics.json"
    metrics.write_text(json.dumps({**json.loads(metrics.read_text()), "notes": [*notes[0], learned]}))
    text = (build_report([tmp_path / "s"]).out / "report.md").read_text()
    general = "did not learn: final loss is within 2% of ln(10) = 2.303, the loss of a uniform guess"
    assert text.split("## Notes the runs recorded\n\n")[1].split("\n\n")[0] == f"- {general} — job 0 (2.302)"
    # The same note with another loss is one line, each run's loss by its name: it had been a line a run.
    metrics = tmp_path / "s" / "1" / "metrics.json"
    metrics.write_text(json.dumps({**json.loads(metrics.read_text()), "notes": [learned.replace("2.302", "2.299")]}))
    text = (build_report([tmp_path / "s"]).out / "report.md").read_text()
    assert text.split("## Notes the runs recorded\n\n")[1].split("\n\n")[0] == (
        f"- {general} — jobs 0 (2.302), 1 (2.299)")  # fmt: skip
    assert "notes" not in pd.read_csv(tmp_path / "s" / "summary.csv")  # not a swept setting either
    assert "Swept: **batch_size** = 16, 64" in text


def test_a_sweep_of_a_setting_every_run_ignored_says_so(tmp_path: Path) -> None:
    # experiment=workers with loader=resident: the notes said workers was ignored, and the sentences ranked the
    # runs by it all the same (their spread is noise).
    for job, workers in enumerate((0, 2, 4)):
        _fake_run(tmp_path / "s", job, "cpu", 64, 2.0 + job / 10, loader="resident")
        metrics = tmp_path / "s" / str(job) / "metrics.json"
        notes = ["workers is ignored by loader=resident"] if workers else []
        metrics.write_text(json.dumps({**json.loads(metrics.read_text()), "workers": workers, "notes": notes}))
    text = " ".join((build_report([tmp_path / "s"]).out / "report.md").read_text().split())
    assert (
        "Every run ignored workers (workers is ignored by loader=resident) or had none: they differ in nothing "
        "else, so what follows is run-to-run noise, not an effect of workers. Throughput goes"
    ) in text


def test_an_unfinished_run_is_marked_with_its_series(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Two series (device), one run of the GPU's skipped: "skipped" alone sat under a legend naming both.
    for job, (device, batch, status) in enumerate((("cpu", 64, "ok"), ("cpu", 128, "ok"), ("cuda", 64, "ok"),
                                                   ("cuda", 128, "skipped"))):  # fmt: skip
        _fake_run(tmp_path / "s", job, device, batch, 2.0, status=status)
    said = []
    annotate = Axes.annotate

    def spy(ax: Axes, text: str, *args, **kwargs):
        said.append(text)
        return annotate(ax, text, *args, **kwargs)

    monkeypatch.setattr(Axes, "annotate", spy)
    build_report([tmp_path / "s"])
    assert "skipped (device=cuda)" in said, said


def test_report_cli_rejects_a_folder_without_runs(tmp_path: Path) -> None:
    proc = run_cli(tmp_path, str(tmp_path), module="bench.report")
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("bench: error:") and "holds no bench runs" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    # A folder of sweeps (outputs/sweeps): not "no runs", which was untrue, but which folders to name.
    for name in ("2026-01-01_10-00-00_000000", "2026-01-02_10-00-00_000000"):
        _fake_run(tmp_path / "sweeps" / name, 0, "cpu", 64, 2.0)
        (tmp_path / "sweeps" / name / "multirun.yaml").write_text("{}")
    proc = run_cli(tmp_path, "sweeps", module="bench.report")
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert proc.stderr.strip() == (
        "bench: error: sweeps holds 2 sweep(s), not runs: pass the sweeps themselves, e.g. "
        "sweeps/2026-01-02_10-00-00_000000 (the newest by name), or all of them: sweeps/*"
    )  # not "sweeps/* --out DIR", bench.report's way, which bench.compare (same reader) would refuse
    # And the folder above (outputs/, with its runs/ and sweeps/): which of its subfolders hold them.
    _fake_run(tmp_path / "runs", 0, "cpu", 64, 2.0)
    (tmp_path / "empty").mkdir()
    proc = run_cli(tmp_path, ".", module="bench.report")
    assert proc.returncode == 2 and proc.stderr.strip() == (
        "bench: error: . holds no bench runs itself, but its subfolders do: runs (1 run), sweeps (2 sweeps); pass a "
        "folder of runs, or the sweeps themselves (a folder of sweeps is not one sweep)"
    ), proc.stderr


def test_several_folders_need_out_and_pair_on_every_setting(tmp_path: Path) -> None:
    # A CPU and a GPU sweep over lr (a setting without a standard column): two pairs, not one.
    for root, device, times in (("cpu", "cpu", (20.0, 10.0)), ("gpu", "cuda", (1.0, 1.0))):
        for job, (lr, t) in enumerate(zip((0.001, 0.01), times, strict=True)):
            _fake_run(tmp_path / root, job, device, 64, t)
            (tmp_path / root / str(job) / ".hydra" / "config.yaml").write_text(f"lr: {lr}\nbatch_size: 64\n")
    proc = run_cli(tmp_path, "cpu", "gpu", module="bench.report")
    assert proc.returncode == 2 and "--out DIR" in proc.stderr  # the first folder's own report is never replaced
    report = build_report([tmp_path / "cpu", tmp_path / "gpu"], tmp_path / "both")
    table = speedup_table(report.runs)
    assert sorted(table["speedup"]) == [10.0, 20.0]


def test_report_cli_writes_to_out(tmp_path: Path) -> None:
    _fake_run(tmp_path / "s", 0, "cpu", 64, 25.0)
    proc = run_cli(tmp_path, str(tmp_path / "s"), "--out", str(tmp_path / "r"), module="bench.report")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("1 run (1 ok)\n")
    assert {"summary.csv", "report.md"} <= {p.name for p in (tmp_path / "r").iterdir()}
    text = (tmp_path / "r" / "report.md").read_text()  # one run: nothing was swept, so no "Sweep over model"
    assert "Swept: nothing" in text and "## The run" in text and "## Sweep over" not in text
    assert json.loads((tmp_path / "s" / "0" / "metrics.json").read_text())["status"] == "ok"
    # Rebuilt in place, and into the same --out again: fine. Into another sweep, or a run folder: refused,
    # since that folder's own report would be replaced (or a run folder filled with one).
    _fake_run(tmp_path / "other", 0, "cpu", 64, 25.0)
    assert run_cli(tmp_path, "s", "--out", "s", module="bench.report").returncode == 0
    assert run_cli(tmp_path, "s", "--out", "r", module="bench.report").returncode == 0
    for out in ("other", "other/0"):
        proc = run_cli(tmp_path, "s", "--out", out, module="bench.report")
        assert proc.returncode == 2 and "holds runs of its own" in proc.stderr, proc.stderr
    assert not (tmp_path / "other" / "report.md").exists() and not (tmp_path / "other" / "0" / "report.md").exists()
    # Nor a report combined from several folders into one of them: that folder's own report would go.
    proc = run_cli(tmp_path, "s", "other", "--out", "other", module="bench.report")
    assert proc.returncode == 2 and "holds runs of its own" in proc.stderr, proc.stderr
    assert not (tmp_path / "other" / "report.md").exists()
    # A folder given twice, beside one of its own runs, or a link to a run read elsewhere: each would count runs
    # twice. A folder that holds a run and a sweep is read as its run alone, so the sweep beside it is new.
    (tmp_path / "link").symlink_to(tmp_path / "s" / "0")
    for twice, expected in ((("s", str(tmp_path / "s")), f"{tmp_path / 's'} is given twice (also as s)"),
                            (("s", "other", "./s/"), "s is given twice"),
                            (("other/0", "s", "other"), "other/0 is read twice"),
                            (("link", "s"), "s/0 is read twice (also as link)")):  # fmt: skip
        proc = run_cli(tmp_path, *twice, "--out", "both", module="bench.report")
        assert proc.returncode == 2 and f"bench: error: {expected}: " in proc.stderr, proc.stderr
    assert not (tmp_path / "both").exists()
    _fake_run(tmp_path / "mixed", 0, "cpu", 64, 25.0)  # mixed/0 a run, and mixed/sweep a sweep of its own
    _fake_run(tmp_path / "mixed" / "sweep", 0, "cpu", 32, 20.0)
    proc = run_cli(tmp_path, "mixed", "mixed/sweep", "--out", "both", module="bench.report")
    assert proc.returncode == 0 and "2 runs" in proc.stdout, proc.stderr


# -------------------------------------------------------------------------------- lab presets

PRESETS = {
    "cpu_vs_gpu": ({"device": "cpu,cuda"}, {"model.name": "medium", "batch_size": 64, "epochs": 5}),
    "batch_size": ({"batch_size": "16,64,256,1024"}, {"model.name": "medium", "epochs": 3}),
    "model_complexity": ({"model": "small,medium,large"}, {"batch_size": 128, "epochs": 3}),
    "workers": ({"workers": "0,2,4,8"}, {"model.name": "medium", "batch_size": 256, "epochs": 3}),
    "amp": ({"precision": "fp32,amp_fp16"}, {"model.name": "large", "batch_size": 512, "epochs": 3}),
}


@pytest.mark.parametrize("preset", PRESETS)
def test_each_preset_composes_the_labs_sweep(preset: str) -> None:
    from hydra import compose, initialize_config_module
    from hydra.core.global_hydra import GlobalHydra
    from omegaconf import OmegaConf

    params, settings = PRESETS[preset]
    GlobalHydra.instance().clear()
    with initialize_config_module(config_module="bench.conf", version_base="1.3"):
        cfg = compose("config", overrides=[f"experiment={preset}"], return_hydra_config=True)
        overridden = compose(
            "config", overrides=[f"experiment={preset}", "epochs=1", "dataset.train_size=5000"],
            return_hydra_config=True,
        )  # fmt: skip
    GlobalHydra.instance().clear()
    assert cfg.hydra.mode == RunMode.MULTIRUN
    assert dict(cfg.hydra.sweeper.params) == params
    for key, value in settings.items():
        assert OmegaConf.select(cfg, key) == value
    assert cfg.lab.part == list(PRESETS).index(preset) + 1 and cfg.lab.figures
    # The lab's own path, so that a run of ours on the resident loader or recipe=fast is named as unlike it.
    assert cfg.lab.ran_with.loader == "dataloader" and cfg.lab.ran_with.recipe == "lab"
    assert overridden.epochs == 1 and overridden.dataset.train_size == 5000  # the command line still wins


def test_sweeps_that_repeat_a_config_are_kept_apart_by_their_folder(tmp_path: Path) -> None:
    # The same batch sizes run twice (a rerun, another commit): one line per folder, never a zigzag through
    # two batch-256 rows, and sentences per folder.
    for sweep, times in (("main", (25.0, 20.0)), ("branch", (24.0, 30.0))):
        for job, (bs, t) in enumerate(zip((64, 256), times, strict=True)):
            _fake_run(tmp_path / "runs" / sweep, job, "cpu", bs, t)
    build_report([tmp_path / "runs" / "main", tmp_path / "runs" / "branch"], tmp_path / "both")
    text = (tmp_path / "both" / "report.md").read_text()
    assert "## Sweep over batch_size, source" in text
    assert "**source=main**: Throughput goes from 40 samples/s at batch_size=64 to 50 at batch_size=256" in text
    assert "**source=branch**: Throughput goes from 42 samples/s at batch_size=64 to 33 at batch_size=256" in text
    # One sweep alone has no such column.
    one = build_report([tmp_path / "runs" / "main"], tmp_path / "one")
    assert "source" not in (tmp_path / "one" / "report.md").read_text()
    # The figure names what its runs share, for a figure read away from the report.
    from bench.plots import context

    assert context(one.runs, ["batch_size"]) == "cpu · medium · fp32 · loader=dataloader"
    assert context(one.runs, ["batch_size", "model"]) == "cpu · fp32 · loader=dataloader"


def test_the_lab_table_marks_a_figure_we_lack_as_n_a_and_keeps_folders_apart(tmp_path: Path, monkeypatch) -> None:
    lab = {"part": 2, "title": "Batch size", "figures": [{"batch_size": 16, "avg_epoch_time": 20.4},
                                                         {"batch_size": 256, "avg_epoch_time": 10.0}]}  # fmt: skip
    for sweep in ("a", "b"):
        _fake_run(tmp_path / sweep, 0, "cpu", 16, 2.0)
        (tmp_path / sweep / "0" / ".hydra" / "config.yaml").write_text(json.dumps({"lab": lab, "batch_size": 16}))
    monkeypatch.chdir(tmp_path / "a")  # "." is a folder too: its name is its own, never an empty label
    build_report([Path("."), tmp_path / "b"], tmp_path / "both")
    cells = " ".join((tmp_path / "both" / "report.md").read_text().split())
    assert "| 16 | a | cpu | dataloader | ok | 20.4 | 2.00 |" in cells  # a row per folder, as in every table
    assert "| 16 | b | cpu | dataloader | ok | 20.4 | 2.00 |" in cells
    assert "| 256 | n/a | n/a | n/a | n/a | 10.0 | n/a |" in cells  # "missing" is for jobs; 10.0 beside 20.4, not 10


def test_two_runs_of_one_config_are_headed_as_such_and_a_search_names_only_what_it_used(tmp_path: Path) -> None:
    from bench.plots import context

    for sweep in ("first", "again"):
        _fake_run(tmp_path / sweep, 0, "cpu", 64, 2.0)
    build_report([tmp_path / "first" / "0", tmp_path / "again" / "0"], tmp_path / "both")
    text = (tmp_path / "both" / "report.md").read_text()
    assert "Swept: nothing" in text and "## 2 runs of one config, one per folder (source)" in text
    assert "## Sweep over" not in text

    searched = pd.DataFrame({"device": ["cuda"] * 2, "device_name": ["H100"] * 2, "model": ["medium", "large"],
                             "precision": ["fp32"] * 2, "loader": ["dataloader"] * 2, "recipe": ["lab"] * 2,
                             "batch_size": [64, 64], "max_batch": [49152.0, 16384.0],
                             "task": ["max_batch"] * 2})  # fmt: skip
    assert context(searched, ["model"]) == "cuda: H100 · fp32"  # no loader or batch size: the search used neither
    # A CPU's name carries its own parentheses: "cpu (AMD EPYC (2 logical cores))" nested them.
    cpu = searched.assign(device="cpu", device_name="AMD EPYC (2 logical cores)")
    assert context(cpu, ["model"]) == "cpu: AMD EPYC (2 logical cores) · fp32"


def test_no_text_of_a_lab_parts_plots_runs_past_their_edges(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # "Where the time goes: Lab part 2: Batch size vs epoch time and peak GPU memory" lost its left end.
    from matplotlib.figure import Figure
    from matplotlib.text import Text

    save, outside = Figure.savefig, []

    def checked(fig: Figure, path: object, *args: object, **kwargs: object) -> None:
        fig.canvas.draw()  # the constrained layout places everything at draw time
        renderer = fig.canvas.get_renderer()
        for text in fig.findobj(Text):
            box = text.get_window_extent(renderer)
            if text.get_visible() and text.get_text() and (box.x0 < -1 or box.x1 > fig.bbox.x1 + 1):
                outside.append((Path(str(path)).name, text.get_text()))
        save(fig, path, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", checked)
    tiny = [t for t in TINY if not t.startswith("batch_size=")]
    proc = run_cli(tmp_path, "experiment=batch_size", *tiny, "batch_size=16,32", "hydra.sweep.dir=S")
    assert proc.returncode == 0, proc.stderr
    assert len(list((tmp_path / "S").glob("*.png"))) >= 2 and outside == []


def test_the_report_side_imports_nothing_of_the_engine() -> None:
    # docs/architecture.md: the report side (runs, report, plots, findings, compare, pair) imports nothing from
    # the engine. findings imported maxbatch and memory, and with them torch: 2.3 s before `bench.report` began.
    import subprocess
    import sys

    code = "import sys, bench.report, bench.compare, bench.pair; print(sorted({'torch', 'bench.train', " \
           "'bench.memory', 'bench.maxbatch', 'bench.step'} & set(sys.modules)))"  # fmt: skip
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.strip() == "[]", out.stdout + out.stderr


def test_values_a_figure_cannot_be_drawn_from_cost_that_figure_not_the_report(tmp_path: Path) -> None:
    # lr=1e308 beside 0.001 overflowed numpy's ratio for the log axis: three RuntimeWarnings on the console.
    tiny = [t for t in TINY if not t.startswith("batch_size=")]
    proc = run_cli(tmp_path, "-m", *tiny, "batch_size=32", "loader=resident", "lr=1e308,0.001,0.01",
                   "hydra.sweep.dir=S")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "Warning" not in proc.stderr, proc.stderr
    assert (tmp_path / "S" / "runs.png").is_file()
    # A hand-edited 1e300 samples/s overflowed matplotlib's log ticks: "could not build the report", exit 1.
    # (Its ticks are now written as plain numbers, which draw 1e300; 1.7e308 still defeats the axis's limits.)
    metrics_file = tmp_path / "S" / "1" / "metrics.json"
    record = json.loads(metrics_file.read_text())
    metrics_file.write_text(json.dumps({**record, "samples_per_s": 1.7e308}))
    out = tmp_path / "again"
    out.mkdir()
    for name in ("report.md", "runs.png"):  # an earlier report's figure: not to stand beside this one
        shutil.copy(tmp_path / "S" / name, out / name)
    proc = run_cli(tmp_path, "S", "--out", str(out), module="bench.report")
    assert proc.returncode == 0, proc.stderr
    report = (out / "report.md").read_text()
    assert "_Sweep over lr: could not be drawn (ValueError: Axis limits cannot be NaN or Inf)._" in report
    assert "![Where the time goes](runs_time.png)" in report and (out / "runs_time.png").is_file()
    assert not (out / "runs.png").exists() and "Traceback" not in proc.stderr


def test_a_lab_part_says_which_step_it_timed_and_when_its_scaled_epochs_are_rough(tmp_path: Path) -> None:
    # recipe=lab's step resolves step.*=auto per device (fused Adam, channels_last on the CPU): the Step line said
    # so on the console only, and "like for like" stood beside the lab's default Adam in NCHW. And 1,024 images
    # scaled 49x to the lab's epoch scaled its fixed costs too, with nothing to say they may dominate.
    tiny = [t for t in TINY if not t.startswith(("dataset.train_size=", "batch_size="))]
    proc = run_cli(tmp_path, *tiny, "experiment=cpu_vs_gpu", "dataset.train_size=1024", "hydra.sweep.dir=S")
    assert proc.returncode == 0, proc.stderr
    text = " ".join((tmp_path / "S" / "report.md").read_text().split())
    step = json.loads((tmp_path / "S" / "0" / "metrics.json").read_text())["step"]
    timed = f"compile=none, adam={step['adam']}, channels_last={str(step['channels_last']).lower()}"
    assert f"Step as timed: {timed}" in text
    assert pd.read_csv(tmp_path / "S" / "summary.csv")["step_as_timed"].iloc[0] == timed  # for the CSV's readers too
    assert (f"Our step ({timed}) is not the lab's (compile=none, adam=default, channels_last=false: torch's default "
            "Adam, eager, NCHW)") in text  # fmt: skip
    assert "At ×49 those fixed costs can outweigh the work: run with dataset.train_size=50000" in text
    # The skipped CUDA job measured nothing: no row of its own in the environment table.
    if not torch.cuda.is_available():
        assert "| cuda | n/a |" not in text.split("## Environment")[1].split("##")[0]
        # Nor a cudnn_benchmark column of n/a on every row: no CUDA run recorded one.
        raw = (tmp_path / "S" / "report.md").read_text().split("Step as timed")[1]
        header = next(line for line in raw.splitlines() if line.startswith("|"))
        assert "status" in header and "cudnn_benchmark" not in header, header
    # The lab's own step: no such line.
    again = run_cli(tmp_path, *tiny, "experiment=cpu_vs_gpu", "dataset.train_size=1024", "step.adam=default",
                    "step.channels_last=false", "hydra.sweep.dir=T")  # fmt: skip
    assert again.returncode == 0, again.stderr
    text = " ".join((tmp_path / "T" / "report.md").read_text().split())
    assert "Step as timed: compile=none, adam=default, channels_last=false" in text and "Our step" not in text


def test_a_report_over_several_experiments_says_its_swept_values_are_their_union(tmp_path: Path) -> None:
    # Parts 2 and 3 in one report read "Swept: model = ...; batch_size = ...": a grid of them, which it was not.
    lab = {"part": 2, "title": "Batch size", "figures": [{"batch_size": 16, "avg_epoch_time": 20.4}]}
    for job, batch in enumerate((16, 64)):
        _fake_run(tmp_path / "part", job, "cpu", batch, 2.0)
        (tmp_path / "part" / str(job) / ".hydra" / "config.yaml").write_text(
            json.dumps({"lab": lab, "batch_size": batch})
        )
    for job, batch in enumerate((128, 256)):
        _fake_run(tmp_path / "runs", job, "cpu", batch, 1.0)
    text = (build_report([tmp_path / "part", tmp_path / "runs"], tmp_path / "out").out / "report.md").read_text()
    head = "Varied across its 2 experiments (each section says what it swept)"
    assert f"{head}: **batch_size** = 16, 64, 128, 256" in text
    assert "Swept:" not in text


def test_runs_timed_while_another_was_busy_on_one_machine_and_device_are_noted(tmp_path: Path) -> None:
    # Hydra's submitit_local starts every job at once: their figures competed for the machine, and the report
    # ranked them as if each had had it alone. Two jobs on two GPUs of one machine (hydra/launcher=local) did
    # not share their device; jobs one after another did not share anything. A run busy with its data or its
    # compilation while another's epochs were timed competed with them as much as its own epochs would.
    # (ran from, timed from, timed until, ran until), seconds
    spans = {"cpu": [(0, 4, 10, 11), (0, 9, 12, 15), (20, 25, 30, 31), (29, 35, 40, 41)],
             "cuda": [(0, 4, 10, 11), (5, 6, 14, 15), (5, 6, 14, 15)]}  # fmt: skip
    uuids = ["GPU-a", "GPU-b", "GPU-a"]
    for device, windows in spans.items():
        for job, (ran_from, timed_from, timed_until, ran_until) in enumerate(windows):
            _fake_run(tmp_path / device, job, device, 64 * (job + 1), 1.0)
            data = json.loads((tmp_path / device / str(job) / "metrics.json").read_text())
            data.update(ran_from=1e9 + ran_from, ran_until=1e9 + ran_until, timed_from=1e9 + timed_from,
                        timed_until=1e9 + timed_until)  # fmt: skip
            data["env"].update(hostname="box", gpu_uuid=uuids[job] if device == "cuda" else None)
            (tmp_path / device / str(job) / "metrics.json").write_text(json.dumps(data))
    note = ("- timed while another run was busy on the same machine (box): they competed for it, so its figures "
            "read slower than alone (Hydra's submitit_local starts every job at once; the default launcher runs "
            "them one after another) — jobs ")  # fmt: skip
    cpu = (build_report([tmp_path / "cpu"]).out / "report.md").read_text()
    # Job 2's epochs ended at 30, as job 3 began (29): it was still busy with its data. Job 3 ran alone.
    assert f"{note}0, 1, 2\n" in cpu
    gpu = (build_report([tmp_path / "cuda"]).out / "report.md").read_text()
    assert f"{note}0, 2\n" in gpu  # job 1 had a GPU of its own


def test_steps_that_differ_say_whose_they_are(tmp_path: Path) -> None:
    # "Steps as timed (they differ between runs): X; X, GradScaler" did not say that the second was fp16's.
    for job, precision in enumerate(("fp32", "amp_fp16")):
        _fake_run(tmp_path / "S", job, "cpu", 64, 1.0)
        path = tmp_path / "S" / str(job) / "metrics.json"
        data = json.loads(path.read_text())
        step = {"compile": "none", "adam": "default", "channels_last": False, "grad_scaler": precision == "amp_fp16"}
        path.write_text(json.dumps({**data, "precision": precision, "step": step}))
    text = " ".join((build_report([tmp_path / "S"]).out / "report.md").read_text().split())
    plain = "compile=none, adam=default, channels_last=false"
    assert (f"Steps as timed (they differ between runs): {plain} (precision=fp32); {plain}, GradScaler "
            "(precision=amp_fp16)") in text  # fmt: skip


@pytest.mark.parametrize("stop", [KeyboardInterrupt(), OSError(28, "No space left on device")])
def test_a_signal_or_a_full_disk_while_a_figure_is_saved_leaves_the_earlier_figure_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, stop: BaseException
) -> None:
    # Ctrl-C during savefig had left half a PNG in place of the earlier report's figure; a full disk, then, no
    # figure at all under the earlier report that links it.
    from matplotlib.figure import Figure

    for job, batch in enumerate((16, 64)):
        _fake_run(tmp_path / "s", job, "cpu", batch, 1.0 + job)
    build_report([tmp_path / "s"])
    before = {p.name: p.read_bytes() for p in (tmp_path / "s").glob("*.png")}
    assert before

    def cut(fig: Figure, path: object, *args: object, **kwargs: object) -> None:
        Path(str(path)).write_bytes(b"\x89PNG half")
        raise stop

    monkeypatch.setattr(Figure, "savefig", cut)
    with pytest.raises(type(stop)):
        build_report([tmp_path / "s"])
    assert {p.name: p.read_bytes() for p in (tmp_path / "s").glob("*.png")} == before
    assert not [p.name for p in (tmp_path / "s").iterdir() if p.name.startswith(".")]


def test_precisions_that_ran_one_step_are_said_to_differ_in_noise_only(tmp_path: Path) -> None:
    # precision=fp32,tf32 on a CPU: tf32 is fp32 there (its note says so), yet "precision=tf32 is the fastest, and
    # the fastest runs at 4.48× its rate" ranked a loaded box's noise as an effect of the precision.
    note = "precision=tf32 is fp32 here: TF32 is a GPU tensor-core format"
    step = {"compile": "none", "adam": "fused", "channels_last": True, "grad_scaler": False, "math": "fp32"}
    for job, (precision, seconds) in enumerate((("fp32", 4.0), ("tf32", 1.0))):
        _fake_run(tmp_path / "S", job, "cpu", 64, seconds)
        path = tmp_path / "S" / str(job) / "metrics.json"
        data = json.loads(path.read_text())
        path.write_text(json.dumps({**data, "precision": precision, "step": step,
                                    "notes": [note] if precision == "tf32" else []}))  # fmt: skip
    text = " ".join((build_report([tmp_path / "S"]).out / "report.md").read_text().split())
    assert (f"Every run computed the same step here, in fp32 ({note}): they differ in nothing else, so what follows "
            "is run-to-run noise, not an effect of precision.") in text  # fmt: skip
    # Steps that differ (fp16 autocast beside fp32), or runs of two machines, are ranked without it.
    data = json.loads(path.read_text())
    path.write_text(json.dumps({**data, "env": {**(data.get("env") or {}), "hostname": "elsewhere"}}))
    assert "computed the same step" not in (build_report([tmp_path / "S"]).out / "report.md").read_text()
    path.write_text(json.dumps({**data, "step": {**step, "math": "fp16"}}))
    assert "computed the same step" not in (build_report([tmp_path / "S"]).out / "report.md").read_text()


def test_a_swept_value_is_written_one_way_in_tables_sentences_and_plot_labels(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # workers swept 0 and 2, and a run without the key: pandas makes the column float. The table said 2, the
    # sentences workers=2, and the plot's legend workers=2.0 (each had its own rule, one had none).
    for job, (batch, workers) in enumerate([(64, 0), (128, 0), (64, 2), (128, 2), (64, None)]):
        _fake_run(tmp_path / "s", job, "cpu", batch, 1.0 + job)
        metrics = tmp_path / "s" / str(job) / "metrics.json"
        metrics.write_text(json.dumps({**json.loads(metrics.read_text()), "workers": workers}))
    labels: list[str] = []
    plot = Axes.plot
    monkeypatch.setattr(Axes, "plot", lambda ax, *a, **k: labels.append(k.get("label") or "") or plot(ax, *a, **k))
    text = " ".join((build_report([tmp_path / "s"]).out / "report.md").read_text().split())
    assert "**workers=2**:" in text and "workers=2.0" not in text
    assert {"workers=0", "workers=2"} <= {label.split(" (")[0] for label in labels}, labels
    assert not any(".0" in label for label in labels), labels


def test_the_bars_labels_do_not_run_into_each_other(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Six bars of "loader=dataloader / batch_size=64" at 1.1 inches each: neighbouring labels ran together (a
    # gap of under 4 pixels reads as one word).
    from matplotlib.figure import Figure

    save, overlaps, titles = Figure.savefig, [], []

    def checked(fig: Figure, path: object, *args: object, **kwargs: object) -> None:
        fig.canvas.draw()
        renderer = fig.canvas.get_renderer()
        for ax in fig.axes:
            boxes = [t.get_window_extent(renderer) for t in ax.get_xticklabels() if t.get_text()]
            overlaps.extend((Path(str(path)).name, i) for i, (a, b) in enumerate(pairwise(boxes)) if b.x0 - a.x1 < 4)
        titles.append(fig.get_suptitle())
        save(fig, path, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", checked)
    for job, (loader, batch) in enumerate(product(("dataloader", "resident"), (16, 64, 256))):
        _fake_run(tmp_path / "s", job, "cpu", batch, 1.0 + job, loader=loader)
    build_report([tmp_path / "s"])
    assert "Where the time goes: Sweep over loader, batch_size" in titles and overlaps == [], overlaps


def test_an_axis_writes_its_numbers_as_the_tables_do(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Samples/s of 1,000 to 4,000 read "2500" on the axis beside "2,500" in the table (and 1e6 in a corner).
    from matplotlib.figure import Figure

    save, ticks = Figure.savefig, {}

    def checked(fig: Figure, path: object, *args: object, **kwargs: object) -> None:
        fig.canvas.draw()
        for ax in fig.axes:
            ticks[ax.get_ylabel()] = [t.get_text() for t in ax.get_yticklabels() if t.get_text()]
        save(fig, path, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", checked)
    for job, (batch, seconds) in enumerate(((16, 1.0), (64, 0.5), (256, 0.25))):
        _fake_run(tmp_path / "s", job, "cpu", batch, seconds)
    build_report([tmp_path / "s"])
    assert "2,000" in ticks["Samples/s"] and "2000" not in ticks["Samples/s"], ticks
    assert "0" in ticks["s"] and "0.0" not in ticks["s"], ticks


def test_swept_whole_numbers_read_whole_beside_a_run_without_a_value(tmp_path: Path) -> None:
    # A run with no value for a swept number (a skipped max_batch search has no epochs) made the column one of
    # floats, and the header read "Swept: **batch_size** = 64.0, 128.0".
    for job, batch_size in ((0, 128), (1, 64), (2, None)):
        _fake_run(tmp_path / "s", job, "cpu", batch_size, 2.0)  # type: ignore[arg-type]
    build_report([tmp_path / "s"])
    text = (tmp_path / "s" / "report.md").read_text()
    assert "Swept: **batch_size** = 64, 128\n" in text, text[:600]
    assert "batch_size=n/a" not in text  # the run without a value is not an end of the line ("to 500 at n/a")


def test_runs_of_one_config_in_a_sweep_are_told_apart_and_its_line_goes_through_their_median(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # -m batch_size=64,64,128: two rows nothing told apart, "goes from" the first of them, a zigzag through both.
    drawn: list[tuple[list[float], list[float]]] = []
    plot = Axes.plot
    monkeypatch.setattr(Axes, "plot", lambda ax, x, y, *a, **k: drawn.append(
        (list(map(float, x)), list(map(float, y)))) or plot(ax, x, y, *a, **k))  # fmt: skip
    for job, batch_size, epoch_time in ((0, 64, 2.0), (1, 64, 1.0), (2, 128, 1.5)):
        _fake_run(tmp_path / "s", job, "cpu", batch_size, epoch_time)
    build_report([tmp_path / "s"])
    text = (tmp_path / "s" / "report.md").read_text()
    table = [line for line in text.splitlines() if line.startswith("|") and "resident" not in line]
    header = next(line for line in table if "batch_size" in line and "status" in line)
    assert header.split("|")[1].strip() == "run", header
    rows = [line.split("|")[1:3] for line in table[table.index(header) + 2 :][:3]]
    assert [(r.strip(), b.strip()) for r, b in rows] == [("0", "64"), ("1", "64"), ("2", "128")], rows
    assert "- **run**: which run a row is (its job number, else its folder), where runs share every swept value" in text
    # 1,000 images in 2 s and in 1 s at batch 64: a median of 750; 667 at 128.
    assert "Throughput goes from 750 samples/s at batch_size=64 (the median of its 2 runs) to 667 at " \
           "batch_size=128 (0.89×); the fastest run is batch_size=64 (run 1) at 1,000 samples/s" in text  # fmt: skip
    # The samples/s panel: the line, one point a value, through the median; each run a dot.
    assert ([64.0, 128.0], [750.0, pytest.approx(666.67, rel=1e-3)]) in drawn, drawn
    assert ([64.0, 64.0, 128.0], [500.0, 1000.0, pytest.approx(666.67, rel=1e-3)]) in drawn
    assert ([64.0, 128.0], [1.5, 1.5]) in drawn  # and the epoch time's: 2 s and 1 s at 64
    # The time split's bars: which run each is.
    from bench.plots import _job_labels

    runs = build_report([tmp_path / "s"]).runs
    labels = ["batch_size=64\nrun 0", "batch_size=64\nrun 1", "batch_size=128\nrun 2"]
    assert _job_labels(runs, ["batch_size"]) == labels


def test_an_experiment_figures_legend_is_under_its_panels_and_names_what_varies_among_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # In each panel, a legend of "loader=dataloader, epochs=3, dataset.train_size=512, ..." covered the highest
    # points and the y labels, and the panels' two-line titles ran into each other.
    from matplotlib.figure import Figure

    save, seen = Figure.savefig, {}

    def checked(fig: Figure, path: object, *args: object, **kwargs: object) -> None:
        fig.canvas.draw()
        renderer = fig.canvas.get_renderer()
        if Path(str(path)).name.lstrip(".").split(".")[0] == "runs":  # drawn as .runs.<pid>.tmp.png, then renamed
            boxes = [ax.get_window_extent(renderer) for ax in fig.axes]
            titles = [ax.title.get_window_extent(renderer) for ax in fig.axes]
            seen["panel legends"] = [ax.get_legend() for ax in fig.axes if ax.get_legend() is not None]
            seen["labels"] = [t.get_text() for legend in fig.legends for t in legend.get_texts()]
            legend = fig.legends[0].get_window_extent(renderer) if fig.legends else None
            seen["legend over a panel"] = legend is not None and any(legend.overlaps(b) for b in boxes)
            seen["titles overlap"] = any(a.overlaps(b) for a, b in pairwise(titles))
        save(fig, path, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", checked)
    # (A run of one epoch has no whiskers, which the panels' titles say at length.)
    for job, batch_size, loader, times in ((0, 64, "dataloader", (2.0, 2.2)), (1, 128, "resident", (1.0, 1.1)),
                                           (2, 256, "dataloader", (1.5,))):  # fmt: skip
        _fake_run(tmp_path / "s", job, "cpu", batch_size, 2.0, loader=loader, epoch_times=times)
    # A run that did not finish, with a setting of its own: it varies the sweep, not the series drawn.
    _fake_run(tmp_path / "s", 3, "cuda", 64, 2.0, status="skipped", loader="resident")
    build_report([tmp_path / "s"])
    assert seen["panel legends"] == [] and seen["labels"] == ["loader=dataloader", "loader=resident"], seen
    assert not seen["legend over a panel"] and not seen["titles overlap"], seen


def test_a_figure_of_more_series_than_colours_is_not_drawn_and_many_values_name_runs(tmp_path: Path) -> None:
    # A report over a whole outputs/runs: sixteen settings varied, 14 series in one figure, colours repeating
    # and a legend taller than the figure; bars labelled with sixteen lines each.
    for job in range(11):
        _fake_run(tmp_path / "s", job, "cpu", 64 * (1 + job % 2), 2.0, loader=f"l{job}")
    build_report([tmp_path / "s"])
    text = (tmp_path / "s" / "report.md").read_text()
    assert not (tmp_path / "s" / "runs.png").exists()
    assert "could not be drawn (11 series, one for each combination of loader: more than 10 lines cannot be told " \
           "apart in one figure; the table has every run, and a report of one sweep (or of fewer folders) draws it)" \
           in text  # fmt: skip
    from bench.plots import _job_labels
    from bench.runs import named_by_run

    runs = build_report([tmp_path / "s"]).runs
    assert not named_by_run(runs, ["batch_size", "loader"])
    many = ["batch_size", "loader", "model", "device", "precision"]
    assert named_by_run(runs, many) and _job_labels(runs, many) == [f"run {job}" for job in range(11)]
