"""What does bench's timed loop cost? Its epochs alternated with a bare loop's, in one process.

pipelines.py prices the harness as (r) ÷ (d), whole runs one after the other. On a shared CPU box, whose
speed drifts by 10% and more between runs, no number of such pairs has judged a 3% target (README
"Performance"). Here the two loops take turns, one epoch each, r d d r r d …, in one process on the same
data, so each round's two epochs are seconds apart and a drift slows both:

  (r) bench's loop: ``bench.loop.run_epoch``, the function a run times (its clock, CUDA events, progress
      bar, loss accumulation and the resident loader's shuffle and gather), with the plain step (torch's
      default Adam, NCHW, eager), built by bench's own ``build_loader`` and ``build_step``;
  (d) pipelines.py's bare loop: the same model, data and Adam, a permutation and an index, nothing else.

A round's ratio is (d)'s epoch time ÷ (r)'s: 1.0 when the harness is free, 0.97 when it costs 3%. The
verdict is the median ratio with its 95% confidence interval, which assumes nothing about the noise's
shape (the order statistics of a sign test): PASS when the whole interval is at or above 0.97, FAIL when
it is all below, else UNDECIDED (more rounds narrow it). Each loop first runs one untimed epoch.
Run: ``make harness`` or ``python benchmarks/harness.py --help``.
"""

from __future__ import annotations

import bench  # noqa: F401  (first: until the command's own handlers, a signal in the imports is one line)

# isort: split

import json
import math
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from omegaconf import DictConfig

from bench import interrupts, measure
from bench.datasets import load_arrays
from bench.environment import environment
from bench.errors import Interrupted, OneLineParser, exit_interrupted
from bench.loaders import build_loader
from bench.loop import run_epoch
from bench.schema import compose, instantiate
from bench.step import build_step, math_mode
from pipelines import HARNESS_TARGET, PLAIN, BareLoop, check_out, check_setting, check_specs, device_for

DEFAULT_CONFIGS = {"cpu": ["small:128:fp32", "medium:64:fp32"], "cuda": ["medium:256:fp32"]}
#: images per epoch: short epochs make many rounds affordable; on a GPU, long enough that a round is not
#: mostly the clock's synchronize
DEFAULT_TRAIN_SIZE = {"cpu": 5_000, "cuda": 20_000}
DEFAULT_ROUNDS = 40
#: the confidence of the interval the verdict reads
LEVEL = 0.95
#: what --out gets: the verdicts as printed, and every epoch time
RESULT_FILES = ("harness.md", "harness.json")


def median_interval(values: list[float], level: float = LEVEL) -> tuple[float, float, float]:
    """The median of ``values`` and a distribution-free ``level`` confidence interval for it: the k-th
    smallest and k-th largest value, k as large as keeps the chance that the true median lies outside
    (fewer than k values on one side: a binomial tail of n fair coins) at most (1 − level) ÷ 2 a side.
    ValueError when there are too few values for any such interval (fewer than 6 at 95%)."""
    xs, n = sorted(values), len(values)
    tail, k = 0.0, 0
    while True:
        tail += math.comb(n, k) / 2**n  # the chance of at most k values below the median
        if tail > (1 - level) / 2:
            break
        k += 1
    if k == 0:
        raise ValueError(f"{n} values give no {level:.0%} interval for their median; at least {min_rounds(level)}")
    return statistics.median(xs), xs[k - 1], xs[n - k]


def min_rounds(level: float = LEVEL) -> int:
    """The fewest values that give a ``level`` interval: all n on one side must be rarer than (1 − level) ÷ 2."""
    n = 1
    while 0.5**n > (1 - level) / 2:
        n += 1
    return n


@dataclass
class Rounds:
    """One config's epoch times, filled a whole round at a time (a cut-short run keeps the rounds it finished)."""

    spec: str
    samples: int
    r: list[float] = field(default_factory=list)
    d: list[float] = field(default_factory=list)

    @property
    def ratios(self) -> list[float]:
        return [d / r for r, d in zip(self.r, self.d, strict=True)]


def bench_loop(cfg: DictConfig, device: torch.device) -> Callable[[], float]:
    """(r): bench's timed epoch, on what a run builds for ``cfg`` (the resident loader, the plain step);
    each call trains one epoch and returns its time as the run would record it."""
    arrays = load_arrays(cfg.dataset)
    torch.manual_seed(cfg.seed)
    model = instantiate(cfg.model, num_classes=len(arrays.classes)).to(device)
    train = build_loader(cfg.loader, arrays.train_x, arrays.train_y, device=device, batch_size=cfg.batch_size,
                         shuffle=True)  # fmt: skip
    step = build_step(model, device, options=cfg.step, precision=cfg.precision, lr=cfg.lr)
    clock, events = measure.Stopwatch(device), measure.StepEvents(device, len(train))
    done = 0

    def epoch() -> float:
        nonlocal done
        done += 1
        return run_epoch(done, done, cfg.seed, model, step, train, clock, events).time_s

    return epoch


def run_config(spec: str, rounds: int, train_size: int, seed: int, device: torch.device, into: Rounds) -> None:
    """Alternate (r) and (d) epochs for ``rounds`` rounds, appending each round's times to ``into``."""
    model, batch_size, precision = spec.split(":")
    cfg = compose([f"model={model}", f"batch_size={batch_size}", f"precision={precision}", f"device={device.type}",
                   f"dataset.train_size={train_size}", f"seed={seed}", *PLAIN])  # fmt: skip
    with math_mode(cfg.precision):  # TF32 on or off as in bench's runs, for both loops
        r_epoch = bench_loop(cfg, device)
        bare, clock = BareLoop(cfg, device), measure.Stopwatch(device)

        def d_epoch() -> float:
            clock.start()
            bare.epoch()
            return clock.stop().wall_s

        r_epoch(), d_epoch()  # one-time costs (allocator, kernels' first calls) outside the timed rounds
        for i in range(rounds):
            if i % 2 == 0:
                r, d = r_epoch(), d_epoch()
            else:
                d, r = d_epoch(), r_epoch()
            into.r.append(r)
            into.d.append(d)
            first, second = ("r", "d") if i % 2 == 0 else ("d", "r")
            times = {"r": r, "d": d}
            print(f"  round {i + 1}/{rounds}: ({first}) {times[first]:.3f} s, then ({second}) {times[second]:.3f} s",
                  file=sys.stderr, flush=True)  # fmt: skip


