"""`python -m bench.reproduce RUN_DIR`: a fresh run of the saved config, compared side by side with the old.

On the CPU the same config gives the same losses (docs/architecture.md), so a reproduction is checkable; the
original folder is only read.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from bench import reproduce
from conftest import TINY, read_metrics, run_cli

CODE_FIELDS = ("git_commit", "git_dirty", "packages")


@pytest.fixture(scope="module")
def original(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One ordinary two-epoch run; tests only read it (or copy it before changing anything)."""
    root = tmp_path_factory.mktemp("original")
    proc = run_cli(root, *TINY, "epochs=2")
    assert proc.returncode == 0, proc.stderr
    (run_dir,) = (root / "outputs" / "runs").iterdir()
    return run_dir


def snapshot(folder: Path) -> dict[str, tuple[int, bytes]]:
    return {
        str(p.relative_to(folder)): (p.stat().st_mtime_ns, p.read_bytes()) for p in folder.rglob("*") if p.is_file()
    }


def reproduced(cwd: Path) -> Path:
    (new_dir,) = (cwd / "outputs" / "runs").iterdir()
    return new_dir


def losses(run_dir: Path) -> list[float]:
    return [e["loss"] for e in read_metrics(run_dir)["epochs_detail"]]


def squeezed(markdown: str) -> str:
    """Tables are padded for reading; compare their cells, not their padding."""
    return re.sub(r" {2,}", " ", markdown)


def same_code(a: Path, b: Path) -> bool:
    old, new = read_metrics(a)["env"], read_metrics(b)["env"]
    return all(old.get(k) == new.get(k) for k in CODE_FIELDS)


@pytest.mark.slow
def test_a_reproduction_is_a_new_run_with_identical_losses(original: Path, tmp_path: Path) -> None:
    before = snapshot(original)
    proc = run_cli(tmp_path, str(original), module="bench.reproduce")
    assert proc.returncode == 0, proc.stderr
    new_dir = reproduced(tmp_path)
    assert new_dir.name.endswith("_reproduce") and new_dir.resolve() != original.resolve()
    assert snapshot(original) == before  # not a byte or a timestamp changed, nothing added

    assert losses(new_dir) == losses(original) and len(losses(new_dir)) == 2
    assert "Epoch 1/2 | Loss: " in proc.stdout  # the run's lines on the console, as `python -m bench`
    assert "Epoch 2/2 | Loss: " in (new_dir / "bench.log").read_text()
    saved, ran = (yaml.safe_load((d / ".hydra" / "config.yaml").read_text()) for d in (original, new_dir))
    assert ran == saved
    assert (new_dir / ".hydra" / "overrides.yaml").read_text() == (original / ".hydra/overrides.yaml").read_text()

    raw = (new_dir / "reproduce.md").read_text()
    assert raw in proc.stdout
    md = squeezed(raw)
    assert f"reproduced_from: {original.resolve()}" in md
    assert "None: the same config ran." in md
    assert "All 2 compared epoch losses are identical." in md
    assert "| avg epoch time (s) |" in md and "(new / original)" in md
    # The verdict the console gave after each run, and whether it held (a CPU run is compute-bound or input-bound).
    assert re.search(r"Verdict: (original \S+.*; new |\S+.* both times \(original: .*; new: )", md), md
    assert "peak CUDA memory allocated" not in md and "energy" not in md  # CPU: metrics neither run has
    assert "| achieved training compute (TFLOP/s) | 0.0" in md  # significant digits, not 0.00
    assert "| peak RSS of the main process, workers excluded (MB) |" in md and "| test accuracy |" in md
    # The same environment in a line, each field with its value (a table of 20 identical rows had followed
    # "None: the same environment"); the fields that differ, where some do, are the table.
    same = next(line for line in md.splitlines() if line.startswith("None: the same environment: "))
    assert f"torch {read_metrics(original)['env']['torch']}, " in same and " packages.torch " in same
    assert "| torch |" not in md
    if same_code(original, new_dir):  # another commit may land while the suite runs
        assert reproduce.CODE_CHANGED not in proc.stdout + md


