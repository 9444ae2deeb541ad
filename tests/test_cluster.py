"""The cluster path: Hydra's submitit launcher runs the jobs in other processes, and the report still comes.

Two presets (conf/hydra/launcher/): `slurm`, one GPU per job of a SLURM array, checked by rendering its
sbatch script without submitting it (no SLURM here); and `local`, submitit's local executor with at most
one job per GPU, run for real on the CPU.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

import pandas as pd
import pytest
from omegaconf import OmegaConf

from bench.device import machine_gpus
from bench.schema import compose
from conftest import TINY, offline_env, read_metrics, run_cli

pytest.importorskip("hydra_plugins.hydra_submitit_launcher")

from hydra_plugins.hydra_submitit_launcher.config import LocalQueueConf

TINY_SWEEP = [t for t in TINY if not t.startswith("batch_size=")]


@pytest.mark.slow
def test_a_submitit_sweep_ends_in_the_same_report(tmp_path: Path) -> None:
    # submitit_local is submitit_slurm's code path without SLURM: each job is pickled, run in a new
    # process, and its result collected; the report reads only the job folders. It starts both jobs at once, on
    # one machine: the console says so before they start; each record keeps when it ran and when its epochs
    # were timed, which the report sets side by side (test_report: runs timed while another was busy).
    sweep = _two_jobs_reported(tmp_path, "submitit_local")
    for job in (0, 1):
        metrics = read_metrics(sweep / str(job))
        assert 0 < metrics["ran_from"] < metrics["timed_from"] < metrics["timed_until"] < metrics["ran_until"], metrics
        assert metrics["ran_until"] < time.time()


# ------------------------------------------------------------------------------------------- SLURM


def test_the_slurm_preset_asks_for_one_gpu_per_job_and_takes_overrides(tmp_path: Path) -> None:
    cfg = compose(["hydra/launcher=slurm", f"hydra.sweep.dir={tmp_path}"], return_hydra_config=True)
    launcher = cfg.hydra.launcher
    # bench's subclass of the plugin's launcher, in which a job killed outright is its own failure
    assert launcher._target_ == "hydra_plugins.bench_launchers.SlurmLauncher"
    assert cfg.hydra.runtime.choices["hydra/launcher"] == "slurm"
    assert (launcher.nodes, launcher.tasks_per_node, launcher.gpus_per_node) == (1, 1, 1)
    assert (launcher.timeout_min, launcher.cpus_per_task, launcher.mem_gb) == (60, 8, 32)
    assert launcher.array_parallelism == 16 and launcher.partition is None
    assert launcher.submitit_folder == f"{tmp_path}/.submitit/%j"  # the plugin's default, in the sweep folder

    cfg = compose(
        ["hydra/launcher=slurm", "hydra.launcher.partition=gpu", "hydra.launcher.timeout_min=30",
         "hydra.launcher.gpus_per_node=2", "hydra.launcher.mem_gb=64"],
        return_hydra_config=True,
    )  # fmt: skip
    launcher = cfg.hydra.launcher
    assert (launcher.partition, launcher.timeout_min, launcher.gpus_per_node, launcher.mem_gb) == ("gpu", 30, 2, 64)
    assert launcher.cpus_per_task == 8  # what was not overridden stays


class _Submitted(Exception):
    """Raised instead of running sbatch: the script was rendered and captured."""


def test_the_slurm_preset_renders_an_sbatch_array_without_submitting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The plugin's own launch(): the preset's keys mapped to AutoExecutor parameters, the jobs pickled,
    # and the array's sbatch script rendered; the one step that would call sbatch captures it instead.
    from hydra.utils import instantiate
    from submitit.slurm.slurm import SlurmExecutor

    sweep = tmp_path / "sweep"
    cfg = compose(
        ["hydra/launcher=slurm", "hydra.launcher.partition=gpu", "hydra.launcher.timeout_min=30",
         f"hydra.sweep.dir={sweep}"],
        return_hydra_config=True,
    )  # fmt: skip
    scripts: list[str] = []

    def submit(self: SlurmExecutor, command: str) -> None:
        scripts.append(self._make_submission_file_text(command, "uid"))
        raise _Submitted

    monkeypatch.setattr(SlurmExecutor, "affinity", classmethod(lambda cls: 2))  # as if srun were installed
    monkeypatch.setattr(SlurmExecutor, "_submit_command", submit)
    launcher = instantiate(cfg.hydra.launcher)
    launcher.setup(hydra_context=None, task_function=lambda c: None, config=cfg)
    with pytest.raises(_Submitted):
        launcher.launch([[f"batch_size={b}"] for b in (16, 64, 256, 1024)], initial_job_idx=0)

    (script,) = scripts
    lines = set(script.splitlines())
    expected = {
        "#SBATCH --partition=gpu",
        "#SBATCH --time=30",
        "#SBATCH --nodes=1",
        "#SBATCH --ntasks-per-node=1",
        "#SBATCH --gpus-per-node=1",
        "#SBATCH --cpus-per-task=8",
        "#SBATCH --mem=32GB",
        "#SBATCH --job-name=bench",
        "#SBATCH --signal=USR2@120",  # submitit's warning before the time limit
        # 4 jobs, at most min(4, array_parallelism=16) at once: submitit writes the smaller number
        "#SBATCH --array=0-3%4",
        f"#SBATCH --output={sweep}/.submitit/%A_%a/%A_%a_0_log.out",
    }
    assert expected <= lines, sorted(expected - lines)
    assert re.search(r"^srun --unbuffered .* -m submitit\.core\._submit ", script, re.MULTILINE), script
    assert len(list((sweep / ".submitit").glob("*.pkl"))) == 4  # the jobs, pickled for the array's tasks


# ------------------------------------------------------------------------------------------- local


def _setup_script(*overrides: str) -> str:
    cfg = compose(["hydra/launcher=local", *overrides], return_hydra_config=True)
    return " && ".join(OmegaConf.to_container(cfg.hydra.launcher.setup, resolve=True))  # as submitit joins it


def test_a_slurm_sweep_on_a_machine_without_slurm_is_refused_before_any_work(tmp_path: Path) -> None:
    # submitit found no srun only once the sweep had claimed its folder: exit 1, "the sweep stopped: 1 missing",
    # and the folder kept, so the same sweep with another launcher was refused ("already holds a sweep").
    for launcher in ("slurm", "submitit_slurm"):
        proc = run_cli(tmp_path, "-m", f"hydra/launcher={launcher}", *TINY_SWEEP, "batch_size=16", "hydra.sweep.dir=S")
        assert proc.returncode == 2, proc.stderr
        assert proc.stderr.strip() == ('bench: error: a SLURM launcher needs SLURM, and this machine has no "srun": '
                                       "submit the sweep from a SLURM login node, or run its jobs here with "
                                       "hydra/launcher=local")  # fmt: skip
        assert not (tmp_path / "S").exists()


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="checks a login node without CUDA")
def test_a_slurm_sweep_is_checked_for_bad_values_but_not_against_the_login_nodes_hardware(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The sweep's checks before its first job ran on the submitting machine: step.compile=cudagraph was refused
    # there for want of CUDA, though the jobs run on the cluster's GPU nodes.
    from submitit.slurm.slurm import SlurmExecutor

    scripts: list[str] = []

    def submit(self: SlurmExecutor, command: str) -> None:
        scripts.append(self._make_submission_file_text(command, "uid"))
        raise RuntimeError("submitted (captured by the test)")

    monkeypatch.setattr(SlurmExecutor, "affinity", classmethod(lambda cls: 2))  # as if srun were installed
    monkeypatch.setattr(SlurmExecutor, "_submit_command", submit)
    args = ["-m", "hydra/launcher=slurm", *TINY_SWEEP, "step.compile=cudagraph"]
    proc = run_cli(tmp_path, *args, "batch_size=16,32", "hydra.sweep.dir=S")
    assert "needs CUDA" not in proc.stderr and len(scripts) == 1, proc.stderr
    # What is wrong anywhere is still refused before anything is submitted.
    proc = run_cli(tmp_path, *args, "batch_size=16,-4", "hydra.sweep.dir=T")
    assert proc.returncode == 2 and "batch_size=-4 is out of range" in proc.stderr and len(scripts) == 1


def test_the_local_preset_is_submitit_local_with_one_gpu_per_job() -> None:
    cfg = compose(["hydra/launcher=local", "hydra.launcher.timeout_min=5"], return_hydra_config=True)
    launcher = OmegaConf.to_container(cfg.hydra.launcher, resolve=False)
    # bench's subclass of the plugin's launcher, in which a job killed outright is its own failure
    assert launcher["_target_"] == "hydra_plugins.bench_launchers.LocalLauncher"
    # Every key of the plugin's submitit_local schema, with its default, except those set on purpose.
    schema = OmegaConf.to_container(OmegaConf.structured(LocalQueueConf))
    on_purpose = {"gpus_per_node": 1, "timeout_min": 5, "_target_": "hydra_plugins.bench_launchers.LocalLauncher"}
    assert {k: launcher[k] for k in schema} == {**schema, **on_purpose}
    assert set(launcher) == {*schema, "setup"}
    assert launcher["tasks_per_node"] == 1 and launcher["nodes"] == 1


def test_the_local_setup_gives_each_job_its_own_gpu_slot() -> None:
    # The preset's setup commands in sh, as submitit runs them before each job, with two made-up GPUs
    # (indices no real machine here uses): two jobs start at once on different GPUs, a third waits.
    script = _setup_script() + ' && echo "$CUDA_VISIBLE_DEVICES $(date +%s.%N)" && sleep 1.5 && date +%s.%N'
    env = {**offline_env(), "BENCH_LOCAL_GPUS": "90,91"}
    jobs = [subprocess.Popen(["sh", "-c", script], env=env, stdout=subprocess.PIPE, text=True) for _ in range(3)]
    outputs = [job.communicate(timeout=30)[0].split() for job in jobs]
    assert all(job.returncode == 0 for job in jobs), outputs
    runs = sorted((float(start), float(end), gpu) for gpu, start, end in outputs)
    (_, e0, g0), (s1, e1, g1), (s2, _, g2) = runs
    assert {g0, g1} == {"90", "91"} and g2 in {"90", "91"}
    assert s1 < e0  # the first two overlapped, each on its own GPU
    assert s2 >= min(e0, e1)  # the third waited for a free one


@pytest.mark.parametrize(("gpus", "says"), [("90,91", "this machine has"), ("1;2", "comma-separated GPU indices")])
def test_local_gpus_this_machine_lacks_are_refused_before_any_job(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, gpus: str, says: str
) -> None:
    # Left to the jobs, GPUs 90 and 91 (or a typo) would give each job CUDA_VISIBLE_DEVICES naming no GPU, and
    # device=auto would train on the CPU without a word.
    monkeypatch.setenv("BENCH_LOCAL_GPUS", gpus)
    proc = run_cli(tmp_path, "-m", "hydra/launcher=local", *TINY_SWEEP, "batch_size=16,32")
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"bench: error: BENCH_LOCAL_GPUS={gpus}") and says in lines[0]
    assert not list(tmp_path.glob("outputs/sweeps/*/0")), "no job ran"


@pytest.mark.slow
def test_a_local_sweep_runs_its_jobs_one_at_a_time(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # One slot: GPU 0 on a machine with GPUs (the jobs would otherwise run at once, one per GPU), and without
    # any, the one CPU slot the launcher takes when BENCH_LOCAL_GPUS is unset.
    if machine_gpus():
        monkeypatch.setenv("BENCH_LOCAL_GPUS", "0")
    else:
        monkeypatch.delenv("BENCH_LOCAL_GPUS", raising=False)
    sweep = _two_jobs_reported(tmp_path, "local")
    # The jobs' logs do not overlap in time: the second started after the first had finished.
    spans = sorted(_log_span(sweep / str(job) / "bench.log") for job in (0, 1))
    assert spans[0][1] < spans[1][0], spans
    assert "timed while another run was busy" not in (sweep / "report.md").read_text()


def _two_jobs_reported(tmp_path: Path, launcher: str) -> Path:
    """A sweep of batch_size=16,32 through ``hydra/launcher``: both jobs ok, in summary.csv and the report."""
    proc = run_cli(tmp_path, "-m", f"hydra/launcher={launcher}", *TINY_SWEEP, "batch_size=16,32")
    assert proc.returncode == 0, proc.stderr
    at_once = "hydra/launcher=submitit_local starts all 2 jobs at once on this machine: they compete for it"
    assert (at_once in proc.stdout + proc.stderr) == (launcher == "submitit_local")
    sweep = next((tmp_path / "outputs" / "sweeps").iterdir())
    # bench's launchers say each job's end as it comes (its lines go to .submitit/): Hydra's own do not.
    said = re.findall(r"Job (\d) done: ok, [\d,]+ samples/s", proc.stdout + proc.stderr)
    assert said == (["0", "1"] if launcher in ("local", "slurm") else []), proc.stdout + proc.stderr
    summary = pd.read_csv(sweep / "summary.csv")
    assert list(summary["batch_size"]) == [16, 32] and (summary["status"] == "ok").all()
    assert (sweep / "report.md").exists()
    return sweep


def _log_span(log: Path) -> tuple[datetime, datetime]:
    stamps = [datetime.strptime(m, "%Y-%m-%d %H:%M:%S,%f") for m in re.findall(r"^\[([^\]]+)\]", log.read_text(), re.M)]
    return stamps[0], stamps[-1]


# ------------------------------------------------------------------------------------------- signals


@contextmanager
def _submitit_job_training(
    tmp_path: Path, launcher: str = "submitit_local", epochs: str = "500"
) -> Iterator[tuple[subprocess.Popen, Path, int]]:
    """A submitit sweep (one job per value of ``epochs``) whose job 0 is mid-training: the sweep's process, job 0's
    bench.log and its process id. The sweep's whole session is killed after, if still running."""
    args = [*TINY_SWEEP, "loader=resident", "dataset.train_size=512", "evaluate=false", "batch_size=64"]
    sweep = subprocess.Popen(
        [sys.executable, "-m", "bench", "-m", f"hydra/launcher={launcher}", *args, f"epochs={epochs}"],
        cwd=tmp_path, env=offline_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True,
    )  # fmt: skip
    try:
        log = _wait_for(lambda: next(tmp_path.glob("outputs/sweeps/*/0/bench.log"), None), sweep)
        _wait_for(lambda: "Epoch 1/" in log.read_text(), sweep)
        (job,) = [pid for pid in _job_processes(log.parent.parent / ".submitit") if _holds(pid, log)]
        yield sweep, log, job
    finally:
        if sweep.poll() is None:
            os.killpg(sweep.pid, signal.SIGKILL)  # the sweep's own session: launcher, controller, job
        sweep.communicate()


