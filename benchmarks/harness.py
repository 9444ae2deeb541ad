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
shape, only that rounds are independent (the order statistics of a sign test): PASS when the whole
interval is at or above 0.97, FAIL when it is all below, else UNDECIDED (more rounds narrow it). A second line
prices the harness per step, in µs, from the rounds' differences, beside what the 3% allows. Each loop
first runs one untimed epoch.

``--control`` measures the method instead: (r) is replaced by a second bare loop (d′), built where (r) would
be, so two identical loops take turns. Their ratio is what the method reads where there is nothing to find
(1.000 if it has no bias of its own); it is shown, not judged.
Run: ``make harness`` or ``python benchmarks/harness.py --help``.
"""

from __future__ import annotations

import bench  # first: until the command's own handlers, a signal in the imports is one line; its clock starts

# isort: split

import math
import statistics
import sys
import time
from argparse import Namespace
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from omegaconf import DictConfig

from bench import interrupts, measure
from bench.datasets import load_arrays
from bench.environment import environment
from bench.errors import EXIT_RUN_FAILED, Interrupted, OneLineParser, describe, exit_interrupted, fail
from bench.loaders import build_loader
from bench.loop import run_epoch
from bench.schema import compose, instantiate
from bench.step import build_step, math_mode
from pipelines import (
    HARNESS_TARGET,
    PLAIN,
    STRICT_HELP,
    BareLoop,
    check_out,
    check_setting,
    check_specs,
    check_strict,
    device_for,
    machine,
    write_results,
)

DEFAULT_CONFIGS = {"cpu": ["small:128:fp32", "medium:64:fp32"], "cuda": ["medium:256:fp32"]}
#: images per epoch: short epochs make many rounds affordable; on a GPU, long enough that a round is not
#: mostly the clock's synchronize
DEFAULT_TRAIN_SIZE = {"cpu": 5_000, "cuda": 20_000}
DEFAULT_ROUNDS = 40
MAX_ROUNDS = 10_000
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


def arm(control: bool) -> str:
    """The name of the loop set against (d): ``r``, bench's loop, or ``d′``, the control's second bare loop."""
    return "d′" if control else "r"


@dataclass
class Rounds:
    """One config's epoch times, a (r, d) pair per finished round (a cut-short run keeps those it finished)."""

    spec: str
    samples: int
    pairs: list[tuple[float, float]] = field(default_factory=list)
    error: str | None = None
    #: (d′), a second bare loop, in (r)'s place: the method's control
    control: bool = False
    #: why it never started (no time left of --seconds): judged as no rounds, not as a failure
    not_started: str | None = None

    @property
    def r(self) -> list[float]:
        return [r for r, _ in self.pairs]

    @property
    def d(self) -> list[float]:
        return [d for _, d in self.pairs]

    @property
    def ratios(self) -> list[float]:
        return [d / r for r, d in self.pairs]

    @property
    def arm(self) -> str:
        """The loop set against (d): bench's, or under --control a second bare loop."""
        return arm(self.control)

    @property
    def steps(self) -> int:
        """Steps an epoch: its last, partial batch is one too."""
        return -(-self.samples // int(self.spec.split(":")[1]))


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


def bare_loop(cfg: DictConfig, device: torch.device) -> Callable[[], float]:
    """(d): the bare loop's epoch, timed by the same clock as (r)'s."""
    bare, clock = BareLoop(cfg, device), measure.Stopwatch(device)

    def epoch() -> float:
        clock.start()
        bare.epoch()
        return clock.stop().wall_s

    return epoch


def run_config(spec: str, rounds: int, train_size: int, seed: int, device: torch.device, into: Rounds,
               until: float | None = None) -> None:  # fmt: skip
    """Alternate (r) and (d) epochs for ``rounds`` rounds, appending each round's times to ``into``; with
    ``until`` (a time.monotonic() deadline), no round starts that would likely end after it. With
    ``into.control``, a second bare loop (d′) takes (r)'s place."""
    model, batch_size, precision = spec.split(":")
    cfg = compose([f"model={model}", f"batch_size={batch_size}", f"precision={precision}", f"device={device.type}",
                   f"dataset.train_size={train_size}", f"seed={seed}", *PLAIN])  # fmt: skip
    started = time.monotonic()

    def out_of_time() -> bool:
        """Whether the deadline passed before any round: said, rather than 0 rounds with no word of why. The
        data and the warm-up ran on past it (a large config at --seconds 6 took 16 s)."""
        if until is None or time.monotonic() < until:
            return False
        into.not_started = (f"its share of --seconds ended in its data and warm-up epochs "
                            f"({time.monotonic() - started:.0f} s); give it more --seconds, or fewer --train-size "
                            "images")  # fmt: skip
        return True

    with math_mode(cfg.precision):  # TF32 on or off as in bench's runs, for both loops
        r_epoch = bare_loop(cfg, device) if into.control else bench_loop(cfg, device)  # built first, either way
        d_epoch = bare_loop(cfg, device)

        # One-time costs (allocator, kernels' first calls) outside the timed rounds; d first, so that every
        # round's first epoch follows an epoch of its own loop, round 0's too. Then a full collection, as a
        # run makes before its epochs (measure.reset_peak_memory), so none lands in a timed epoch.
        began = time.monotonic()
        if out_of_time():
            return
        d_epoch()
        if out_of_time():
            return
        r_epoch()
        measure.collect_garbage()
        if out_of_time():  # an epoch is not cut: the deadline is overrun by one at most
            return
        # A round takes about as long as the last one (at first, the warm-up's, which is longer): one starts
        # only if that much, and a quarter more, is left.
        last = time.monotonic() - began
        for i in range(rounds):
            began = time.monotonic()
            if until is not None and began + 1.25 * last > until:
                break
            if i % 2 == 0:
                r, d = r_epoch(), d_epoch()
            else:
                d, r = d_epoch(), r_epoch()
            into.pairs.append((r, d))  # one append: a signal cannot leave half a round
            first, second = (into.arm, "d") if i % 2 == 0 else ("d", into.arm)
            times = {into.arm: r, "d": d}
            last = time.monotonic() - began
            # With --seconds, the rounds that fit and the time left ("round 11/10000", "-0 s left" said neither).
            left = f", {max(until - time.monotonic(), 0):.0f} s left" if until is not None else ""
            of = f"/{rounds}" if until is None else ""
            print(f"  round {i + 1}{of}: ({first}) {times[first]:.3f} s, then ({second}) {times[second]:.3f} s"
                  f"{left}", file=sys.stderr, flush=True)  # fmt: skip
        if not into.pairs and until is not None:  # the warm-up ended in time, but no round fits what is left
            took = time.monotonic() - started
            into.not_started = (f"after its data and warm-up epochs ({took:.0f} s) no round fitted in its share of "
                                "--seconds; give it more, or fewer --train-size images")  # fmt: skip


def report(rounds: Rounds) -> list[str]:
    """The config's table and its verdict line, from the rounds it finished."""
    model, batch, precision = rounds.spec.split(":")
    lines = [f"### {model} · batch {batch} · {precision} · {rounds.samples:,} images · {len(rounds.pairs)} rounds", ""]
    if rounds.pairs:
        lines += ["| loop | epoch (s, median) | samples/s | fastest epoch (s) |", "|---|---:|---:|---:|"]
        loop = "a second bare loop" if rounds.control else "bench's loop"
        for name, times in ((f"({rounds.arm}) {loop}", rounds.r), ("(d) bare", rounds.d)):
            median = statistics.median(times)
            lines.append(f"| {name} | {median:.3f} | {rounds.samples / median:,.0f} | {min(times):.3f} |")
        # On a drifting box the two medians can differ where no round's pair does: the verdict reads the pairs.
        lines += ["", "Each loop's median is over its own epochs; the verdict pairs each round's two epochs.", ""]
    if rounds.error:
        lines += [f"- stopped: {rounds.error}"]
    if rounds.not_started:
        lines += [f"- not started: {rounds.not_started}"]
    cost = per_step(rounds)
    judged = control_line(rounds.ratios) if rounds.control else verdict(rounds.ratios)
    return [*lines, judged, *([per_step_line(rounds, cost)] if cost else []), ""]


def per_step(rounds: Rounds) -> dict[str, float] | None:
    """What bench's loop ((d′) under --control) adds to each step, in µs: the median of the rounds' (r − d) ÷ steps
    with its interval, the bare loop's own step, and what the target allows on it. None with too few rounds for an
    interval.

    The ratio says whether the target is met; this says by how much, in the unit a change to the loop is priced
    in (a kernel launch is a few µs, a host sync tens)."""
    if len(rounds.pairs) < min_rounds():
        return None
    steps = rounds.steps
    median, low, high = median_interval([(r - d) / steps * 1e6 for r, d in rounds.pairs])
    bare = statistics.median(rounds.d) / steps * 1e6
    # d ÷ r ≥ target ⇔ r − d ≤ d × (1 ÷ target − 1)
    return {"median_us": median, "low_us": low, "high_us": high, "bare_step_us": bare,
            "allowed_us": bare * (1 / HARNESS_TARGET - 1)}  # fmt: skip


def per_step_line(rounds: Rounds, cost: dict[str, float]) -> str:
    """The per-step cost, the line under the verdict (under the control's, without the target: nothing is judged)."""
    allows = "" if rounds.control else f": the target allows up to {cost['allowed_us']:+,.1f} µs"
    return (
        f"- Per step: ({rounds.arm}) − (d) = {cost['median_us']:+,.1f} µs, the median of the rounds' differences ÷ "
        f"{rounds.steps:,} steps ({LEVEL:.0%} interval {cost['low_us']:+,.1f} to {cost['high_us']:+,.1f} µs), on a "
        f"bare step of {cost['bare_step_us']:,.0f} µs{allows}"
    )


def control_line(ratios: list[float]) -> str:
    """What the method reads for two identical loops: shown, never judged."""
    if len(ratios) < min_rounds():
        return f"- CONTROL: {len(ratios)} rounds finished, too few for a {LEVEL:.0%} interval (at least {min_rounds()})"
    median, low, high = median_interval(ratios)
    return (
        f"- CONTROL: a second bare loop (d′) runs at {median:.3f}× the speed of (d), its twin, the median of "
        f"{len(ratios)} alternated rounds ({LEVEL:.0%} interval {low:.3f}–{high:.3f}): what the method reads for "
        "two identical loops, 1.000 if it has no bias of its own; without --control, bench's loop is judged"
    )


def verdict(ratios: list[float]) -> str:
    """PASS, FAIL or UNDECIDED: where the median ratio's confidence interval lies against the target."""
    target = f"target ≥ {HARNESS_TARGET} (the harness costs at most {1 - HARNESS_TARGET:.0%})"
    if len(ratios) < min_rounds():
        return (f"- UNDECIDED: {len(ratios)} rounds finished; a {LEVEL:.0%} interval of the median needs at least "
                f"{min_rounds()}, so nothing is judged against the {target}: give it more (--rounds N, or a "
                "longer --seconds S, which counts the start-up too)")  # fmt: skip
    median, low, high = median_interval(ratios)
    mark = "PASS" if low >= HARNESS_TARGET else "FAIL" if high < HARNESS_TARGET else "UNDECIDED"
    where = {
        "PASS": "is at or above",
        "FAIL": "lies below",
        "UNDECIDED": "straddles",
    }[mark]
    narrow = ": more rounds would narrow it (--rounds N, or --seconds S for as many as fit)"
    return (f"- {mark}: bench's loop (r) runs at {median:.3f}× the bare loop's speed, the median of {len(ratios)} "
            f"alternated rounds; its {LEVEL:.0%} confidence interval, {low:.3f}–{high:.3f}, {where} the {target}"
            f"{narrow if mark == 'UNDECIDED' else ''}")  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    parser = OneLineParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--configs", nargs="+", metavar="MODEL:BATCH:PRECISION",
        help="e.g. small:128:fp32 (default: "
        + "; ".join(f"{device}: {' '.join(specs)}" for device, specs in DEFAULT_CONFIGS.items()) + ")",
    )  # fmt: skip
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"],
                        help="where to run (default: auto, a CUDA GPU where there is one)")  # fmt: skip
    parser.add_argument("--rounds", type=int,
                        help=f"rounds of one (r) and one (d) epoch each, from {min_rounds()} to {MAX_ROUNDS:,} "
                             f"(default {DEFAULT_ROUNDS}; with --seconds, as many as fit)")  # fmt: skip
    parser.add_argument("--seconds", type=float,
                        help="end within about this many seconds, the start included: rounds stop where the next "
                             "would not fit, configs sharing the time left")  # fmt: skip
    parser.add_argument("--train-size", type=int, help="images per epoch (default: 5,000 on the CPU, 20,000 on a GPU)")
    parser.add_argument("--seed", type=int, default=0, help="the runs' seed (default: 0)")
    parser.add_argument("--control", action="store_true",
                        help="a second bare loop (d′) in place of bench's loop (r): what the method itself reads "
                             "for two identical loops (shown, not judged)")  # fmt: skip
    parser.add_argument("--out", type=Path, help="write harness.md and harness.json here")
    parser.add_argument("--strict", action="store_true", help=STRICT_HELP)
    args = parser.parse_args(argv)
    if args.strict and args.control:
        parser.error("--strict with --control: the control is shown, never judged; drop one of them")
    if args.rounds is None:
        args.rounds = DEFAULT_ROUNDS if args.seconds is None else MAX_ROUNDS
    if args.seconds is not None and not 0 < args.seconds <= 86_400:
        parser.error(f"--seconds {args.seconds:g}: more than 0 and at most 86,400 (a day)")
    if not min_rounds() <= args.rounds <= MAX_ROUNDS:
        parser.error(f"--rounds {args.rounds}: from {min_rounds()} (for a {LEVEL:.0%} interval of the median) to "
                     f"{MAX_ROUNDS:,}")  # fmt: skip
    check_out(parser, args.out, RESULT_FILES)
    device = device_for(parser, args.device)
    specs = args.configs or DEFAULT_CONFIGS[device.type]
    train_size = DEFAULT_TRAIN_SIZE[device.type] if args.train_size is None else args.train_size
    check_setting(parser, "--train-size", "dataset.train_size", train_size)
    check_specs(parser, specs, train_size, variants=False)
    check_setting(parser, "--seed", "seed", args.seed)

    env = environment(device)
    mine = arm(args.control)
    title = ("The method's control: two identical bare loops (d′) and (d)" if args.control else
             "The harness's cost: bench's loop (r) and a bare loop (d)")  # fmt: skip
    header = [
        f"## {title}, an epoch each in turn",
        "",
        f"{machine(env)} · {_how_many(args)} ({mine} d, then d {mine}, …) of {train_size:,} synthetic images per "
        f"epoch, after one untimed epoch each · {time.strftime('%Y-%m-%d')}",
        "",
    ]
    print("\n".join(header), flush=True)
    done: list[Rounds] = []
    finished = 0  # configs whose report is out
    started = time.monotonic()
    stop: Interrupted | None = None
    # SIGTERM (a time limit) or Ctrl-C ends the run early; the rounds that finished are still judged, and a
    # second signal waits until the results are written.
    with interrupts.entry_point():
        try:
            for spec in specs:
                print(f"{spec}:", file=sys.stderr, flush=True)
                done.append(Rounds(spec, train_size, control=args.control))
                # Each config a fair share of the time left, the results' writing (a second) kept aside.
                until = None
                if args.seconds is not None:
                    left = bench.STARTED + args.seconds - 1 - time.monotonic()
                    until = time.monotonic() + left / (len(specs) - finished)
                if until is not None and until <= time.monotonic():  # its data and warm-up would overrun too
                    done[-1].not_started = (f"the {args.seconds:g} s of --seconds were spent before it could start "
                                            f"(the command's start included: {time.monotonic() - bench.STARTED:.0f} s "
                                            "so far)")  # fmt: skip
                else:
                    try:
                        run_config(spec, args.rounds, train_size, args.seed, device, done[-1], until)
                    except Exception as err:  # out of memory, say: the other configs still run
                        done[-1].error = describe(err)
                finished += 1
                print("\n".join(report(done[-1])), flush=True)
        except Interrupted as err:
            stop = err
        try:
            with interrupts.deferred():
                lines = _finish(header, done, finished, len(specs), stop, time.monotonic() - started)
                if args.out:
                    _write(args.out, lines, env, done, args, train_size, stop)
        except Interrupted as err:  # held while writing, raised after
            stop = stop or err
    if stop is not None:
        judged = "the rounds that finished are judged above" if any(r.pairs for r in done) else "no round finished"
        exit_interrupted(stop, judged)
    failed = [r.spec for r in done if r.error]
    if failed:  # a script or a CI job must not read a config that stopped as a pass
        fail(f"{', '.join(failed)} stopped before its rounds finished; see its line above", EXIT_RUN_FAILED)
    if args.strict:
        check_strict([line for rounds in done for line in report(rounds)])


