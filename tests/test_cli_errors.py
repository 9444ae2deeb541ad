"""Bad input: one line naming the problem, exit code 2, no traceback (docs/architecture.md, "Failure")."""

import importlib.util
from pathlib import Path

import pytest
import torch

from conftest import TINY, only_run_dir, read_metrics, run_cli

CASES = {
    "unknown model": (["model=nope"], "unknown model 'nope'; choose one of: large, medium, small"),
    "batch size zero": (["batch_size=0"], "batch_size=0 is out of range"),
    "negative batch size": (["batch_size=-5"], "batch_size=-5 is out of range"),
    "negative workers": (["workers=-1"], "workers=-1 is out of range"),
    # loader.workers follows workers, which metrics.json records and the checks bound: set directly, it ran 64
    # workers recorded as 0, and -1 failed halfway as a run error.
    "the loader's workers": (["loader.workers=64"], "loader.workers=64: set workers=64 instead"),
    "zero epochs": (["epochs=0"], "epochs=0 is out of range"),
    # Each epoch was one partial batch of 100, timed and reported as batch 128.
    "batch larger than the data": (
        ["dataset.train_size=100", "batch_size=128"],
        "batch_size=128 is larger than the 100 training images",
    ),
    "unknown precision": (
        ["precision=int8"],
        "unknown precision 'int8'; choose one of: amp_bf16, amp_fp16, fp32",
    ),
    "not an integer": (["batch_size=abc"], "batch_size: Value 'abc'"),
    # OmegaConf reads a non-zero number, and yes, as true: each of these ran as true without a word.
    "a number for true or false": (["evaluate=2"], "evaluate=2: evaluate is true or false"),
    "yes for true or false": (["cudnn_benchmark=yes"], "cudnn_benchmark=yes: cudnn_benchmark is true or false"),
    "a number among a sweep's": (["-m", "profile=false,-7"], "profile=false,-7: profile is true or false"),
    "a number for true, false or null": (["step.channels_last=1"], "step.channels_last is true, false or null"),
    "missing cifar10 offline": (
        ["dataset=cifar10", "data_dir=empty"],
        "put cifar-10-python.tar.gz in empty/ or use dataset=synthetic",
    ),
    # Each said "could not be fetched": with download=false nothing was fetched, and a file is no folder.
    "cifar10 without download": (
        ["dataset=cifar10", "data_dir=empty", "dataset.download=false"],
        "CIFAR-10 is not in empty/ (and dataset.download=false); put cifar-10-python.tar.gz in empty/",
    ),
    "cifar10 in a file": (["dataset=cifar10", "data_dir=/etc/passwd"], "data_dir=/etc/passwd is a file, not a folder"),
    "missing imagefolder": (
        ["dataset=imagefolder", "dataset.root=/does/not/exist"],
        "dataset.root=/does/not/exist needs train/<class>/ and test/<class>/ folders",
    ),
    "imagefolder without root": (["dataset=imagefolder"], "dataset.root is not set"),
    # It ran fp32 and recorded amp_bf16, which the reports and bench.compare then matched on.
    "a precision renamed": (
        ["precision.name=amp_bf16"],
        "precision.name=amp_bf16: precision=fp32 is what runs, and its name is what the results record; choose "
        "the option itself with precision=amp_bf16",
    ),
    "a loader renamed": (["loader.name=resident"], "loader=dataloader is what runs"),
    # Its settings too: bf16 ran, recorded as fp32; amp_fp16 without its GradScaler, recorded as amp_fp16.
    "a precision's settings changed": (
        ["precision.autocast_dtype=bfloat16"],
        "precision.autocast_dtype=bfloat16: precision=fp32 is autocast_dtype=null, and the results record the "
        "precision by its name",
    ),
    "amp_fp16 without its scaler": (
        ["precision=amp_fp16", "precision.grad_scaler=false"],
        "precision.grad_scaler=false: precision=amp_fp16 is grad_scaler=true",
    ),
    # Unchecked: a max_batch job ran with them, and on a GPU failed only then.
    "a memory share above 1": (
        ["task=max_batch", "max_batch.memory_fraction=2"],
        "max_batch.memory_fraction=2.0 is out of range; it must be a share of the GPU's memory",
    ),
    "a negative time budget": (["task=max_batch", "max_batch.budget_s=-1"], "max_batch.budget_s=-1.0 is out of range"),
    "a negative tolerance": (
        ["task=max_batch", "max_batch.tolerance=-0.1"],
        "max_batch.tolerance=-0.1 is out of range",
    ),
    "a recipe renamed": (["recipe.name=fast"], "recipe=lab is what runs"),
    # Each lab part is a sweep of its own (its hydra.sweeper.params): swept together, each job ran its part's fixed
    # values alone (part 2: batch 64 only), exit 0, and the run's message suggested exactly that sweep.
    "several lab parts in a run": (
        ["experiment=batch_size,amp"],
        "experiment=batch_size,amp: each lab part is a "
        "sweep of its own, which a sweep over parts would drop; run one part per command",
    ),
    "several lab parts in a sweep": (
        ["-m", "experiment=batch_size,cpu_vs_gpu"],
        "run one part per command (python -m bench experiment=batch_size), or make lab for all of them",
    ),
    # Hydra's own lines said what was wrong but not what to do, or named another key.
    "a node removed": (["~step"], "step was removed; bench needs it: drop ~step, and set its keys with step.KEY=..."),
    "several lab parts as a list": (
        ["experiment=[batch_size,amp]"],
        "experiment=batch_size,amp: each lab part is a sweep of its own",
    ),
    "a group removed": (
        ["~precision"],
        "precision.name is not set: choose a precision with precision=... (each option's YAML sets its name)",
    ),
    "a group set to null": (
        ["precision=null"],
        "a config group cannot be set to null (as in model=null): drop the "
        "override, or choose one of the group's options",
    ),
    "an unimportable target": (
        ["+hydra.callbacks.x._target_=nonexistent.Mod"],
        "_target_=nonexistent.Mod cannot be imported (No module named 'nonexistent')",
    ),
    "a + on a key that exists": (["+batch_size=8"], "+batch_size: batch_size is a key already; set it without the +"),
    "a ~ on a key without a value": (["~lab"], "~lab: there is no lab to remove"),
    # Hydra's two-line warning, then "unknown model 'medium_x2'": the cause was the search path.
    "a search path that is not there": (
        ["model=medium_x2", "hydra.searchpath=[file://nosuch_conf]"],
        "hydra.searchpath: nosuch_conf is not available here; name a folder of configs as file://DIR",
    ),
    # Hydra's docs teach +experiment=...; its own line told the user to write 'override experiment: ...' in YAML.
    "a + on a config group": (
        ["+experiment=batch_size"],
        "+experiment=batch_size: experiment has an option chosen "
        "already (its default); choose another without the +, as experiment=batch_size",
    ),
    "a + on a config group, in another of Hydra's words": (
        ["+precision=fp32"],
        "+precision=fp32: precision has an option chosen already (its default); choose another without the +, as "
        "precision=fp32",
    ),
}
if importlib.util.find_spec("hydra._internal.target_policy") is not None:  # Hydra versions with a blocklist
    # Reported as a failed run, cut mid-sentence at Hydra's line break: "... is blocklisted because it allows".
    CASES["a target Hydra refuses"] = (
        ["model._target_=os.system"],
        "_target_=os.system: Target 'os.system' is blocklisted because it allows config data to control",
    )
