"""The resident loader and the lean step compute the same model as the lab's path (docs/architecture.md)."""

from __future__ import annotations

import gc
import logging
from pathlib import Path

import pandas as pd
import pytest
import torch

from bench import train
from bench.measure import MIB
from conftest import TINY, needs_cuda, only_run_dir, read_metrics, run_cli

# Three epochs of 8 steps, with a partial last batch (200 = 6 * 32 + 8): enough to compare trajectories.
DATA = ("dataset.train_size=200", "dataset.test_size=64", "batch_size=32", "epochs=3", "device=cpu")


def _losses(cfg_for, tmp_path: Path, *overrides: str) -> list[float]:
    run_dir = tmp_path / f"run{len(list(tmp_path.iterdir()))}"
    result = train.run(cfg_for(*DATA, *overrides), run_dir)
    assert result.status == "ok", result.error
    return [e.loss for e in result.epochs_detail]


def test_resident_loader_gives_the_labs_losses_exactly_on_cpu(cfg_for, tmp_path: Path) -> None:
    # Same seeded order, same ToTensor + Normalize arithmetic, same step: bit-for-bit the same losses.
    lab = _losses(cfg_for, tmp_path, "loader=dataloader", "workers=0")
    assert _losses(cfg_for, tmp_path, "loader=resident") == lab


@pytest.mark.parametrize(
    "option",
    ["step.adam=forloop", "step.adam=foreach", "step.adam=fused", "step.channels_last=true", "step.set_to_none=false"],
)
def test_every_lean_step_option_trains_the_same_model(cfg_for, tmp_path: Path, option: str) -> None:
    plain = _losses(cfg_for, tmp_path, "loader=resident", "step.adam=default", "step.channels_last=false")
    assert _losses(cfg_for, tmp_path, "loader=resident", option) == pytest.approx(plain, rel=1e-4)


@pytest.mark.slow
def test_compiled_step_trains_the_same_model(cfg_for, tmp_path: Path) -> None:
    plain = _losses(cfg_for, tmp_path, "loader=resident", "model=small")
    assert _losses(cfg_for, tmp_path, "loader=resident", "model=small", "step.compile=default") == pytest.approx(
        plain, rel=1e-4
    )


def test_resident_records_its_memory_and_the_ignored_workers(tmp_path: Path) -> None:
    proc = run_cli(tmp_path, *TINY, "loader=resident", "workers=2")
    assert proc.returncode == 0, proc.stderr
    metrics = read_metrics(only_run_dir(tmp_path))
    assert metrics["loader"] == "resident" and metrics["workers"] == 2
    assert "workers is ignored by loader=resident" in metrics["notes"]
    # 256 images of 32x32x3 values, normalized once to float32 (4 bytes), plus 256 int64 labels, on the device.
    assert metrics["dataset_memory_mb"] == pytest.approx((256 * 3072 * 4 + 256 * 8) / 2**20)


@pytest.mark.skipif(torch.cuda.is_available(), reason="what a CPU run does not use")
def test_a_cpu_run_records_what_it_did_not_use(tmp_path: Path) -> None:
    # Each was dropped without a word, and recipe=fast's autotuning was recorded as on.
    extra = ("loader.pin_memory=true", "loader.persistent_workers=true", "loader.prefetch_factor=4",
             "max_batch.budget_s=5")  # fmt: skip
    proc = run_cli(tmp_path, *TINY, *extra, "cudnn_benchmark=true")
    assert proc.returncode == 0, proc.stderr
    metrics = read_metrics(only_run_dir(tmp_path))
    assert metrics["loader"] == "dataloader" and metrics["workers"] == 0  # TINY's
    assert metrics["cudnn_benchmark"] is None  # cuDNN autotunes CUDA convolutions only
    assert "cudnn_benchmark=true is ignored without CUDA: cuDNN autotunes a GPU's convolutions" in metrics["notes"]
    assert [n for n in metrics["notes"] if "is ignored by" in n] == [
        "loader.pin_memory is ignored by loader=dataloader here: pinned memory speeds copies to a GPU",
        "loader.persistent_workers is ignored by loader=dataloader here: it applies to worker processes, and workers=0",
        "loader.prefetch_factor is ignored by loader=dataloader here: it applies to worker processes, and workers=0",
        "max_batch.budget_s=5 is ignored by task=train: it is a setting of experiment=max_batch",
    ]
    # Said on the console as facts, not warnings: they change no number, and most come from a default or a
    # recipe (workers=2 beside every loader=resident run), not from the user.
    said = proc.stdout + proc.stderr
    assert all(f"Unused here: {n}" in said for n in metrics["notes"] if " is ignored " in n)
    assert not [line for line in said.splitlines() if " is ignored " in line and "Unused here: " not in line], said


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU-only refusal")
def test_a_captured_step_needs_cuda(tmp_path: Path) -> None:
    proc = run_cli(tmp_path, *TINY, "device=cpu", "step.compile=cudagraph")
    assert proc.returncode == 2
    expected = "bench: error: step.compile=cudagraph needs CUDA; on cpu use auto, none, default or max"
    assert proc.stderr.strip() == expected


