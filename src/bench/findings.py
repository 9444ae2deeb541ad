"""What a sweep's numbers say, in sentences computed from them: no figure in here is typed by hand.

Used by the report under each experiment: how throughput moves along the swept variable, how a step's own
time grows with the batch, where the data path's share of the epoch crosses the input-bound threshold, how
peak memory grows, and what each run's verdict is (bench.diagnosis).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import pairwise

import numpy as np
import pandas as pd

from bench.diagnosis import INPUT_BOUND_WAIT, NOISY_CV, STRAIGHT_R2, input_bound, wait_share
from bench.metrics import finite, significant
from bench.results import MEMORY_LABELS, lower_bound_reason, parts_shown
from bench.runs import NOT_SET, images_per_epoch, is_numeric, relative_iqr, trains
from bench.tables import as_text


def _label(x: str, value: object) -> str:
    """``batch_size=64``; a key the run's config lacks (runs.NOT_SET) as ``model.width (not set)``, not as a value
    one could type."""
    return f"{x} {NOT_SET}" if value == NOT_SET else f"{x}={as_text(value)}"


def _run_label(ok: pd.DataFrame, x: str, run: pd.Series) -> str:
    """A run as the sentences name it: by its value of x, and where another run shares that value (a config run
    twice), also by its name in the table's run column, ``run_name``, where the caller gave one ("model=small (run
    1) is the fastest")."""
    name = run.get("run_name")
    if isinstance(name, str) and (ok[x].astype(str) == str(run[x])).sum() > 1:
        return f"{_label(x, run[x])} (run {name})"
    return _label(x, run[x])


def paragraphs(runs: pd.DataFrame, x: str, by: Sequence[str] = ()) -> list[str]:
    """The sentences about one experiment, a paragraph per value of the other swept variables ``by`` (named at
    its start): along ``x`` within each, never across them (SmallNet's batch 64 against LargeNet's 256)."""
    by = [b for b in by if b != x and b in runs]
    if not by or not trains(runs):
        found = sentences(runs, x)
        return [" ".join(found)] if found else []
    out = []
    for key, group in runs.groupby(by, sort=False, dropna=False):
        found = sentences(group, x, sizes=False)
        if found:
            values = key if isinstance(key, tuple) else (key,)
            name = ", ".join(_label(b, v) for b, v in zip(by, values, strict=True))
            out.append(f"**{name}**: " + " ".join(found))
    # The models' sizes are the same in every paragraph, and in none where each holds one model: said once.
    sizes = _size_sentence(runs[runs["status"] == "ok"])
    return [*out, sizes] if sizes else out


def _ignored_sentence(ok: pd.DataFrame, x: str) -> str:
    """Where every run ignored the swept setting (experiment=workers with loader=resident: its note says so) or
    had none to ignore (workers=0), the runs differ in nothing: say so before any ranking along it."""
    notes = ok["notes"] if "notes" in ok else pd.Series([None] * len(ok), index=ok.index)
    said = [next((n for n in (v if isinstance(v, list) else []) if n.startswith(f"{x} is ignored by")), None)
            for v in notes]  # fmt: skip
    rest = {str(v) for v, note in zip(ok[x], said, strict=True) if note is None}
    found = next((n for n in said if n), None)
    if found is None or len(rest) > 1:
        return ""
    return (
        f"Every run ignored {x} ({found}){' or had none' if rest else ''}: they differ in nothing else, so "
        f"what follows is run-to-run noise, not an effect of {x}."
    )