def _holds(pid: int, path: Path) -> bool:
    """Whether process ``pid`` has ``path`` open (a job's process, its own bench.log)."""
    try:
        return any(os.readlink(fd) == str(path) for fd in Path(f"/proc/{pid}/fd").iterdir())
    except OSError:  # it ended meanwhile
        return False


@pytest.mark.slow
def test_sigterm_to_a_submitit_job_records_it_as_interrupted(tmp_path: Path) -> None:
    # submitit's job process sets SIGTERM to "bypass" (log and ignore) before it runs the job
    # (submitit/core/submission.py, process_job; core/job_environment.py, _handle_signals); bench's app()
    # installs its own handlers after that, so inside the job SIGTERM becomes `interrupted`. The job then
    # ends normally (app() returns under submitit), so submitit writes its result, and the sweep goes on
    # to its report, as for any job's status.
    with _submitit_job_training(tmp_path) as (sweep, log, job):
        os.kill(job, signal.SIGTERM)
        metrics = log.parent / "metrics.json"
        _wait_for(metrics.exists, sweep)
        record = read_metrics(log.parent)
        assert record["status"] == "interrupted" and record["error"] == "interrupted by SIGTERM"
        assert 1 <= len(record["epochs_detail"]) < 500
        out, err = sweep.communicate(timeout=120)
        assert sweep.returncode == 0, (out + err)[-3000:]
        assert "Traceback" not in out + err
        summary = pd.read_csv(log.parent.parent / "summary.csv")
        assert list(summary["status"]) == ["interrupted"]
        # The run's log is the run's: submitit's "Job completed successfully" under an interrupted run read as
        # its outcome there, and stays in the job's own .submitit/ logs.
        text = log.read_text()
        assert "interrupted by SIGTERM" in text and "[submitit]" not in text, text[-2000:]
        assert any("completed successfully" in f.read_text() for f in (log.parent.parent / ".submitit").rglob("*.out"))