def test_lab_presets_accept_the_resident_loader(tmp_path: Path) -> None:
    # The command line's batch_size=16,32 replaces the preset's 16,64,256,1024 sweep.
    tiny = [t for t in TINY if not t.startswith("batch_size=")]
    proc = run_cli(tmp_path, *tiny, "experiment=batch_size", "loader=resident", "batch_size=16,32")
    assert proc.returncode == 0, proc.stderr
    sweep = next((tmp_path / "outputs" / "sweeps").iterdir())
    summary = pd.read_csv(sweep / "summary.csv")
    assert list(summary["batch_size"]) == [16, 32]
    assert list(summary["loader"]) == ["resident", "resident"] and (summary["status"] == "ok").all()
    assert "Pipeline: loader=resident" in (sweep / "report.md").read_text()


def test_the_readmes_fast_sweep_runs_as_typed_with_m_after_an_override(tmp_path: Path) -> None:
    # `python -m bench recipe=fast -m batch_size=16,64,256,1024`: Hydra's own parser refuses overrides on both
    # sides of -m; bench moves its options ahead of the overrides first.
    tiny = [t for t in TINY if not t.startswith(("batch_size=", "workers="))]  # workers: its default, 2
    proc = run_cli(tmp_path, "recipe=fast", "-m", *tiny, "batch_size=16,32", "hydra.sweep.dir=S")
    assert proc.returncode == 0, proc.stderr
    summary = pd.read_csv(tmp_path / "S" / "summary.csv")
    assert list(summary["batch_size"]) == [16, 32] and (summary["status"] == "ok").all()
    assert list(summary["recipe"]) == ["fast", "fast"] and list(summary["loader"]) == ["resident", "resident"]
    # Before its epochs, each job says which step it times: what the recipe's autos resolved to here.
    step = read_metrics(tmp_path / "S" / "0")["step"]
    said = f"Step: recipe=fast | compile={step['compile']} | adam={step['adam']} | channels_last="
    assert (proc.stdout + proc.stderr).count(said) == 2, proc.stdout + proc.stderr
    # What the recipe and the defaults set and this run has no use for (cudnn_benchmark=true on a CPU, workers=2
    # beside loader=resident) is not the user's to clear: it was said for every job, and in the report.
    assert "Unused here" not in proc.stdout + proc.stderr
    assert not [n for n in read_metrics(tmp_path / "S" / "0")["notes"] if " is ignored " in n]
    assert "did not use" not in (tmp_path / "S" / "report.md").read_text()


# ------------------------------------------------------------------------------------------------ CUDA


@pytest.mark.cuda
@needs_cuda
@pytest.mark.parametrize("option", ["step.compile=cudagraph", "step.adam=fused", "step.channels_last=true"])
def test_cuda_fast_path_trains_the_same_model(cfg_for, tmp_path: Path, option: str) -> None:
    # Three epochs of 7 steps, the last partial (840 = 6 * 128 + 72), 21 steps in all, as the recipe test's 20
    # below: the same maths rounded in another order drifts apart as Adam goes on. With 16 steps an epoch, on
    # an H200 channels_last's third epoch (steps 33-48) differed from the plain step's by 0.16%.
    cuda = ("device=cuda", "loader=resident", "dataset.train_size=840", "batch_size=128")
    plain = _losses(cfg_for, tmp_path, *cuda, "step.adam=default", "step.channels_last=false")
    assert _losses(cfg_for, tmp_path, *cuda, option) == pytest.approx(plain, rel=1e-3)