def _same_maths_sentence(ok: pd.DataFrame, x: str) -> str:
    """Where the precisions swept ran one and the same step (precision=tf32 on a CPU is fp32: its note says so),
    their ranking is noise: "tf32 is the fastest, 4.48× fp32" had come from a loaded box."""
    if x != "precision" or "step" not in ok or ok[x].astype(str).nunique() < 2:
        return ""
    steps = [json.dumps(v, sort_keys=True) if isinstance(v, dict) else None for v in ok["step"]]
    if None in steps or len(set(steps)) > 1 or "math" not in ok["step"].iloc[0]:
        return ""
    # One sweep on one machine: a report of two folders (another host, torch or commit) differs in those too.
    machines = {(str(run.get("device_name")), str(run.get("env_hostname"))) for _, run in ok.iterrows()}
    if len(machines) > 1 or ("sweep" in ok and ok["sweep"].nunique() > 1):
        return ""
    notes = [n for v in ok.get("notes", []) if isinstance(v, list) for n in v]
    why = next((n for n in notes if n.startswith("precision=") and " here" in n), None)
    math = ok["step"].iloc[0].get("math")
    return (f"Every run computed the same step here, in {math}{f' ({why})' if why else ''}: they differ in nothing "
            f"else, so what follows is run-to-run noise, not an effect of {x}.")  # fmt: skip


def sentences(runs: pd.DataFrame, x: str, sizes: bool = True) -> list[str]:
    """Two or three sentences about the finished runs of one experiment, along the swept variable ``x``; with
    ``sizes``, how the models' sizes rank where they do not agree (paragraphs says that once for all of them)."""
    if not trains(runs):
        return capacity_sentences(runs)
    ok = runs[(runs["status"] == "ok") & runs["samples_per_s"].notna()]
    # Along x, only the runs that have a value of it (a run without one read "from 500 at batch_size=64 to 500 at
    # batch_size=n/a").
    ok = ok[ok[x].notna()] if x in ok else ok
    if len(ok) == 1 and x in ok:  # nothing to rank; a noisy run is still named, as its table cell flags it
        return [s for s in [_noise_sentence(ok, x)] if s]
    if len(ok) < 2 or x not in ok:
        return []
    if is_numeric(ok[x]):
        ok = ok.assign(_x=pd.to_numeric(ok[x])).sort_values("_x", kind="stable")
    best, worst = ok.loc[ok["samples_per_s"].idxmax()], ok.loc[ok["samples_per_s"].idxmin()]
    out = [_ignored_sentence(ok, x), _same_maths_sentence(ok, x)]
    if is_numeric(ok[x]) and ok["_x"].nunique() > 1:
        lo, hi = _ends(ok, x, ok["samples_per_s"])
        text = (
            f"Throughput goes from {lo.figure:,.0f} samples/s at {lo.at} to "
            f"{hi.figure:,.0f} at {hi.at} ({hi.figure / lo.figure:.2f}×); the fastest run is "
            f"{_run_label(ok, x, best)} at {best['samples_per_s']:,.0f} samples/s{_close_second(ok, best, worst, x)}"
        )
        if worst["_x"] not in (lo.value, hi.value):  # the ends alone would hide a dip between them
            text += f", the slowest {_run_label(ok, x, worst)} at {worst['samples_per_s']:,.0f}"
        out.append(text + _within_noise(best, worst) + ".")
    elif best["samples_per_s"] == worst["samples_per_s"]:  # a tie: no fastest, no slowest
        out.append(f"Every run ran at {best['samples_per_s']:,.0f} samples/s.")
    else:
        out.append(
            f"{_run_label(ok, x, best)} is the fastest at {best['samples_per_s']:,.0f} samples/s"
            f"{_close_second(ok, best, worst, x)}; "
            f"{_run_label(ok, x, worst)} is the slowest at {worst['samples_per_s']:,.0f} samples/s, and the fastest "
            f"runs at {best['samples_per_s'] / worst['samples_per_s']:.2f}× its rate{_within_noise(best, worst)}."
        )
    out.append(_size_sentence(ok) if sizes else "")
    out.append(_step_time_sentence(ok, x))
    out.append(_data_path_sentence(ok, x))
    memory = _memory_sentence(ok, x)
    if memory:
        out.append(memory)
    out.append(_noise_sentence(ok, x))
    return [s for s in out if s]


@dataclass(frozen=True)
class End:
    """One end of a numeric swept variable: its value, the figure there, and how a sentence names it."""

    value: float
    figure: float
    at: str  # "batch_size=64", or "batch_size=64 (the median of its 2 runs)"