if not torch.cuda.is_available():
    CASES["cuda without a GPU"] = (["device=cuda"], "device=cuda but no CUDA GPU is usable here")


def _tiny_without(args: list[str]) -> list[str]:
    keys = {a.split("=", 1)[0] for a in args}
    return [t for t in TINY if t.split("=", 1)[0] not in keys]


#: cases refused as the run starts, in its folder (README, "Exit codes"); the others leave no file behind
FOUND_AS_THE_RUN_STARTS = {"missing cifar10 offline", "cifar10 without download", "cifar10 in a file",
                           "missing imagefolder", "a target Hydra refuses", "cuda without a GPU"}  # fmt: skip


@pytest.mark.parametrize("case", CASES)
def test_bad_input_is_one_line_and_exit_2(tmp_path: Path, case: str) -> None:
    args, expected = CASES[case]
    proc = run_cli(tmp_path, *_tiny_without(args), *args)
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("bench: error: ")
    assert expected in lines[0]
    assert "Traceback" not in proc.stdout + proc.stderr
    # Before any work, Hydra's run folder included: a typo left one holding only its refusal. What only the run
    # finds as it starts (the data, the device, the component's class) is recorded in its folder.
    if case not in FOUND_AS_THE_RUN_STARTS:
        assert not [p for p in (tmp_path / "outputs").rglob("*") if p.is_file()]