@pytest.mark.parametrize(
    "value",
    [
        "hydra.launcher.timeout_min=0",
        "hydra.launcher.tasks_per_node=0",
        "hydra.launcher.nodes=-1",
        "hydra.launcher.gpus_per_node=-1",
    ],
)
def test_a_launcher_value_submitit_cannot_use_is_refused_before_any_job(tmp_path: Path, value: str) -> None:
    # timeout_min=0 made every job "has not produced any output", exit 1, the folder used up with empty job
    # folders; tasks_per_node=0 ended in "tuple index out of range" and two tracebacks.
    proc = run_cli(tmp_path, "-m", "hydra/launcher=local", *TINY_SWEEP, "batch_size=16,32", value, "hydra.sweep.dir=S")
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
    assert proc.stderr.startswith(f"bench: error: {value}: it must be a number of at least ")
    assert not (tmp_path / "S").exists()  # the folder given back: nothing was made


@pytest.mark.parametrize("launcher", ["slurm", "local"])
def test_a_single_run_with_a_cluster_launcher_is_refused_not_trained_here(tmp_path: Path, launcher: str) -> None:
    # Without -m Hydra ignores the launcher: `hydra/launcher=slurm` trained on the login node, without a word.
    proc = run_cli(tmp_path, f"hydra/launcher={launcher}", *TINY)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
    assert proc.stderr.startswith(f"bench: error: hydra/launcher={launcher} runs a sweep's jobs, and this is a single "
                                  "run, which would train here in this process: add -m")  # fmt: skip
    assert not (tmp_path / "outputs").exists()