@pytest.mark.cuda
@needs_cuda
@pytest.mark.parametrize(
    ("precision", "adam"), [("fp32", "fused"), ("amp_fp16", "fused"), ("amp_fp16", "foreach")]
)  # fmt: skip
def test_timed_steps_make_no_host_sync_but_grad_scalers_beside_a_non_fused_adam(
    cfg_for, tmp_path: Path, monkeypatch, precision: str, adam: str
) -> None:
    # CUDA's sync debug mode raises on any synchronizing call. Inside the timed epochs, fetching a resident
    # batch and running a fused-Adam step must not sync; only the epoch's end may (clock and loss read).
    # fp16's GradScaler too, beside fused Adam, which takes its overflow check into the kernel; beside foreach
    # Adam, GradScaler.step reads that check on the host (found_inf.item()) every step: the one sync torch
    # keeps, after which the host's lead means nothing (bench.diagnosis.scaler_syncs).
    from bench import loaders, measure, step
    from bench.diagnosis import scaler_syncs

    timed = False

    def guarded(call):
        def run(*args, **kwargs):
            torch.cuda.set_sync_debug_mode("error" if timed else "default")
            try:
                return call(*args, **kwargs)
            finally:
                torch.cuda.set_sync_debug_mode("default")

        return run

    def guarded_build_step(*args, **kwargs):
        built = step.build_step(*args, **kwargs)
        built.fn = guarded(built.fn)
        return built

    original_batches = loaders.ResidentSource.batches

    def guarded_batches(self, seed=None):
        batches = original_batches(self, seed)
        fetch = guarded(lambda: next(batches, None))
        while (batch := fetch()) is not None:
            yield batch

    original_epoch = train.run_epoch

    def epoch(*args, **kwargs):
        nonlocal timed
        timed = True
        try:
            return original_epoch(*args, **kwargs)
        finally:
            timed = False

    monkeypatch.setattr(train, "build_step", guarded_build_step)
    monkeypatch.setattr(loaders.ResidentSource, "batches", guarded_batches)
    # The events that split the epoch's time (GPU busy, copies) must not sync either.
    for name in ("started", "done"):
        monkeypatch.setattr(measure.StepEvents, name, guarded(getattr(measure.StepEvents, name)))
    monkeypatch.setattr(train, "run_epoch", epoch)
    # Where a sync is expected, it must be GradScaler's own (its non-fused path's found_inf.item()), not another.
    raised_in_scaler = []
    opt_step = torch.amp.GradScaler._maybe_opt_step

    def watched(self, *args, **kwargs):
        try:
            return opt_step(self, *args, **kwargs)
        except RuntimeError as err:
            raised_in_scaler.append(str(err))
            raise

    monkeypatch.setattr(torch.amp.GradScaler, "_maybe_opt_step", watched)
    cfg = cfg_for("device=cuda", "loader=resident", f"precision={precision}", f"step.adam={adam}",
                  "dataset.train_size=2048", "batch_size=256")  # fmt: skip
    result = train.run(cfg, tmp_path / "run")
    if scaler_syncs(result.step):
        assert result.status == "failed" and "synchroniz" in (result.error or ""), result.error
        assert raised_in_scaler and "synchroniz" in raised_in_scaler[0], raised_in_scaler
        return
    assert adam == "fused" and result.status == "ok", result.error
    assert all(e.gpu_busy_s and 0 < e.gpu_busy_s <= e.time_s * 1.01 for e in result.epochs_detail)
    # The host's lead is read from the same events and a host clock, with the same no-sync loop: 8 steps.
    assert all(e.host_lead_steps is not None for e in result.epochs_detail)


# -------------------------------------------------------------------------------------------- recipes

TWENTY_STEPS = ("dataset.train_size=640", "dataset.test_size=64", "batch_size=32", "epochs=1", "device=cpu")


def test_recipe_fast_picks_the_fast_path_and_keeps_the_precision(cfg_for) -> None:
    fast = cfg_for("recipe=fast", "precision=amp_bf16")
    assert (fast.recipe.name, fast.loader.name, fast.step.compile, fast.cudnn_benchmark) == (
        "fast", "resident", "auto", True,
    )  # fmt: skip
    assert fast.precision.name == "amp_bf16"  # the recipe never changes the maths
    lab = cfg_for()
    assert (lab.recipe.name, lab.loader.name, lab.step.compile, lab.cudnn_benchmark) == (
        "lab", "dataloader", "none", False,
    )  # fmt: skip


