"""`python -m bench.compare BASELINE CANDIDATE`: sets of runs matched by config, never by device; per config the
samples/s ratio and a verdict (faster, slower, same within noise), a summary line, a plot, and an exit code
that can guard a CI job."""

from __future__ import annotations

import json
import math
import re
import resource
import shutil
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml
from PIL import Image

from bench.compare import compare, load_side, noise_band, verdict
from bench.errors import UsageError
from bench.metrics import summarize
from bench.results import EpochStats, RunResult, write_metrics
from conftest import TINY, read_metrics, run_cli

SAMPLES = 1000  # images per epoch of a made-up run


def _fake_run(
    sweep: Path, job: int, device: str, batch_size: int, samples_per_s: float, *, status: str = "ok",
    memory_mb: float = 100.0, precision: str = "fp32", repeats: int | None = None, iqr: float | None = None,
    config: dict[str, Any] | None = None, epoch_rates: tuple[float, ...] | None = None, loader: str = "dataloader",
    workers: int = 2,
) -> None:  # fmt: skip
    """A sweep job's folder with made-up timings, as test_report's: here so CPU and GPU runs can pair up."""
    run_dir, ok = sweep / str(job), status == "ok"
    rates = epoch_rates or (samples_per_s, samples_per_s)
    epochs = [EpochStats(e, SAMPLES / r, SAMPLES, r, 1.0, 0.1) for e, r in enumerate(rates, 1)] if ok else []
    measured = summarize([asdict(e) for e in epochs])
    if ok:
        measured["peak_memory_mb" if device == "cuda" else "peak_rss_mb"] = memory_mb
    if repeats:
        measured.update(repeats=repeats, samples_per_s_median=samples_per_s, samples_per_s_iqr=iqr)
    cuda = device == "cuda"
    write_metrics(
        run_dir,
        RunResult(
            status=status, model="medium", device=device, device_name="Test GPU" if cuda else "Test CPU",
            precision=precision, dataset="synthetic", loader=loader, batch_size=batch_size, workers=workers,
            epochs=2, seed=0, epochs_detail=epochs, metrics=measured,
            env={"torch": "2.x", "gpu": "Test GPU" if cuda else None, "hostname": "gpubox" if cuda else "laptop"},
        ),
    )  # fmt: skip
    (run_dir / ".hydra").mkdir()
    if config is not None:
        (run_dir / ".hydra" / "config.yaml").write_text(yaml.safe_dump(config))


def _sweep(root: Path, device: str, rates: dict[int, float], **kwargs: Any) -> Path:
    for job, (batch_size, rate) in enumerate(rates.items()):
        _fake_run(root, job, device, batch_size, rate, **kwargs)
    return root


@pytest.fixture
def laptop_and_gpu(tmp_path: Path) -> tuple[Path, Path]:
    """A CPU sweep over 3 batch sizes; a CUDA sweep over the same 3 plus one: 20× faster, the same within 5%,
    10% slower, and a batch size the laptop never ran."""
    base = _sweep(tmp_path / "laptop", "cpu", {32: 1000, 64: 1000, 128: 1000}, memory_mb=500.0)
    cand = _sweep(tmp_path / "gpu", "cuda", {32: 20000, 64: 1020, 128: 900, 256: 30000}, memory_mb=200.0)
    return base, cand


def squeezed(text: str) -> str:
    """Tables are padded for reading; compare their cells, not their padding."""
    return re.sub(r" {2,}", " ", text)


def _table(base: list[Path], cand: list[Path], **kwargs: Any) -> pd.DataFrame:
    return compare(load_side(base), load_side(cand), **kwargs).table.set_index("batch_size")


# ------------------------------------------------------------------------------------------ the numbers


def test_workers_that_no_run_used_are_not_matched_on(tmp_path: Path) -> None:
    # Resident-loader runs start no workers (their value is recorded, unused): runs that differed only in it were
    # "different configs", and nothing paired.
    base = _sweep(tmp_path / "a", "cpu", {64: 1000}, loader="resident", workers=2)
    cand = _sweep(tmp_path / "b", "cpu", {64: 1100}, loader="resident", workers=0)
    assert "workers" not in compare(load_side([base]), load_side([cand])).keys
    assert len(_table([base], [cand])) == 1
    loaders = _sweep(tmp_path / "c", "cpu", {64: 1100}, loader="dataloader", workers=0)  # which DataLoader did use
    with pytest.raises(UsageError, match=r"they differ in loader resident vs dataloader; workers 2 vs 0"):
        compare(load_side([base]), load_side([loaders]))


def test_a_cpu_sweep_pairs_with_a_gpu_sweep_config_by_config(laptop_and_gpu: tuple[Path, Path]) -> None:
    base, cand = laptop_and_gpu
    comparison = compare(load_side([base]), load_side([cand]))
    assert "device" not in comparison.keys and "batch_size" in comparison.keys
    table = comparison.table.set_index("batch_size")
    assert list(table.index) == [32, 64, 128, 256]  # the baseline's configs first, then the candidate's own
    assert dict(table["ratio"].dropna()) == pytest.approx({32: 20.0, 64: 1.02, 128: 0.9})
    assert dict(table["verdict"].dropna()) == {32: "faster", 64: "same", 128: "slower"}
    assert table.loc[32, "base_samples_per_s"] == pytest.approx(1000) and table.loc[32, "band"] == 0.05
    # The memory each side measured: RSS on the CPU, CUDA allocated on the GPU; no ratio of the two.
    assert table.loc[32, "memory"] == "RSS → CUDA allocated" and pd.isna(table.loc[32, "memory_ratio"])
    assert (table.loc[32, "base_memory_mb"], table.loc[32, "cand_memory_mb"]) == (500.0, 200.0)
    assert table.loc[256, "status"] == "candidate only" and pd.isna(table.loc[256, "verdict"])
    assert "cpu (Test CPU) on laptop" in comparison.machines[0] and "cuda (Test GPU)" in comparison.machines[1]