@pytest.mark.slow
def test_overrides_go_on_top_and_a_changed_commit_is_warned_about(original: Path, tmp_path: Path) -> None:
    copy, out = tmp_path / "copy", tmp_path / "again"
    shutil.copytree(original, copy)
    metrics = read_metrics(copy)
    metrics["env"]["git_commit"] = "0" * 40  # as if the run had been made from another commit
    (copy / "metrics.json").write_text(json.dumps(metrics))

    proc = run_cli(tmp_path, str(copy), "epochs=1", "--out", str(out), module="bench.reproduce")
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["again", "copy"]
    warning = [line for line in proc.stdout.splitlines() if reproduce.CODE_CHANGED in line]
    assert warning and "git commit 0000000000 → " in warning[0]
    md = squeezed((out / "reproduce.md").read_text())
    assert reproduce.CODE_CHANGED in md
    # What differs, as a table; the rest in a line.
    assert f"| git_commit | {'0' * 40} |" in md and re.search(r"^\d+ of \d+ fields differ\.$", md, re.MULTILINE)
    assert re.search(r"^The other \d+ are the same: python ", md, re.MULTILINE)

    assert losses(out) == losses(original)[:1]
    assert "| epochs | 2 | 1 |" in md
    # Not "0.5× the total time": one epoch against two is no ratio of speed.
    assert "| total time of the timed epochs (s) |" in md and "| n/a (2 timed epochs, then 1) |" in md
    # Nor the loss and accuracy at the end of one epoch against those at the end of two: not a difference.
    assert re.search(r"\| final loss \| [\d.]+ \| [\d.]+ \| n/a \(2 timed epochs, then 1\) \|", md), md
    assert re.search(r"\| test accuracy \| [\d.]+% \| [\d.]+% \| n/a \(2 timed epochs, then 1\) \|", md), md
    assert "| 2 | 2." in md and "| n/a |" in md  # epoch 2 exists only in the original
    assert yaml.safe_load((out / ".hydra" / "overrides.yaml").read_text())[-1] == "epochs=1"
    # The new folder is reproducible in turn: its saved config is what ran, with no differences.
    again = reproduce.plan(reproduce.load_source(out), [])
    assert again.cfg.epochs == 1 and again.config_changes == []
    # A group override changes the keys the group sets, on the saved config.
    assert reproduce.plan(reproduce.load_source(original), ["model=small"]).config_changes == [
        ("model._target_", "bench.models.MediumNet", "bench.models.SmallNet"),
        ("model.name", "medium", "small"),
    ]
    # A saved config that its overrides no longer compose to (a run made from another primary config with
    # --config-path, or defaults changed since): an override of a key to what they compose to now was
    # dropped, and reproduce.md said "the same config ran".
    saved = copy / ".hydra" / "config.yaml"
    config = yaml.safe_load(saved.read_text())
    assert config["workers"] == 0 and "workers=0" in yaml.safe_load((copy / ".hydra" / "overrides.yaml").read_text())
    saved.write_text(yaml.safe_dump({**config, "workers": 3, "model": {**config["model"], "name": "mine"}}))
    assert reproduce.plan(reproduce.load_source(copy), ["workers=0", "model=medium"]).config_changes == [
        ("model.name", "mine", "medium"),
        ("workers", 3, 0),
    ]


@pytest.mark.slow
def test_one_job_of_a_sweep_can_be_reproduced(tmp_path: Path) -> None:
    # loader=resident beside the default workers=2, which the sweep's command did not set: no note of it.
    tiny = [t for t in TINY if t != "workers=0"]
    sweep = run_cli(tmp_path, "-m", *tiny, "loader=resident", "batch_size=16,32")
    assert sweep.returncode == 0, sweep.stderr
    (sweep_dir,) = (tmp_path / "outputs" / "sweeps").iterdir()
    job = sweep_dir / "1"
    proc = run_cli(tmp_path, str(job), module="bench.reproduce")
    assert proc.returncode == 0, proc.stderr
    new_dir = reproduced(tmp_path)
    assert read_metrics(new_dir)["batch_size"] == read_metrics(job)["batch_size"] == 32
    assert losses(new_dir) == losses(job)
    assert "None: the same config ran." in (new_dir / "reproduce.md").read_text()
    # Nor from its reproduction, which had said "Unused here: workers is ignored by loader=resident", recorded it
    # and listed it in its report; reproduce.md names a note only one of the two runs has.
    assert read_metrics(new_dir)["notes"] == read_metrics(job)["notes"] and "Unused here" not in proc.stdout
    assert " run's note: " not in (new_dir / "reproduce.md").read_text()

    with pytest.raises(SystemExit) as exit_info:  # the sweep's own folder is not a run: name a job
        reproduce.main([str(sweep_dir)])
    assert exit_info.value.code == 2
    # A reproduction inside the sweep's folder would read as its job 7 (and jobs 2-6 as missing) in its
    # report; inside another job's folder, that folder would hold two runs.
    for out in (sweep_dir / "7", sweep_dir / "0" / "sub"):
        with pytest.raises(SystemExit) as exit_info:
            reproduce.main([str(job), "--out", str(out)])
        assert exit_info.value.code == 2 and not out.exists()