def report(rounds: Rounds) -> list[str]:
    """The config's table and its verdict line, from the rounds it finished."""
    model, batch, precision = rounds.spec.split(":")
    lines = [
        f"### {model} · batch {batch} · {precision} · {rounds.samples:,} images · {len(rounds.ratios)} rounds",
        "",
        "| loop | epoch (s, median) | samples/s | fastest epoch (s) |",
        "|---|---:|---:|---:|",
    ]
    for name, times in (("(r) bench's loop", rounds.r), ("(d) bare", rounds.d)):
        if times:
            median = statistics.median(times)
            lines.append(f"| {name} | {median:.3f} | {rounds.samples / median:,.0f} | {min(times):.3f} |")
    return [*lines, "", verdict(rounds.ratios), ""]


def verdict(ratios: list[float]) -> str:
    """PASS, FAIL or UNDECIDED: where the median ratio's confidence interval lies against the target."""
    target = f"target ≥ {HARNESS_TARGET} (the harness costs at most {1 - HARNESS_TARGET:.0%})"
    try:
        median, low, high = median_interval(ratios)
    except ValueError as err:
        return f"- UNDECIDED: {err} (target ≥ {HARNESS_TARGET})"
    mark = "PASS" if low >= HARNESS_TARGET else "FAIL" if high < HARNESS_TARGET else "UNDECIDED"
    where = {
        "PASS": "is at or above",
        "FAIL": "lies below",
        "UNDECIDED": "straddles",
    }[mark]
    return (f"- {mark}: bench's loop (r) runs at {median:.3f}× the bare loop's speed, the median of {len(ratios)} "
            f"alternated rounds; its {LEVEL:.0%} confidence interval, {low:.3f}–{high:.3f}, {where} the {target}"
            f"{': more rounds would narrow it' if mark == 'UNDECIDED' else ''}")  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    parser = OneLineParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--configs", nargs="+", metavar="MODEL:BATCH:PRECISION",
        help="e.g. small:128:fp32 (default: per device, see DEFAULT_CONFIGS in the source)",
    )  # fmt: skip
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--rounds", type=int, default=DEFAULT_ROUNDS,
                        help=f"rounds of one (r) and one (d) epoch each (default {DEFAULT_ROUNDS})")  # fmt: skip
    parser.add_argument("--train-size", type=int, help="images per epoch (default: 5,000 on the CPU, 20,000 on a GPU)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, help="write harness.md and harness.json here")
    args = parser.parse_args(argv)
    if args.rounds < min_rounds():
        parser.error(f"--rounds {args.rounds}: at least {min_rounds()}, for a {LEVEL:.0%} interval of the median")
    check_out(parser, args.out, RESULT_FILES)
    device = device_for(parser, args.device)
    specs = args.configs or DEFAULT_CONFIGS[device.type]
    check_specs(parser, specs, variants=False)
    train_size = DEFAULT_TRAIN_SIZE[device.type] if args.train_size is None else args.train_size
    check_setting(parser, "--train-size", "dataset.train_size", train_size)
    check_setting(parser, "--seed", "seed", args.seed)

    env = environment(device)
    header = [
        "## The harness's cost: bench's loop (r) and a bare loop (d), an epoch each in turn",
        "",
        f"Device: {env['gpu'] or env['cpu']} · torch {env['torch']} · {torch.get_num_threads()} CPU threads · "
        f"{args.rounds} rounds (r d, then d r, …) of {train_size:,} synthetic images per epoch, after one untimed "
        f"epoch each · {time.strftime('%Y-%m-%d')}",
        "",
    ]
    print("\n".join(header), flush=True)
    done: list[Rounds] = []
    started = time.monotonic()
    stop: Interrupted | None = None
    # SIGTERM (a time limit) or Ctrl-C ends the run early; the rounds that finished are still judged.
    with interrupts.interruptible():
        try:
            for spec in specs:
                print(f"{spec}:", file=sys.stderr, flush=True)
                done.append(Rounds(spec, train_size))
                run_config(spec, args.rounds, train_size, args.seed, device, done[-1])
                print("\n".join(report(done[-1])), flush=True)
        except Interrupted as err:
            stop = err
            if done and done[-1].ratios:
                print("\n".join(report(done[-1])), flush=True)
    lines = header + [line for rounds in done if rounds.ratios for line in report(rounds)]
    if stop is not None:
        lines.append(f"Cut short by {stop}: {len(done) - 1} of {len(specs)} configs finished.\n")
        print(lines[-1], flush=True)
    lines.append(f"Benchmark time: {time.monotonic() - started:.0f} s.\n")
    print(lines[-1], flush=True)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        markdown, data = RESULT_FILES
        (args.out / markdown).write_text("\n".join(lines))
        serial = [{**asdict(rounds), "ratios": rounds.ratios} for rounds in done]
        (args.out / data).write_text(json.dumps({"env": env, "results": serial}, indent=2))
        print(f"wrote {args.out / markdown}", file=sys.stderr)
    if stop is not None:
        exit_interrupted(stop, "the rounds that finished are judged above")


if __name__ == "__main__":
    main()