def test_the_console_shows_the_table_and_the_summary_line(laptop_and_gpu: tuple[Path, Path], tmp_path: Path) -> None:
    base, cand = laptop_and_gpu
    proc = run_cli(tmp_path, str(base), str(cand), module="bench.compare")
    assert proc.returncode == 0, proc.stderr
    out = squeezed(proc.stdout)
    row = "| 32 | 1,000 | 20,000 | 20.00× | faster | +5%/−4.8% | 500.0 | 200.0 | n/a | RSS → CUDA allocated | ok |"
    assert row in out
    assert "| 128 | 1,000 | 900 | 0.90× | slower | +5%/−4.8% |" in out
    assert "| 256 | n/a | 30,000 | n/a | n/a | n/a |" in out and "| candidate only |" in out
    mean = (20 * 1.02 * 0.9) ** (1 / 3)
    summary = f"candidate vs baseline: 1 faster, 1 same, 1 slower (band 5%); geometric mean speedup {mean:.2f}×"
    assert proc.stdout.rstrip().endswith(summary)
    assert "1 config without a verdict" in proc.stdout
    assert not list(tmp_path.rglob("compare.*"))  # without --out nothing is written


def test_the_noise_band_is_the_repeats_iqr_where_both_sides_have_one(tmp_path: Path) -> None:
    base, cand = tmp_path / "base", tmp_path / "cand"
    for job, (batch_size, rel_iqr) in enumerate([(64, 0.05), (128, 0.01)]):
        _fake_run(base, job, "cuda", batch_size, 1000, repeats=5, iqr=1000 * rel_iqr, memory_mb=100.0)
        _fake_run(cand, job, "cuda", batch_size, 1080, repeats=5, iqr=1080 * rel_iqr, memory_mb=150.0)
    _fake_run(base, 2, "cuda", 256, 1000, repeats=5, iqr=10.0)
    _fake_run(cand, 2, "cuda", 256, 1080)  # not repeated: the stated 5% band
    table = _table([base], [cand])
    assert dict(table["band"]) == pytest.approx({64: 0.10, 128: 0.02, 256: 0.05})
    assert dict(table["band_rule"]) == {64: "IQR", 128: "IQR", 256: "fixed"}
    # 8% faster: within the noise of repeats that spread by 5% each, beyond it where they spread by 1%.
    assert dict(table["verdict"]) == {64: "same", 128: "faster", 256: "faster"}
    assert table.loc[64, "memory_ratio"] == pytest.approx(1.5) and table.loc[64, "memory"] == "CUDA allocated"
    proc = run_cli(tmp_path, str(base), str(cand), module="bench.compare")
    assert "band: the repeats' IQR on 2 of 3, else 5%" in proc.stdout
    assert "| 64 | 1,000 | 1,080 | 1.08× | same | +10%/−9.1% (IQR) |" in squeezed(proc.stdout)


def test_a_regression_says_whether_repeats_measured_its_band(tmp_path: Path) -> None:
    # A CI log shows the failing line alone: a fixed 5% band over single runs is not one that repeats stayed in.
    base, cand = tmp_path / "base", tmp_path / "cand"
    _fake_run(base, 0, "cuda", 64, 1000, repeats=5, iqr=10.0)  # repeated, its spread 1%: the fixed band is wider
    _fake_run(cand, 0, "cuda", 64, 800)
    _fake_run(base, 1, "cuda", 128, 1000)  # neither side repeated
    _fake_run(cand, 1, "cuda", 128, 800)
    proc = run_cli(tmp_path, str(base), str(cand), "--fail-on-regression", module="bench.compare")
    assert proc.returncode == 1
    assert "batch_size=64 slower (0.80×, below 0.95×: band 5%, fixed: wider than one side's repeats measured)" in (
        proc.stderr)  # fmt: skip
    assert "batch_size=128 slower (0.80×, below 0.95×: band 5%, fixed: no repeats measured the spread)" in proc.stderr


def test_a_repeated_run_is_compared_by_the_samples_per_s_its_report_shows(tmp_path: Path) -> None:
    # Its repeats ran at 90 and 120 samples/s: 103 over all its epochs (the report's figure), 100 their median
    # (made up here). The baseline read 100, and its ratio against an unrepeated side mixed the two statistics.
    base, cand = tmp_path / "base", tmp_path / "cand"
    _fake_run(base, 0, "cpu", 64, 100, repeats=2, iqr=30.0, epoch_rates=(90, 120))
    _fake_run(cand, 0, "cpu", 64, 103)
    table = _table([base], [cand])
    overall = 2000 / (1000 / 90 + 1000 / 120)
    assert read_metrics(base / "0")["samples_per_s"] == pytest.approx(overall)  # what its report shows
    assert table.loc[64, "base_samples_per_s"] == pytest.approx(overall)
    assert table.loc[64, "ratio"] == pytest.approx(103 / overall)
    assert table.loc[64, "band_rule"] == "IQR"  # the repeats' spread is still the band