@pytest.mark.slow
def test_a_failing_reproduction_exits_1_after_writing_the_comparison(original: Path, tmp_path: Path) -> None:
    out = tmp_path / "new"
    proc = run_cli(tmp_path, str(original), "lr=1e6", "--out", str(out), module="bench.reproduce")
    assert proc.returncode == 1
    assert proc.stderr.strip().startswith("bench: error: run diverged") and len(proc.stderr.splitlines()) == 1
    md = squeezed((out / "reproduce.md").read_text())
    assert "| lr | 0.001 | 1e+06 |" in md
    # Only a run that ended ok is judged, as in its report: the diverged run had read "input-bound".
    assert re.search(r"Verdict: original \S.* \(.*\); new none \(it ended diverged\)\.", md), md
    assert re.search(r"\| 1 \| [\d.]+ \| not finite \| no \|", md), md  # its loss, recorded as null: not "None"
    # Why its figures are n/a: the run's own note, which only it has.
    assert "- the new run's note: no figures: it diverged in its first timed epoch" in md


@pytest.mark.parametrize(
    ("where", "value", "says"),
    [(("epochs_detail", 0, "loss"), "2.30", "an epoch's loss is '2.30'"),
     (("epochs_detail", 0, "epoch"), [1], "an epoch's epoch is [1]"),
     (("env", "packages"), "torch==2.0", "env.packages is a str")],
)  # fmt: skip
def test_an_original_with_hand_edited_figures_is_unreadable_not_a_traceback(
    original: Path, tmp_path: Path, where: tuple, value: object, says: str
) -> None:
    shutil.copytree(original, tmp_path / "orig")
    metrics = read_metrics(tmp_path / "orig")
    node = metrics
    for key in where[:-1]:
        node = node[key]
    node[where[-1]] = value
    (tmp_path / "orig" / "metrics.json").write_text(json.dumps(metrics))
    proc = run_cli(tmp_path, "orig", "epochs=1", "--out", "again", module="bench.reproduce")
    assert proc.returncode == 0 and "Traceback" not in proc.stdout + proc.stderr, proc.stderr
    md = (tmp_path / "again" / "reproduce.md").read_text()
    assert "status: original unknown, new ok" in md and "the original run's metrics are unreadable: " in md
    assert says in md
    # Nothing recorded is not every field differing: it had read "16 of 19 fields differ".
    assert "The original recorded no environment (no readable metrics.json): the new run's alone, below." in md
    assert "fields differ" not in md