def _ends(ok: pd.DataFrame, x: str, figures: pd.Series) -> tuple[End, End]:
    """The lowest and highest value of ``x`` among the runs with a figure (``figures``, one per run of ``ok``), each
    with the median of its runs' figures: where a value ran more than once (a config run twice) the median, not
    whichever run sorted first ("from 3,306 samples/s at workers=0 to 150 at workers=0")."""
    along = pd.to_numeric(ok[x], errors="coerce")
    known = figures.notna() & along.notna()
    by = figures[known].groupby(along[known])
    median, count = by.median(), by.size()

    def end(value: float) -> End:
        run = ok[known & (along == value)].iloc[0]
        runs_there = f" (the median of its {count[value]} runs)" if count[value] > 1 else ""
        return End(float(value), float(median[value]), f"{_label(x, run[x])}{runs_there}")

    return end(median.index.min()), end(median.index.max())


def _size_sentence(ok: pd.DataFrame) -> str:
    """Where the runs' models rank one way by parameters and another by training FLOPs per image (the lab's
    SmallNet has three times MediumNet's parameters and half its FLOPs), which one measures the work."""
    if "params" not in ok or "flops_per_sample" not in ok or "model" not in ok:
        return ""
    models = ok.assign(_p=pd.to_numeric(ok["params"], errors="coerce"),
                       _f=pd.to_numeric(ok["flops_per_sample"], errors="coerce"))  # fmt: skip
    models = models.dropna(subset=["_p", "_f"]).drop_duplicates(subset=["model"])
    by_params, by_flops = (list(models.sort_values(k, kind="stable")["model"]) for k in ("_p", "_f"))
    if len(models) < 2 or by_params == by_flops:
        return ""

    def ranked(key: str, show: Callable[[float], str]) -> str:
        rows = list(models.sort_values(key, kind="stable").iterrows())
        text = f"{_label('model', rows[0][1]['model'])} ({show(rows[0][1][key])})"
        for (_, before), (_, run) in pairwise(rows):
            text += f" {'<' if before[key] < run[key] else '='} {_label('model', run['model'])} ({show(run[key])})"
        return text

    return (
        f"By parameters the models rank {ranked('_p', lambda v: f'{v:,.0f}')}, and by training FLOPs per image "
        f"{ranked('_f', lambda v: f'{significant(v / 1e6)} million')}: a convolution's weights work at every "
        "position of the image and a fully connected layer's once per image, so the FLOPs, not the parameters, "
        "are the work."
    )


def _shared_band(faster: pd.Series, slower: pd.Series) -> float | None:
    """The two runs' spreads (IQR / median) summed, where the faster one's lead is within it: no ranking between
    them is a finding. None where either has no spread, or the lead is beyond it."""
    spreads = [relative_iqr(faster), relative_iqr(slower)]
    if any(s is None for s in spreads):
        return None
    band = sum(s for s in spreads if s is not None)
    return band if faster["samples_per_s"] / slower["samples_per_s"] - 1 <= band else None


def _within_noise(best: pd.Series, worst: pd.Series) -> str:
    """Where the fastest and the slowest run differ by less than their spreads summed, a ranking is noise."""
    band = None if best.name == worst.name else _shared_band(best, worst)
    if band is None:
        return ""
    return (f", but the fastest and the slowest differ by less than their own spread (IQR / median, {band:.1%} "
            "together): no measurable difference")  # fmt: skip


def _close_second(ok: pd.DataFrame, best: pd.Series, worst: pd.Series, x: str) -> str:
    """Where the next fastest run is within the two runs' spreads summed, the fastest is not a finding: say so
    (medium "the fastest" at 3,122 beside small at 3,020, their IQRs 126 together). The slowest is
    _within_noise's."""
    rest = ok.drop(index=best.name)
    if rest.empty:
        return ""
    second = rest.loc[rest["samples_per_s"].idxmax()]
    band = None if second.name == worst.name else _shared_band(best, second)
    if band is None:
        return ""
    return (f" ({_run_label(ok, x, second)}, at {second['samples_per_s']:,.0f}, is within the two runs' spread: "
            f"IQR / median, {band:.1%} together)")  # fmt: skip