def test_single_runs_whose_epochs_varied_widen_the_band_with_their_spread(tmp_path: Path) -> None:
    # Two runs of one sweep, repeat=1: the baseline's epochs ran at 600 and 1,400 samples/s (its report flags
    # it noisy). The fixed ±5% called the candidate's 0.83× a regression, exit 1 under --fail-on-regression.
    base, cand = tmp_path / "base", tmp_path / "cand"
    _fake_run(base, 0, "cpu", 64, 1000, epoch_rates=(600, 1400))
    _fake_run(cand, 0, "cpu", 64, 700, epoch_rates=(690, 710))
    _fake_run(base, 1, "cpu", 128, 1000, epoch_rates=(990, 1010))  # quiet on both sides: the fixed band
    _fake_run(cand, 1, "cpu", 128, 800, epoch_rates=(795, 805))
    table = _table([base], [cand])
    assert dict(table["band_rule"]) == {64: "epochs", 128: "fixed"}
    # each side's epochs' IQR / median: (1400 - 600) / 2 / 1000 = 0.4, and (710 - 690) / 2 / 700 = 0.0143
    assert table.loc[64, "band"] == pytest.approx(0.4143, rel=1e-3) and table.loc[128, "band"] == 0.05
    assert dict(table["verdict"]) == {64: "same", 128: "slower"}
    proc = run_cli(tmp_path, str(base), str(cand), "--fail-on-regression", module="bench.compare")
    assert proc.returncode == 1  # batch 128 is slower beyond its band; 64 is not judged so on noise
    assert "| 64 | 840 | 700 | 0.83× | same | +41.4%/−29.3% (epochs) |" in squeezed(proc.stdout), proc.stdout
    assert "band: the epochs' IQR on 1 of 2, else 5%" in proc.stdout


def test_a_band_of_100_percent_is_drawn_not_a_crash(tmp_path: Path) -> None:
    # Epochs at 300 and 100 samples/s against a single epoch: the band is 2 × 50% = 100%, and compare.png
    # divided by 1 − band = 0: "could not compare: ZeroDivisionError", no compare.md.
    _fake_run(tmp_path / "base", 0, "cpu", 64, 150, epoch_rates=(300, 100))
    _fake_run(tmp_path / "cand", 0, "cpu", 64, 200, epoch_rates=(200,))
    proc = run_cli(tmp_path, "base", "cand", "--out", "c", module="bench.compare")
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "c" / "compare.png").is_file() and "| same | +100%/−50% (epochs) |" in squeezed(proc.stdout)


def test_verdict_and_band_rules() -> None:
    assert [verdict(r, 0.05) for r in (0.94, 0.96, 1.0, 1.04, 1.06)] == ["slower", "same", "same", "same", "faster"]
    # As far from 1 either way on a log scale: 1 − band had called 0.59× "same" within ±54.5% (where 1.55×
    # was faster), and no band of 100% or more could find anything slower.
    assert [verdict(r, 0.545) for r in (0.59, 1 / 0.59, 0.66, 1 / 0.66)] == ["slower", "faster", "same", "same"]
    assert verdict(0.4, 1.0) == "slower" and verdict(0.6, 1.0) == "same"
    assert noise_band(0.02, 0.03) == (pytest.approx(0.05), "IQR")
    assert noise_band(0.02, None, 0.1) == (0.1, "fixed")
    # One side repeated and noisy (CV 97%): its spread widens the band, not a fixed ±5% that it cannot support.
    assert noise_band(None, 0.8) == (pytest.approx(1.6), "IQR") and noise_band(0.04, None) == (0.08, "IQR")
    # A single run's epochs' spread counts for its side, but only to widen the band, never to narrow it: beside
    # a side repeated with a 3% spread, a single run's quiet epochs (0.5%) made ±6% into a fixed ±5%.
    assert noise_band(0.03, None, 0.05, None, 0.005) == (pytest.approx(0.06), "IQR")
    assert noise_band(None, 0.04, base_epochs=0.03) == (pytest.approx(0.08), "IQR")
    assert noise_band(None, 0.02, base_epochs=0.1) == (pytest.approx(0.12), "IQR+epochs")
    assert noise_band(None, None, base_epochs=0.01, cand_epochs=0.01) == (0.05, "fixed")
    assert noise_band(None, None, base_epochs=0.2) == (pytest.approx(0.4), "epochs")


def test_several_runs_of_one_config_count_once_with_their_median(tmp_path: Path) -> None:
    base, cand = tmp_path / "base", tmp_path / "cand"
    for job, rate in enumerate((900, 1000, 1300)):
        _fake_run(base, job, "cpu", 64, rate)
    _fake_run(cand, 0, "cpu", 64, 1500)
    table = _table([base], [cand])
    assert table.loc[64, "base_samples_per_s"] == pytest.approx(1000) and table.loc[64, "ratio"] == pytest.approx(1.5)
    proc = run_cli(tmp_path, str(base), str(cand), module="bench.compare")
    assert "runs (baseline / candidate)" in proc.stdout and "| 3 / 1 |" in squeezed(proc.stdout)
    # Their spread across runs is noise measured between processes: the band takes it (quartiles 950 and 1,150
    # of the median 1,000: 20%, twice for the one side that has it). The 1.5x stays faster beyond it.
    assert table.loc[64, "band"] == pytest.approx(0.4) and table.loc[64, "band_rule"] == "IQR"


def test_a_sides_several_runs_of_a_config_widen_the_band_by_their_spread(tmp_path: Path) -> None:
    # Three runs of one config on the candidate side, processes apart on a busy 2-core box, at 4,900, 6,000 and
    # 5,400 samples/s, each with epochs ±3% apart: judged within the epochs' band, the same code read 1.13x
    # "faster" than a baseline run at 4,780. Their spread across runs (IQR 550 of 5,400, twice for the one side
    # that has it: 20%) is the noise that matters here.
    base, cand = tmp_path / "base", tmp_path / "cand"
    _fake_run(base, 0, "cpu", 64, 4780, epoch_rates=(4650, 4910))
    for job, rate in enumerate((4900, 6000, 5400)):
        _fake_run(cand, job, "cpu", 64, rate, epoch_rates=(rate * 0.97, rate * 1.03))
    table = _table([base], [cand])
    assert table.loc[64, "ratio"] == pytest.approx(5400 / 4780, rel=1e-2)
    assert table.loc[64, "band"] == pytest.approx(2 * 550 / 5400, rel=1e-2) and table.loc[64, "verdict"] == "same"