# case: (arguments, with {run} and {cwd} filled in; a .hydra file and its new text, None deletes it; message)
BAD: dict[str, tuple[list[str], tuple[str, Callable[[str], str | None]] | None, str]] = {
    "missing folder": (["{cwd}/nope"], None, "no such folder"),
    "not a run": (["{cwd}"], None, "not a run folder"),
    # A folder of runs made with hydra.run.dir=outputs/NAME had read "it looks like a sweep".
    "a folder of runs": (["{run}/.."], None, "it holds runs: pass one of them, e.g. "),
    "corrupt config.yaml": (["{run}"], ("config.yaml", lambda _: "model: [unclosed"), "config.yaml: not valid YAML"),
    "config.yaml not a config": (["{run}"], ("config.yaml", lambda _: "- a\n"), "not a saved bench config"),
    "missing config.yaml": (["{run}"], ("config.yaml", lambda _: None), "config.yaml: missing"),
    "config.yaml incomplete": (["{run}"], ("config.yaml", lambda _: "epochs: 1\n"), "model is not set"),
    "missing overrides.yaml": (["{run}"], ("overrides.yaml", lambda _: None), "overrides.yaml: missing"),
    "overrides.yaml not a list": (["{run}"], ("overrides.yaml", lambda _: "a: 1\n"), "not a saved override list"),
    "saved value out of range": (
        ["{run}"],
        ("config.yaml", lambda t: t.replace("epochs: 2", "epochs: 0")),
        "epochs=0 is out of range",
    ),
    "unknown option": (["{run}", "model=nope"], None, "unknown model 'nope'; choose one of"),
    "out of range": (["{run}", "epochs=0"], None, "epochs=0 is out of range"),
    "wrong type": (["{run}", "batch_size=abc"], None, "batch_size: Value 'abc'"),
    "a number for true or false": (["{run}", "evaluate=2"], None, "evaluate=2: evaluate is true or false"),
    "not a key": (["{run}", "nokey=1"], None, "nokey"),
    # With +, the saved config's merge refused it in OmegaConf's words, without the closest key.
    "a typo added with +": (["{run}", "+epoch=1"], None, "epoch is not a bench setting; did you mean epochs?"),
    "a sweep": (["{run}", "batch_size=16,32"], None, "batch_size=16,32 is several values, and a run takes one"),
    "hydra setting": (["{run}", "hydra.job.name=x"], None, "hydra settings do not apply"),
    "a lab preset": (["{run}", "experiment=batch_size"], None, "experiment=batch_size: a sweep setting"),
    "resume": (["{run}", "resume=true"], None, "resume=true: a sweep setting"),
    "a precision renamed": (["{run}", "precision.name=amp_bf16"], None, "the option itself with precision=amp_bf16"),
    # It ran bf16 and recorded the saved run's fp32.
    "a precision's setting": (["{run}", "precision.autocast_dtype=bfloat16"], None, "a precision's settings are its"),
    # It took this checkout's default without a word: ~epochs ran 3 epochs of a run that had 2.
    "a removed key": (["{run}", "~epochs"], None, "~epochs: a reproduction keeps every setting of the saved run"),
    "out inside the run": (["{run}", "--out", "{run}/x"], None, "never writes there"),
    # An existing file: it had said "already exists and is not empty" of an empty one.
    "out a file": (["{run}", "--out", __file__], None, "that is a file, not a folder; reproduce writes a run's folder"),
    # The (empty) working folder became a run's, inside which every later run was refused.
    "out the working folder": (["{run}", "--out", "."], None, "--out=. is the current folder"),
    "no run dir": ([], None, "RUN_DIR is missing"),
}


@pytest.mark.parametrize("case", BAD)
def test_bad_input_is_one_line_and_exit_2(original: Path, tmp_path: Path, monkeypatch, capsys, case: str) -> None:
    args, broken, expected = BAD[case]
    run_dir, cwd = tmp_path / "run", tmp_path / "cwd"
    shutil.copytree(original, run_dir)
    cwd.mkdir()
    if broken is not None:
        path, edit = run_dir / ".hydra" / broken[0], broken[1]
        text = edit(path.read_text())
        path.unlink()
        if text is not None:
            path.write_text(text)
    monkeypatch.chdir(cwd)
    with pytest.raises(SystemExit) as exit_info:
        reproduce.main([a.format(run=run_dir, cwd=cwd) for a in args])
    assert exit_info.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("bench: error: ") and expected in lines[0], lines
    assert list(cwd.iterdir()) == []  # nothing made


def test_the_command_line_itself_answers_bad_input_and_help(tmp_path: Path) -> None:
    (tmp_path / "run" / ".hydra").mkdir(parents=True)
    (tmp_path / "run" / ".hydra" / "config.yaml").write_text("{{{")
    proc = run_cli(tmp_path, "run", module="bench.reproduce")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip() == "bench: error: run/.hydra/config.yaml: not valid YAML at line 1"
    proc = run_cli(tmp_path, "--help", module="bench.reproduce")
    assert proc.returncode == 0 and "RUN_DIR" in proc.stdout and "--out" in proc.stdout


def test_a_shares_change_is_in_percentage_points() -> None:
    from bench.metrics import metric
    from bench.pair import change

    # 35% → 9% is 26 points down, not "−26%" (which reads as 26% less of 35%).
    assert change(metric("data_wait_frac"), 0.354, 0.086) == "-26 pp"
    assert change(metric("samples_per_s_cv"), 0.01, 0.99) == "+98.0 pp"
    # The difference of the shares as shown beside it: 36% and 25% read "−12 pp" from 36.4% and 24.6%.
    assert change(metric("data_wait_frac"), 0.364, 0.246) == "-11 pp"
    # A share near a verdict's threshold is shown with a decimal (29.7%), and so is its change.
    assert change(metric("data_wait_frac"), 0.297, 0.356) == "+6.3 pp"
    assert change(metric("samples_per_s"), 100.0, 150.0) == "1.500× (new / original)"