def _noise_sentence(ok: pd.DataFrame, x: str) -> str:
    """Which runs' timings moved by more than NOISY_CV, since the sentences above rank runs by them."""
    cv = pd.to_numeric(ok["samples_per_s_cv"], errors="coerce")
    if len(ok) > 1 and cv.isna().all():  # one timed epoch each, no repeats: no spread to judge differences by
        return ("Unmeasured noise: each run timed a single epoch, so nothing here says how much its time moves "
                "from one epoch to the next, and a small difference between runs may be that alone; `epochs=3` "
                "or `repeat=3` measures it.")  # fmt: skip
    noisy = ok[cv > NOISY_CV]
    if noisy.empty:
        return ""
    repeats = pd.to_numeric(noisy["repeats"], errors="coerce").fillna(1)
    names = ", ".join(
        f"{_run_label(ok, x, r)} (CV {r['samples_per_s_cv']:.1%} over its {'repeats' if n > 1 else 'epochs'})"
        for (_, r), n in zip(noisy.iterrows(), repeats, strict=True)
    )
    if len(ok) == 1:  # a run alone: its own figures are what the spread makes uncertain
        return (f"Noisy: {names} varied by more than {NOISY_CV:.0%}, so its figures are that uncertain"
                + ("; `repeat=3` measures it." if (repeats <= 1).any() else "."))  # fmt: skip
    return (
        f"Noisy: {names} varied by more than {NOISY_CV:.0%}, so a difference between runs smaller than that "
        "spread is not a finding" + ("; `repeat=3` measures it." if (repeats <= 1).any() else ".")
    )


#: a step's own time that grew at most FLAT_STEP_GROWTH× while its batch grew FLAT_STEP_SPAN× or more was set by
#: a cost paid once a step; one that grew by PROPORTIONAL_STEP of the batch's growth or more, by the images' work;
#: one that grew by more than COSTLIER_STEP of it, by more than the images: each image cost more in a larger batch
FLAT_STEP_GROWTH, FLAT_STEP_SPAN, PROPORTIONAL_STEP, COSTLIER_STEP = 1.5, 4, 0.7, 1.1


def _step_time_sentence(ok: pd.DataFrame, x: str) -> str:
    """Along batch_size: how a step's own time (the epoch less its data wait, per step) grows against the images
    in it, which answers why a larger batch is faster: a cost paid once a step, spread over more images."""
    if x != "batch_size" or not is_numeric(ok[x]):
        return ""
    batch = pd.to_numeric(ok[x], errors="coerce")
    steps = np.ceil(images_per_epoch(ok) / batch)
    wait = pd.to_numeric(ok["data_wait_frac"], errors="coerce").fillna(0.0)
    own = pd.to_numeric(ok["avg_epoch_time"], errors="coerce") * (1 - wait) / steps
    known = own.notna() & (own > 0) & (batch > 0)
    if batch[known].nunique() < 2:  # two runs at one batch size have no growth to speak of ("1× the images")
        return ""
    lo, hi = _ends(ok, x, own.where(known))
    t0, t1 = lo.figure, hi.figure
    span, growth = hi.value / lo.value, t1 / t0
    text = (f"A step's own time (the epoch less its data wait, per step) goes from {significant(t0 * 1000)} ms at "
            f"{lo.at} to {significant(t1 * 1000)} ms at {hi.at}: {growth:.2f}× the time for {span:,.0f}× the "
            "images")  # fmt: skip
    first, last = _label(x, lo.value), _label(x, hi.value)
    # A ratio of two noisy ends is that uncertain: 0.90x the time for 4x the images on a loaded CPU, an end at
    # CV 41%, had read as "a cost paid once a step sets it" beside a verdict of compute-bound.
    cv = pd.to_numeric(ok["samples_per_s_cv"], errors="coerce").where(known)
    worst = cv[batch.isin([lo.value, hi.value])].max()
    if pd.notna(worst) and worst > NOISY_CV:
        return text + (f"; a run at an end varied by CV {worst:.0%} from epoch to epoch (or repeat), so this ratio "
                       "is that uncertain and says nothing of what sets a step's time.")  # fmt: skip
    if span >= FLAT_STEP_SPAN and growth <= FLAT_STEP_GROWTH:
        # What a step pays once: on a GPU, launching its kernels; on a CPU, each operator's fixed cost and the
        # optimizer's pass over every weight.
        once = "launching its kernels, the host's work" if (ok["device"] == "cuda").all() else (
            "each operator's fixed cost, the optimizer's pass over every weight" if (ok["device"] == "cpu").all()
            else "the host's work, launching kernels")  # fmt: skip
        text += (f": a cost paid once a step ({once}), not the images, sets it, and a larger batch spreads it over "
                 "more images")  # fmt: skip
    elif span >= FLAT_STEP_SPAN and growth > COSTLIER_STEP * span:  # "saves little per image" said the opposite
        text += (f": each image took {growth / span:.2f}× as long at {last} as at {first}, so a larger batch costs "
                 "more per image here")  # fmt: skip
    elif span >= FLAT_STEP_SPAN and growth >= PROPORTIONAL_STEP * span:
        # By how much, not "little": at 0.75 of proportional, a quarter of each image's time is saved.
        saved = 1 - growth / span
        change = f", {saved:.0%} less" if saved >= 0.005 else f", {-saved:.0%} more" if saved <= -0.005 else ""
        text += (f": the images' own work sets most of it; each image took {growth / span:.2f}× as long at {last} "
                 f"as at {first}{change}")  # fmt: skip
    return text + "."