def test_settings_beyond_the_columns_are_matched_but_not_the_data_folder(tmp_path: Path) -> None:
    base, cand = tmp_path / "base", tmp_path / "cand"
    for job, lr in enumerate((0.001, 0.01)):
        _fake_run(base, job, "cpu", 64, 1000, config={"lr": lr, "data_dir": "/home/me/data", "batch_size": 64})
        _fake_run(cand, job, "cuda", 64, 2000 if lr == 0.001 else 500,
                  config={"lr": lr, "data_dir": "/scratch/data", "batch_size": 64})  # fmt: skip
    comparison = compare(load_side([base]), load_side([cand]))
    assert "lr" in comparison.keys and "data_dir" not in comparison.keys
    assert dict(zip(comparison.table["lr"], comparison.table["ratio"], strict=True)) == {0.001: 2.0, 0.01: 0.5}


def test_several_folders_on_each_side(laptop_and_gpu: tuple[Path, Path], tmp_path: Path) -> None:
    base, cand = laptop_and_gpu
    more = _sweep(tmp_path / "laptop2", "cpu", {256: 3000})
    proc = run_cli(tmp_path, "--baseline", str(base), str(more), "--candidate", str(cand), module="bench.compare")
    assert proc.returncode == 0, proc.stderr
    assert "| 256 | 3,000 | 30,000 | 10.00× | faster |" in squeezed(proc.stdout)
    assert "2 faster, 1 same, 1 slower" in proc.stdout and "without a verdict" not in proc.stdout
    mixed = run_cli(tmp_path, str(cand), "--baseline", str(base), str(more), module="bench.compare")
    assert mixed.returncode == 0 and mixed.stdout == proc.stdout  # the folders outside --baseline: the candidate


# ---------------------------------------------------------------------------------- statuses and exits


def test_fail_on_regression_exits_1_on_a_slower_config(laptop_and_gpu: tuple[Path, Path], tmp_path: Path) -> None:
    base, cand = laptop_and_gpu
    proc = run_cli(tmp_path, str(base), str(cand), "--fail-on-regression", module="bench.compare")
    assert proc.returncode == 1
    assert proc.stderr.strip() == ("bench: error: 1 regression: batch_size=128 slower (0.90×, below 0.95×: band 5%, "
                                   "fixed: no repeats measured the spread)")  # fmt: skip
    assert "geometric mean speedup" in proc.stdout  # the table is still printed
    # Within a wider band the 10% is noise: no regression.
    proc = run_cli(tmp_path, str(base), str(cand), "--fail-on-regression", "--band", "0.2", module="bench.compare")
    assert proc.returncode == 0, proc.stderr
    assert "2 same, 0 slower (band 20%)" in proc.stdout


def test_without_a_slower_config_fail_on_regression_exits_0(laptop_and_gpu: tuple[Path, Path], tmp_path: Path) -> None:
    base, _ = laptop_and_gpu
    cand = _sweep(tmp_path / "fast", "cuda", {32: 20000, 64: 1020})
    proc = run_cli(tmp_path, str(base), str(cand), "--fail-on-regression", module="bench.compare")
    assert proc.returncode == 0, proc.stderr
    assert "| 128 | 1,000 | n/a |" in squeezed(proc.stdout) and "baseline only" in proc.stdout


def test_a_config_not_ok_on_one_side_is_listed_without_a_verdict(tmp_path: Path) -> None:
    base = _sweep(tmp_path / "base", "cuda", {64: 1000, 128: 1000, 256: 1000})
    cand = tmp_path / "cand"
    _fake_run(cand, 0, "cuda", 64, 1000)
    _fake_run(cand, 1, "cuda", 128, 0, status="oom")
    _fake_run(cand, 2, "cuda", 256, 0, status="skipped")
    table = _table([base], [cand])
    assert dict(table["status"]) == {64: "ok", 128: "baseline ok, candidate oom", 256: "baseline ok, candidate skipped"}
    assert table["verdict"].isna().tolist() == [False, True, True]
    proc = run_cli(tmp_path, str(base), str(cand), "--fail-on-regression", module="bench.compare")
    assert proc.returncode == 1  # an oom where the baseline trained is a regression; skipped is not
    assert proc.stderr.strip() == "bench: error: 1 regression: batch_size=128 oom in the candidate, ok in the baseline"


def test_a_side_whose_cuda_jobs_were_all_skipped_names_no_device_and_draws_no_figure(tmp_path: Path) -> None:
    # The laptop's own sweep with device=cuda: every job skipped. Its header read "cuda (AMD EPYC ...)", a CPU's
    # name beside a GPU that never ran.
    base = _sweep(tmp_path / "cpu", "cpu", {64: 1000})
    cand = tmp_path / "gpu"
    _fake_run(cand, 0, "cuda", 64, 0, status="skipped")
    record = json.loads((cand / "0" / "metrics.json").read_text())
    record.update(device_name=None, env={"torch": "2.x", "gpu": None, "cpu": "AMD EPYC", "hostname": "laptop"})
    (cand / "0" / "metrics.json").write_text(json.dumps(record))
    proc = run_cli(tmp_path, str(base), str(cand), "--out", "c", module="bench.compare")
    assert proc.returncode == 0, proc.stderr
    header = next(line for line in proc.stdout.splitlines() if line.startswith("- candidate:"))
    assert header.endswith(": cuda on laptop") and "EPYC" not in header, header
    assert sorted(p.name for p in (tmp_path / "c").iterdir()) == ["compare.md"]  # no ratio to draw