def test_a_sweep_folder_is_never_given_back_once_its_jobs_were_submitted(tmp_path: Path) -> None:
    # A signal after a SLURM array was submitted (its jobs still queued, no job folder yet) said "no job had
    # started; nothing was kept" and gave the folder back: a new sweep took it, and the queued jobs would
    # later write into it.
    from bench import folders
    from bench.folders import claim_sweep_dir, claimed_sweep_dir

    for launcher, kept in (
        ("hydra._internal.core_plugins.basic_launcher.BasicLauncher", False),
        ("hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher", True),
    ):
        sweep = tmp_path / launcher.rsplit(".", 1)[1]
        with folders.session():
            claim_sweep_dir(sweep, folders.JOB_SUBDIR)
            assert claimed_sweep_dir() == sweep
            if kept:  # what bench's sweeper does before it hands jobs to a launcher of other processes
                folders.hand_over(launcher)
            folders.abandon_claim()
        assert (sweep / folders.SWEEP_FILE).exists() == kept, launcher


@pytest.mark.slow
def test_sigterm_to_the_sweeps_process_alone_stops_its_jobs_before_the_report(tmp_path: Path) -> None:
    # `kill PID` reaches the launching process only: its submitit jobs ran on to the end with no parent, the
    # partial report called them unreadable, and a resume then trained them again over their results.
    with _submitit_job_training(tmp_path) as (sweep, log, job):
        sweep.send_signal(signal.SIGTERM)
        _, err = sweep.communicate(timeout=120)
        assert sweep.returncode == 143, err[-3000:]
        assert err.strip().splitlines()[-1].startswith("bench: interrupted by SIGTERM: 1 interrupted; partial report")
        assert read_metrics(log.parent)["status"] == "interrupted"  # recorded before the report read it
        assert list(pd.read_csv(log.parent.parent / "summary.csv")["status"]) == ["interrupted"]
        with pytest.raises(ProcessLookupError):
            os.kill(job, 0)  # the job's process has ended


