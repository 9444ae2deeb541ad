"""Resume: a sweep stopped halfway runs only its unfinished jobs again, never touching a finished one."""

from __future__ import annotations

import shutil
import signal
from pathlib import Path

import pandas as pd
import pytest

from bench import resume
from bench.errors import UsageError
from conftest import TINY, run_cli
from test_reliability import _finish, _snapshot, _start, _wait_for

SWEEP = [t for t in TINY if not t.startswith(("epochs=", "batch_size="))]
JOBS = ("loader=resident", "epochs=1,1,20,1")  # job 2 is long enough to be stopped in


def test_an_interrupted_sweep_resumes_its_unfinished_jobs_only(tmp_path: Path) -> None:
    proc = _start(tmp_path, "-m", *SWEEP, "hydra.sweep.dir=S", *JOBS)
    _wait_for(proc, "Epoch 1/20")
    # Not while the sweep runs: the resume would train its unfinished jobs into the same folders at once.
    early = run_cli(tmp_path, "-m", *SWEEP, "hydra.sweep.dir=S", *JOBS, "resume=true")
    assert early.returncode == 2 and "S is in use by another bench process" in early.stderr, early.stderr
    proc.send_signal(signal.SIGINT)
    assert _finish(proc).returncode == 130
    assert list(pd.read_csv(tmp_path / "S" / "summary.csv")["status"]) == ["ok", "ok", "interrupted", "missing"]
    finished = {job: _snapshot(tmp_path / "S" / job) for job in ("0", "1")}

    again = run_cli(tmp_path, "-m", *SWEEP, "hydra.sweep.dir=S", *JOBS, "resume=true")
    assert again.returncode == 0, again.stderr
    summary = pd.read_csv(tmp_path / "S" / "summary.csv")
    assert list(summary["status"]) == ["ok"] * 4 and list(summary["epochs"]) == [1, 1, 20, 1]
    assert {job: _snapshot(tmp_path / "S" / job) for job in ("0", "1")} == finished  # not a byte, not a time

    # Resuming a finished sweep runs nothing, from inside its folder too (the working folder is refused as a
    # new sweep's, not as the sweep being resumed).
    done = {job: _snapshot(tmp_path / "S" / job) for job in ("0", "1", "2", "3")}
    assert run_cli(tmp_path, "-m", *SWEEP, "hydra.sweep.dir=S", *JOBS, "resume=true").returncode == 0
    inside = run_cli(tmp_path / "S", "-m", *SWEEP, "hydra.sweep.dir=.", *JOBS, "resume=true")
    assert inside.returncode == 0, inside.stderr
    assert {job: _snapshot(tmp_path / "S" / job) for job in ("0", "1", "2", "3")} == done


def test_resume_needs_a_sweep_to_resume(tmp_path: Path) -> None:
    proc = run_cli(tmp_path, "-m", *SWEEP, "hydra.sweep.dir=none", "epochs=1,2", "resume=true")
    assert proc.returncode == 2
    assert "resume=true: none holds no sweep to resume" in proc.stderr
    # Job folders whose multirun.yaml is gone: each message sent the user to the other ("add resume=true";
    # "holds no sweep to resume").
    done = tmp_path / "done"
    (done / "0" / ".hydra").mkdir(parents=True)
    (done / "0" / "metrics.json").write_text("{}")
    resumed = run_cli(tmp_path, "-m", *SWEEP, "hydra.sweep.dir=done", "epochs=1,2", "resume=true")
    assert resumed.returncode == 2 and resumed.stderr.strip() == (
        "bench: error: resume=true: done holds runs but not the sweep's multirun.yaml (its plan of jobs): put that "
        "file back to resume it, or run the sweep again in a new folder"
    ), resumed.stderr
    again = run_cli(tmp_path, "-m", *SWEEP, "hydra.sweep.dir=done", "epochs=1,2")
    assert again.returncode == 2 and again.stderr.strip() == (
        "bench: error: hydra.sweep.dir=done already holds a sweep; bench never writes over one: choose a new folder"
    ), again.stderr


