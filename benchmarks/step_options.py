"""Which step options are faster on this machine? The measurement behind the ``auto`` choices.

Each option is timed alone against the plain step (torch's default Adam, eager, NCHW), on the resident
loader so that the data path does not hide the step's cost, per model, batch and precision. The table is
printed and, with ``--out``, written as ``step_options.md`` and ``step_options.json``: the evidence for
``AUTO_ADAM``, ``AUTO_CHANNELS_LAST`` and ``AUTO_COMPILE`` in src/bench/step.py (README "Performance").
Run: ``python benchmarks/step_options.py [--configs medium:256:fp32 ...] [--train-size 20000] [--out DIR]``.
"""

from __future__ import annotations

import bench  # noqa: F401  (first: until the command's own handlers, a signal in the imports is one line)

# isort: split

import statistics
import sys
import tempfile
from pathlib import Path

import torch

from bench import interrupts
from bench.environment import environment
from bench.errors import EXIT_RUN_FAILED, Interrupted, OneLineParser, describe, exit_interrupted, fail
from bench.schema import compose, override_key, validate
from pipelines import PLAIN, check_out, check_setting, check_specs, device_for, through_bench, write_results

OPTIONS = {
    "cpu": ["step.adam=forloop", "step.adam=foreach", "step.adam=fused", "step.channels_last=true",
            "step.compile=default", "step.compile=max"],
    # Inside the whole-step capture, which the CUDA auto choice already is: Adam's implementation, the layout
    # and the compiled model there. The eager compile modes (default, reduce-overhead) cost a compilation
    # each and lost to the capture when measured (README "Performance"); `--options` runs any list.
    "cuda": ["step.adam=fused", "step.channels_last=true", "step.compile=cudagraph",
             "step.compile=cudagraph step.adam=foreach", "step.compile=cudagraph step.adam=fused",
             "step.compile=cudagraph step.adam=fused step.channels_last=true",
             "step.compile=max step.adam=fused", "step.compile=max step.adam=fused step.channels_last=true"],
}  # fmt: skip
#: untimed steps before each option's epochs (compilation and capture paid there)
WARMUP_STEPS = 10
#: keys (or groups) of what is timed, not of how the step runs: an option may not set them
NOT_OPTIONS = ("model", "batch_size", "precision", "dataset", "loader", "recipe", "experiment", "task", "epochs",
               "warmup_steps", "evaluate", "repeat", "seed", "profile")  # fmt: skip
#: the shapes and precisions of the pipelines benchmark's fast paths, so their compiled graphs are shared
DEFAULT_CONFIGS = {
    "cpu": ["small:128:fp32", "medium:64:fp32"],
    "cuda": ["medium:256:tf32", "medium:4096:amp_bf16", "large:1024:amp_bf16"],
}
#: images per epoch: on a GPU a multiple of every batch size above, so no epoch ends in a partial batch
TRAIN_SIZE = {"cpu": 20_000, "cuda": 49_152}
#: what --out gets: the table as printed, and the rows
RESULT_FILES = ("step_options.md", "step_options.json")


def plain_overrides(spec: str, device: torch.device, epochs: int, train_size: int) -> list[str]:
    """A config's run with the plain step on the resident loader (pipelines.py's (r)); an option adds to it."""
    model, batch, precision = spec.split(":")
    return [
        f"model={model}", f"batch_size={batch}", f"precision={precision}", f"device={device.type}",
        f"epochs={epochs}", f"warmup_steps={WARMUP_STEPS}", "evaluate=false", f"dataset.train_size={train_size}",
        *PLAIN,
    ]  # fmt: skip