def test_a_side_that_ran_uncommitted_changes_says_so_beside_its_commit(tmp_path: Path) -> None:
    # Both sides read "commit 90579bb03d" where one had run with uncommitted changes (bench.report said so).
    base, cand = _sweep(tmp_path / "clean", "cpu", {64: 1000}), _sweep(tmp_path / "dirty", "cpu", {64: 1100})
    for side, dirty in ((base, False), (cand, True)):
        record = json.loads((side / "0" / "metrics.json").read_text())
        record["env"].update(git_commit="90579bb03d" + "0" * 30, git_dirty=dirty)
        (side / "0" / "metrics.json").write_text(json.dumps(record))
    proc = run_cli(tmp_path, str(base), str(cand), module="bench.compare")
    assert proc.returncode == 0, proc.stderr
    header = {line.split(":")[0]: line for line in proc.stdout.splitlines() if line.startswith("- ")}
    assert header["- baseline"].endswith("commit 90579bb03d"), header
    assert header["- candidate"].endswith("commit 90579bb03d + uncommitted changes"), header


def test_bad_input_is_one_line_and_exit_2(laptop_and_gpu: tuple[Path, Path], tmp_path: Path) -> None:
    base, cand = laptop_and_gpu
    cases = {
        (str(tmp_path / "nowhere"), str(cand)): "nowhere: no such folder",
        (str(base),): "expected BASELINE CANDIDATE (two folders)",
        (str(base), str(cand), "--band", "1.5"): "--band 1.5: expected a share between 0 and 1",
        ("--baseline", str(base)): "expected BASELINE CANDIDATE",
        (str(base), str(cand), "--ignore", "precison"): "--ignore precison: no run records that key",
        # A run compared with itself was "same", and exit 0.
        (str(base), str(base)): f"{base / '0'} is on both sides: a run compared with itself is always the same",
        (str(base), str(base / "1")): f"{base / '1'} is on both sides: a run compared with itself",
    }
    for args, message in cases.items():
        proc = run_cli(tmp_path, *args, module="bench.compare")
        assert proc.returncode == 2, args
        assert proc.stderr.startswith("bench: error:") and message in proc.stderr, proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr
    # A copy of a run (cp -r) against its original: "same", 1.00×, exit 0. It began when and where the original did.
    record = json.loads((base / "1" / "metrics.json").read_text())
    (base / "1" / "metrics.json").write_text(json.dumps({**record, "ran_from": 1_790_000_000.25}))
    shutil.copytree(base / "1", tmp_path / "copy" / "1")
    proc = run_cli(tmp_path, str(base), "copy", module="bench.compare")
    assert proc.returncode == 2 and proc.stderr.strip() == (
        f"bench: error: {Path('copy', '1')} is a copy of {base / '1'} (it began at the same instant on the same "
        "host): a run compared with itself is always the same"
    ), proc.stderr


def test_nothing_matched_is_exit_2_and_says_how_the_sides_differ(tmp_path: Path) -> None:
    base = _sweep(tmp_path / "fp32", "cuda", {64: 1000, 128: 1000})
    cand = _sweep(tmp_path / "amp", "cuda", {64: 1800, 128: 2000}, precision="amp_fp16")
    proc = run_cli(tmp_path, str(base), str(cand), module="bench.compare")
    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        "bench: error: no config of the candidate matches the baseline (they differ in precision fp32 vs amp_fp16; "
        "pass --ignore precision to compare them anyway)"
    )
    proc = run_cli(tmp_path, str(base), str(cand), "--ignore", "precision", "--out", "c", module="bench.compare")
    assert proc.returncode == 0, proc.stderr
    assert "2 faster, 0 same, 0 slower" in proc.stdout
    # compare.md says what it did not match on, and how the sides differ there (the key just dropped out).
    written = (tmp_path / "c" / "compare.md").read_text()
    assert "- not matched on (--ignore): precision: baseline fp32; candidate amp_fp16" in written
    assert "Where the band is the fixed 5% or rests on a run's epochs (marked epochs), nothing measured" in written
    # Several keys in one flag, as the help's a,b says: it was one key named "precision,loader", not recorded.
    proc = run_cli(tmp_path, str(base), str(cand), "--ignore", "precision,loader", module="bench.compare")
    assert proc.returncode == 0 and "2 faster, 0 same, 0 slower" in proc.stdout, proc.stderr


def test_an_ignored_setting_a_cpu_run_resolved_to_nothing_shows_the_values_it_was_matched_on(tmp_path: Path) -> None:
    # recipe=fast turns cudnn_benchmark on; a CPU run records it resolved as null (no cuDNN), so compare.md said
    # "baseline n/a; candidate n/a" for the key the refusal had named "false vs true".
    base = _sweep(tmp_path / "lab", "cpu", {64: 1000}, config={"cudnn_benchmark": False})
    cand = _sweep(tmp_path / "fast", "cpu", {64: 1500}, config={"cudnn_benchmark": True})
    proc = run_cli(tmp_path, str(base), str(cand), module="bench.compare")
    assert proc.returncode == 2 and "they differ in cudnn_benchmark false vs true" in proc.stderr, proc.stderr
    proc = run_cli(tmp_path, str(base), str(cand), "--ignore", "cudnn_benchmark", module="bench.compare")
    assert proc.returncode == 0, proc.stderr
    assert "- not matched on (--ignore): cudnn_benchmark: baseline false; candidate true" in proc.stdout
    # A side of CPU and CUDA runs: each run's own value, recorded where it has one, else its saved config's.
    _fake_run(cand, 1, "cuda", 128, 9000, config={"cudnn_benchmark": True})
    record = json.loads((cand / "1" / "metrics.json").read_text())
    (cand / "1" / "metrics.json").write_text(json.dumps({**record, "cudnn_benchmark": False}))
    proc = run_cli(tmp_path, str(base), str(cand), "--ignore", "cudnn_benchmark", module="bench.compare")
    assert "- not matched on (--ignore): cudnn_benchmark: baseline false; candidate false, true" in proc.stdout


