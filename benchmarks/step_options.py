"""Which step options are faster on this machine? The measurement behind the ``auto`` choices.

Each option is timed alone against the plain step (torch's default Adam, eager, NCHW), on the resident
loader so that the data path does not hide the step's cost, per model, batch and precision. The table is
printed and, with ``--out``, written as ``step_options.md`` and ``step_options.json``: the evidence for
``AUTO_ADAM``, ``AUTO_CHANNELS_LAST`` and ``AUTO_COMPILE`` in src/bench/step.py (README "Performance").
Run: ``python benchmarks/step_options.py [--configs medium:256:fp32 ...] [--train-size 20000] [--out DIR]``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

import torch

from bench import train
from bench.device import resolve_device
from bench.environment import environment
from bench.schema import compose, validate

OPTIONS = {
    "cpu": ["step.adam=forloop", "step.adam=foreach", "step.adam=fused", "step.channels_last=true",
            "step.compile=default", "step.compile=max"],
    "cuda": ["step.adam=foreach", "step.adam=fused", "step.channels_last=true", "step.compile=default",
             "step.compile=reduce-overhead", "step.compile=cudagraph", "step.compile=max",
             "step.compile=cudagraph step.channels_last=true", "step.compile=max step.channels_last=true"],
}  # fmt: skip
DEFAULT_CONFIGS = {
    "cpu": ["small:128:fp32", "medium:64:fp32"],
    "cuda": ["medium:256:fp32", "medium:256:tf32", "medium:256:amp_bf16", "large:256:amp_bf16"],
}


def samples_per_s(overrides: list[str], out: Path) -> float:
    cfg = compose(overrides)
    validate(cfg)
    result = train.run(cfg, out / str(len(list(out.iterdir()))))
    if result.status != "ok":
        raise SystemExit(f"{overrides}: {result.status}: {result.error}")
    return result.train_samples / statistics.median(e.time_s for e in result.epochs_detail)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--configs", nargs="+", help="model:batch:precision (default: per device)")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--train-size", type=int, default=20_000)
    parser.add_argument("--out", type=Path, help="write step_options.md and step_options.json here")
    args = parser.parse_args(argv)
    device = resolve_device(args.device)
    rows: list[dict[str, object]] = []
    lines = ["| config | option | samples/s | × plain |", "|---|---|---:|---:|"]
    print("\n".join(lines), flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        for spec in args.configs or DEFAULT_CONFIGS[device.type]:
            model, batch, precision = spec.split(":")
            common = [
                f"model={model}", f"batch_size={batch}", f"precision={precision}", f"device={device.type}",
                "loader=resident", f"epochs={args.epochs}", "warmup_steps=10", "evaluate=false",
                f"dataset.train_size={args.train_size}", "step.adam=default", "step.channels_last=false",
            ]  # fmt: skip
            plain = samples_per_s(common, Path(tmp))
            rows.append({"config": spec, "option": "plain", "samples_per_s": plain, "ratio": 1.0})
            for option in OPTIONS[device.type]:
                try:
                    rate: float | None = samples_per_s([*common, *option.split()], Path(tmp))
                except SystemExit as err:
                    rate = None
                    print(f"| {spec} | {option} | {err} | — |", flush=True)
                rows.append({"config": spec, "option": option, "samples_per_s": rate,
                             "ratio": rate / plain if rate else None})  # fmt: skip
            for row in rows[-len(OPTIONS[device.type]) - 1 :]:
                if row["samples_per_s"] is not None:
                    line = f"| {spec} | {row['option']} | {row['samples_per_s']:,.0f} | {row['ratio']:.2f} |"
                    lines.append(line)
                    print(line, flush=True)
    env = environment(device)
    where = f"{env['gpu'] or env['cpu']}, torch {torch.__version__}, {torch.get_num_threads()} threads"
    print(where, file=sys.stderr)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "step_options.md").write_text("\n".join([f"Measured on {where}.", "", *lines, ""]))
        (args.out / "step_options.json").write_text(json.dumps({"env": env, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