def check_options(parser: OneLineParser, options: list[str], specs: list[str], common: dict[str, list[str]]) -> None:
    """Refuse, before any timing, an option that is not a bench setting or that a config cannot run: one line,
    exit 2 (it was a `failed` row after the baseline's minutes, exit 0)."""
    for option in options:
        words = option.split()
        if not words:  # --options '': it read as "not hydra.*"
            parser.error(f"--options {option!r}: an empty option; give each as one quoted argument of overrides, "
                         "e.g. 'step.adam=fused'")  # fmt: skip
        if any(w.lstrip("+~").startswith("hydra.") for w in words):
            parser.error(f"--options {option!r}: an option is bench settings (e.g. step.adam=fused), not hydra.*")
        # Every row is timed against the baseline on one device: --device's (device=cuda here failed only after
        # the baseline's minutes, on a machine without CUDA).
        if any(override_key(w).split(".")[0] == "device" for w in words):
            parser.error(f"--options {option!r}: the device is --device's, for the baseline and every option alike")
        # An option that changes what is timed (model=large ran a row of LargeNet, "× plain" against MediumNet's
        # baseline; loader=dataloader under a header saying resident) is no step option.
        fixed = next((w for w in words if override_key(w).split(".")[0] in NOT_OPTIONS), None)
        if fixed is not None:
            key = fixed.split("=")[0]
            parser.error(f"--options {option!r}: {key} is the run's, not a step option: every row is timed against "
                         "the same plain run (--configs model:batch:precision, --train-size)")  # fmt: skip
        for spec in specs:
            try:
                validate(compose([*common[spec], *words]))
            except Exception as err:  # a parse error, an unknown key or value, a combination this device refuses
                parser.error(f"--options {option!r}: {describe(err)}")


def measure(overrides: list[str], out: Path) -> tuple[float, float | None, float | None]:
    """Samples per second (median timed epoch), the warm-up's seconds (compilation and capture), and how far
    apart its epochs were: (slowest − fastest) ÷ the median epoch time, None for a single epoch."""
    figure = through_bench(overrides, out / str(len(list(out.iterdir()))))
    times = figure.epochs
    spread = (max(times) - min(times)) / statistics.median(times) if len(times) > 1 else None
    return figure.samples_per_s, figure.warmup_s, spread


def within_noise(ratio: float, spread: float | None, plain_spread: float | None) -> bool:
    """Whether an option's ratio to the plain step is no further from 1, either way (0.5x as 2x), than the two
    runs' epochs were apart, their spreads summed: on a shared CPU, two runs of one option read 0.09x and 1.33x
    of the plain step. Runs differ by more than their epochs do, so a ratio outside it is not proven either."""
    return spread is not None and plain_spread is not None and max(ratio, 1 / ratio) <= 1 + spread + plain_spread