def _data_path_sentence(ok: pd.DataFrame, x: str) -> str:
    waits = ok["data_wait_frac"]
    if waits.isna().all():
        return ""
    # The verdict's own rule (a GPU busy all along is not input-bound), so a sentence never contradicts the table.
    bound = [
        _run_label(ok, x, r)  # "batch_size=64 (run 1)" where runs share the value
        for _, r in ok.iterrows()
        if input_bound(finite(r["data_wait_frac"]), finite(r.get("gpu_busy_frac")))
    ]
    shares = pd.to_numeric(waits, errors="coerce")
    shown = {wait_share(v) for v in shares.dropna()}
    # Along a numeric x with two values or more: its ends, each the median of its runs. Else (models, loaders, or
    # runs that share one value) there is no order to go along: the range, lowest to highest.
    along = is_numeric(ok[x]) and pd.to_numeric(ok[x], errors="coerce")[shares.notna()].nunique() > 1
    lo, hi = _ends(ok, x, shares) if along else (None, None)
    if len(shown) == 1:  # "goes from 39% to 39%" said nothing
        span = f"is {shown.pop()} at every {x}"
    elif lo is not None and hi is not None and wait_share(lo.figure) == wait_share(hi.figure):
        # "goes from 2% at batch_size=16 to 2% at batch_size=256" hid what moved between the ends
        span = (f"is {wait_share(lo.figure)} at {lo.at} and at {hi.at}, from {wait_share(shares.min())} to "
                f"{wait_share(shares.max())} between")  # fmt: skip
    elif lo is not None and hi is not None:
        span = f"goes from {wait_share(lo.figure)} at {lo.at} to {wait_share(hi.figure)} at {hi.at}"
    else:
        low, high = ok.loc[shares.idxmin()], ok.loc[shares.idxmax()]
        span = (f"ranges from {wait_share(low['data_wait_frac'])} at {_run_label(ok, x, low)} to "
                f"{wait_share(high['data_wait_frac'])} at {_run_label(ok, x, high)}")  # fmt: skip
    if not bound:
        return f"The data path's share of the epoch {span}: no run is input-bound (threshold {INPUT_BOUND_WAIT:.0%})."
    if len(bound) == len(ok):
        return f"The data path's share of the epoch {span}: every run is input-bound."
    return f"The data path's share of the epoch {span}: input-bound at {', '.join(bound)}."


