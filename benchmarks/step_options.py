"""Which lean-step options are faster on this machine? The measurement behind the ``step`` defaults.

Each option is timed alone against the plain step (torch's default Adam, eager, NCHW), on the resident
loader so that the data path does not hide the step's cost. Run:
``python benchmarks/step_options.py [--configs small:128 medium:64] [--train-size 20000]``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

import torch

from bench import train
from bench.device import resolve_device
from bench.schema import compose, validate

OPTIONS = {
    "cpu": ["step.adam=forloop", "step.adam=foreach", "step.adam=fused", "step.channels_last=true",
            "step.compile=default"],
    "cuda": ["step.adam=foreach", "step.adam=fused", "step.channels_last=true", "step.compile=default",
             "step.compile=reduce-overhead", "step.compile=cudagraph"],
}  # fmt: skip
DEFAULT_CONFIGS = {"cpu": ["small:128", "medium:64"], "cuda": ["medium:256", "large:256"]}


def samples_per_s(overrides: list[str], out: Path) -> float:
    cfg = compose(overrides)
    validate(cfg)
    result = train.run(cfg, out / str(len(list(out.iterdir()))))
    if result.status != "ok":
        raise SystemExit(f"{overrides}: {result.status}: {result.error}")
    return result.train_samples / statistics.median(e.time_s for e in result.epochs_detail)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--configs", nargs="+", help="model:batch (default: per device)")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--train-size", type=int, default=20_000)
    args = parser.parse_args(argv)
    device = resolve_device(args.device)
    print("| config | option | samples/s | × plain |\n|---|---|---:|---:|", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        for spec in args.configs or DEFAULT_CONFIGS[device.type]:
            model, batch = spec.split(":")
            common = [
                f"model={model}", f"batch_size={batch}", f"device={device.type}", "loader=resident",
                f"epochs={args.epochs}", "warmup_steps=10", "evaluate=false", f"dataset.train_size={args.train_size}",
                "step.adam=default", "step.channels_last=false",
            ]  # fmt: skip
            plain = samples_per_s(common, Path(tmp))
            print(f"| {spec} | plain | {plain:,.0f} | 1.00 |", flush=True)
            for option in OPTIONS[device.type]:
                try:
                    rate = samples_per_s([*common, option], Path(tmp))
                except SystemExit as err:
                    print(f"| {spec} | {option} | {err} | — |", flush=True)
                    continue
                print(f"| {spec} | {option} | {rate:,.0f} | {rate / plain:.2f} |", flush=True)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads", file=sys.stderr)


if __name__ == "__main__":
    main()