def test_the_fast_recipe_trains_the_same_model_on_the_cpu(cfg_for, tmp_path: Path) -> None:
    plain = ("loader=dataloader", "workers=0", "step.adam=default", "step.channels_last=false")
    lab = train.run(cfg_for(*TWENTY_STEPS, *plain), tmp_path / "lab")
    fast = train.run(cfg_for(*TWENTY_STEPS, "recipe=fast"), tmp_path / "fast")
    assert lab.status == fast.status == "ok"
    assert fast.step["compile"] == "none" and fast.step["channels_last"] and fast.step["adam"] == "fused"
    assert [e.loss for e in fast.epochs_detail] == pytest.approx([e.loss for e in lab.epochs_detail], rel=1e-4)
    assert read_metrics(tmp_path / "fast")["recipe"] == "fast"


def test_the_fast_recipe_reaches_the_same_accuracy(cfg_for, tmp_path: Path) -> None:
    data = ("dataset.train_size=4096", "dataset.test_size=1024", "batch_size=64", "epochs=3", "device=cpu")
    lab = train.run(cfg_for(*data, "workers=0", tiny=False), tmp_path / "lab")
    fast = train.run(cfg_for(*data, "recipe=fast", tiny=False), tmp_path / "fast")
    assert lab.metrics["test_accuracy"] > 0.25  # 2.5x chance: it learned, so the comparison means something
    assert abs(fast.metrics["test_accuracy"] - lab.metrics["test_accuracy"]) <= 0.01


@pytest.mark.slow
def test_compile_max_gathers_in_the_step_and_trains_the_same_model(cfg_for, tmp_path: Path) -> None:
    plain = _losses(cfg_for, tmp_path, "loader=resident", "model=small")
    result = train.run(cfg_for(*DATA, "loader=resident", "model=small", "step.compile=max"), tmp_path / "max")
    assert result.status == "ok", result.error
    assert result.step["compile"] == "max" and result.step["input_in_step"] is True
    assert [e.loss for e in result.epochs_detail] == pytest.approx(plain, rel=1e-4)