def test_jobs_are_matched_by_config_not_by_number() -> None:
    existing = [
        resume.Existing(0, "a", finished=True),
        resume.Existing(1, "b", finished=False),
        resume.Existing(2, "a", finished=True),
        resume.Existing(3, None, finished=False),  # a folder without a saved config: never reused
    ]
    # The same sweep in another order, with a config ("c") the folder has never seen.
    plan = resume.plan([(["x=b"], "b"), (["x=a"], "a"), (["x=c"], "c"), (["x=a"], "a")], existing)
    assert plan.skipped == [(0, ["x=a"]), (2, ["x=a"])]
    assert plan.run == [(1, ["x=b"]), (4, ["x=c"])]  # 2, its place in the sweep, is taken: the next free
    assert plan.batches() == [(1, [["x=b"]]), (4, [["x=c"]])]
    # A job whose folder was removed runs under its own number again, where the sweep's plan expects it.
    gone = resume.plan([(["x=a"], "a"), (["x=d"], "d"), (["x=e"], "e")], [existing[0], resume.Existing(2, "e", False)])
    assert sorted(gone.run) == [(1, ["x=d"]), (2, ["x=e"])]
    # Which jobs grow the sweep (in neither the folder nor its first plan), and which of its jobs the command
    # leaves out: with no first plan to read, none is called new.
    assert plan.added == [] and plan.absent == []
    grown = resume.plan([(["x=a"], "a"), (["x=c"], "c"), (["x=d"], "d")], existing[:2], planned=[["x=a"], ["x=d"]])
    assert sorted(grown.run) == [(2, ["x=c"]), (3, ["x=d"])] and grown.added == [2] and grown.absent == [1]


def test_folders_not_named_as_hydra_names_jobs_are_never_taken_for_one(tmp_path: Path) -> None:
    # "01" is not job 1: Hydra would write job 1 into "1", over the finished run there. "②" is no number at all.
    assert run_cli(tmp_path, "-m", *SWEEP, "hydra.sweep.dir=S", "epochs=1", "batch_size=16,32").returncode == 0
    for name in ("01", "②"):
        shutil.copytree(tmp_path / "S" / "0", tmp_path / "S" / name)
    config = tmp_path / "S" / "01" / ".hydra" / "config.yaml"
    config.write_text(config.read_text().replace("batch_size: 16", "batch_size: 64"))
    finished = _snapshot(tmp_path / "S" / "1")
    again = run_cli(tmp_path, "-m", *SWEEP, "hydra.sweep.dir=S", "epochs=1", "batch_size=16,32,64", "resume=true")
    assert again.returncode == 0, again.stderr
    assert _snapshot(tmp_path / "S" / "1") == finished
    runs = pd.read_csv(tmp_path / "S" / "summary.csv")
    assert list(runs["job"].dropna().astype(int)) == [0, 1, 2] and list(runs["batch_size"])[:3] == [16, 32, 64]


def test_a_job_whose_folder_was_removed_takes_back_its_first_number_in_any_order(tmp_path: Path) -> None:
    # Resumed with the values in another order, batch 32 (job 0, its folder removed) ran as job 3: folder 0
    # stayed empty and the finished sweep's report listed job 0 as missing beside job 3's batch 32.
    assert run_cli(tmp_path, "-m", *SWEEP, "hydra.sweep.dir=S", "epochs=1", "batch_size=32,64").returncode == 0
    shutil.rmtree(tmp_path / "S" / "0")
    finished = _snapshot(tmp_path / "S" / "1")
    again = run_cli(tmp_path, "-m", *SWEEP, "hydra.sweep.dir=S", "epochs=1", "batch_size=64,128,32", "resume=true")
    assert again.returncode == 0, again.stderr
    assert _snapshot(tmp_path / "S" / "1") == finished
    runs = pd.read_csv(tmp_path / "S" / "summary.csv")
    assert list(runs["job"]) == [0, 1, 2] and list(runs["batch_size"]) == [32, 64, 128]
    assert list(runs["status"]) == ["ok"] * 3
    # Resuming with other values grows the sweep: said, in case it was a typo (32 is the first plan's job 0).
    said = again.stdout + again.stderr
    assert "Job 2 is new to this sweep (not in its first plan): #2 batch_size=128; the report shows it beside the " \
           "others" in said and "not in this command" not in said  # fmt: skip
    # And a resume that lists fewer values than the folder holds keeps the others, and says so.
    fewer = run_cli(tmp_path, "-m", *SWEEP, "hydra.sweep.dir=S", "epochs=1", "batch_size=64", "resume=true")
    assert fewer.returncode == 0, fewer.stderr
    said = fewer.stdout + fewer.stderr
    assert "Jobs 0, 2 of S are not in this command: kept as they are, and in the report" in said
    assert "new to" not in said
    assert list(pd.read_csv(tmp_path / "S" / "summary.csv")["batch_size"]) == [32, 64, 128]
    # A job a resume added is in the sweep's plan from then on: its folder gone (a resume stopped before it
    # started), the report has its missing row; it had none ("3 ok", no resume hint).
    assert (tmp_path / "S" / "added_jobs.yaml").is_file()
    shutil.rmtree(tmp_path / "S" / "2")
    # A resume with the first plan's values runs nothing and says that the job it does not list stays missing:
    # a typo that a stopped resume had recorded stayed in every report unnamed.
    first = run_cli(tmp_path, "-m", *SWEEP, "hydra.sweep.dir=S", "epochs=1", "batch_size=32,64", "resume=true")
    assert first.returncode == 0, first.stderr
    said = " ".join((first.stdout + first.stderr).split())
    assert (
        "Job 2 (batch_size=128) of S's plan never started and is not in this command: it stays in the report as "
        "missing (Job 2: added by an earlier resume; S/added_jobs.yaml lists the jobs resumes added, and an entry "
        "removed there drops its job)" in said
    ), said
    runs = pd.read_csv(tmp_path / "S" / "summary.csv")
    assert list(runs["status"]) == ["ok", "ok", "missing"] and list(runs["batch_size"]) == [32, 64, 128]
    # The first plan's number, where that folder is free; a config new to the sweep never takes another planned
    # job's number (1 stays x=c's, which never ran and is the report's missing row): it had, and the row was lost.
    # The record of added jobs is never written over when it cannot be read (the jobs it lists would be lost), nor
    # left half-written: the resume stops with one line.
    (tmp_path / "S" / "added_jobs.yaml").write_text("{{ not yaml")
    with pytest.raises(UsageError, match=r"added_jobs.yaml cannot be read \(.*\): it lists the jobs earlier "):
        resume.record_added(tmp_path / "S", {5: ["batch_size=8"]})
    assert (tmp_path / "S" / "added_jobs.yaml").read_text() == "{{ not yaml"
    plan = resume.plan([(["x=b", "resume=true"], "b"), (["x=a", "resume=true"], "a")], [], planned=[["x=a"], ["x=c"]])
    assert sorted(plan.run) == [(0, ["x=a", "resume=true"]), (2, ["x=b", "resume=true"])] and plan.added == [2]