@pytest.mark.slow
def test_a_job_killed_outright_is_its_own_failure_and_the_sweep_goes_on(tmp_path: Path) -> None:
    # SIGKILL (the kernel's out-of-memory killer, say) leaves submitit no result for the job. The plugin's launcher
    # then raised out of its wait: the sweep ended at that job while the later ones ran on unwatched, and the
    # report listed them as they were. bench's `local` and `slurm` presets record the job as failed instead.
    with _submitit_job_training(tmp_path, "local", epochs="500,1") as (sweep, log, job):
        os.kill(job, signal.SIGKILL)
        out, err = sweep.communicate(timeout=120)
    assert sweep.returncode == 0, err[-3000:]
    assert "Traceback" not in err
    killed, second = (read_metrics(log.parent.parent / str(n)) for n in (0, 1))
    assert killed["status"] == "failed" and killed["epochs"] == 500, killed
    assert killed["error"].startswith("the job's process ended without a result (submitit job ")
    assert "killed outright (SIGKILL" in killed["error"] and second["status"] == "ok"
    summary = pd.read_csv(log.parent.parent / "summary.csv")
    assert list(summary["status"]) == ["failed", "ok"]
    assert "Job 0 failed: the job's process ended without a result" in out + err


@pytest.mark.slow
def test_under_hydras_submitit_local_a_job_killed_outright_stops_the_sweep_and_its_other_jobs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Hydra's own submitit_local (not bench's preset) still ends the sweep at a job without a result. Work had
    # begun, so it is exit 1 with what is kept and the partial report, never exit 2 ("bad input"); and the job
    # it started beside the killed one is stopped first, so that nothing runs on unwatched after the command.
    # In this process, so that submitit's 15 s wait for a result file on a shared file system can be left out.
    from submitit.core import core

    monkeypatch.setattr(core.Job, "_results_timeout_s", 0)
    sweep = tmp_path / "S"
    found: dict[str, int] = {}

    def kill_job_0() -> None:
        deadline = time.monotonic() + 120
        log = sweep / "0" / "bench.log"
        while time.monotonic() < deadline and not (log.is_file() and "Epoch 1/" in log.read_text()):
            time.sleep(0.05)
        jobs = _job_processes(sweep / ".submitit")
        (found["killed"],) = [pid for pid in jobs if _holds(pid, log)]
        found["other"] = next(pid for pid in jobs if pid != found["killed"])
        os.kill(found["killed"], signal.SIGKILL)

    killer = threading.Thread(target=kill_job_0, daemon=True)
    killer.start()
    args = [*TINY_SWEEP, "loader=resident", "dataset.train_size=512", "evaluate=false", "batch_size=64"]
    proc = run_cli(tmp_path, "-m", "hydra/launcher=submitit_local", *args, "epochs=500,501", "hydra.sweep.dir=S")
    killer.join(timeout=10)
    assert proc.returncode == 1 and set(found) == {"killed", "other"}, proc.stderr[-3000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("bench: error: submitit job ") and "has not produced any output (state: " in last
    kept = re.search(r"; the sweep stopped: (.*); partial report: ", last)
    assert kept and sorted(kept[1].split(", ")) == ["1 interrupted", "1 unreadable"], last
    assert "Traceback" not in proc.stderr and (sweep / "report.md").is_file()
    with pytest.raises(ProcessLookupError):
        os.kill(found["other"], 0)  # the other job's process has ended
    assert read_metrics(sweep / "1")["status"] == "interrupted"


def _wait_for(found, proc: subprocess.Popen, timeout: float = 60):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = found()
        if value:
            return value
        assert proc.poll() is None, "the sweep ended early"
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {found}")


def _job_processes(submitit_folder: Path) -> list[int]:
    """The job processes (`python -m submitit.core._submit FOLDER`) of one sweep, from /proc."""
    pids = []
    for entry in Path("/proc").iterdir():
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:  # not a process, or it ended meanwhile
            continue
        if b"submitit.core._submit" in argv and any(a.startswith(str(submitit_folder).encode()) for a in argv):
            pids.append(int(entry.name))
    return pids


def test_without_the_cluster_extra_bench_runs_and_its_launchers_say_what_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # hydra-submitit-launcher is optional: bench's launchers, registered whatever was installed, had made every
    # command a traceback (Hydra refuses an abstract plugin class) on an install without it.
    from hydra_plugins import bench_launchers

    monkeypatch.setattr(bench_launchers, "AVAILABLE", False)  # as its module leaves it when the import fails
    assert run_cli(tmp_path, *TINY).returncode == 0
    proc = run_cli(tmp_path, "-m", "hydra/launcher=local", *TINY_SWEEP, "batch_size=16,32", "hydra.sweep.dir=S")
    assert proc.returncode == 2 and proc.stderr.strip() == (
        "bench: error: LocalLauncher needs hydra-submitit-launcher, which is not installed: pip install -e '.[cluster]'"
    ), proc.stderr
    assert not (tmp_path / "S").exists()


def test_a_job_that_ended_without_a_result_is_recorded_as_its_scheduler_says(tmp_path: Path) -> None:
    # What the launchers record for a job submitit has no result for, from the job's own saved config.
    from types import SimpleNamespace

    from submitit.core.utils import FailedJobError, UncompletedJobError

    from hydra_plugins.bench_launchers import record_lost

    class Job:
        job_id = "77"
        paths = SimpleNamespace(stderr=tmp_path / ".submitit" / "77_0_log.err")

        def __init__(self, number: int | None) -> None:
            self.number = number

        def submission(self) -> SimpleNamespace:
            if self.number is None:
                raise FileNotFoundError("77_submitted.pkl")
            return SimpleNamespace(args=([f"batch_size={16 * (self.number + 1)}"], "hydra.sweep.dir", self.number))

    def started(number: int) -> None:  # what Hydra writes as a job starts
        cfg = compose([f"batch_size={16 * (number + 1)}", "device=auto"])
        (tmp_path / str(number) / ".hydra").mkdir(parents=True)
        OmegaConf.save(cfg, tmp_path / str(number) / ".hydra" / "config.yaml")

    def lost(state: str) -> UncompletedJobError:
        return UncompletedJobError(f"Job 77 (task: 0) with path {tmp_path}/77_0_result.pkl\n"
                                   f"has not produced any output (state: {state})")  # fmt: skip

    for number, state, status in (
        (0, "OUT_OF_MEMORY", "oom"),
        (1, "CANCELLED", "interrupted"),
        (2, "FINISHED", "failed"),
    ):
        started(number)
        assert record_lost(tmp_path, Job(number), lost(state)).return_value is None  # the sweep goes on
        metrics = read_metrics(tmp_path / str(number))
        assert metrics["status"] == status and metrics["batch_size"] == 16 * (number + 1), metrics
        assert f"(submitit job 77 has not produced any output (state: {state})): killed outright" in metrics["error"]
        # device=auto: what it meant was the job's node's to say, not the submitting machine's
        assert metrics["device"] is None
    # The job's process raised outside bench's run: the trace's last line, and where its log is.
    started(3)
    trace = "Job (task=0) failed during processing with trace:\n----\nTraceback (most recent call last):\n" \
            "ModuleNotFoundError: No module named 'bench'\n"  # fmt: skip
    record_lost(tmp_path, Job(3), FailedJobError(trace))
    assert read_metrics(tmp_path / "3")["error"] == (
        "the job's process failed outside the run (submitit job 77: ModuleNotFoundError: No module named 'bench'); "
        f"its log: {tmp_path / '.submitit' / '77_0_log.err'}"
    )
    # A record the job wrote itself is kept as it is.
    before = (tmp_path / "3" / "metrics.json").read_bytes()
    record_lost(tmp_path, Job(3), lost("FINISHED"))
    assert (tmp_path / "3" / "metrics.json").read_bytes() == before
    # A job that never started (no .hydra/: cancelled while queued) gets no folder: the report's `missing`, which a
    # resume runs again under its own number. One whose pickle is unreadable too is only logged.
    record_lost(tmp_path, Job(4), lost("CANCELLED"))
    assert not (tmp_path / "4").exists()
    assert record_lost(tmp_path, Job(None), lost("FINISHED")).status.name == "COMPLETED"


def test_an_array_sbatch_refuses_is_one_line_and_gives_the_folder_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A wrong partition, the commonest first mistake on a cluster: the line told the user to scancel jobs that
    # were never queued and to resume with the same partition, and kept a folder of 1 "missing" job. Here sbatch
    # and srun are stand-ins on PATH that answer as SLURM does; submitit runs as it would on a login node.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, script in (
        ("srun", "exit 0"),
        ("sbatch", 'echo "sbatch: error: invalid partition specified: nosuch" >&2\n'
                   'echo "sbatch: error: Batch job submission failed: Invalid partition name specified" >&2\nexit 1'),
    ):  # fmt: skip
        (bin_dir / name).write_text(f"#!/bin/sh\n{script}\n")
        (bin_dir / name).chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    args = ["-m", "hydra/launcher=slurm", "hydra.launcher.partition=nosuch", *TINY_SWEEP, "batch_size=16,32"]
    proc = run_cli(tmp_path, *args, "hydra.sweep.dir=outputs/S")
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip() == ("bench: error: sbatch refused the sweep's jobs: invalid partition specified: "
                                   "nosuch; Batch job submission failed: Invalid partition name specified; "
                                   "nothing was submitted")  # fmt: skip
    assert not (tmp_path / "outputs").exists()  # the corrected command may have the folder