def test_three_significant_digits_stay_three_where_rounding_carries() -> None:
    from bench.metrics import metric

    # TFLOP/s and IQRs: 9.996 read "10.00" and 0.0009996 "0.001000", a fourth digit the rule does not have.
    shown = [metric("tflops").format(v) for v in (9.996, 99.96, 0.0009996, 0.0123, 372.4, 1234.5, -0.0)]
    assert shown == ["10.0", "100", "0.00100", "0.0123", "372", "1,234", "0"]


def test_repeats_losses_are_compared_repeat_by_repeat_and_overrides_explain_a_difference() -> None:
    from bench.pair import render

    # repeat=2 ran epochs 1, 2 twice: keyed by the epoch alone, the second repeat's losses hid the first's.
    def record(losses: list[float]) -> dict:
        detail = [{"repeat": r, "epoch": e, "loss": loss} for (r, e), loss in zip([(1, 1), (1, 2), (2, 1), (2, 2)],
                                                                                  losses, strict=True)]  # fmt: skip
        return {"epochs_detail": detail, "env": {}}

    same = "\n".join(render(record([2.0, 1.5, 2.0, 1.5]), record([2.0, 1.5, 2.0, 1.5]), []))
    assert "All 4 compared epoch losses are identical." in same
    assert "| repeat | epoch | original | new | identical |" in squeezed(same)
    # An override (train_size, say) changes the losses: the sentence says why they differ.
    changed = "\n".join(render(record([2.0, 1.5, 2.0, 1.5]), record([2.1, 1.6, 2.1, 1.6]),
                               [("dataset.train_size", 512, 256)]))  # fmt: skip
    assert "4 of 4 compared epoch losses differ (largest gap 0.1). The configs differ in dataset.train_size " \
           "(above): a setting that changes the training explains it; one that does not (workers, profile) " \
           "leaves the losses identical on the CPU." in changed  # fmt: skip


def test_a_loss_neither_run_could_record_is_the_same_outcome_and_said_so() -> None:
    from bench.pair import render

    def record(losses: list[float | None]) -> dict:
        return {"epochs_detail": [{"epoch": e, "loss": loss} for e, loss in enumerate(losses, 1)], "env": {}}

    # Both diverged in epoch 2 (metrics.json records a NaN loss as null): that read "No epoch has a loss on both
    # sides" where both diverged at once.
    text = squeezed("\n".join(render(record([2.3, None]), record([2.3, None]), [])))
    assert ("The one compared epoch loss is identical. The loss of epoch 2 was not finite (NaN or infinite) on "
            "both sides: both diverged there.") in text  # fmt: skip
    assert "| 2 | not finite | not finite | both not finite |" in text
    text = squeezed("\n".join(render(record([None]), record([None]), [])))
    assert "No epoch has a finite loss on both sides, so none can be compared. The loss of epoch 1 was" in text


def test_a_run_still_running_is_not_reproduced(original: Path, tmp_path: Path) -> None:
    # A sweep's job still training (its process holds the folder): the reproduction trained beside it, each
    # slowing the other, and compared itself with a record that did not exist yet.
    from bench.folders import hold_job

    with hold_job(original):
        proc = run_cli(tmp_path, str(original), module="bench.reproduce")
    assert proc.returncode == 2 and proc.stderr.strip() == (
        f"bench: error: {original} is still running (a live process holds it): reproduce it once it has finished"
    ), proc.stderr
    assert not (tmp_path / "outputs").exists()