def _how_many(args: Namespace) -> str:
    """The rounds a config gets, as the header says it."""
    if args.seconds is None:
        return f"{args.rounds} rounds"
    upto = f", up to {args.rounds:,}" if args.rounds < MAX_ROUNDS else ""
    return f"as many rounds as fit in {args.seconds:g} s{upto}"


def _finish(header: list[str], done: list[Rounds], finished: int, configs: int, stop: Interrupted | None,
            seconds: float) -> list[str]:  # fmt: skip
    """The whole results as markdown lines; prints what the console has not shown yet (the config a signal cut,
    the closing lines)."""
    tail = []
    if stop is not None:
        if len(done) > finished:
            print("\n".join(report(done[-1])), flush=True)
        tail.append(f"Cut short by {stop}: {finished} of {configs} configs done.\n")
    # The start (imports, Python's own) is not in it, and --seconds counts it: say how long that was too.
    start = time.monotonic() - seconds - bench.STARTED
    tail.append(f"Benchmark time: {seconds:.0f} s, after {start:.0f} s of start-up.\n")
    print("\n".join(tail), flush=True)
    return header + [line for rounds in done for line in report(rounds)] + tail


def _write(out: Path, lines: list[str], env: dict, done: list[Rounds], args: Namespace, train_size: int,
           stop: Interrupted | None) -> None:  # fmt: skip
    """harness.md as printed, and harness.json: the settings, each config's epoch pairs and verdict."""
    settings = {"device": args.device, "rounds": args.rounds, "seconds": args.seconds, "train_size": train_size,
                "seed": args.seed, "control": args.control,
                "interrupted": stop.name if stop is not None else None}  # fmt: skip
    results = [{**asdict(rounds), "ratios": rounds.ratios, "rounds_finished": len(rounds.pairs), "steps": rounds.steps,
                "verdict": control_line(rounds.ratios) if rounds.control else verdict(rounds.ratios),
                "per_step": per_step(rounds)} for rounds in done]  # fmt: skip
    written = write_results(out, RESULT_FILES, lines, {"env": env, "settings": settings, "results": results})
    print(f"wrote {written}", file=sys.stderr)


if __name__ == "__main__":
    main()
