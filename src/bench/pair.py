"""Two metrics records side by side: config differences, environment, per-epoch losses and every metric.

The comparison of one run with another, as ``bench.reproduce`` needs it for ``reproduce.md`` (sets of runs,
matched by config, are ``bench.compare``'s job). It is data first (lists and DataFrames, so tests and other
tools can use it) and one renderer, :func:`render`, which writes markdown with the report's own table code;
every metric of :data:`bench.metrics.METRICS` that has a ``compare`` rule is a row.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from bench.diagnosis import diagnose
from bench.metrics import METRICS, SIGNIFICANT, Metric, finite, significant
from bench.schema import as_override
from bench.tables import MISSING, cell, markdown

#: environment fields shown side by side; a difference in any of CODE_FIELDS means other code ran
ENV_FIELDS = (
    "python", "torch", "torchvision", "cuda", "cudnn", "gpu", "driver", "cpu", "torch_threads", "hostname",
    "git_commit", "git_dirty",
)  # fmt: skip
CODE_CHANGED = "code changed since this run"
ABSENT: Any = type("Absent", (), {"__repr__": lambda self: "(absent)"})()

Change = tuple[str, Any, Any]


# -------------------------------------------------------------------------------------------- config


def config_changes(old: Any, new: Any, prefix: str = "") -> list[Change]:
    """Every key whose value differs, as (dotted key, old, new); a whole subtree where one side is not one."""
    if isinstance(old, dict) and isinstance(new, dict):
        found: list[Change] = []
        for key in [*old, *(k for k in new if k not in old)]:
            found += config_changes(old.get(key, ABSENT), new.get(key, ABSENT), f"{prefix}{key}.")
        return found
    return [] if _equal(old, new) else [(prefix[:-1], old, new)]


def _equal(old: Any, new: Any) -> bool:
    """Equal values of the same kind: 1 and 1.0 are the same number, but True is not 1 and None is not 0."""
    if isinstance(old, bool) or isinstance(new, bool):
        return type(old) is type(new) and old == new
    if isinstance(old, (int, float)) and isinstance(new, (int, float)):
        return old == new
    return type(old) is type(new) and old == new


def change_text(change: Change) -> str:
    key, old, new = change
    return f"{key}: {_value(old)} → {_value(new)}"


def _value(value: Any) -> str:
    """A config value as typed: 0.001, 1e+06, true, null."""
    if value is None or isinstance(value, bool):
        return as_override(value)
    return f"{value:.6g}" if isinstance(value, float) else cell(value)


# ------------------------------------------------------------------------------------------ environment


def code_changes(then: dict[str, Any] | None, now: dict[str, Any]) -> list[str]:
    """What differs in the code that ran: git commit, uncommitted changes, package versions."""
    if not then:
        return []
    found = []  # a field the original did not record (an older bench) cannot be compared
    if "git_commit" in then and then["git_commit"] != now.get("git_commit"):
        found.append(f"git commit {_short(then['git_commit'])} → {_short(now.get('git_commit'))}")
    if "git_dirty" in then and then["git_dirty"] != now.get("git_dirty"):
        found.append(f"uncommitted changes {_yes_no(then['git_dirty'])} → {_yes_no(now.get('git_dirty'))}")
    if "packages" not in then:
        return found
    old_pkgs, new_pkgs = then.get("packages") or {}, now.get("packages") or {}
    for name in sorted(set(old_pkgs) | set(new_pkgs)):
        if old_pkgs.get(name) != new_pkgs.get(name):
            found.append(f"{name} {old_pkgs.get(name)} → {new_pkgs.get(name)}")
    return found


def code_notes(then: dict[str, Any] | None, now: dict[str, Any]) -> list[str]:
    """Warnings about the code, for the console and the comparison."""
    if not then:
        return ["note: the original run recorded no environment; cannot tell whether the code changed"]
    found = code_changes(then, now)
    if found:
        return [f"warning: {CODE_CHANGED}: " + "; ".join(found)]
    if then.get("git_dirty") and now.get("git_dirty"):
        return ["note: the code had uncommitted changes then and has now; they may not be the same changes"]
    return []


def _short(commit: Any) -> str:
    return str(commit)[:10] if commit else "unknown"


def _yes_no(flag: Any) -> str:
    return "unknown" if flag is None else ("yes" if flag else "no")


def env_table(old: dict[str, Any], new: dict[str, Any]) -> pd.DataFrame:
    keys = [*ENV_FIELDS, *(k for k in {**old, **new} if k not in ENV_FIELDS and k != "packages")]
    rows = [(k, old.get(k), new.get(k)) for k in keys]
    old_pkgs, new_pkgs = old.get("packages") or {}, new.get("packages") or {}
    rows += [(f"packages.{p}", old_pkgs.get(p), new_pkgs.get(p)) for p in {**old_pkgs, **new_pkgs}]
    table = pd.DataFrame(rows, columns=["field", "original", "new"], dtype=object)
    table["same"] = ["yes" if a == b else "**no**" for _, a, b in rows]
    return table


# ---------------------------------------------------------------------------------------- losses, metrics


def _losses(metrics: dict[str, Any]) -> dict[tuple[Any, Any], Any]:
    """Each epoch's loss by (repeat, epoch): with repeat=N the epochs' numbers come again in every repeat."""
    return {(e.get("repeat") or 1, e.get("epoch")): e.get("loss") for e in metrics.get("epochs_detail") or []}


#: an epoch's loss that metrics.json records as null: NaN or infinite (the epoch a run diverged in)
NOT_FINITE = "not finite"


def loss_table(old: dict[str, Any], new: dict[str, Any]) -> pd.DataFrame:
    """Per epoch: both losses at full precision, and whether they are identical (bit for bit)."""
    before, after = _losses(old), _losses(new)
    keys = sorted(set(before) | set(after), key=lambda k: [(v is None, v or 0) for v in k])
    rows = []
    for key in keys:
        shown = [MISSING if key not in side else NOT_FINITE if side[key] is None else repr(side[key])
                 for side in (before, after)]  # fmt: skip
        a, b = before.get(key), after.get(key)
        if MISSING in shown:
            same = MISSING
        elif shown == [NOT_FINITE, NOT_FINITE]:
            same = f"both {NOT_FINITE}"
        else:
            same = "yes" if a == b else "no"
        rows.append((*key, *shown, same))
    table = pd.DataFrame(rows, columns=["repeat", "epoch", "original", "new", "identical"], dtype=object)
    return table if len({k[0] for k in keys}) > 1 else table.drop(columns="repeat")


def loss_summary(old: dict[str, Any], new: dict[str, Any]) -> str:
    before, after = _losses(old), _losses(new)
    both = [(before[e], after[e]) for e in before if e in after and before[e] is not None and after[e] is not None]
    # Epochs whose loss neither run could record: both diverged there, which is the same outcome, not none.
    lost = [e for e in before if e in after and before[e] is None and after[e] is None]
    also = (f" The loss of epoch{'s' * (len(lost) > 1)} {', '.join(str(e[1]) for e in lost)} was {NOT_FINITE} "
            "(NaN or infinite) on both sides: both diverged there.") if lost else ""  # fmt: skip
    same = sum(a == b for a, b in both)
    if not both:  # one side has no loss for any epoch the other has (it stopped, or diverged at once)
        return "No epoch has a finite loss on both sides, so none can be compared." + also
    if same == len(both):
        return ("The one compared epoch loss is identical." if len(both) == 1 else (
            f"All {len(both)} compared epoch losses are identical.")) + also  # fmt: skip
    gap = max(abs(a - b) for a, b in both)
    if len(both) == 1:
        return f"The one compared epoch loss differs (by {gap:.3g})." + also
    return f"{len(both) - same} of {len(both)} compared epoch losses differ (largest gap {gap:.3g})." + also


def change(m: Metric, old: Any, new: Any) -> str:
    """How ``new`` compares with ``old`` by the metric's rule: a ratio or a signed difference."""
    a, b = finite(old), finite(new)
    if a is None or b is None:
        return MISSING
    if m.compare == "ratio":
        return f"{b / a:.3f}× (new / original)" if a else MISSING  # as bench.compare writes a ratio
    if m.fmt == SIGNIFICANT:
        return ("+" if b >= a else "-") + significant(abs(b - a))
    if m.fmt.endswith("%"):  # a share's change is in percentage points: 35% → 9% is −26 pp, not "−26%"
        return _points(m, a, b)
    # The difference of the values as shown beside it: 2 and 75 differ by +73, where 1.56 and 75.16 gave +74.
    difference = _as_shown(m, b) - _as_shown(m, a)
    if m.show is not None and abs(difference) >= 1e6:  # values shown in scientific form (a blown-up loss)
        return f"{difference:+.3g}"
    return format(difference, "+" + m.fmt.lstrip("+"))