def test_a_job_still_running_in_a_process_of_its_own_is_never_run_again(tmp_path: Path) -> None:
    # A sweep whose launching process was stopped alone left its submitit jobs running; a resume took them for
    # unfinished and trained them again into the same folders, over the results they then wrote.
    from bench import folders

    assert run_cli(tmp_path, "-m", *SWEEP, "hydra.sweep.dir=S", "epochs=1", "batch_size=16,32").returncode == 0
    (tmp_path / "S" / "1" / "metrics.json").unlink()  # as if job 1 were still training
    finished = _snapshot(tmp_path / "S" / "1")
    with folders.hold_job(tmp_path / "S" / "1"):  # the lock its own process holds while it runs
        again = run_cli(tmp_path, "-m", *SWEEP, "hydra.sweep.dir=S", "epochs=1", "batch_size=16,32", "resume=true")
        assert again.returncode == 2
        assert "resume=true: job 1 of S is still running in a process of its own; wait for it" in again.stderr
        assert _snapshot(tmp_path / "S" / "1") == finished
        # A report of it meanwhile says it is running: it had read "unreadable (the run did not finish writing one)".
        peek = run_cli(tmp_path, "S", module="bench.report")
        assert peek.returncode == 0 and "2 runs (1 ok, 1 running)" in peek.stdout, peek.stdout + peek.stderr
        status = (tmp_path / "S" / "report.md").read_text().split("## Status of every run")[1].split("\n## ")[0]
        assert "| running " in status and "unreadable" not in status, status
    # Once it has ended, the resume runs it.
    again = run_cli(tmp_path, "-m", *SWEEP, "hydra.sweep.dir=S", "epochs=1", "batch_size=16,32", "resume=true")
    assert again.returncode == 0, again.stderr
    assert list(pd.read_csv(tmp_path / "S" / "summary.csv")["status"]) == ["ok", "ok"]


def test_a_resumed_sweeps_report_lists_its_runs_along_the_swept_variable(tmp_path: Path) -> None:
    # Batch 32, added on resume, runs as job 2: the report read "batch_size = 16, 64, 32", its rows in job order,
    # while the plot drew them along the axis.
    assert run_cli(tmp_path, "-m", *SWEEP, "hydra.sweep.dir=S", "epochs=1", "batch_size=16,64").returncode == 0
    again = run_cli(tmp_path, "-m", *SWEEP, "hydra.sweep.dir=S", "epochs=1", "batch_size=16,32,64", "resume=true")
    assert again.returncode == 0, again.stderr
    report = (tmp_path / "S" / "report.md").read_text()
    assert "Swept: **batch_size** = 16, 32, 64" in report
    rows = [line.split("|")[1].strip() for line in report.split("## Sweep over batch_size")[1].splitlines()
            if line.startswith("|") and line.split("|")[1].strip().isdigit()][:3]  # fmt: skip
    assert rows == ["16", "32", "64"], rows
    assert list(pd.read_csv(tmp_path / "S" / "summary.csv")["job"]) == [0, 1, 2]  # the record stays in job order
