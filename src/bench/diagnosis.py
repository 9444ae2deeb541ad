"""Why is it fast or slow? A verdict per run from its own numbers, one concrete next step, and a learning check.

Every threshold is a named constant here, and only here. The verdicts:

- **input-bound**: the loop waited for the next batch at least ``INPUT_BOUND_WAIT`` of the epoch;
- **launch-bound** (CUDA): the host cannot hand the GPU work fast enough, while the data wait was small: the
  host queued its steps less than ``LAUNCH_LEAD_STEPS`` ahead of the GPU, or (where that was not measured)
  the GPU stream was busy with steps less than ``LAUNCH_BOUND_BUSY`` of the epoch;
- **compute-bound** (CUDA): the stream was busy at least ``COMPUTE_BOUND_BUSY``; the share of the GPU's
  dense peak says how well that time is used;
- **host overhead** (CUDA): in between;
- **compute-bound (CPU)**: on the CPU, the time that is not data wait is the model's own compute.

"GPU busy" is measured by CUDA events around each step (see bench.measure.StepEvents): the time the stream
spent between a step's first and last kernel. Gaps between kernels inside a step count as busy, so a step
whose kernels are tiny can look busy while launches dominate. The host's lead tells them apart: how far
ahead of the GPU the host queued each step (``host_lead_steps``). Under half a step, the GPU reached each
step about as soon as it was queued: the host's launches set the pace, however busy the events read. A step
that waits for the GPU every step queues nothing ahead whatever the GPU's speed: a copy from pageable memory
(the loop records no lead then) and fp16's GradScaler beside an Adam that is not fused, whose overflow check
GradScaler.step reads on the host (``found_inf.item()``; with one, the verdict reads busy alone). Fused Adam
takes the scale and the overflow flag as tensors into its kernel (``_step_supports_amp_scaling``), so
GradScaler never reads them there and the lead stands.
"""

from __future__ import annotations

import math
import numbers
import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from bench.metrics import finite, loss_text, significant

INPUT_BOUND_WAIT = 0.30
LAUNCH_BOUND_BUSY = 0.50
COMPUTE_BOUND_BUSY = 0.90
#: a host that queued its steps less than this many steps ahead of the GPU set the pace: launch-bound
LAUNCH_LEAD_STEPS = 0.5
#: on the CPU, a DataLoader without workers whose wait is below this is not worth replacing first
CPU_LOADER_WAIT = 0.10
#: a final loss this close to ln(classes), relatively, or above it, is no better than a uniform guess
NEAR_CHANCE_LOSS = 0.02
#: a test accuracy under this many times chance (1 / classes) is no evidence of learning
CHANCE_ACCURACY_FACTOR = 1.5
#: a test accuracy of this many times chance or more is learning, whatever the training loss says (a loss
#: above a guess's beside 60% on 10 classes: overconfident on its errors, not a model that learned nothing);
#: where the number of test images is known, CLEAR_ACCURACY_SES decides instead
CLEAR_ACCURACY_FACTOR = 3.0
#: a test accuracy of CLEAR_ACCURACY_FLOOR x chance or more that is also this many standard errors above chance
#: (a guess's, over the test images) is learning, whatever the training loss says. The final loss is the last
#: epoch's mean: a run that left the plateau late in its only epoch reads near a guess's loss while its model,
#: tested after, scores well above chance (22.1% of 2,000 images on 10 classes, 18 standard errors above).
CLEAR_ACCURACY_SES = 4.0
#: ... and from this many times chance: between 1.5x and this, a guess's loss still says "did not learn"
CLEAR_ACCURACY_FLOOR = 2.0
DID_NOT_LEARN = "did not learn"
#: a note that differs between runs in one figure only (the learning check's loss or accuracy): a report lists it
#: once, with each run's figure beside its name, and a reproduction does not call it one run's alone
PER_RUN_FIGURE = re.compile(rf"^({re.escape(DID_NOT_LEARN)}: (?:final loss|test accuracy)) (\S+) (is .*)$")
#: timings whose coefficient of variation across repeats (or epochs) is above this are flagged noisy
NOISY_CV = 0.05
#: below this R², the max-batch fit of peak memory to batch is called rough in the report
STRAIGHT_R2 = 0.95