def _points(m: Metric, a: float, b: float) -> str:
    """The change of a share in percentage points, as the difference of the two shares shown beside it:
    36% and 25% differ by −11 pp, where 36.4% and 24.6% gave −12 (a share near a verdict's threshold is
    shown with a decimal, and so is then its change)."""
    shown = [m.format(value).removesuffix("%") for value in (a, b)]
    try:
        old, new = (float(text) for text in shown)
    except ValueError:  # not shown as a plain percentage: the values as they are
        old, new = 100 * a, 100 * b
    decimals = max(len(text.partition(".")[2]) for text in shown)
    return f"{new - old:+.{decimals}f} pp"


def _as_shown(m: Metric, value: float) -> float:
    """``value`` rounded as ``m`` shows it (4.74e+28 for a blown-up loss), or as it is where that is no number."""
    try:
        return float(m.format(value).replace(",", ""))
    except ValueError:
        return value


#: metrics that add the timed epochs up: two runs of different epoch counts have no ratio of them
SUMS_OF_EPOCHS = ("total_time",)
#: metrics of where the training ended: two runs that stopped after different epochs ended at different points
#: (a reproduction's third epoch's loss beside the original's first read as a difference of 0.0063)
AT_THE_END = ("final_loss", "test_accuracy")


def metric_table(old: dict[str, Any], new: dict[str, Any]) -> pd.DataFrame:
    """One row per comparable metric of the table: both values and the change; none for a metric neither run
    has (energy on the CPU)."""
    # Where both records list their epochs (an unreadable original, or an older record, may not): else no rule.
    counts = [len(run.get("epochs_detail") or []) for run in (old, new)]

    def compared(m: Metric) -> str:
        if m.key in (*SUMS_OF_EPOCHS, *AT_THE_END) and all(counts) and counts[0] != counts[1]:  # 1 against 2: 0.526×
            return f"n/a ({counts[0]} timed epoch{'s' * (counts[0] != 1)}, then {counts[1]})"
        return change(m, old.get(m.key), new.get(m.key))

    rows = [
        (
            f"{m.label} ({m.unit})" if m.unit else m.label,
            m.format(old.get(m.key)),
            m.format(new.get(m.key)),
            compared(m),
        )
        for m in METRICS
        if m.compare and not (finite(old.get(m.key)) is None and finite(new.get(m.key)) is None)
    ]
    return pd.DataFrame(rows, columns=["metric", "original", "new", "new vs original"], dtype=object)