@pytest.mark.slow
def test_a_reproduction_holds_its_folder_and_one_stopped_before_its_run_leaves_none(
    original: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import logging
    import os
    import signal

    from bench import train
    from bench.folders import job_running

    out = tmp_path / "new" / "run"
    handlers = logging.root.handlers[:]  # the command configures logging as `python -m bench` does
    real_files, real_run = reproduce.write_hydra_files, train.run
    try:
        # Ctrl-C as its first files are written: it said "the reproduction is recorded in DIR (reproduce.md)"
        # of a folder holding only those, and the same command, run again, refused it as not empty.
        def stopped(*args: object) -> None:
            os.kill(os.getpid(), signal.SIGINT)
            real_files(*args)

        monkeypatch.setattr(reproduce, "write_hydra_files", stopped)
        with pytest.raises(SystemExit) as exit_info:
            reproduce.main([str(original), "--out", str(out)])
        assert exit_info.value.code == 130 and not (tmp_path / "new").exists()
        assert capsys.readouterr().err.strip().splitlines()[-1] == (
            f"bench: interrupted by SIGINT: the reproduction had not started; nothing was recorded ({out} is removed)"
        )
        # Run again, it runs; and while it runs it holds its folder, as a sweep's job does: a second reproduction
        # of it trained beside it, and a report read it as unreadable rather than running.
        monkeypatch.setattr(reproduce, "write_hydra_files", real_files)
        held: list[bool] = []
        monkeypatch.setattr(train, "run", lambda cfg, run_dir, **kw: held.append(job_running(run_dir))
                            or real_run(cfg, run_dir, **kw))  # fmt: skip
        reproduce.main([str(original), "--out", str(out), "epochs=1"])
        assert held == [True] and not job_running(out) and (out / "reproduce.md").is_file()
    finally:
        for handler in [h for h in logging.root.handlers if h not in handlers]:
            logging.root.removeHandler(handler)
            handler.close()


def test_a_difference_is_of_the_values_as_shown_beside_it() -> None:
    from bench.pair import metric_table

    # 2 and 75 beside "+74": the difference had been taken from 1.56 and 75.16 before rounding.
    rows = metric_table({"samples_per_s_iqr": 1.56}, {"samples_per_s_iqr": 75.16}).set_index("original")
    assert list(rows.loc["2"]) == [rows.loc["2", "metric"], "75", "+73"]
    # A blown-up loss is shown as 4.74e+28, and so is its change: not 29 digits and four decimals.
    rows = metric_table({"final_loss": 3.1e27}, {"final_loss": 4.74e28}).set_index("metric")
    assert list(rows.loc["final loss"]) == ["3.1e+27", "4.74e+28", "+4.43e+28"]
    # Total time is judged by epoch counts only where both records list their epochs: an unreadable original
    # ({}) had "0 timed epochs, then 2".
    two = {"total_time": 2.0, "epochs_detail": [{}, {}]}
    rows = metric_table({"total_time": 1.0}, two).set_index("metric")
    assert rows.loc["total time of the timed epochs (s)", "new vs original"] == "2.000× (new / original)"
    rows = metric_table({"total_time": 1.0, "epochs_detail": [{}]}, two).set_index("metric")
    assert rows.loc["total time of the timed epochs (s)", "new vs original"] == "n/a (1 timed epoch, then 2)"


def test_relative_paths_lead_where_they_led_for_the_run_when_reproduced_from_another_folder(tmp_path: Path) -> None:
    # dataset.root=imgs named the images beside the run's command; reproduced from another folder it was
    # refused ("dataset.root=imgs needs train/<class>/ ..."), though Hydra had saved where the run was started.
    from PIL import Image

    first, elsewhere = tmp_path / "project", tmp_path / "elsewhere"
    for split in ("train", "test"):
        for cls in ("cats", "dogs"):
            (first / "imgs" / split / cls).mkdir(parents=True)
            for i in range(4):
                Image.new("RGB", (32, 32), (40 * i, 200 if cls == "cats" else 0, 90)).save(
                    first / "imgs" / split / cls / f"{i}.png"
                )
    args = ("dataset=imagefolder", "dataset.root=imgs", "epochs=1", "workers=0", "warmup_steps=1", "batch_size=4")
    assert (proc := run_cli(first, *args)).returncode == 0, proc.stderr
    (run_dir,) = (first / "outputs" / "runs").iterdir()
    elsewhere.mkdir()
    proc = run_cli(elsewhere, str(run_dir), module="bench.reproduce")
    assert proc.returncode == 0, proc.stderr
    new_dir = reproduced(elsewhere)
    text = (new_dir / "reproduce.md").read_text()
    assert f"data_dir=data, dataset.root=imgs: relative to the folder the run was started in, {first}" in text, text
    assert losses(new_dir) == losses(run_dir)  # the same images, read from the same place
    assert not (elsewhere / "data").exists()  # its cache went where the run's went, not here
    # A reproduction made where the run was started keeps its relative paths, and says where it ran: reproduced
    # in turn from a third folder, it reads the same images.
    assert (proc := run_cli(first, str(run_dir), "--out", "again", module="bench.reproduce")).returncode == 0, (
        proc.stderr
    )
    third = tmp_path / "third"
    third.mkdir()
    assert (proc := run_cli(third, str(first / "again"), module="bench.reproduce")).returncode == 0, proc.stderr
    assert losses(reproduced(third)) == losses(run_dir)