def test_tf32_is_fp32_on_the_cpu_and_says_so(cfg_for, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    fp32 = _losses(cfg_for, tmp_path, "loader=resident")
    with caplog.at_level(logging.WARNING, logger="bench.train"):
        result = train.run(cfg_for(*DATA, "loader=resident", "precision=tf32"), tmp_path / "tf32")
    assert [e.loss for e in result.epochs_detail] == fp32
    assert "precision=tf32 is fp32 here: TF32 is a GPU tensor-core format" in result.notes
    assert "Note: precision=tf32 is fp32 here" in caplog.text  # on the console too, not only in metrics.json
    assert result.step["math"] == "fp32"  # what ran, as the peak table would name it


def test_fp16_autocast_on_the_cpu_is_said_to_be_slow_before_it_runs(
    cfg_for, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Its warm-up alone took 45 s in the lab's part 5 on this box, and only the closing verdict said why.
    tiny = ("dataset.train_size=64", "dataset.test_size=32", "batch_size=32", "epochs=1", "device=cpu")
    with caplog.at_level(logging.INFO, logger="bench.train"):
        result = train.run(cfg_for(*tiny, "loader=resident", "model=small", "precision=amp_fp16"), tmp_path / "r")
    assert result.status == "ok", result.error
    note = "precision=amp_fp16 on the CPU: fp16 autocast has no fast path here, so expect it many times slower"
    assert any(n.startswith(note) for n in result.notes)
    said = caplog.text
    assert said.index(f"Note: {note}") < said.index("Warm-up:")  # before the wait, not after it


def _tf32_flags() -> tuple[object, ...]:
    """torch's old TF32 flags as a user's code reads them, or the error reading them raises."""
    flags: list[object] = []
    for read in (lambda: torch.backends.cuda.matmul.allow_tf32, lambda: torch.backends.cudnn.allow_tf32,
                 torch.get_float32_matmul_precision):  # fmt: skip
        try:
            flags.append(read())
        except RuntimeError as err:
            flags.append(type(err))
    return tuple(flags)


@pytest.mark.parametrize("matmul", [None, "medium"])
def test_a_run_leaves_torchs_tf32_flags_as_it_found_them(cfg_for, tmp_path: Path, matmul: str | None) -> None:
    saved = torch.get_float32_matmul_precision()
    try:
        if matmul:  # more than the old flag can say: restoring the flag alone made its getter raise
            torch.set_float32_matmul_precision(matmul)
        before = _tf32_flags()
        for precision in ("fp32", "tf32"):
            result = train.run(cfg_for(*DATA, "epochs=1", f"precision={precision}"), tmp_path / precision)
            assert result.status == "ok", result.error
            assert _tf32_flags() == before  # readable as before, with the same values
    finally:
        torch.set_float32_matmul_precision(saved)


@pytest.mark.skipif(not hasattr(torch.backends, "fp32_precision"), reason="torch < 2.9")
@pytest.mark.parametrize("asked", ["", "cudnn"])
def test_fp32_is_fp32_where_the_process_asked_for_tf32_everywhere(cfg_for, asked: str) -> None:
    # Clearing cuDNN's old flag left its convolutions to inherit the process's (or cuDNN's) "tf32": precision=fp32
    # ran them in TF32 and recorded fp32. Checked through the switch a run and the benchmarks use.
    from bench.step import math_mode

    paths = ["", "cuda.matmul", "cudnn", "cudnn.conv", "cudnn.rnn"]

    def setting(path: str) -> object:
        node = torch.backends
        for part in filter(None, path.split(".")):
            node = getattr(node, part)
        return node

    saved = [setting(p).fp32_precision for p in paths]
    try:
        setting(asked).fp32_precision = "tf32"
        before = [setting(p).fp32_precision for p in paths[1:] if p != "cudnn"]
        assert before[1:] == ["tf32", "tf32"]  # convolutions and RNNs: TF32, through the setting above
        for precision, wanted in (("fp32", "ieee"), ("tf32", "tf32")):
            with math_mode(cfg_for(f"precision={precision}").precision):
                assert [setting(p).fp32_precision for p in paths[1:] if p != "cudnn"] == [wanted] * 3
                assert (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32) == (
                    wanted == "tf32", wanted == "tf32")  # fmt: skip
            assert [setting(p).fp32_precision for p in paths[1:] if p != "cudnn"] == before  # as it was
    finally:
        for path, value in zip(paths, saved, strict=True):
            setting(path).fp32_precision = value


@pytest.mark.skipif(not hasattr(torch.backends.cuda.matmul, "fp32_precision"), reason="torch < 2.9")
def test_precision_runs_where_the_process_set_tf32_with_torchs_new_api(cfg_for, tmp_path: Path) -> None:
    # torch's docs advise the new setting; after it, reading the old allow_tf32 flag raises (torch 2.9 on).
    settings = [torch.backends.cuda.matmul, torch.backends.cudnn.conv, torch.backends.cudnn.rnn]
    saved = [s.fp32_precision for s in settings]
    try:
        torch.backends.cuda.matmul.fp32_precision = "tf32"
        before, flags = [s.fp32_precision for s in settings], _tf32_flags()
        assert flags[0] is RuntimeError and flags[1] is not RuntimeError  # the matmul flag raises, cuDNN's reads
        for precision in ("fp32", "tf32"):
            result = train.run(cfg_for(*DATA, "epochs=1", f"precision={precision}"), tmp_path / precision)
            assert result.status == "ok", result.error
            assert [s.fp32_precision for s in settings] == before  # the process's own setting, restored
            assert _tf32_flags()[1] == flags[1]  # and cuDNN's flag still reads (Inductor reads it), as before
    finally:
        for setting, value in zip(settings, saved, strict=True):
            setting.fp32_precision = value


@pytest.mark.cuda
@needs_cuda
# step.compile=max alone is not a case of its own on CUDA: its auto choices (fused Adam, channels_last) make
# it recipe=fast on the resident loader.
@pytest.mark.parametrize("option", ["recipe=fast", "precision=tf32"])
def test_cuda_fast_recipe_trains_the_same_model(cfg_for, tmp_path: Path, option: str) -> None:
    # 20 steps. Inductor's fused kernels round differently from eager ones, and Adam's first updates are
    # about sign(gradient): on an H100, compile=max's third epoch differed by 0.13% from the plain step's.
    # Over more steps, "the same model" is the accuracy test below. Its batch of 64, so that the accuracy
    # test's compiled model is this one's from the cache, not another compilation (6 s less on an H200).
    cuda = ("device=cuda", "dataset.train_size=1280", "batch_size=64", "epochs=1")
    plain = _losses(cfg_for, tmp_path, *cuda, "loader=resident", "step.adam=default", "step.channels_last=false")
    extra = ("loader=resident",) if option != "recipe=fast" else ()
    tolerance = 1e-2 if option == "precision=tf32" else 1e-3  # TF32 rounds the matmul inputs to 10 bits
    held = torch.cuda.memory_allocated()
    assert _losses(cfg_for, tmp_path, *cuda, *extra, option) == pytest.approx(plain, rel=tolerance)
    # A run leaves nothing allocated behind (its captured graphs and compiled model included), or the next
    # run in the process would count it as its own persistent memory.
    gc.collect()
    assert torch.cuda.memory_allocated() <= held + MIB, (held, torch.cuda.memory_allocated())


@pytest.mark.cuda
@needs_cuda
@pytest.mark.timeout(120)  # six runs of 3 epochs, ~45 s on an H100; gpu-check gives each test 60 s
def test_cuda_fast_recipe_reaches_the_same_accuracy(cfg_for, tmp_path: Path) -> None:
    # Three epochs end short of the plateau, where rounding alone moves the accuracy: on the CPU, switching
    # only the convolutions' memory layout (the same maths) moved MediumNet's 3-epoch accuracy by up to 3.3
    # points with 16,384 images (seeds 0 and 1) and by 0.4, 1.0, 0.6 and 0.6 points with 50,000 (seeds 0-3,
    # batch 64; 2.0 at worst with batch 256). On an H100 with 50,000 images one pair differed by 1.7 points
    # in a gpu-check, and seeds 0-2 by +0.1, +0.9 and +0.8 (fast higher). One pair is a coin toss at 1
    # point, so the test compares the mean over three seeds (a pair each), which is what "the same accuracy"
    # means; the maths itself is the 20-step test above.
    # The plain step on the resident loader stands for the lab's path: the same values (the CPU tests show
    # the two give the very same losses), without the DataLoader's image-by-image decoding.
    data = ("dataset.train_size=50000", "dataset.test_size=10000", "batch_size=64", "epochs=3", "device=cuda")
    plain = ("loader=resident", "step.adam=default", "step.channels_last=false")
    accuracy: dict[str, list[float]] = {"lab": [], "fast": []}
    for seed in (0, 1, 2):
        for name, options in (("lab", plain), ("fast", ("recipe=fast",))):
            result = train.run(cfg_for(*data, *options, f"seed={seed}", tiny=False), tmp_path / f"{name}{seed}")
            assert result.status == "ok", result.error
            if name == "fast":
                assert result.step["compile"] == "max" and result.step["channels_last"]
                assert result.step["input_in_step"]
            accuracy[name].append(result.metrics["test_accuracy"])
    assert min(accuracy["lab"]) > 0.25, accuracy  # it learned, so the comparison means something
    # Within 1 point, exactly 1 included: a difference of quotients of 10,000 can exceed 0.01 by rounding alone.
    gap = sum(accuracy["fast"]) / 3 - sum(accuracy["lab"]) / 3
    assert abs(gap) <= 0.01 + 1e-9, accuracy


def test_auto_choices_follow_the_gpu_measurements() -> None:
    # Pure resolution, no GPU needed: what README "Performance" says the H100 measured fastest.
    from bench.step import resolve_adam, resolve_channels_last, resolve_compile

    cuda, cpu = torch.device("cuda"), torch.device("cpu")
    assert resolve_compile("auto", cuda, grad_scaler=False) == "max"
    assert resolve_compile("auto", cuda, grad_scaler=True) == "none"  # a GradScaler cannot be captured
    assert resolve_adam("auto", cuda) == "fused"
    assert resolve_channels_last(None, cuda, "max") and resolve_channels_last(None, cuda, "cudagraph")
    assert not resolve_channels_last(None, cuda, "none")  # the eager step keeps one layout in every precision
    assert resolve_channels_last(None, cpu) and not resolve_channels_last(False, cuda, "max")