def test_out_gets_compare_md_and_compare_png(laptop_and_gpu: tuple[Path, Path], tmp_path: Path) -> None:
    base, cand = laptop_and_gpu
    out = tmp_path / "cmp"
    proc = run_cli(tmp_path, str(base), str(cand), "--out", str(out), module="bench.compare")
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in out.iterdir()) == ["compare.md", "compare.png"]
    text = (out / "compare.md").read_text()
    assert text in proc.stdout and "![samples/s ratio, candidate / baseline](compare.png)" in text
    assert f"wrote {out / 'compare.md'}" in proc.stdout and f"wrote {out / 'compare.png'}" in proc.stdout
    with Image.open(out / "compare.png") as img:
        assert img.format == "PNG" and img.size[0] > 400 and img.size[1] > 200
    # Never into a sweep's or a run's folder, where a comparison would sit among the results.
    for into in (base, base / "0"):
        proc = run_cli(tmp_path, str(base), str(cand), "--out", str(into), module="bench.compare")
        assert proc.returncode == 2 and "that folder holds runs" in proc.stderr, proc.stderr
        assert not (into / "compare.md").exists()


def test_a_comparison_into_an_earlier_ones_folder_leaves_none_of_its_figures(
    laptop_and_gpu: tuple[Path, Path], tmp_path: Path
) -> None:
    # The second comparison drew no figure (nothing ok to set a ratio on), and the first one's compare.png, titled
    # with the other candidate's speedup, stayed beside the new compare.md. A user's own file there is kept.
    base, cand = laptop_and_gpu
    out = tmp_path / "cmp"
    assert run_cli(tmp_path, str(base), str(cand), "--out", str(out), module="bench.compare").returncode == 0
    (out / "mine.png").write_bytes((out / "compare.png").read_bytes())
    failed = _sweep(tmp_path / "failed", "cuda", {32: 0}, status="failed")
    # The folders before and after an option, as bench.reproduce takes its overrides anywhere; and the
    # comparison it replaces said so ("wrote compare.md" alone).
    proc = run_cli(tmp_path, str(base), "--out", str(out), str(failed), module="bench.compare")
    assert proc.returncode == 0, proc.stderr
    assert f"wrote {out / 'compare.md'} (in place of the comparison it held)" in proc.stdout
    assert sorted(p.name for p in out.iterdir()) == ["compare.md", "mine.png"]
    assert "compare.png" not in (out / "compare.md").read_text()


def test_a_comparison_that_cannot_be_written_leaves_no_folder(
    laptop_and_gpu: tuple[Path, Path], tmp_path: Path
) -> None:
    # A write failure (as on a full disk) left the --out folder it had made, empty.
    base, cand = laptop_and_gpu
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (1_000, hard))  # compare.png is tens of kB
    try:
        proc = run_cli(tmp_path, str(base), str(cand), "--out", "new/cmp", module="bench.compare")
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    assert proc.returncode == 1 and "could not compare" in proc.stderr, proc.stderr
    assert not (tmp_path / "new").exists()


# ------------------------------------------------------------------------------------------- real runs


@pytest.mark.slow
def test_two_real_cpu_sweeps_compare_row_by_row(tmp_path: Path) -> None:
    tiny = [o for o in TINY if not o.startswith("batch_size=")]
    for name in ("A", "B"):
        proc = run_cli(tmp_path, "-m", *tiny, f"hydra.sweep.dir={name}", "batch_size=16,32")
        assert proc.returncode == 0, proc.stderr
    proc = run_cli(tmp_path, "A", "B", "--out", "cmp", module="bench.compare")
    assert proc.returncode == 0, proc.stderr
    table = compare(load_side([tmp_path / "A"]), load_side([tmp_path / "B"])).table
    assert list(table["batch_size"]) == [16, 32] and (table["status"] == "ok").all()
    assert set(table["verdict"]) <= {"faster", "same", "slower"} and table["ratio"].map(math.isfinite).all()
    assert table["memory"].tolist() == ["RSS", "RSS"] and table["memory_ratio"].notna().all()
    assert "candidate vs baseline: " in proc.stdout and (tmp_path / "cmp" / "compare.png").is_file()
    # RSS peaks in whole MB, as the report writes them (723, not 723.4 beside the report's 723).
    row = next(line for line in proc.stdout.splitlines() if line.startswith("|") and " 16 |" in line)
    peaks = [cell.strip() for cell in row.split("|")[7:9]]
    assert all(re.fullmatch(r"[\d,]+", p) for p in peaks), row