def input_bound(wait: float | None, busy: float | None) -> bool:
    """The one rule for "input-bound", shared by the verdict and the report's sentences: the loop waited at least
    ``INPUT_BOUND_WAIT`` of the epoch, and the GPU (where measured) was not busy with steps all along. With a
    full launch queue even the resident loader's gather blocks, and that counts as data wait."""
    if wait is None or wait < INPUT_BOUND_WAIT:
        return False
    return not (busy is not None and busy >= COMPUTE_BOUND_BUSY)


def diagnose(run: Mapping[str, Any]) -> dict[str, Any]:
    """The verdict, its evidence and a next step (an override to paste), plus the learning check.

    ``run`` is a metrics.json record (flat metrics, the config fields, ``step``); missing numbers are fine.
    """
    verdict, evidence, next_step = _verdict(run)
    learned, note = learned_check(run)
    cv = _share(run, "samples_per_s_cv")
    return {
        "verdict": verdict, "evidence": evidence, "next": next_step, "learned": learned, "learning": note,
        "noisy": None if cv is None else cv > NOISY_CV,
    }  # fmt: skip


def _percent(share: float, thresholds: tuple[float, ...]) -> str:
    """A share as a whole percentage, except where that would read as a threshold itself from the other side:
    there one decimal, rounded down below the threshold, which keeps it on its side (0.2999 is "29.9%", not
    "30.0%"; 0.3049 is "30.5%")."""
    near = [t for t in thresholds if round(share * 100) == round(t * 100) and share != t]
    if near:
        tenths = math.floor(share * 1000) if share < near[0] else round(share * 1000)
        return f"{tenths / 10:.1f}%"
    return f"{share:.0%}"


def wait_share(wait: float) -> str:
    """A data-wait share as the verdicts read it: 29.5% is not input-bound, and "30% (input-bound from 30%)"
    would say it is; 9.7% is under CPU_LOADER_WAIT, which "10%" would not show."""
    return _percent(wait, (INPUT_BOUND_WAIT, CPU_LOADER_WAIT))


def busy_share(busy: float) -> str:
    """A GPU-busy share as the verdicts read it: 49.5% is launch-bound, which "50%" would not show."""
    return _percent(busy, (LAUNCH_BOUND_BUSY, COMPUTE_BOUND_BUSY))


def lead_steps(lead: float) -> str:
    """The host's lead as the verdicts read it: two decimals, rounded down under LAUNCH_LEAD_STEPS (0.497 is
    "0.49", which stays launch-bound, not "0.50")."""
    if lead < LAUNCH_LEAD_STEPS:
        return f"{math.floor(lead * 100) / 100:.2f}"
    return f"{lead:,.2f}"


def _share(run: Mapping[str, Any], key: str) -> float | None:
    return finite(run.get(key))


def scaler_syncs(step: Mapping[str, Any]) -> bool:
    """Whether the step reads fp16's overflow check on the host every step: GradScaler beside a non-fused Adam
    (``found_inf.item()`` in GradScaler.step), a sync after which nothing is queued ahead however slow the GPU
    is. Fused Adam reads the check inside its kernel, so with it the host's lead still says who sets the pace."""
    return bool(step.get("grad_scaler")) and step.get("adam") != "fused"


