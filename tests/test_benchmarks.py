"""The benchmark scripts run end to end on the CPU, on tiny data: `make bench` and the step-options table."""

from __future__ import annotations

import importlib
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

import bench
from conftest import TINY, offline_env, run_cli

REPO = Path(__file__).resolve().parents[1]


def _script(name: str, tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / name), *args], cwd=tmp_path, env=offline_env(),
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip


@pytest.fixture
def script_main(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Callable[..., subprocess.CompletedProcess]:
    """A benchmark script's ``main(ARGS)`` run from ``tmp_path`` in this process, as ``_script`` would run it:
    its exit status, stdout and stderr (a new process costs seconds of imports on 2 cores)."""
    monkeypatch.syspath_prepend(str(REPO / "benchmarks"))
    monkeypatch.chdir(tmp_path)

    def run(name: str, *args: str) -> subprocess.CompletedProcess:
        main = importlib.import_module(name.removesuffix(".py")).main
        code: int | str | None = 0
        try:
            main(list(args))
        except SystemExit as stop:
            code = stop.code
        out, err = capsys.readouterr()
        return subprocess.CompletedProcess([name, *args], code if isinstance(code, int) else 1, out, err)

    return run


@pytest.mark.slow
def test_pipelines_prints_each_pipeline_and_judges_the_median_of_interleaved_pairs(tmp_path: Path) -> None:
    # (r) and (d) three times each, r d d r r d, then (c) once; one run of the script checks both the table
    # and the pairing (two runs cost 19 s of the suite's time). The one-pair wording has its own test below.
    args = ("--device", "cpu", "--configs", "small:64:fp32:rcd", "--train-size", "256", "--pairs", "3", "--out", "out")
    proc = _script("pipelines.py", tmp_path, *args)
    assert proc.returncode == 0, proc.stderr
    started = re.findall(r"\(([rdc])\) [a-z ]+(?:, pair (\d))? \.\.\.", proc.stderr)
    assert started == [("r", "1"), ("d", "1"), ("d", "2"), ("r", "2"), ("r", "3"), ("d", "3"), ("c", "")]
    md = (tmp_path / "out" / "results.md").read_text()
    assert all(row in md for row in ("| (r) resident |", "| (c) fast |", "| (d) bare |"))
    assert "Benchmark time:" in md
    saved = json.loads((tmp_path / "out" / "results.json").read_text())
    # The settings and verdicts beside the figures, as harness.json has them: the figures alone did not say.
    assert saved["settings"] == {
        "device": "cpu",
        "configs": ["small:64:fp32:rcd"],
        "variants": "abrgcd",
        "epochs": 3,
        "warmup_steps": 10,
        "pairs": 3,
        "train_size": 256,
        "seed": 0,
        "interrupted": None,
    }
    assert saved["verdicts"]["small:64:fp32:rcd"][0].startswith(("- PASS: ", "- FAIL: ", "- UNDECIDED: "))
    results = saved["results"]["small:64:fp32:rcd"]
    assert [f["variant"] for f in results] == ["r", "d", "c"]
    assert all(f["samples_per_s"] > 0 for f in results)
    figures = {f["variant"]: f for f in results}
    r, d = figures["r"], figures["d"]
    assert len(r["runs"]) == len(d["runs"]) == 3 and len(r["epochs"]) == len(d["epochs"]) == 9
    assert len(figures["c"]["runs"]) == 1 and len(figures["c"]["epochs"]) == 3
    ratios = sorted(d_s / r_s for r_s, d_s in zip(r["runs"], d["runs"], strict=True))
    assert "((r) and (d): 3 interleaved runs each)" in md
    assert f"runs at {statistics.median(ratios):.3f}× the bare loop, the median of 3 interleaved pairs " \
           f"({ratios[0]:.3f}–{ratios[-1]:.3f})" in md  # fmt: skip


def test_a_gpu_target_whose_configs_did_not_run_shows_no_figure(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # An H200 check cut the pipelines before LargeNet's config: its target read "0 samples/s, not run".
    monkeypatch.syspath_prepend(str(REPO / "benchmarks"))
    from pipelines import Figure, gpu_targets

    fast = Figure("c", "fast", 0.0325, 1_536_999.0, [0.0325] * 3, None)
    lines = gpu_targets({"medium:4096:amp_bf16:c": [fast]})
    assert lines[0] == ("- PASS: MediumNet, any batch ≤ 4,096: 1,536,999 samples/s, medium:4096:amp_bf16:c (c) "
                        "(target ≥ 1,000,000)")  # fmt: skip
    assert lines[1] == "- FAIL: MediumNet, batch 256, fp32 or tf32: no figure (not run, or failed) (target ≥ 450,000)"
    assert lines[2] == "- FAIL: LargeNet, any batch and precision: no figure (not run, or failed) (target ≥ 250,000)"
    # --strict counts them apart: targets its --configs left out, not targets missed.
    from pipelines import check_strict

    with pytest.raises(SystemExit) as stop:
        check_strict(lines)
    assert stop.value.code == 1
    assert capsys.readouterr().err.strip() == ("bench: error: --strict: 2 FAIL (2 of them with no figure: not run, or "
                                               "failed) of 3 target line(s); see them above")  # fmt: skip


def test_a_cpu_targets_line_is_undecided_where_the_epochs_varied_more_than_its_margin(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # On a loaded box (epochs 118% apart) "FAIL: (c) is 1.31× (a)" read as firm beside the (r)/(d) line's UNDECIDED
    # from the same epochs; a quiet rerun gave PASS at 3.18×.
    monkeypatch.syspath_prepend(str(REPO / "benchmarks"))
    from pipelines import Figure, verdicts

    def figure(variant: str, epochs: list[float]) -> Figure:
        median = statistics.median(epochs)
        return Figure(variant, variant, median, 1000 / median, epochs, None)

    cpu = torch.device("cpu")
    noisy = [figure("a", [1.0, 1.0, 1.0]), figure("c", [0.4, 0.76, 1.3]), figure("d", [0.7, 0.7, 0.7])]
    lines = verdicts("small:128:fp32:acd", noisy, cpu)
    assert lines[0].startswith(
        "- UNDECIDED: (c) is 1.32× (a) (target ≥ 2×; their epochs varied by up to 118.4%, "
        "more than the 34.2% between the ratio and the target, so this run cannot tell)"
    )
    assert lines[1].startswith("- UNDECIDED: (c) runs at 0.92× the bare loop's speed (target ≥ 0.90; ")
    steady = [figure("a", [1.0, 1.01, 1.0]), figure("c", [0.4, 0.41, 0.4]), figure("d", [0.38, 0.38, 0.39])]
    assert verdicts("small:128:fp32:acd", steady, cpu)[:2] == [
        "- PASS: (c) is 2.50× (a) (target ≥ 2×)",
        "- PASS: (c) runs at 0.95× the bare loop's speed (target ≥ 0.90)",
    ]


def test_the_harness_verdict_says_when_one_run_cannot_judge_3_percent(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(REPO / "benchmarks"))
    from pipelines import Figure, pooled, verdicts

    def pair(r_epochs: list[float], d_epochs: list[float]) -> str:
        r, d = sorted(r_epochs)[1], sorted(d_epochs)[1]
        figures = [
            Figure("r", "resident", r, 1000 / r, r_epochs, None),
            Figure("d", "bare", d, 1000 / d, d_epochs, None),
        ]
        return verdicts("medium:64:fp32", figures, torch.device("cuda"))[0]

    steady = pair([1.02, 1.021, 1.019], [1.0, 1.001, 0.999])
    assert steady.startswith("- PASS:") and "0.980× the bare loop" in steady and "cannot tell" not in steady
    slow = pair([1.05, 1.051, 1.049], [1.0, 1.001, 0.999])
    assert slow.startswith("- FAIL:") and "0.952×" in slow and "cannot tell" not in slow
    noisy = pair([1.02, 1.06, 1.0], [1.0, 1.001, 0.999])  # r's epochs 5.9% apart: neither PASS nor FAIL
    assert noisy.startswith("- UNDECIDED:") and "0.980×" in noisy
    assert "varied by up to 5.9%, more than the 3% judged, so this run alone cannot tell" in noisy
    assert pair([1.06, 1.061, 1.0], [1.0, 1.001, 0.999]).startswith("- UNDECIDED:")  # and not a FAIL at 0.943

    # Pairs: the median of the pairs' ratios decides, not one noisy pair, and not the epochs' spread.
    def pairs(r_runs: list[float], d_runs: list[float]) -> str:
        figures = [
            pooled([Figure(v, v, t, 1000 / t, [t * 0.9, t, t * 1.1], None) for t in times])
            for v, times in (("r", r_runs), ("d", d_runs))
        ]
        assert figures[0].runs == r_runs and len(figures[0].epochs) == 3 * len(r_runs)
        return verdicts("small:128:fp32", figures, torch.device("cpu"))[0]

    one_slow = pairs([1.0, 1.3, 1.01], [1.0, 1.0, 1.0])  # ratios 1.0, 0.769, 0.990: on both sides of 0.97
    assert one_slow.startswith("- UNDECIDED:") and "0.990× the bare loop, the median of 3 interleaved pairs " \
        "(0.769–1.000)" in one_slow and "the pairs fall on both sides of it" in one_slow  # fmt: skip
    assert "cannot tell" not in one_slow  # the epochs' 20% spread is not the judge when there are pairs
    clear = pairs([1.0, 1.01, 1.02, 1.0], [1.0, 1.0, 1.0, 1.0])
    assert clear.startswith("- PASS:") and "median of 4 interleaved pairs (0.980–1.000)" in clear
    assert "both sides" not in clear
    costly = pairs([1.1, 1.1, 1.05], [1.0, 1.0, 1.0])
    assert costly.startswith("- FAIL:") and "0.909×" in costly and "both sides" not in costly
    assert pairs([1.1, 1.1, 1.0], [1.0, 1.0, 1.0]).startswith("- UNDECIDED:")  # one pair at 1.0


@pytest.mark.slow
def test_harness_alternates_epochs_and_judges_the_median_ratios_interval(tmp_path: Path) -> None:
    args = ("--device", "cpu", "--configs", "small:64:fp32", "--train-size", "256", "--rounds", "10", "--out", "out")
    proc = _script("harness.py", tmp_path, *args)
    assert proc.returncode == 0, proc.stderr
    rounds = re.findall(r"round (\d+)/10: \(([rd])\) [0-9.]+ s, then \(([rd])\)", proc.stderr)
    assert [(int(i), a + b) for i, a, b in rounds] == [(i + 1, "rd" if i % 2 == 0 else "dr") for i in range(10)]
    data = json.loads((tmp_path / "out" / "harness.json").read_text())
    assert data["settings"] == {"device": "cpu", "rounds": 10, "seconds": None, "train_size": 256, "seed": 0,
                                "control": False, "interrupted": None}  # fmt: skip
    result = data["results"][0]
    assert len(result["pairs"]) == result["rounds_finished"] == 10 and result["samples"] == 256
    ratios = sorted(d / r for r, d in result["pairs"])
    # 10 rounds: the 95% interval of the median is the 2nd smallest to the 2nd largest ratio (sign-test table).
    md = (tmp_path / "out" / "harness.md").read_text()
    assert f"runs at {statistics.median(ratios):.3f}× the bare loop's speed, the median of 10 alternated rounds; " \
           f"its 95% confidence interval, {ratios[1]:.3f}–{ratios[8]:.3f}," in md  # fmt: skip
    verdict = "PASS" if ratios[1] >= 0.97 else "FAIL" if ratios[8] < 0.97 else "UNDECIDED"
    assert f"- {verdict}: bench's loop (r)" in md and "| (r) bench's loop |" in md and "| (d) bare |" in md
    assert result["verdict"].startswith(f"- {verdict}: ")
    # And in µs a step (256 images at 64: 4 steps), from the same rounds: the median difference, its interval by
    # the same table, the bare loop's own step, and what 3% of it allows.
    diffs = sorted((r - d) / 4 * 1e6 for r, d in result["pairs"])
    bare = statistics.median(d for _, d in result["pairs"]) / 4 * 1e6
    assert result["steps"] == 4 and result["per_step"] == pytest.approx(
        {"median_us": statistics.median(diffs), "low_us": diffs[1], "high_us": diffs[8], "bare_step_us": bare,
         "allowed_us": bare * (1 / 0.97 - 1)})  # fmt: skip
    assert (f"- Per step: (r) − (d) = {statistics.median(diffs):+,.1f} µs, the median of the rounds' differences ÷ 4 "
            f"steps (95% interval {diffs[1]:+,.1f} to {diffs[8]:+,.1f} µs), on a bare step of {bare:,.0f} µs: the "
            f"target allows up to {bare * (1 / 0.97 - 1):+,.1f} µs") in md  # fmt: skip


def test_the_harness_control_times_two_identical_bare_loops_and_judges_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # What the method reads where there is nothing to find: (r) replaced by a second bare loop, built in its place.
    monkeypatch.syspath_prepend(str(REPO / "benchmarks"))
    import harness

    built: list[str] = []
    real_bench, real_bare = harness.bench_loop, harness.bare_loop
    monkeypatch.setattr(harness, "bench_loop", lambda *a: built.append("r") or real_bench(*a))
    monkeypatch.setattr(harness, "bare_loop", lambda *a: built.append("d") or real_bare(*a))
    harness.main(["--device", "cpu", "--configs", "small:64:fp32", "--train-size", "256", "--rounds", "6",
                  "--control", "--out", str(tmp_path / "out")])  # fmt: skip
    assert built == ["d", "d"]  # bench's loop is never built
    err = capsys.readouterr().err
    assert re.findall(r"round (\d)/6: \((d′?)\)", err) == [(str(i + 1), "d′" if i % 2 == 0 else "d") for i in range(6)]
    data = json.loads((tmp_path / "out" / "harness.json").read_text())
    assert data["settings"]["control"] is True
    result = data["results"][0]
    ratios = sorted(d / r for r, d in result["pairs"])
    md = (tmp_path / "out" / "harness.md").read_text()
    assert md.startswith("## The method's control: two identical bare loops (d′) and (d), an epoch each in turn")
    assert "| (d′) a second bare loop |" in md and "(r)" not in md
    line = (f"- CONTROL: a second bare loop (d′) runs at {statistics.median(ratios):.3f}× the speed of (d), its twin, "
            f"the median of 6 alternated rounds (95% interval {ratios[0]:.3f}–{ratios[5]:.3f})")  # fmt: skip
    assert result["verdict"].startswith(line) and line in md
    assert "PASS" not in md and "FAIL" not in md and "UNDECIDED" not in md and "target" not in md


def test_the_harness_verdict_reads_the_median_ratios_confidence_interval(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(REPO / "benchmarks"))
    from harness import median_interval, min_rounds, verdict

    # The sign test's order statistics (the standard table): n=6 → 1st–6th, 20 → 6th–15th, 40 → 14th–27th.
    assert median_interval([float(i) for i in range(1, 7)]) == (3.5, 1.0, 6.0)
    assert median_interval([float(i) for i in range(1, 21)]) == (10.5, 6.0, 15.0)
    assert median_interval([float(i) for i in range(40, 0, -1)]) == (20.5, 14.0, 27.0)
    assert min_rounds() == 6
    with pytest.raises(ValueError, match="5 values give no 95% interval for their median; at least 6"):
        median_interval([1.0] * 5)
    too_few = verdict([1.0] * 5)
    assert too_few.startswith("- UNDECIDED: 5 rounds finished; a 95% interval of the median needs at least 6")
    assert too_few.endswith("give it more (--rounds N, or a longer --seconds S, which counts the start-up too)")

    steady = verdict([0.99, 0.985, 0.995, 0.99, 0.98, 1.0, 0.99, 0.992, 0.988, 0.99])
    assert steady.startswith("- PASS: bench's loop (r) runs at 0.990× the bare loop's speed, the median of 10")
    assert "its 95% confidence interval, 0.985–0.995, is at or above the target ≥ 0.97" in steady
    costly = verdict([0.95, 0.96, 0.94, 0.955, 0.95, 0.965, 0.95, 0.96])
    assert costly.startswith("- FAIL:") and "lies below the target" in costly
    # One slow round cannot fail it, nor one fast round pass it: the interval's ends are order statistics.
    noisy = verdict([1.0, 0.8, 0.99, 0.96, 1.02, 0.95, 0.97, 1.01])
    assert noisy.startswith("- UNDECIDED:") and "straddles the target" in noisy
    assert noisy.endswith(": more rounds would narrow it (--rounds N, or --seconds S for as many as fit)")


@pytest.mark.parametrize(("target", "code"), [(0.01, 0), (100.0, 1)])
def test_strict_exits_1_unless_every_target_line_passes(
    script_main, monkeypatch: pytest.MonkeyPatch, target: float, code: int
) -> None:
    # For CI: without --strict a missed target exits 0 (a benchmark's figures are its result). A target the loop
    # cannot miss, then one it cannot meet: the same real rounds, judged PASS and FAIL.
    monkeypatch.syspath_prepend(str(REPO / "benchmarks"))
    import harness

    monkeypatch.setattr(harness, "HARNESS_TARGET", target)
    args = ("--device", "cpu", "--configs", "small:64:fp32", "--train-size", "128", "--rounds", "6")
    proc = script_main("harness.py", *args, "--strict")
    assert proc.returncode == code, proc.stderr
    assert ("- PASS: bench's loop" if code == 0 else "- FAIL: bench's loop") in proc.stdout
    if code:
        assert proc.stderr.splitlines()[-1] == "bench: error: --strict: 1 FAIL of 1 target line(s); see them above"
    # A run whose variants judge nothing has shown nothing: under --strict that is no pass either.
    proc = script_main("pipelines.py", "--device", "cpu", "--configs", "small:64:fp32:d", "--train-size", "128",
                       "--strict")  # fmt: skip
    assert proc.returncode == 1 and "| (d) bare" in proc.stdout
    assert proc.stderr.splitlines()[-1] == ("bench: error: --strict: no target line was judged (no config ran the "
                                            "variants a target needs)")  # fmt: skip


def test_harness_seconds_fits_as_many_rounds_as_the_time_allows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # gpu-check gives the harness whatever time is left, which its limit would otherwise cut mid-round. The
    # time counts from the command's start (its imports): here, in-process, from now.
    monkeypatch.syspath_prepend(str(REPO / "benchmarks"))
    import harness

    started = time.monotonic()
    monkeypatch.setattr(bench, "STARTED", started)
    harness.main(["--device", "cpu", "--configs", "small:64:fp32", "small:32:fp32", "--train-size", "256",
                  "--seconds", "8", "--out", str(tmp_path / "out")])  # fmt: skip
    took = time.monotonic() - started
    assert took <= 8.5, took  # a round is ~0.1 s here; half a second for a slow one on a loaded box
    out = capsys.readouterr().out
    assert "as many rounds as fit in 8 s (r d, then d r, …)" in out
    assert re.search(r"Benchmark time: \d+ s, after \d+ s of start-up", out), out  # --seconds counts both
    data = json.loads((tmp_path / "out" / "harness.json").read_text())
    assert data["settings"]["seconds"] == 8 and data["settings"]["rounds"] == 10_000
    # Each config its share of the time: the first does not take it all, the second still finishes rounds. (Not
    # a count: on a box loaded by three other busy processes each finished just one round of its 4 s.)
    finished = [r["rounds_finished"] for r in data["results"]]
    assert all(n >= 1 for n in finished), finished
    assert all("alternated rounds" in r["verdict"] for r in data["results"])

    # Time spent before a config could start (here, as if the imports had taken 10 s): it does not start, and
    # says so. Each used to load its data and run its warm-up epochs anyway, to judge 0 rounds.
    monkeypatch.setattr(bench, "STARTED", time.monotonic() - 10)
    harness.main(["--device", "cpu", "--configs", "small:64:fp32", "small:32:fp32", "--seconds", "5"])
    out = capsys.readouterr().out
    assert out.count("- not started: the 5 s of --seconds were spent before it could start") == 2
    assert out.count("- UNDECIDED: 0 rounds finished") == 2
    # Time left at its start, but less than its data and warm-up epochs take: it stops after the epoch that passed
    # the deadline, and says so. It ran its warm-up on past it (a large config at --seconds 6 took 16 s) and
    # showed 0 rounds without a word of why.
    monkeypatch.setattr(bench, "STARTED", time.monotonic() - 2.5)  # 1.5 s of the 5 left, less the writing's 1
    harness.main(["--device", "cpu", "--configs", "small:64:fp32", "--train-size", "16384", "--seconds", "5"])
    out = capsys.readouterr().out
    assert "- not started: its share of --seconds ended in its data and warm-up epochs (" in out, out


def test_a_harness_config_that_fails_is_its_own_line_and_the_others_still_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.syspath_prepend(str(REPO / "benchmarks"))
    import harness

    real = harness.run_config

    def out_of_memory_on_the_first(spec: str, *args: object) -> None:
        if spec == "medium:64:fp32":  # what a CUDA OOM would do halfway through its rounds
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
        real(spec, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(harness, "run_config", out_of_memory_on_the_first)
    with pytest.raises(SystemExit) as ended:  # the other config still ran, but the harness did not pass
        harness.main(["--device", "cpu", "--configs", "medium:64:fp32", "small:64:fp32", "--train-size", "128",
                      "--rounds", "6", "--out", str(tmp_path / "out")])  # fmt: skip
    assert ended.value.code == 1
    out, err = capsys.readouterr()
    assert err.splitlines()[-1] == "bench: error: medium:64:fp32 stopped before its rounds finished; see its line above"
    assert "- stopped: CUDA out of memory. Tried to allocate 2.00 GiB" in out
    assert "- UNDECIDED: 0 rounds finished" in out and "the median of 6 alternated rounds" in out
    results = json.loads((tmp_path / "out" / "harness.json").read_text())["results"]
    assert [(r["spec"], r["rounds_finished"], bool(r["error"])) for r in results] == [
        ("medium:64:fp32", 0, True), ("small:64:fp32", 6, False)]  # fmt: skip


def test_a_step_option_that_fails_at_run_time_is_a_failed_row_and_exit_1(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.syspath_prepend(str(REPO / "benchmarks"))
    import step_options

    real = step_options.measure

    def out_of_memory(overrides: list[str], out: Path) -> tuple[float, float | None, float | None]:
        # What a CUDA OOM would do, which the up-front check cannot see: fused Adam everywhere, and the plain
        # baseline of the second config (it stopped the whole benchmark, unwritten).
        if "step.adam=fused" in overrides or ("batch_size=16" in overrides and "step.adam=foreach" not in overrides):
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real(overrides, out)

    monkeypatch.setattr(step_options, "measure", out_of_memory)
    with pytest.raises(SystemExit) as ended:
        step_options.main(["--device", "cpu", "--configs", "small:32:fp32", "small:16:fp32", "--train-size", "64",
                           "--epochs", "1", "--options", "step.adam=fused", "step.adam=foreach",
                           "--out", str(tmp_path / "out")])  # fmt: skip
    assert ended.value.code == 1
    out, err = capsys.readouterr()
    saved = json.loads((tmp_path / "out" / "step_options.json").read_text())
    assert saved["settings"] == {"device": "cpu", "configs": ["small:32:fp32", "small:16:fp32"], "epochs": 1,
                                 "train_size": 64, "warmup_steps": 10,
                                 "options": ["step.adam=fused", "step.adam=foreach"]}  # fmt: skip
    rows = saved["rows"]
    assert [(r["config"], r["option"], r["samples_per_s"] is None, r["ratio"] is None) for r in rows] == [
        ("small:32:fp32", "plain", False, False), ("small:32:fp32", "step.adam=fused", True, True),
        ("small:32:fp32", "step.adam=foreach", False, False), ("small:16:fp32", "plain", True, True),
        ("small:16:fp32", "step.adam=fused", True, True), ("small:16:fp32", "step.adam=foreach", False, True),
    ]  # fmt: skip
    assert "| small:32:fp32 | step.adam=fused | failed |" in out
    assert err.splitlines()[-1] == "bench: error: 3 row(s) failed: they say `failed`, and the reason is above"
    # One epoch each: how far apart its epochs were is not known, and no ratio is called noise.
    assert "| config | option | samples/s | × plain | epochs apart | warm-up (s) |" in out and "(noise) |" not in out
    assert all(row["epochs_apart"] is None for row in rows)


def test_a_step_options_ratio_within_its_runs_noise_says_so(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    # On a shared CPU one option read 0.09x, then 1.33x, of the plain step, with nothing to say it was noise.
    # Made-up figures: the plain step's epochs 20% apart, each option's 10%. 1.25x and 0.8x are within that,
    # either way from 1; 1.5x is not.
    monkeypatch.syspath_prepend(str(REPO / "benchmarks"))
    import step_options

    rates = {"plain": 1000.0, "step.adam=fused": 1250.0, "step.adam=foreach": 800.0, "step.channels_last=true": 1500.0}

    def made_up(overrides: list[str], out: Path) -> tuple[float, float | None, float | None]:
        option = next((o for o in overrides if o in rates), "plain")
        return rates[option], 0.1, 0.2 if option == "plain" else 0.1

    monkeypatch.setattr(step_options, "measure", made_up)
    step_options.main(["--device", "cpu", "--configs", "small:32:fp32", "--train-size", "64", "--out", str(tmp_path),
                       "--options", "step.adam=fused", "step.adam=foreach", "step.channels_last=true"])  # fmt: skip
    out = capsys.readouterr().out
    assert "| small:32:fp32 | step.adam=fused | 1,250 | 1.25 (noise) | 10% | 0.1 |" in out
    assert "| small:32:fp32 | step.adam=foreach | 800 | 0.80 (noise) | 10% | 0.1 |" in out
    assert "| small:32:fp32 | step.channels_last=true | 1,500 | 1.50 | 10% | 0.1 |" in out
    rows = json.loads((tmp_path / "step_options.json").read_text())["rows"]
    assert [row["within_noise"] for row in rows] == [False, True, True, False]


def _terminated(script: str, args: list[str], cwd: Path, once: str) -> tuple[int, str, str]:
    """A benchmark script run as a user would, sent SIGTERM (a time limit's) once a line of its progress on stderr
    starts with ``once``: its exit status, stdout and stderr."""
    proc = subprocess.Popen(
        [sys.executable, str(REPO / "benchmarks" / script), *args], cwd=cwd, env=offline_env(),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert proc.stderr is not None
    for line in proc.stderr:
        if line.startswith(once):
            break
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    return proc.returncode, out, err


@pytest.mark.slow
def test_sigterm_ends_the_harness_with_the_rounds_it_finished(tmp_path: Path) -> None:
    args = ["--device", "cpu", "--configs", "small:64:fp32", "--train-size", "256", "--rounds", "500"]
    returncode, out, err = _terminated("harness.py", args, tmp_path, once="  round 8/500")
    assert returncode == 143, err
    finished = int(re.search(r"the median of (\d+) alternated rounds", out)[1])  # type: ignore[index]
    assert finished >= 8 and f"· {finished} rounds" in out and "Cut short by SIGTERM: 0 of 1 configs done." in out
    assert err.strip().splitlines()[-1] == "bench: interrupted by SIGTERM: the rounds that finished are judged above"
    assert "Traceback" not in err


@pytest.mark.parametrize(
    ("script", "args", "expected"),
    [
        ("pipelines.py", ["--configs", "bogus"], "write model:batch:precision[:variants]"),
        ("pipelines.py", ["--configs", "nonet:64:fp32"], "unknown model 'nonet'"),
        ("step_options.py", ["--configs", "medium:64:fp32:rc"], "write model:batch:precision,"),
        ("pipelines.py", ["--variants", "rzq"], "no variant q, z; choose from a, b, r, d, g, c"),
        ("pipelines.py", ["--configs", "medium:64:fp32:zz"], "no variant z; choose from a, b, r, d, g, c"),
        ("pipelines.py", ["--warmup-steps", "-1"], "--warmup-steps -1: warmup_steps=-1"),
        ("pipelines.py", ["--seed", "-1"], "--seed -1: seed=-1"),
        ("pipelines.py", ["--pairs", "0"], "--pairs 0: at least 1"),
        ("pipelines.py", ["--epochs", "2000000"], "--epochs 2000000: epochs=2000000 is out of range"),
        ("step_options.py", ["--epochs", "0"], "--epochs 0: epochs=0 is out of range"),
        ("step_options.py", ["--out", "/etc/passwd"], "--out=/etc/passwd: that is a file, not a folder"),
        ("pipelines.py", ["--out", "/etc/passwd"], "--out=/etc/passwd: that is a file, not a folder"),
        ("pipelines.py", ["--train-size", "-5"], "dataset.train_size=-5 is out of range"),
        ("step_options.py", ["--train-size", "0"], "dataset.train_size=0 is out of range"),
        ("harness.py", ["--rounds", "5"], "--rounds 5: from 6 (for a 95% interval of the median) to 10,000"),
        ("harness.py", ["--seconds", "0"], "--seconds 0: more than 0 and at most 86,400 (a day)"),
        ("harness.py", ["--seconds", "nan"], "--seconds nan: more than 0 and at most 86,400 (a day)"),
        ("harness.py", ["--train-size", "100"], "--train-size 100: smaller than small:128:fp32's batch of 128"),
        ("harness.py", ["--train-size", "0"], "dataset.train_size=0 is out of range"),
        # Judged on the default batch of 64, --train-size 32 was refused for configs of batch 16.
        ("harness.py", ["--configs", "small:16:fp32", "--train-size", "8"],
         "--train-size 8: smaller than small:16:fp32's batch of 16"),
        # An epoch of one partial batch of 256 was timed and judged as batch 512, PASS included.
        ("pipelines.py", ["--train-size", "256", "--configs", "small:512:fp32:rd"],
         "--train-size 256: smaller than small:512:fp32:rd's batch of 512"),
        # A batch out of range is the config's fault: it was blamed on the --train-size (its default) never typed.
        ("pipelines.py", ["--configs", "small:99999999999:fp32"],
         "--configs 'small:99999999999:fp32': batch_size=99999999999 is out of range"),
        ("pipelines.py", ["--configs", "small:64:fp32:rd", "--variants", "a"],
         "--variants a: small:64:fp32:rd runs none of them; name one of its variants (rd), or give the config"),
        # Options were checked only when their turn came, after the baseline's minutes: a `failed` row, exit 0
        # (hydra.* was not even that: ignored, and "timed" as noise).
        ("step_options.py", ["--options", "step.compile=cudagraph"],
         "--options 'step.compile=cudagraph': step.compile=cudagraph needs CUDA"),
        ("step_options.py", ["--options", "step.adam=fused", "garbage"], "--options 'garbage': "),
        ("step_options.py", ["--options", "lr=nan"], "lr=nan is out of range"),
        ("harness.py", ["--strict", "--control"], "--strict with --control: the control is shown, never judged"),
        ("step_options.py", ["--options", "hydra.run.dir=/tmp/x"], "not hydra.*"),
        ("step_options.py", ["--options", "device=cuda"], "the device is --device's"),
        ("step_options.py", ["--options", ""], "--options '': an empty option; give each as one quoted argument"),
        # A row of LargeNet was timed "× plain" against the config's own model.
        ("step_options.py", ["--options", "model=large"], "model is the run's, not a step option"),
        ("step_options.py", ["--options", "step.adam=fused loader=dataloader"], "loader is the run's, not a step"),
        # Each failed after the other pipelines' minutes: exit 1 with a failed row.
        ("pipelines.py", ["--train-size", "256", "--configs", "small:128:fp32:g"],
         "--configs small:128:fp32:g: (g) fast, captured only: step.compile=cudagraph needs CUDA"),
        *[(script, ["--device", "cuda"], "device=cuda but no CUDA GPU is usable here")
          for script in ("pipelines.py", "step_options.py") if not torch.cuda.is_available()],
    ],
)  # fmt: skip
def test_bad_input_is_one_line_and_exit_2(script_main, script: str, args: list[str], expected: str) -> None:
    proc = script_main(script, *(["--device", "cpu"] if "--device" not in args else []), *args)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.count("\n") == 1 and expected in proc.stderr, proc.stderr


@pytest.mark.parametrize(
    ("script", "kept"),
    [("pipelines.py", "results.json"), ("step_options.py", "step_options.md"), ("harness.py", "harness.json")],
)
def test_out_never_replaces_an_earlier_runs_results(script_main, tmp_path: Path, script: str, kept: str) -> None:
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / kept).write_text("the figures of an earlier run")
    proc = script_main(script, "--device", "cpu", "--out", "out")
    assert proc.returncode == 2 and proc.stdout == ""
    assert f"--out out: it holds {kept} from an earlier run, which is kept; choose a new folder" in proc.stderr
    assert (tmp_path / "out" / kept).read_text() == "the figures of an earlier run"


@pytest.mark.slow
def test_sigterm_ends_a_benchmark_with_what_it_measured(tmp_path: Path) -> None:
    args = ["--device", "cpu", "--configs", "small:64:fp32:rd", "small:32:fp32:rd", "--train-size", "2048"]
    # The first config's table is out once the second config starts.
    returncode, out, err = _terminated("pipelines.py", args, tmp_path, once="small:32:fp32:rd")
    assert returncode == 143, err
    assert "| (r) resident |" in out and "Cut short by SIGTERM: 1 of 2 configs ran to the end" in out
    assert err.strip().splitlines()[-1].startswith("bench: interrupted by SIGTERM: 1 of 2 configs ran to the end")
    assert err.strip().endswith("the figures are above")


@pytest.mark.slow
def test_a_config_cut_short_keeps_the_variants_that_finished(tmp_path: Path) -> None:
    # gpu-check stops the pipelines part with SIGTERM at its time limit: a cut during (d) lost (a) and (r) too,
    # and the closing line said "their figures are above" over no table at all.
    args = ["--device", "cpu", "--configs", "small:64:fp32:rd", "--train-size", "2048", "--out", "o"]
    returncode, out, err = _terminated("pipelines.py", args, tmp_path, once="  (d) bare")  # (r) has finished
    assert returncode == 143, err
    assert "| (r) resident |" in out and "| (d) bare |" not in out
    assert "- cut short by SIGTERM: the variants above finished; no verdict on an unfinished config" in out
    assert err.strip().splitlines()[-1] == ("bench: interrupted by SIGTERM: 0 of 1 configs ran to the end; "
                                            "small:64:fp32:rd was cut short: the variants that finished are shown; "
                                            "the figures are above")  # fmt: skip
    saved = json.loads((tmp_path / "o" / "results.json").read_text())["results"]
    assert [f["variant"] for f in saved["small:64:fp32:rd"]] == ["r"]
    assert "Traceback" not in err


def test_gpu_check_parts_share_six_minutes() -> None:
    script = (REPO / "benchmarks" / "gpu_check.sh").read_text()
    reserves_line = re.search(r'^RESERVES="([^"]+)"$', script, re.MULTILINE)
    end = re.search(r"^END=\$\(\(START \+ (\d+)\)\)$", script, re.MULTILINE)
    func = re.search(r"^limit\(\) \{.*?^\}$", script, re.MULTILINE | re.DOTALL)
    assert reserves_line and end and func
    reserves = {part: int(s) for part, s in re.findall(r"(\S+):(\d+)", reserves_line[1])}
    # Every part runs under `timed PART SIGNAL GRACE "$secs"` after secs=$(limit PART GRACE), in order.
    parts = re.findall(r"^secs=\$\(limit (\S+) (\d+)\)$", script, re.MULTILINE)
    timed = re.findall(r'^ *timed (\S+) \w+ (\d+) "\$secs" ', script, re.MULTILINE)
    assert parts == timed and [part for part, _ in parts] == list(reserves)
    assert len(parts) == 5  # the tests, the user's sweep, the pipelines, max_batch and the harness benchmark
    # The reserves, the GPU query before them (6-8 s on an H100 and two H200s) and 2 s for the summary fit in 360 s.
    assert sum(reserves.values()) + 8 <= int(end[1]) <= 358, (sum(reserves.values()), end[1])

    def limit(part: str, grace: int, elapsed: int) -> int:
        """What limit() gives ``part`` when the check started ``elapsed`` seconds ago (run by sh)."""
        env = f'RESERVES="{reserves_line[1]}"; END=$(($(date +%s) - {elapsed} + {end[1]}))'
        proc = subprocess.run(["sh", "-c", f"{env}\n{func[0]}\nlimit {part} {grace}"], capture_output=True,
                              text=True, timeout=10)  # fmt: skip
        assert proc.returncode == 0 and proc.stderr == "", proc.stderr
        return int(proc.stdout)

    later = sum(reserves.values()) - reserves["pytest-cuda"]
    assert abs(limit("pytest-cuda", 5, elapsed=7) - (351 - later - 5)) <= 1  # its reserve, less its grace
    # A query of 6 s and tests done in 100: the sweep gets its reserve, what the tests left of theirs and the
    # seconds no reserve holds (the check's 358, less the query and the reserves), less its grace.
    sweep = limit("sweep", 2, elapsed=106)
    unreserved = 358 - 6 - sum(reserves.values())
    assert abs(sweep - (reserves["sweep"] + reserves["pytest-cuda"] - 100 + unreserved - 2)) <= 1, sweep
    assert limit("pipelines", 2, elapsed=500) == 1  # time is up: 1 s, never 0 (timeout 0 is no limit)
    # max_batch and the harness have no reserve of their own: they run in what the others left, if that is enough.
    assert reserves["max_batch"] == reserves["harness"] == 0 and limit("harness", 2, elapsed=330) == 358 - 330 - 2
    minimum = {}
    for part, name in (("max_batch", "MAX_BATCH_MIN"), ("harness", "HARNESS_MIN")):
        found = re.search(rf"^{name}=(\d+)$", script, re.MULTILINE)
        assert found and re.search(rf'^if \[ "\$secs" -ge \${name} \]; then$', script, re.MULTILINE)
        minimum[part] = int(found[1])
    # README "GPU check" states the same reserves (it had kept the tests' and the harness's old ones).
    r = reserves
    stated = (f"(the CUDA tests {r['pytest-cuda']} s, the sweep {r['sweep']}, the pipelines {r['pipelines']}, "
              "each with its grace")  # fmt: skip
    readme = " ".join((REPO / "README.md").read_text().split())
    assert stated in readme and f"The reserves add up to {sum(r.values())} s" in readme
    assert f"if at least {minimum['max_batch']} s are left" in readme
    assert f"if at least {minimum['harness']} s are left" in readme


#: a part that takes 3 s to record what it finished after Ctrl-C: longer than its 2 s of grace
SLOW_TO_STOP = """
import sys, time
try:
    time.sleep(60)
except KeyboardInterrupt:
    time.sleep(3)
    open(sys.argv[1], "w").write("kept")
    sys.exit(130)
"""


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without a GPU")
def test_gpu_check_from_another_folder_is_the_repositorys_and_a_python_without_torch_is_one_line(
    tmp_path: Path,
) -> None:
    # From elsewhere it ran the python on PATH (a traceback: no torch) and named its parts from the wrong folder.
    script = str(REPO / "benchmarks" / "gpu_check.sh")
    env = {k: v for k, v in offline_env().items() if k not in ("PYTHON", "OUT")}
    proc = subprocess.run(["sh", script], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and proc.stderr == "bench: error: gpu-check: no CUDA GPU is visible here\n"
    bare = tmp_path / "python"  # a python without its site-packages: no torch
    bare.write_text(f'#!/bin/sh\nexec "{sys.executable}" -S "$@"\n')
    bare.chmod(0o755)
    proc = subprocess.run(["sh", script], cwd=tmp_path, env={**env, "PYTHON": str(bare)}, capture_output=True,
                          text=True, timeout=120)  # fmt: skip
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.startswith("bench: error: gpu-check: ") and "cannot import torch" in proc.stderr, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and not list(tmp_path.glob("outputs"))


def test_ctrl_c_on_gpu_check_stops_the_running_part_at_once_and_lets_it_finish_writing(tmp_path: Path) -> None:
    # Each part runs under timeout, in a process group of its own, which the terminal's Ctrl-C does not reach:
    # the check waited for the part's limit (minutes), then went on to the next part. The script's own
    # Ctrl-C handling (its `stop` and `timed`), run by sh with a part of 60 s under a limit of 30.
    script = (REPO / "benchmarks" / "gpu_check.sh").read_text()
    handling = re.search(r"^RUNNING=$.*?^timed\(\) \{.*?^\}$", script, re.MULTILINE | re.DOTALL)
    assert handling
    kept = tmp_path / "kept"
    part = f'timed part INT 2 30 "{sys.executable}" -c \'{SLOW_TO_STOP}\' "{kept}"\necho "the next part"\n'
    proc = subprocess.Popen(["sh", "-c", f"OUT={tmp_path}\n{handling[0]}\n{part}"], text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)  # fmt: skip
    time.sleep(1.5)
    started = time.monotonic()
    os.killpg(proc.pid, signal.SIGINT)  # what the terminal does: the shell's group, not the part's
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130 and time.monotonic() - started < 10
    assert err.strip() == f"bench: gpu-check interrupted during part; what ran is in {tmp_path}"
    assert "the next part" not in out
    assert kept.read_text() == "kept"  # its 3 s were not cut at 2: the first Ctrl-C arms no grace
    assert (tmp_path / "part.rc").read_text().strip() == "130"


@pytest.mark.parametrize(("part", "left"), [("harness", 29), ("harness", 40), ("max_batch", 41), ("max_batch", 50)])
def test_gpu_check_runs_an_optional_part_only_with_the_time_it_needs(tmp_path: Path, part: str, left: int) -> None:
    # The harness's 3% takes hundreds of rounds on a GPU; the 14 s the check once reserved ran a few, or none after
    # its start-up. max_batch gave its time to the targets (its search on a GPU is the CUDA tests' too). The
    # script's own part, run by sh, `left` seconds before the end, with a stand-in for python that prints the
    # arguments it was given.
    script = (REPO / "benchmarks" / "gpu_check.sh").read_text()
    body = r'^cat "\$OUT/harness.md"$' if part == "harness" else r"^fi$"
    pieces = [re.search(pattern, script, re.MULTILINE | re.DOTALL) for pattern in (
        r'^RESERVES=".*?^HARNESS_MIN=\d+$', r"^limit\(\) \{.*?^\}$", r"^part\(\) .*?^skip\(\) \{.*?^\}$",
        r"^RUNNING=$.*?^timed\(\) \{.*?^\}$", rf"^secs=\$\(limit {part} 2\).*?{body}",
    )]  # fmt: skip
    assert all(pieces)
    fake = tmp_path / "python"
    fake.write_text('#!/bin/sh\necho "ran: $*"\n')
    fake.chmod(0o755)
    out = tmp_path / "out"
    out.mkdir()
    setting = f"OUT={out}\nPY={fake}\nEND=$(($(date +%s) + {left}))\n"
    # (":" at the end: a part whose report is missing ends in grep's status 1, which the check does not read.)
    proc = subprocess.run(["sh", "-c", setting + "\n".join(p[0] for p in pieces) + "\n:"], capture_output=True,
                          text=True, timeout=30)  # fmt: skip
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    rc = (out / f"{part}.rc").read_text().strip()
    secs = left - 2  # its limit: what is left, less its grace
    if part == "harness":
        md = (out / "harness.md").read_text()
        if left >= 32:  # the benchmark's own end 3 s before its limit
            assert rc == "0" and md.startswith(f"ran: benchmarks/harness.py --device cuda --seconds {secs - 3} "), md
        else:
            assert rc == "skipped" and f"not run, {secs} s left" in proc.stdout
            assert md == (f"- not judged here: bench's loop (r) against the bare loop (d): {secs} s were left for the "
                          "harness, fewer than the 30 it needs; on a GPU 3% takes hundreds of rounds, so run it alone: "
                          'make harness ARGS="--device cuda --seconds 260"\n')  # fmt: skip
        assert md in proc.stdout  # shown, as every part's figures are
    elif left >= 42:
        log = (out / "max_batch.log").read_text()
        assert rc == "0" and log.startswith("ran: -m bench experiment=max_batch model=medium,large "), log
        assert "experiment=max_batch: MediumNet and LargeNet, fp32 and bf16 (" in proc.stdout
    else:
        md = (out / "max_batch.md").read_text()
        assert rc == "skipped" and f"not run, {secs} s left" in proc.stdout and md in proc.stdout
        assert md == (f"- not run here: experiment=max_batch: {secs} s were left for it, fewer than the 40 it needs "
                      "(its search on a GPU is the CUDA tests' too); run it alone: python -m bench "
                      "experiment=max_batch model=medium,large precision=fp32,amp_bf16\n")  # fmt: skip


@pytest.mark.slow
def test_gpu_check_summary_is_a_pass_fail_line_per_promise_and_fails_on_any_fail(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # What gpu_check.sh's parts leave under OUT, made by real CPU runs: the user's sweep (all ok), max_batch
    # (skipped without CUDA), the CUDA tests cut at their limit, a pipelines run
    # whose (g) cannot capture on the CPU, and a harness run cut at its limit.
    monkeypatch.syspath_prepend(str(REPO / "benchmarks"))
    from harness import main as harness
    from harness import verdict
    from pipelines import main as pipelines

    def check(out: Path, seconds: int) -> tuple[int, list[str]]:
        proc = subprocess.run(["sh", str(REPO / "benchmarks" / "gpu_check_summary.sh"), str(out), str(seconds)],
                              capture_output=True, text=True, timeout=60)  # fmt: skip
        assert proc.stderr == ""
        return proc.returncode, proc.stdout.splitlines()

    def benchmark(out: Path, config: str) -> list[str]:
        try:
            pipelines(["--device", "cpu", "--configs", config, "--train-size", "256", "--pairs", "1",
                       "--out", str(out / "pipelines")])  # fmt: skip
            rc = 0
        except SystemExit as ended:  # a pipeline failed: the figures of the others, and exit 1
            rc = ended.code
        (out / "pipelines.md").write_text(capsys.readouterr().out)
        (out / "pipelines.rc").write_text(f"{rc}\n")
        return (out / "pipelines.md").read_text().splitlines()

    tiny = [o for o in TINY if not o.startswith("batch_size=")]
    out = tmp_path / "check"
    assert run_cli(tmp_path, "-m", "batch_size=32,64", *tiny, f"hydra.sweep.dir={out / 'sweep'}").returncode == 0
    max_batch = ("experiment=max_batch", "model=small", "precision=fp32", f"hydra.sweep.dir={out / 'max_batch'}")
    assert run_cli(tmp_path, *max_batch).returncode == 0
    for part, rc in (("sweep", 0), ("max_batch", 0), ("pytest-cuda", 124)):
        (out / f"{part}.rc").write_text(f"{rc}\n")
    # A skip reason with backslashes, which dash's echo would act on.
    skip = "SKIPPED [1] tests/test_energy.py:73: could not import 'pynvml': C:\\new\\path"
    (out / "pytest-cuda.txt").write_text(
        f"collected 600 items / 578 deselected / 22 selected\n"
        f"tests/test_cuda.py::test_x PASSED\n{skip}\n== 19 passed, 3 skipped in 130.02s ==\n"
    )
    # A pipeline that fails at run time (on a GPU: out of memory, say): (g) on the CPU, past the up-front check
    # that refuses it today.
    import pipelines as module

    with monkeypatch.context() as patch:
        patch.setattr(module, "check_variants", lambda *args: None)
        md = benchmark(out, "small:64:fp32:rdg")
    harness(["--device", "cpu", "--configs", "small:64:fp32", "--train-size", "256", "--rounds", "6"])
    (out / "harness.md").write_text(capsys.readouterr().out)
    (out / "harness.rc").write_text("124\n")
    judged = next(line for line in (out / "harness.md").read_text().splitlines() if "bench's loop (r) runs" in line)

    rc, lines = check(out, 361)
    assert rc == 1
    assert "- FAIL: the CUDA tests cut at its time limit: 19 passed, 3 skipped in 130.02s (of 22 selected)" in lines
    assert f"- FAIL: a CUDA test was skipped: {skip.removeprefix('SKIPPED ')}" in lines  # printed as it is
    assert "- PASS: sweep finished: Runs: 2 (2 ok)" in lines
    assert "- FAIL: max_batch finished: Runs: 1 (1 skipped)" in lines
    assert "- FAIL: the pipelines benchmark exit 1" in lines
    assert any(line.startswith("- FAIL: pipeline (g) fast, captured only failed: ") for line in lines), lines
    # The pipelines' one pair of (r) and (d) is a note; the harness's rounds are the verdict, as it printed it.
    pair = next(line for line in md if "bench's loop (r) runs at" in line)
    assert f"- note (one pair cannot judge 3%; the harness part can, below, where it ran): {pair[2:]}" in lines
    assert pair not in lines
    assert "- FAIL: the harness benchmark cut at its time limit" in lines and judged in lines
    # Its cost in µs a step is shown beside the verdict, as a note: a figure, not a second verdict.
    cost = next(line for line in (out / "harness.md").read_text().splitlines() if line.startswith("- Per step: "))
    assert f"- note, {cost[2:]}" in lines and cost not in lines
    assert "- FAIL: gpu-check took 361 s (target ≤ 360 s)" in lines
    marks = [line[2:6] for line in lines if line.startswith("- ")]
    undecided = f", {marks.count('UNDE')} UNDECIDED" if "UNDE" in marks else ""
    counts = f"{marks.count('PASS')} PASS, {marks.count('FAIL')} FAIL{undecided}"
    assert lines[-1] == f"gpu-check: {counts}; figures in {out}"

    # Everything finished, every job ok, no FAIL line: exit 0.
    good = tmp_path / "good"
    for part in ("sweep", "max_batch"):
        shutil.copytree(out / "sweep", good / part)
    for part in ("sweep", "max_batch", "pytest-cuda"):
        (good / f"{part}.rc").write_text("0\n")
    (good / "pytest-cuda.txt").write_text("== 22 passed in 150.00s ==\n")
    benchmark(good, "small:64:fp32:r")
    (good / "harness.rc").write_text("0\n")
    (good / "harness.md").write_text(f"{verdict([0.99] * 8)}\n")  # the harness's own line for 8 rounds at 0.99
    rc, lines = check(good, 359)
    assert rc == 0 and lines[-1] == f"gpu-check: 7 PASS, 0 FAIL; figures in {good}", lines
    # Rounds that cannot tell 3% from noise are no PASS.
    (good / "harness.md").write_text(f"{verdict([0.95, 0.99] * 4)}\n")
    rc, lines = check(good, 359)
    assert rc == 1 and lines[-3].startswith("- UNDECIDED: bench's loop (r) runs at 0.970×"), lines
    assert lines[-1] == f"gpu-check: 6 PASS, 0 FAIL, 1 UNDECIDED; figures in {good}"
    (good / "harness.md").write_text(f"{verdict([0.99] * 8)}\n")
    # A harness the check did not run (too little time left): a note, no verdict; the rest decides the exit
    # status (else the check could never pass on a GPU: its 3% takes hundreds of rounds), and the last line says.
    (good / "harness.rc").write_text("skipped\n")
    (good / "harness.md").write_text("- not judged here: bench's loop (r) against the bare loop (d): 12 s were left\n")
    rc, lines = check(good, 359)
    assert rc == 0 and not [line for line in lines if "the harness benchmark" in line], lines
    assert lines[-3:-1] == ["- note, not judged here: bench's loop (r) against the bare loop (d): 12 s were left",
                            "- PASS: gpu-check took 359 s (target ≤ 360 s)"], lines  # fmt: skip
    assert lines[-1] == f"gpu-check: 5 PASS, 0 FAIL, the harness not judged (see its note); figures in {good}"
    # max_batch too: a note, and the last line names both.
    (good / "max_batch.rc").write_text("skipped\n")
    (good / "max_batch.md").write_text("- not run here: experiment=max_batch: 21 s were left for it\n")
    rc, lines = check(good, 359)
    assert rc == 0 and "- note, not run here: experiment=max_batch: 21 s were left for it" in lines, lines
    assert not [line for line in lines if line.startswith("- FAIL") or "max_batch finished" in line], lines
    assert lines[-1] == (f"gpu-check: 4 PASS, 0 FAIL, max_batch not run (see its note), the harness not judged (see "
                         f"its note); figures in {good}")  # fmt: skip
    (good / "max_batch.rc").write_text("0\n")
    (good / "harness.rc").write_text("0\n")
    (good / "harness.md").write_text(f"{verdict([0.99] * 8)}\n")
    # Tests that all skipped (no GPU seen by pytest) check nothing: FAIL, though pytest exits 0.
    (good / "pytest-cuda.txt").write_text("== 21 skipped in 2.52s ==\n")
    rc, lines = check(good, 359)
    assert rc == 1 and lines[0] == "- FAIL: the CUDA tests finished: 21 skipped in 2.52s", lines
    # A part that never ran (the check stopped before it): no exit status, no report.
    (good / "max_batch.rc").unlink()
    shutil.rmtree(good / "max_batch")
    rc, lines = check(good, 359)
    assert rc == 1 and "- FAIL: max_batch did not run: no report" in lines, lines