def test_the_config_check_before_a_run_leaves_hydras_config_as_it_found_it(tmp_path: Path) -> None:
    # The check of a single run sets Hydra's global config to read the options chosen; Hydra's run then put that
    # back at its end, and a reproduction later in the process read its choices (precision=fp32 for an
    # amp_bf16 run: exit 2, "the saved config is not valid").
    from hydra.core.hydra_config import HydraConfig

    HydraConfig.instance().cfg = None
    assert run_cli(tmp_path, *TINY, "precision=amp_bf16").returncode == 0
    assert HydraConfig.instance().cfg is None
    # Hydra's --help, --info and --cfg left theirs set: a benchmark's checks later in the process read its
    # loader=dataloader as the choice of their own loader=resident config, and refused it.
    for option in ("--help", "--info", "--cfg"):
        args = ["--cfg", "job", "experiment=amp"] if option == "--cfg" else [option]
        assert run_cli(tmp_path, *args).returncode == 0
        assert HydraConfig.instance().cfg is None, option


def test_a_missing_device_is_still_recorded(tmp_path: Path) -> None:
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    proc = run_cli(tmp_path, *TINY, "device=cuda")
    assert proc.returncode == 2
    metrics = read_metrics(only_run_dir(tmp_path))
    assert metrics["status"] == "skipped"
    assert "no CUDA GPU" in metrics["error"]
    assert metrics["peak_rss_mb"] is None  # it did no work: no memory figure to compare
    # Its log says why too: it was an empty file beside the record.
    assert "Run skipped: device=cuda but no CUDA GPU" in (only_run_dir(tmp_path) / "bench.log").read_text()


def test_a_sweep_refused_for_one_bad_value_leaves_its_folder_to_the_corrected_sweep(tmp_path: Path) -> None:
    # The refused sweep left its multirun.yaml, and the corrected command was then refused in turn: "already holds
    # a sweep; bench never writes over one". The parents its claim made go too (a first sweep's outputs/sweeps/
    # was left empty); a folder that was there before stays.
    (tmp_path / "mine").mkdir()
    sweep = [*(t for t in TINY if not t.startswith("batch_size=")), "hydra.sweep.dir=mine/new/S"]
    refused = run_cli(tmp_path, "-m", *sweep, "batch_size=32,abc")
    assert refused.returncode == 2 and "batch_size" in refused.stderr
    assert (tmp_path / "mine").is_dir() and not any((tmp_path / "mine").iterdir())
    corrected = run_cli(tmp_path, "-m", *sweep, "batch_size=32,64")
    assert corrected.returncode == 0, corrected.stderr
    assert sorted(p.name for p in (tmp_path / "mine" / "new" / "S").iterdir() if p.is_dir()) == ["0", "1"]


def test_a_sweep_of_no_jobs_is_bad_input(tmp_path: Path) -> None:
    # A glob over a key with no options: "Launching 0 jobs", a report that could not be built, exit 0.
    sweep = [*(t for t in TINY if not t.startswith("batch_size=")), "hydra.sweep.dir=S"]
    proc = run_cli(tmp_path, "-m", *sweep, "batch_size=glob(*)")
    assert proc.returncode == 2 and proc.stderr.strip().splitlines() == [
        "bench: error: the sweep has no jobs: its sweep overrides expand to no values"
    ]
    assert not (tmp_path / "S").exists()  # given back