def _memory_sentence(ok: pd.DataFrame, x: str) -> str:
    ok = ok[ok["peak_memory_mb"].notna()]  # CUDA runs only: beside CPU runs, no range over theirs
    if ok.empty:
        return ""
    if len(ok) == 1:
        only = ok.iloc[0]
        return (f"Peak memory allocated is {only['peak_memory_mb']:,.1f} MB at {_label(x, only[x])}, the only run "
                "with a CUDA figure.")  # fmt: skip
    memory = pd.to_numeric(ok["peak_memory_mb"], errors="coerce")
    if memory.map(lambda v: f"{v:,.1f}").nunique() == 1:  # "from 50.0 MB at … to 50.0 MB at …" said nothing
        return f"Peak memory allocated is {memory.iloc[0]:,.1f} MB in every run."
    if is_numeric(ok[x]) and pd.to_numeric(ok[x], errors="coerce").nunique() > 1:
        lo, hi = _ends(ok, x, memory)  # each end the median of its runs, as the throughput sentence's
        text = f"Peak memory allocated goes from {lo.figure:,.1f} MB at {lo.at} to {hi.figure:,.1f} MB at {hi.at}"
        if lo.figure > 0:  # how many times: amp_fp16's half of fp32's reads at a glance
            text += f" ({hi.figure / lo.figure:.2f}×)"
    else:  # no order to go along (or runs that share one value): the range, lowest to highest
        low, high = ok.loc[memory.idxmin()], ok.loc[memory.idxmax()]
        text = (f"Peak memory allocated ranges from {memory[low.name]:,.1f} MB at {_run_label(ok, x, low)} to "
                f"{memory[high.name]:,.1f} MB at {_run_label(ok, x, high)}")  # fmt: skip
        if memory[low.name] > 0:
            text += f" ({memory[high.name] / memory[low.name]:.2f}×)"
    if x == "batch_size" and is_numeric(ok[x]) and ok[x].nunique() >= 2:
        slope = np.polyfit(pd.to_numeric(ok[x]).astype(float), ok["peak_memory_mb"].astype(float), 1)[0]
        text += f", {slope * 1024:,.1f} KB more per image in the batch"
    return text + "."


def capacity_sentences(runs: pd.DataFrame) -> list[str]:
    """task=max_batch: per model and precision, the largest batch and what the fit says per GB."""
    out = []
    for _, r in runs[runs["max_batch"].notna()].iterrows():
        largest, failing = r["max_batch"], r.get("oom_batch")
        reason = lower_bound_reason(r.get("search"), largest, failing)
        text = f"{r['model']} in {r['precision']} trains "
        if reason:
            text += f"at least {largest:,.0f} images per batch ({reason})"
        elif failing is not None and pd.notna(failing) and failing > largest + 1:  # bracketed, not pinned down
            how = f"; {r['search']}" if isinstance(r.get("search"), str) else ""
            text += (f"at least {largest:,.0f} and under {failing:,.0f} images per batch "
                     f"({failing:,.0f} ran out of memory{how})")  # fmt: skip
        else:
            text += f"at up to {largest:,.0f} images per batch"
        if pd.notna(r["mem_mb_per_image"]) and pd.notna(r["images_per_gb"]):
            text += (
                f"; peak ≈ {r['mem_intercept_mb']:,.1f} MB + {r['mem_mb_per_image']:,.4f} MB × batch "
                f"(R² {r['mem_fit_r2']:.4f}), so each GB of memory holds about {r['images_per_gb']:,.0f} more images"
            )
            if r["mem_fit_r2"] < STRAIGHT_R2:
                text += (
                    f"; but the peak is not a straight line in the batch (R² below {STRAIGHT_R2}): convolution "
                    "workspaces change with it, and near the cap PyTorch falls back to algorithms with smaller "
                    "workspaces, so a larger batch can peak lower; read the per-GB figure as rough"
                )
        out.append(text + ".")
    return out


def learning_cell(learned: object) -> str:
    """The learning check as a table shows it: a blank beside "did not learn" would read as not checked."""
    return {True: "learned", False: "did not learn"}.get(learned, "") if isinstance(learned, bool) else ""


