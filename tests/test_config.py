"""The Hydra app's config: defaults, groups, overrides, help, and the installed config package."""

from pathlib import Path

import pytest
from omegaconf import OmegaConf

from conftest import run_cli

CONF = Path(__file__).resolve().parents[1] / "conf"
GROUPS = ("model", "device", "precision", "dataset", "loader")


def test_defaults_are_the_designs(cfg_for) -> None:
    cfg = cfg_for(tiny=False)
    assert cfg.model.name == "medium"
    assert cfg.device.name == "auto"
    assert cfg.precision.name == "fp32"
    assert cfg.dataset.name == "synthetic"
    assert cfg.loader.name == "dataloader"
    assert (cfg.batch_size, cfg.workers, cfg.epochs, cfg.lr, cfg.seed) == (64, 2, 3, 0.001, 0)
    assert cfg.data_dir == "data"


@pytest.mark.parametrize("group", GROUPS)
def test_every_group_option_composes_and_names_itself(cfg_for, group: str) -> None:
    for option in sorted(p.stem for p in (CONF / group).glob("*.yaml")):
        cfg = cfg_for(f"{group}={option}")
        assert cfg[group].name == option


def test_keys_are_overridable_and_typed(cfg_for) -> None:
    cfg = cfg_for(
        "batch_size=128", "workers=4", "epochs=2", "lr=0.01", "seed=7",
        "dataset.train_size=1000", "dataset.test_size=100",
        "loader.pin_memory=true", "loader.persistent_workers=true",
    )  # fmt: skip
    assert (cfg.batch_size, cfg.workers, cfg.epochs, cfg.lr, cfg.seed) == (128, 4, 2, 0.01, 7)
    assert (cfg.dataset.train_size, cfg.dataset.test_size) == (1000, 100)
    assert cfg.loader.pin_memory is True and cfg.loader.persistent_workers is True


def test_amp_presets_select_the_lab_and_bf16_recipes(cfg_for) -> None:
    fp16 = cfg_for("precision=amp_fp16").precision
    bf16 = cfg_for("precision=amp_bf16").precision
    assert (fp16.autocast_dtype, fp16.grad_scaler) == ("float16", True)
    assert (bf16.autocast_dtype, bf16.grad_scaler) == ("bfloat16", False)


@pytest.mark.parametrize("part", sorted(p.stem for p in (CONF / "experiment").glob("*.yaml") if p.stem != "max_batch"))
def test_each_lab_preset_says_how_many_epochs_the_labs_runs_had(cfg_for, part: str) -> None:
    # The lab's s/epoch is a mean over its epochs, its first (with its one-time costs) included; a sweep run
    # with epochs=1 sat beside the lab's 3 saying "with the lab's settings". ran_with names them, as its own.
    cfg = cfg_for(f"experiment={part}", tiny=False)
    assert cfg.lab.ran_with.epochs == cfg.epochs


def test_cfg_job_from_another_directory_finds_the_installed_configs(tmp_path: Path) -> None:
    # tmp_path is not the repository: the configs must come from the installed package bench.conf.
    proc = run_cli(tmp_path, "--cfg", "job", "model=large", "batch_size=256", isolated=True)
    assert proc.returncode == 0, proc.stderr
    cfg = OmegaConf.create(proc.stdout)
    assert cfg.model.name == "large" and cfg.batch_size == 256
    assert not (tmp_path / "outputs").exists()  # --cfg prints; it does not run


def test_cfg_job_of_a_preset_checks_each_job_of_its_sweep(tmp_path: Path) -> None:
    # A preset is a sweep: --cfg job showed batch_size: 64, which no job of experiment=batch_size runs, and exit 0
    # for a sweep that its own check refuses at job 3 (batch 1,024 of 512 images).
    proc = run_cli(tmp_path, "--cfg", "job", "experiment=batch_size", "dataset.train_size=512")
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1] == (
        "bench: error: batch_size=1024 is larger than the 512 training images: each epoch would be one batch of 512, "
        "timed and reported as batch 1,024; lower batch_size or raise dataset.train_size (job 3 of the preset's "
        "sweep, batch_size=1024, would be refused)"
    )
    proc = run_cli(tmp_path, "--cfg", "job", "experiment=amp")  # each job with its own choice of precision
    assert proc.returncode == 0, proc.stderr
    assert ("This preset is a sweep of 2 jobs (precision=fp32,amp_fp16): the config above is before each job's own "
            "values; every job's was checked") in proc.stderr  # fmt: skip
    # One value typed for the swept key is one run: the print is that run's config, and no line says otherwise.
    for typed in ("batch_size=32", "++batch_size=32"):
        proc = run_cli(tmp_path, "--cfg", "job", "experiment=batch_size", typed)
        assert proc.returncode == 0 and OmegaConf.create(proc.stdout).batch_size == 32
        assert "sweep" not in proc.stderr
    # Each job as the sweep checks it: numbered (this one ran "2 ok" as a sweep and was refused here).
    proc = run_cli(tmp_path, "--cfg", "job", "experiment=batch_size", "seed=${hydra:job.num}")
    assert proc.returncode == 0 and "sweep of 4 jobs" in proc.stderr, proc.stderr
    assert not (tmp_path / "outputs").exists()


def test_help_lists_groups_and_options(tmp_path: Path) -> None:
    proc = run_cli(tmp_path, "--help")
    assert proc.returncode == 0, proc.stderr
    for line in (
        "model: large, medium, small",
        "device: auto, cpu, cuda",
        "precision: amp_bf16, amp_fp16, fp32",
        "dataset: cifar10, imagefolder, synthetic",
    ):
        assert line in proc.stdout
    assert "batch_size: 64" in proc.stdout
    # Every entry point, with the fast path, before the groups.
    for command in ("bench recipe=fast", "bench.report", "bench.reproduce", "bench.compare BASELINE CANDIDATE"):
        assert f"python -m {command}" in proc.stdout.split("== Config groups")[0], command
    # And how to finish a stopped sweep and run one on a cluster, which it had never said.
    head = proc.stdout.split("== Config groups")[0]
    assert "resume=true" in head and "hydra/launcher=slurm" in head


def test_info_reports_the_config_search_path(tmp_path: Path) -> None:
    proc = run_cli(tmp_path, "--info")
    assert proc.returncode == 0, proc.stderr
    assert "pkg://bench.conf" in proc.stdout
    # After an override, --info took it for its value: "invalid choice: 'model=small'", exit 2.
    proc = run_cli(tmp_path, "model=small", "--info")
    assert proc.returncode == 0 and "pkg://bench.conf" in proc.stdout, proc.stderr
    proc = run_cli(tmp_path, "model=small", "--info", "defaults")  # with its value, wherever it is
    assert proc.returncode == 0 and "Defaults List" in proc.stdout, proc.stderr
