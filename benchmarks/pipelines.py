"""Where does the time go? The lab's pipeline against a tuned one, bench's fast path, and a bare loop.

For each (model, batch size, precision) it trains the same model on the same data, in one process:

  (a) lab        the lab's pipeline: DataLoader, workers=2, per-sample PIL → ToTensor → Normalize, plain step
  (b) tuned      the same pipeline with persistent workers and pinned memory (non_blocking copies)
  (r) resident   loader=resident with the plain step: the data path alone, through bench's loop
  (c) fast       loader=resident + the lean step (bench's defaults; a captured CUDA graph on a GPU)
  (d) bare       no harness at all: pre-normalized tensors on the device, plain step, no metrics — the floor

(a)–(c) run through bench's own training loop: (r) against (d), the same step, is what the harness
(per-batch normalization, clocks, progress, loss accumulation) costs; (c) against (r) is what the lean step
buys. Each figure is
the median epoch time over the timed epochs (warm-up excluded). Run: ``make bench`` or
``python benchmarks/pipelines.py --help``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from omegaconf import DictConfig

from bench import measure, train
from bench.datasets import load_arrays
from bench.device import resolve_device
from bench.environment import environment
from bench.loaders import normalize
from bench.schema import compose, instantiate, validate
from bench.step import autocast_dtype

DEFAULT_CONFIGS = {
    "cpu": ["small:128:fp32", "medium:64:fp32"],
    "cuda": ["medium:256:fp32", "medium:256:amp_bf16", "large:256:fp32"],
}
LAB = ["loader=dataloader", "workers=2", "step.adam=default", "step.channels_last=false"]
VARIANTS = {
    "a": ("lab", LAB),
    "b": ("tuned", [*LAB, "loader.persistent_workers=true", "loader.pin_memory=true"]),
    "r": ("resident", ["loader=resident", "step.adam=default", "step.channels_last=false"]),
    "c": ("fast", ["loader=resident"]),
}
#: the fast path's extra options per device: what measured fastest (README "Performance")
FAST_STEP = {"cuda": ["step.compile=cudagraph"], "cpu": []}
#: the targets the issue sets; printed as PASS/FAIL beside the figures
CPU_TARGETS = {("small", 128), ("medium", 64)}


@dataclass
class Figure:
    variant: str
    name: str
    epoch_s: float
    samples_per_s: float
    epochs: list[float]
    warmup_s: float | None


def _through_bench(variant: str, overrides: list[str], out: Path) -> Figure:
    cfg = compose(overrides)
    validate(cfg)
    result = train.run(cfg, out / variant)
    if result.status != "ok":
        raise SystemExit(f"({variant}) {VARIANTS[variant][0]} ended {result.status}: {result.error}")
    times = [e.time_s for e in result.epochs_detail]
    median = statistics.median(times)
    warmup = result.metrics.get("warmup_time")
    return Figure(variant, VARIANTS[variant][0], median, result.train_samples / median, times, warmup)


def _bare(cfg: DictConfig, device: torch.device) -> Figure:
    """The floor: the same model, data and Adam with nothing around it."""
    arrays = load_arrays(cfg.dataset)
    x_all = normalize(torch.from_numpy(arrays.train_x)).to(device)
    y_all = torch.from_numpy(arrays.train_y).to(device)
    n, bs = len(y_all), cfg.batch_size
    torch.manual_seed(cfg.seed)
    model = instantiate(cfg.model, num_classes=len(arrays.classes)).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    criterion = torch.nn.CrossEntropyLoss()
    dtype = autocast_dtype(cfg.precision)

    def epoch(steps: int | None = None) -> None:
        order = torch.randperm(n, device=device)
        for i, start in enumerate(range(0, n, bs)):
            if steps is not None and i >= steps:
                break
            idx = order[start : start + bs]
            optimizer.zero_grad(set_to_none=True)
            with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
                loss = criterion(model(x_all[idx]), y_all[idx])
            loss.backward()
            optimizer.step()

    clock = measure.Stopwatch(device)
    clock.start()
    epoch(steps=cfg.warmup_steps)
    warm = clock.stop().wall_s
    times = []
    for _ in range(cfg.epochs):
        clock.start()
        epoch()
        times.append(clock.stop().wall_s)
    median = statistics.median(times)
    return Figure("d", "bare", median, n / median, times, warm)


def run_config(spec: str, args: argparse.Namespace, device: torch.device, out: Path) -> list[Figure]:
    model, batch_size, precision = spec.split(":")
    common = [
        f"model={model}", f"batch_size={batch_size}", f"precision={precision}", f"device={device.type}",
        f"epochs={args.epochs}", f"warmup_steps={args.warmup_steps}", "evaluate=false", f"seed={args.seed}",
    ]  # fmt: skip
    if args.train_size:
        common.append(f"dataset.train_size={args.train_size}")
    figures = []
    for variant, (name, overrides) in VARIANTS.items():
        if variant not in args.variants:
            continue
        extra = FAST_STEP[device.type] if variant == "c" else []
        print(f"  ({variant}) {name} ...", flush=True, file=sys.stderr)
        figures.append(_through_bench(variant, [*common, *overrides, *extra], out / spec.replace(":", "_")))
    if "d" in args.variants:
        print("  (d) bare ...", flush=True, file=sys.stderr)
        figures.append(_bare(compose(common), device))
    return figures


def table(spec: str, figures: list[Figure]) -> list[str]:
    by = {f.variant: f for f in figures}
    lines = [
        f"### {spec.replace(':', ' · batch ', 1).replace(':', ' · ')}",
        "",
        "| pipeline | samples/s | epoch (s, median) | × (a) lab | × (d) bare | epochs (s) |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for f in figures:
        vs_a = f"{f.samples_per_s / by['a'].samples_per_s:.2f}" if "a" in by else "—"
        vs_d = f"{f.samples_per_s / by['d'].samples_per_s:.2f}" if "d" in by else "—"
        epochs = ", ".join(f"{t:.2f}" for t in f.epochs)
        lines.append(
            f"| ({f.variant}) {f.name} | {f.samples_per_s:,.0f} | {f.epoch_s:.3f} | {vs_a} | {vs_d} | {epochs} |"
        )
    return [*lines, ""]


def verdicts(spec: str, figures: list[Figure], device: torch.device) -> list[str]:
    model, batch_size, _ = spec.split(":")
    by = {f.variant: f for f in figures}
    if device.type != "cpu" or (model, int(batch_size)) not in CPU_TARGETS or not {"a", "c", "d"} <= set(by):
        return []
    speedup = by["c"].samples_per_s / by["a"].samples_per_s
    harness = by["c"].samples_per_s / by["d"].samples_per_s
    lines = [
        f"- {'PASS' if speedup >= 2 else 'FAIL'}: (c) is {speedup:.2f}× (a) (target ≥ 2×)",
        f"- {'PASS' if harness >= 0.9 else 'FAIL'}: (c) runs at {harness:.2f}× the bare loop's speed (target ≥ 0.90)",
    ]
    if "r" in by:
        # (c) has a faster step than (d), which could hide harness overhead; (r) has the same step as (d).
        same_step = by["r"].samples_per_s / by["d"].samples_per_s
        lines.append(
            f"- {'PASS' if same_step >= 0.9 else 'FAIL'}: with the same plain step, bench's loop (r) runs at "
            f"{same_step:.2f}× the bare loop (target ≥ 0.90: the harness itself costs at most 10%)"
        )
    return [*lines, ""]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--configs", nargs="+", help="model:batch:precision (default: per device, see source)")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--epochs", type=int, default=3, help="timed epochs per pipeline (median reported)")
    parser.add_argument("--warmup-steps", type=int, default=10)
    parser.add_argument("--train-size", type=int, help="images per epoch (default: all 50,000)")
    parser.add_argument("--variants", default="abrcd", help="which of a, b, r, c, d to run")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, help="write results.md and results.json here")
    args = parser.parse_args(argv)
    if args.epochs < 3:
        parser.error("--epochs must be at least 3: the figure is a median over timed epochs")
    device = resolve_device(args.device)
    specs = args.configs or DEFAULT_CONFIGS[device.type]
    env = environment(device)
    header = [
        "## Pipelines, side by side",
        "",
        f"Device: {env['gpu'] or env['cpu']} · torch {env['torch']} · {torch.get_num_threads()} CPU threads · "
        f"median of {args.epochs} timed epochs after {args.warmup_steps} warm-up steps · "
        f"{args.train_size or 50_000} synthetic images per epoch · {time.strftime('%Y-%m-%d')}",
        "",
    ]
    print("\n".join(header), flush=True)
    lines = list(header)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for spec in specs:
            print(f"{spec}:", file=sys.stderr, flush=True)
            figures = run_config(spec, args, device, Path(tmp))
            block = table(spec, figures) + verdicts(spec, figures, device)
            print("\n".join(block), flush=True)
            lines += block
            results[spec] = [f.__dict__ for f in figures]
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "results.md").write_text("\n".join(lines))
        (args.out / "results.json").write_text(json.dumps({"env": env, "results": results}, indent=2))
        print(f"wrote {args.out / 'results.md'}", file=sys.stderr)


if __name__ == "__main__":
    main()