def verdict_table(runs: pd.DataFrame, varied: list[str]) -> pd.DataFrame:
    """Per run: the swept values, the verdict, its evidence and the next step to try."""
    table = runs[[*varied, "status", "verdict", "evidence", "next", "learned"]].copy()
    table["next"] = [f"`{n}`" if isinstance(n, str) and n else "" for n in table["next"]]
    table["learned"] = [learning_cell(v) for v in table["learned"]]
    return table.rename(columns={"next": "try next", "learned": "learning"})


def memory_table(runs: pd.DataFrame, varied: list[str]) -> pd.DataFrame:
    """Per CUDA run with a breakdown: each part in MB, and the peaks they add up to."""
    found = [(run, run.get("memory")) for _, run in runs.iterrows()]
    found = [(run, parts) for run, parts in found if isinstance(parts, dict) and "activations_mb" in parts]
    shown = parts_shown(parts for _, parts in found)
    rows = []
    for run, parts in found:
        row = {v: run[v] for v in varied}
        row.update({MEMORY_LABELS[p]: parts.get(f"{p}_mb", 0.0 if p == "graph_pool" else None) for p in shown})
        row.update({"peak allocated": parts.get("peak_allocated_mb"), "peak reserved": parts.get("peak_reserved_mb")})
        rows.append(row)
    return pd.DataFrame(rows)


def lab_memory_sentence(runs: pd.DataFrame) -> str:
    """Why our peak differs from the lab's, from the breakdown of our first run that has one."""
    for _, run in runs.iterrows():
        parts = run.get("memory")
        if isinstance(parts, dict) and "activations_mb" in parts:
            own = parts["params_mb"] + parts["grads_mb"] + parts["optimizer_mb"]
            transient = parts["activations_mb"] + parts.get("graph_pool_mb", 0.0)  # a captured step's are pooled
            return (
                f"Of our peak with {run.get('model')} at {run.get('batch_size')} images per batch (our first run with "
                f"a breakdown), {own:,.1f} MB are the model's weights, "
                f"gradients and Adam state, {transient:,.1f} MB activations and temporaries, and "
                f"{parts['other_persistent_mb']:,.1f} MB other persistent memory (library workspaces and handles, "
                "which differ by GPU, driver and library version)"
                + ("; the resident dataset is left out above." if parts.get("dataset_mb") else ".")
            )
    return ""


#: the lab's epoch times within this share of each other, across models whose work per image differs by
#: LAB_FLOPS_SPAN or more, were not set by the models' compute
LAB_FLAT_TIME, LAB_FLOPS_SPAN = 0.25, 4


def lab_compute_sentence(lab_figures: pd.DataFrame, runs: pd.DataFrame, x: str) -> str:
    """Across models, how little the lab's epoch time moved beside how much their work per image does (counted
    on ours: the same nets): the lab's part 3 reads its 12% as the models' cost, where 80× the FLOPs says its
    epochs were bound by something else."""
    if x != "model" or "avg_epoch_time" not in lab_figures or x not in lab_figures:
        return ""
    ours = runs.dropna(subset=["flops_per_sample"]).drop_duplicates(x).set_index(x)
    lab_rows = lab_figures.dropna(subset=["avg_epoch_time"]).set_index(x)
    lab, flops = lab_rows["avg_epoch_time"], ours["flops_per_sample"]
    both = [m for m in lab.index if m in flops.index]
    # The same nets only, by their parameter counts: +model.width=2 keeps the names, not the work.
    if "params" not in lab_rows or any(finite(ours.loc[m].get("params")) != lab_rows.loc[m, "params"] for m in both):
        return ""
    if len(both) < 2:
        return ""
    times, work = lab[both].astype(float), flops[both].astype(float)
    spread, span = times.max() / times.min() - 1, work.max() / work.min()
    if spread > LAB_FLAT_TIME or span < LAB_FLOPS_SPAN:
        return ""
    return (
        f"The lab's epoch times differ by only {spread:.0%} across these models ({times.min():g} to "
        f"{times.max():g} s), while their training FLOPs per image differ {span:,.0f}× (counted on ours, the "
        "same nets): its epochs were not set by the models' compute, but by what every model shared, such as "
        "the input pipeline (part 4) and the per-step overheads."
    )