def _verdict(run: Mapping[str, Any]) -> tuple[str | None, str, str | None]:
    wait = _share(run, "data_wait_frac")
    if wait is None:
        return None, "no timed epoch to judge", None
    loader, batch = run.get("loader"), run.get("batch_size") or 0
    step = run.get("step") or {}
    busy = _share(run, "gpu_busy_frac")
    if input_bound(wait, busy):
        evidence = f"data wait {wait_share(wait)} of the epoch (input-bound from {INPUT_BOUND_WAIT:.0%})"
        return "input-bound", evidence, "loader=resident" if loader == "dataloader" else f"batch_size={2 * batch}"
    if run.get("device") != "cuda" or busy is None:
        evidence = f"data wait {wait_share(wait)}; the rest of the epoch is the model's compute on the CPU"
        workers = run.get("workers") or 0
        if workers and loader == "dataloader":  # the workers' decoding takes cores from the step unseen as wait
            evidence += f", which shares the cores with the loader's {workers} worker processes"
        if run.get("precision") == "amp_fp16":
            # The lab's AMP is a GPU feature: on the CPU fp16 autocast is no shortcut (22x slower than fp32, EPYC).
            return "compute-bound (CPU)", evidence + "; fp16 autocast has no fast path on the CPU", "precision=fp32"
        # Without workers the per-sample decoding is all in the wait: the resident loader saves no more than it.
        if loader == "dataloader" and (workers or wait >= CPU_LOADER_WAIT):
            return "compute-bound (CPU)", evidence, "loader=resident"
        if not step.get("channels_last"):
            return "compute-bound (CPU)", evidence, "step.channels_last=true"
        return "compute-bound (CPU)", evidence, "device=cuda"
    evidence = f"GPU busy {busy_share(busy)} of the epoch, data wait {wait_share(wait)}"
    # Where the host holds the GPU back: a captured step has no launches left to save, only more images a step.
    # Nor can a step with fp16's GradScaler, which neither whole-step capture takes (step.compile=max and
    # cudagraph are refused with it): for both, fewer launches per image means more images per step.
    captured_or_cannot = step.get("compile") in ("cudagraph", "max") or step.get("grad_scaler")
    fewer_launches = f"batch_size={2 * batch}" if captured_or_cannot else "step.compile=max"
    lead = None if scaler_syncs(step) else _share(run, "host_lead_steps")
    if lead is not None:
        evidence += f", host {lead_steps(lead)} steps ahead of the GPU"
        if lead < LAUNCH_LEAD_STEPS:
            evidence += " (the events count the gaps between a step's kernels as busy)"
            return "launch-bound", evidence, fewer_launches
    if busy < LAUNCH_BOUND_BUSY:
        return "launch-bound", evidence, fewer_launches
    if busy < COMPUTE_BOUND_BUSY:
        return "host overhead", evidence, fewer_launches
    peak = _share(run, "peak_flops_frac")
    if peak is not None:
        evidence += f", {peak:.0%}" if peak >= 0.01 else f", {significant(peak * 100, 1)}%"  # 0.4%, not 0%
        evidence += " of the GPU's dense peak"
    if run.get("precision") == "fp32":
        return "compute-bound", evidence, "precision=amp_bf16"
    return "compute-bound", evidence, None