def test_a_candidate_job_unreadable_through_and_through_is_a_regression(tmp_path: Path) -> None:
    # Its metrics.json and its config are both corrupt: it matches no baseline config, but it may be any of
    # them, so a CI gate must not pass it.
    base = _sweep(tmp_path / "base", "cpu", {64: 1000, 128: 1000})
    cand = _sweep(tmp_path / "cand", "cpu", {64: 1000, 128: 1000})
    (cand / "1" / "metrics.json").write_text("{ not json")
    (cand / "1" / ".hydra" / "config.yaml").write_text(": not yaml [")
    proc = run_cli(tmp_path, str(base), str(cand), "--fail-on-regression", module="bench.compare")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "unreadable in the candidate, config unknown" in proc.stderr
    # With its config read (batch 256, which the baseline never ran), it is a config of its own, not an unknown
    # one: it had failed the gate as "batch_size=256 unreadable in the candidate, config unknown".
    shutil.rmtree(cand / "1")
    _fake_run(cand, 1, "cpu", 256, 1000, config={"batch_size": 256})
    (cand / "1" / "metrics.json").write_text("[1, 2]")
    proc = run_cli(tmp_path, str(base), str(cand), "--fail-on-regression", module="bench.compare")
    assert "config unknown" not in proc.stderr, proc.stderr
    assert re.search(r"\|\s+256 \|.*candidate only \(unreadable\)", proc.stdout), proc.stdout


def test_a_partly_failed_config_gets_no_verdict_and_is_a_regression(tmp_path: Path) -> None:
    base = _sweep(tmp_path / "base", "cpu", {64: 1000})
    cand = tmp_path / "cand"
    _fake_run(cand, 0, "cpu", 64, 1000)
    _fake_run(cand, 1, "cpu", 64, 1000, status="oom")  # the same config again, broken
    proc = run_cli(tmp_path, str(base), str(cand), "--fail-on-regression", module="bench.compare")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "no config has all its runs ok on both sides (see the status column), so there is no verdict" in proc.stdout
    assert "1 regression: model=medium, batch_size=64 1 of 2 ok in the candidate" in proc.stderr


def test_compare_png_draws_ratios_far_apart_on_a_log_axis_and_names_both_sides(
    laptop_and_gpu: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # On a linear axis a 4.5× slowdown (0.22×) drew shorter than a 2× speedup; the title named neither side.
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from bench import compare as cmp

    drawn: dict[str, list] = {"yscale": [], "title": [], "suptitle": []}
    for cls, name, key in (
        (Axes, "set_yscale", "yscale"),
        (Axes, "set_title", "title"),
        (Figure, "suptitle", "suptitle"),
    ):
        original = getattr(cls, name)

        def spy(obj, value, *args, _key=key, _original=original, **kwargs):  # type: ignore[no-untyped-def]
            drawn[_key].append(value)
            return _original(obj, value, *args, **kwargs)

        monkeypatch.setattr(cls, name, spy)
    base, cand = laptop_and_gpu
    cmp.main([str(base), str(cand), "--out", str(tmp_path / "cmp")])
    assert "log" in drawn["yscale"]  # 20× beside 0.9×
    # Which folder is which side too: "not matched on loader" beside two bars said neither. The machines go on a
    # smaller line under the title, which had wrapped to six lines with them.
    title, under = (" ".join(drawn[key][-1].split()) for key in ("suptitle", "title"))
    assert (
        title.startswith(f"Candidate {cand.name} vs baseline {base.name}: geometric mean speedup ")
        and drawn["suptitle"][-1].count("\n") <= 1
    )
    assert under == "Candidate on cuda (Test GPU) on gpubox, baseline on cpu (Test CPU) on laptop"


def test_a_candidate_sweep_cut_short_pairs_its_missing_jobs_and_fails_the_guard(tmp_path: Path) -> None:
    # A CI sweep stopped at its time limit: job 0 interrupted, jobs 1 and 2 never started. The missing rows had
    # only their swept value, so they paired with nothing ("candidate only", every other column n/a), and
    # --fail-on-regression passed: a broken branch through the guard.
    base = _sweep(tmp_path / "base", "cpu", {64: 1000, 128: 1000, 256: 1000})
    cand = tmp_path / "cand"
    _fake_run(cand, 0, "cpu", 64, 1000, status="interrupted")
    sweeper = {"_target_": "hydra._internal.core_plugins.basic_sweeper.BasicSweeper", "params": None}
    plan = {"hydra": {"sweeper": sweeper, "overrides": {"task": ["batch_size=64,128,256"]}}}
    (cand / "multirun.yaml").write_text(yaml.safe_dump(plan))
    table = compare(load_side([base]), load_side([cand])).table
    assert list(table["batch_size"]) == [64, 128, 256], table  # one row per config, both sides on it
    assert list(table["status"]) == [f"baseline ok, candidate {s}" for s in ("interrupted", "missing", "missing")]
    proc = run_cli(tmp_path, str(base), str(cand), "--fail-on-regression", module="bench.compare")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert proc.stderr.startswith("bench: error: 3 regressions: batch_size=64 interrupted in the candidate, ok in")


def test_the_guard_fails_where_nothing_could_be_judged(tmp_path: Path) -> None:
    # Neither side has a config all ok: no verdict anywhere, and so no pass either.
    base = _sweep(tmp_path / "base", "cpu", {64: 1000}, status="oom")
    cand = _sweep(tmp_path / "cand", "cpu", {64: 1000}, status="oom")
    proc = run_cli(tmp_path, str(base), str(cand), "--fail-on-regression", module="bench.compare")
    assert proc.returncode == 1 and proc.stderr.strip() == (
        "bench: error: --fail-on-regression: no config was judged (none has all its runs ok on both sides), so "
        "nothing shows that the candidate is not slower"
    ), proc.stderr
    assert run_cli(tmp_path, str(base), str(cand), module="bench.compare").returncode == 0  # a report, no guard


def test_another_tools_folder_is_bad_input_not_one_row_of_medians(tmp_path: Path) -> None:
    # Its metrics.json is not bench's: the sides had no config column in common, so every baseline run (three
    # batch sizes) fell into one row whose "median" mixed them.
    base = _sweep(tmp_path / "base", "cpu", {64: 100, 128: 300, 256: 500})
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "metrics.json").write_text('{"loss": 0.1, "accuracy": 0.9}')
    proc = run_cli(tmp_path, str(base), "other", "--fail-on-regression", module="bench.compare")
    assert proc.returncode == 2 and proc.stderr.strip() == (
        "bench: error: the candidate has no run whose config could be read (unreadable): nothing to match its runs "
        "on; give bench's run or sweep folders"
    ), proc.stderr