# ------------------------------------------------------------------------------------------- rendering


def _alike(same: pd.DataFrame) -> str:
    """Environment fields both runs share, in a line: each with its value, then those neither recorded."""
    pairs = list(zip(same["field"], same["original"], strict=True))
    text = ", ".join(f"{field} {cell(value)}" for field, value in pairs if value is not None)
    unrecorded = [field for field, value in pairs if value is None]
    return text + (f"; not recorded by either: {', '.join(unrecorded)}" if unrecorded else "")


def render(old: dict[str, Any], new: dict[str, Any], changes: list[Change]) -> list[str]:
    """The comparison's markdown sections: config, environment, losses, metrics."""
    lines = ["## Config differences", ""]
    if changes:
        diff = pd.DataFrame([(k, _value(a), _value(b)) for k, a, b in changes], columns=["key", "original", "new"])
        lines.append(markdown(diff))
    else:
        lines.append("None: the same config ran.")
    old_env, new_env = old.get("env") or {}, new.get("env") or {}
    env = env_table(old_env, new_env)
    lines += ["", "## Environment differences", ""]
    if not old_env:  # nothing recorded is not every field differing ("16 of 19 fields differ")
        env["same"] = MISSING
        lines += ["The original recorded no environment (no readable metrics.json): the new run's alone, below.", "",
                  markdown(env)]  # fmt: skip
    else:
        # The fields that differ as a table; the others in a line (a table of 20 identical rows had followed
        # "None: the same environment").
        same = env[env["same"] == "yes"]
        differing = env[env["same"] != "yes"]
        if differing.empty:
            lines.append(f"None: the same environment: {_alike(same)}.")
        else:
            lines += [f"{len(differing)} of {len(env)} fields differ.", "", markdown(differing)]
            lines += ["", f"The other {len(same)} are the same: {_alike(same)}."] if len(same) else []
    losses = loss_summary(old, new)
    if changes and "differ" in losses:  # an override may explain it; one that leaves the maths alone does not
        keys = ", ".join(k for k, _, _ in changes)
        losses += (f" The configs differ in {keys} (above): a setting that changes the training explains it; "
                   "one that does not (workers, profile) leaves the losses identical on the CPU.")  # fmt: skip
    lines += ["", "## Loss per epoch", "", losses, "", markdown(loss_table(old, new))]
    lines += ["", "## Time, memory, accuracy", "", verdicts(old, new), "", markdown(metric_table(old, new))]
    return lines


def verdicts(old: dict[str, Any], new: dict[str, Any]) -> str:
    """Each side's verdict (bench.diagnosis) and its evidence: the console says it after the run, and a
    reproduction that turned input-bound has to say so here too. Only a run that ended ok is judged, as in
    its report: a diverged run's epochs are timed, but a verdict on them would send the reader after speed."""

    def judged(run: dict[str, Any]) -> tuple[str | None, str]:
        if not run:  # an unreadable original
            return None, "no record to judge"
        if run.get("status") != "ok":
            return None, f"it ended {run.get('status')}"
        found = run.get("diagnosis") or diagnose(run)  # as recorded, as its report reads it
        return found.get("verdict"), found.get("evidence") or "no timed epoch to judge"

    (was, why_was), (now, why_now) = judged(old), judged(new)
    if was == now:
        if was is None:
            why = f"both: {why_now}" if why_was == why_now else f"original: {why_was}; new: {why_now}"
            return f"Verdict: none for either run ({why})."
        return f"Verdict: {now} both times (original: {why_was}; new: {why_now})."
    said = [f"{v} ({why})" if v else f"none ({why})" for v, why in ((was, why_was), (now, why_now))]
    return f"Verdict: original {said[0]}; new {said[1]}."