def main(argv: list[str] | None = None) -> None:
    parser = OneLineParser(description=__doc__.split("\n\n")[0])
    defaults = "; ".join(f"{device}: {' '.join(specs)}" for device, specs in DEFAULT_CONFIGS.items())
    parser.add_argument(
        "--configs", nargs="+", help=f"model:batch:precision, e.g. small:32:fp32 (default, per device: {defaults})"
    )
    parser.add_argument(
        "--device",
        default="auto",
        choices=["auto", "cpu", "cuda"],
        help="where to time them (default: auto, a CUDA GPU where there is one)",
    )
    parser.add_argument("--epochs", type=int, default=3,
                        help="timed epochs per option, their median reported (default: 3)")  # fmt: skip
    parser.add_argument("--train-size", type=int, help="images per epoch (default: 20,000 on the CPU, 49,152 on GPU)")
    parser.add_argument("--options", nargs="+",
                        help="options to time, each one quoted argument of space-separated overrides, e.g. "
                             "'step.adam=fused' 'step.compile=max step.channels_last=true' (default: the "
                             "alternatives to the device's auto choices, OPTIONS in the source)")  # fmt: skip
    parser.add_argument("--out", type=Path,
                        help="write step_options.md and step_options.json here (default: print only)")  # fmt: skip
    args = parser.parse_args(argv)
    device = device_for(parser, args.device)
    specs = args.configs or DEFAULT_CONFIGS[device.type]
    check_setting(parser, "--train-size", "dataset.train_size", args.train_size)
    train_size = args.train_size or TRAIN_SIZE[device.type]
    check_specs(parser, specs, train_size, variants=False)
    check_setting(parser, "--epochs", "epochs", args.epochs)
    check_out(parser, args.out, RESULT_FILES)
    options = args.options or OPTIONS[device.type]
    common = {spec: plain_overrides(spec, device, args.epochs, train_size) for spec in specs}
    check_options(parser, options, specs, common)
    env = environment(device)
    where = f"{env['gpu'] or env['cpu']}, torch {torch.__version__}, {torch.get_num_threads()} threads"
    rows: list[dict[str, object]] = []
    timed = f"median of {args.epochs} epochs" if args.epochs > 1 else "one epoch"  # "median of 1 epochs" was not
    lines = [
        f'Measured on {where}; {timed} of {train_size:,} images, resident loader. "Epochs apart": (slowest − '
        "fastest) ÷ median epoch; a ratio no further from 1 (either way) than its run's and the plain run's "
        "epochs apart, summed, is marked (noise): more --epochs, or a quieter machine, tell it apart.",
        "",
        "| config | option | samples/s | × plain | epochs apart | warm-up (s) |",
        "|---|---|---:|---:|---:|---:|",
    ]
    print("\n".join(lines), flush=True)

    def record(spec: str, option: str, measured: tuple[float | None, float | None, float | None],
               plain: tuple[float | None, float | None, float | None]) -> None:  # fmt: skip
        (rate, warmup, spread), (base, _, base_spread) = measured, plain
        ratio = rate / base if rate and base else None
        noisy = bool(ratio and option != "plain" and within_noise(ratio, spread, base_spread))
        rows.append({"config": spec, "option": option, "samples_per_s": rate, "ratio": ratio, "warmup_s": warmup,
                     "epochs_apart": spread, "within_noise": noisy})  # fmt: skip
        noise = " (noise)" if noisy else ""
        cells = [f"{rate:,.0f}" if rate else "failed", f"{ratio:.2f}{noise}" if ratio else "—",
                 f"{spread:.0%}" if spread is not None else "—",
                 f"{warmup:.1f}" if warmup is not None else "—"]  # fmt: skip
        lines.append(f"| {spec} | {option} | {' | '.join(cells)} |")
        print(lines[-1], flush=True)

    def write() -> None:
        if args.out:  # after every config, so a run cut short keeps what it measured
            # With the settings the rows were timed under, as harness.json has them: the rows alone did not say.
            settings = {"device": device.type, "configs": specs, "epochs": args.epochs, "train_size": train_size,
                        "warmup_steps": WARMUP_STEPS, "options": options}  # fmt: skip
            write_results(args.out, RESULT_FILES, [*lines, ""], {"env": env, "settings": settings, "rows": rows})

    with tempfile.TemporaryDirectory() as tmp, interrupts.entry_point():
        try:
            for spec in specs:
                plain: tuple[float | None, float | None, float | None] = (None, None, None)
                for option in ("plain", *options):
                    try:
                        measured = measure([*common[spec], *([] if option == "plain" else option.split())],
                                           Path(tmp))  # fmt: skip
                    except (Exception, SystemExit) as err:  # one failing must not cost the others their rows
                        print(f"  {spec} {option}: {err}", file=sys.stderr, flush=True)
                        measured = (None, None, None)
                    plain = measured if option == "plain" else plain
                    record(spec, option, measured, plain)
                with interrupts.deferred():  # a signal waits until the files are whole
                    write()
        except Interrupted as stop:  # Ctrl-C or SIGTERM: the rows measured so far are kept
            with interrupts.deferred(reraise=False):  # a second signal, too
                write()
            exit_interrupted(stop, f"{len(rows)} rows measured" + (f", written to {args.out}" if args.out else ""))
    failed = sum(1 for row in rows if row["samples_per_s"] is None)
    if failed:  # a script or a CI job must not read a `failed` row as a pass
        fail(f"{failed} row(s) failed: they say `failed`, and the reason is above", EXIT_RUN_FAILED)


if __name__ == "__main__":
    main()