def test_out_inside_a_sweep_or_run_is_refused(tmp_path: Path) -> None:
    # Into a sweep's unrun job folder, a resume would take the job for done; into a run's .hydra/, mixed files.
    base = _sweep(tmp_path / "base", "cpu", {64: 1000})
    cand = _sweep(tmp_path / "cand", "cpu", {64: 1000})
    (cand / "multirun.yaml").write_text("{}")
    for out in (cand / "1", base / "0" / ".hydra"):
        proc = run_cli(tmp_path, str(base), str(cand), "--out", str(out), module="bench.compare")
        assert proc.returncode == 2 and " is inside " in proc.stderr and "bench never writes into one" in proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1 and not (out / "compare.md").exists()


def test_a_missing_job_takes_no_setting_it_may_not_share(tmp_path: Path) -> None:
    # Without a plan (no multirun.yaml), job 0 below job 1 took job 1's batch size, 128: compare then called
    # batch 128 "1 of 2 ok" (a regression that was not) and left the real config, unknown, unflagged.
    from bench.runs import load_runs

    no_plan = tmp_path / "no_plan"
    _fake_run(no_plan, 1, "cpu", 128, 1000)
    (no_plan / "multirun.yaml").write_text("{}")
    missing = load_runs([no_plan]).set_index("job").loc[0]
    assert missing["status"] == "missing" and pd.isna(missing["batch_size"]) and pd.isna(missing["model"])
    # -m recipe=lab,fast with the fast job missing: recipe=fast's loader is not recipe=lab's.
    recipes = tmp_path / "recipes"
    _fake_run(recipes, 0, "cpu", 64, 1000)
    sweeper = {"_target_": "hydra._internal.core_plugins.basic_sweeper.BasicSweeper", "params": None}
    plan = {"hydra": {"sweeper": sweeper, "overrides": {"task": ["recipe=lab,fast"]}}}
    (recipes / "multirun.yaml").write_text(yaml.safe_dump(plan))
    (recipes / "0" / ".hydra" / "config.yaml").write_text(yaml.safe_dump({"recipe": {"name": "lab"}}))
    data = json.loads((recipes / "0" / "metrics.json").read_text())
    (recipes / "0" / "metrics.json").write_text(json.dumps({**data, "recipe": "lab"}))
    fast = load_runs([recipes]).set_index("job").loc[1]
    assert fast["status"] == "missing" and fast["recipe"] == "fast" and pd.isna(fast["loader"]), fast


def test_a_key_only_one_run_sets_is_another_config_in_the_report_and_the_comparison(tmp_path: Path) -> None:
    # +model.width=2 doubles the model's channels: no value of a shared key differs, but it is not the plain
    # model's config. It was "2 runs of one config", and compare called the wider net a 0.44x slowdown.
    for name, extra in (("plain", ()), ("wide", ("+model.width=2",)), ("wide2", ("+model.width=2",))):
        proc = run_cli(tmp_path, *TINY, "model=small", *extra, f"hydra.run.dir={name}")
        assert proc.returncode == 0, proc.stderr
    proc = run_cli(tmp_path, "plain", "wide", "--out", "rep", module="bench.report")
    assert proc.returncode == 0, proc.stderr
    summary = pd.read_csv(tmp_path / "rep" / "summary.csv")
    assert summary["model.width"].tolist() == ["(not set)", "2"]
    report = " ".join((tmp_path / "rep" / "report.md").read_text().split())
    assert "Swept: **model.width** = (not set), 2" in report
    assert "model.width=(not set)" not in report and "model.width (not set)" in report  # not a value one could type
    proc = run_cli(tmp_path, "plain", "wide", module="bench.compare")
    assert proc.returncode == 2
    assert "they differ in model.width (not set) vs 2" in proc.stderr, proc.stderr
    # Two wide runs do pair: the key is matched on, by its value.
    proc = run_cli(tmp_path, "wide", "wide2", module="bench.compare")
    found = re.search(r"(\d+) faster, (\d+) same, (\d+) slower", proc.stdout)
    assert proc.returncode == 0 and found and sum(map(int, found.groups())) == 1, proc.stdout + proc.stderr
    # Across commits too (compare's main use: a baseline commit against a candidate), and without a commit.
    for commit in ("0" * 40, None):
        metrics = json.loads((tmp_path / "wide2" / "metrics.json").read_text())
        metrics["env"]["git_commit"] = commit
        (tmp_path / "wide2" / "metrics.json").write_text(json.dumps(metrics))
        proc = run_cli(tmp_path, "plain", "wide2", module="bench.compare")
        assert proc.returncode == 2 and "they differ in model.width (not set) vs 2" in proc.stderr, proc.stderr
    # A key bench's own config gained since an older run (no + in that run's command) is no difference: the
    # older run still pairs with the newer one.
    shutil.copytree(tmp_path / "wide", tmp_path / "older")
    saved = tmp_path / "older" / ".hydra" / "config.yaml"
    config = yaml.safe_load(saved.read_text())
    del config["step"]["non_blocking"]
    saved.write_text(yaml.safe_dump(config))
    proc = run_cli(tmp_path, "older", "wide2", module="bench.compare")
    found = re.search(r"(\d+) faster, (\d+) same, (\d+) slower", proc.stdout)
    assert proc.returncode == 0 and found and sum(map(int, found.groups())) == 1, proc.stdout + proc.stderr