def _count(value: object) -> bool:
    """Whether a record's field is a count of images: a whole number above 0 (numpy's ints too; not a bool)."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool) and value > 0


def chance(run: Mapping[str, Any]) -> tuple[float, float | None, str]:
    """The guess a run has to beat: (its loss, its test accuracy where that is not 1 / classes, what it is).

    A uniform guess (ln(classes), 1 / classes) where the classes have about equal shares: an entropy of the
    training labels (``prior_loss``) within NEAR_CHANCE_LOSS of ln(classes), the margin the loss is judged by.
    Where it is lower (an image folder of 450 and 50), the guess that knows the shares: its loss is that entropy,
    which a model that learned only the shares reaches on those very labels. Its test accuracy, the test share of
    the largest training class (``prior_accuracy``: 90% on 90/10), replaces 1 / classes only where it is higher
    and the shares differ by more than three times what random labels fall short by ((classes - 1) / 2n nats over
    n images): 64 random labels had made a 3% or an 18% "chance"."""
    classes = run.get("classes") or 10
    uniform = math.log(classes)
    prior, top, n = _share(run, "prior_loss"), _share(run, "prior_accuracy"), run.get("train_samples")
    if prior is None or prior >= (1 - NEAR_CHANCE_LOSS) * uniform:
        return uniform, None, f"ln({classes}) = {uniform:.3f}, the loss of a uniform guess"
    noise = 3 * (classes - 1) / (2 * n) if _count(n) else 0
    real = prior < uniform - noise
    guess = top if real and top is not None and top > 1 / classes else None
    scores = f": always naming the largest training class, it scores {top:.0%} of the test images" if guess else ""
    how = "unequal here" if real else "a little unequal here, as random labels are"
    return prior, guess, f"{prior:.3f}, the loss of a guess that knows only the classes' shares ({how}{scores})"


def class_prior(train_y: Sequence[int] | np.ndarray, test_y: Sequence[int] | np.ndarray | None,
                classes: int) -> tuple[float | None, float | None]:  # fmt: skip
    """The guess that knows only the training classes' shares: its loss (their entropy, in nats, as the
    training loss is) and its test accuracy (the largest class's share of ``test_y``; None without a test)."""
    counts = np.bincount(np.asarray(train_y, dtype=np.int64), minlength=classes)
    if counts.sum() == 0:
        return None, None
    shares = counts[counts > 0] / counts.sum()
    loss = float(-(shares * np.log(shares)).sum())
    if test_y is None or len(test_y) == 0:
        return loss, None
    return loss, float(np.mean(np.asarray(test_y) == int(counts.argmax())))


def times_chance(factor: float, classes: int, accuracy: float | None = None) -> tuple[float, str]:
    """The accuracy ``factor`` times chance's, and its words. Chance is a uniform guess's 1 / classes, or a
    guess's ``accuracy`` where the classes' shares are unequal; there ``factor`` × it may be out of reach (1.5
    × 90%), and ``factor`` times fewer errors than the guess makes is the bar where it is lower. (Factor / classes
    for a uniform guess: 1.5 × (1 / 10) is 0.15000000000000002.)"""
    if accuracy is None:
        return factor / classes, f"{factor:g}× chance"
    fewer = 1 - (1 - accuracy) / factor
    if fewer < factor * accuracy:
        return fewer, f"{factor:g} times fewer errors than chance"
    return factor * accuracy, f"{factor:g}× chance"


def clear_accuracy(classes: int, tested: object, accuracy: float | None = None) -> float:
    """The test accuracy from which a run learned, whatever its loss: CLEAR_ACCURACY_FLOOR x chance and
    CLEAR_ACCURACY_SES standard errors above it over ``tested`` images; CLEAR_ACCURACY_FACTOR x chance where the
    image count is unknown. Chance is 1 / classes, or a guess's ``accuracy`` (times_chance)."""
    if not _count(tested):
        return times_chance(CLEAR_ACCURACY_FACTOR, classes, accuracy)[0]
    guess = 1 / classes if accuracy is None else accuracy
    standard_error = math.sqrt(guess * (1 - guess) / tested)
    return max(times_chance(CLEAR_ACCURACY_FLOOR, classes, accuracy)[0], guess + CLEAR_ACCURACY_SES * standard_error)


def learned_check(run: Mapping[str, Any]) -> tuple[bool | None, str | None]:
    """Whether the run learned: False when its final loss is no better than chance's (or worse), or its
    accuracy is near chance; True whatever the loss where its accuracy is clearly above chance (clear_accuracy).
    Chance is the guess of :func:`chance`."""
    classes = run.get("classes") or 10
    loss, accuracy = _share(run, "final_loss"), _share(run, "test_accuracy")
    if loss is None:
        return None, None
    chance_loss, guess, what = chance(run)
    if accuracy is not None and accuracy >= clear_accuracy(classes, run.get("test_samples"), guess):
        return True, None
    if loss >= (1 - NEAR_CHANCE_LOSS) * chance_loss:  # a loss above a guess's is no learning either
        how = f"within {NEAR_CHANCE_LOSS:.0%} of" if loss <= (1 + NEAR_CHANCE_LOSS) * chance_loss else "above"
        return False, f"{DID_NOT_LEARN}: final loss {loss_text(loss)} is {how} {what}"
    floor, bar = times_chance(CHANCE_ACCURACY_FACTOR, classes, guess)
    if accuracy is not None and accuracy < floor:
        return False, (
            f"{DID_NOT_LEARN}: test accuracy {accuracy:.1%} is under {bar}, {100 * floor:.3g}% (chance: "
            f"{100 * (guess or 1 / classes):.3g}%)"  # 15%, 1.5%, 0.15%
        )
    return True, None
