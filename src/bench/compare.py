"""``python -m bench.compare BASELINE CANDIDATE``: how much faster or slower one set of runs is than another.

"How much faster is the H100 than my laptop?" and "did this change slow training down?" are one question. Each
side is one or more run or sweep folders. Runs are matched by config (the config columns and every setting not
all runs share), never by device or environment, so a CPU sweep pairs with a GPU sweep of the same configs. Per
config: samples/s and peak memory (CUDA allocated on a GPU, else RSS) on both sides, the ratios candidate /
baseline, and a verdict: ``faster`` above 1 + band, ``slower`` below 1 / (1 + band) (as far from 1 on a log
scale: 0.8× is 1.25× the other way), else ``same``. The band is ``iqr_base / median_base + iqr_cand /
median_cand`` where both sides were timed with ``repeat=N`` (N ≥ 2), or ran the config several times (their IQR
across runs, where wider); else each side's repeats' or single run's epochs' spread, where it is wider than
``--band`` (5%); else ``--band`` (see :func:`noise_band`). A config on one side only, or not ok on a side, is
listed without a verdict; several runs of a config on a side count once, with their median samples/s.

Exit codes: 0; 1 with ``--fail-on-regression`` when a config is slower, or ran ok in the baseline and oom,
failed or diverged in the candidate; 2 bad input (a run on both sides included), or no config matched. Two
single records: bench.pair.
"""

from __future__ import annotations

import argparse
import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from bench import interrupts
from bench.errors import EXIT_RUN_FAILED, OneLineParser, UsageError, fail
from bench.folders import (
    first_missing,
    holds_run_dirs,
    linked_figures,
    make_writable,
    refuse_inside_results,
    remove_empty,
    remove_unlinked,
)
from bench.metrics import finite
from bench.results import write_atomically
from bench.runs import (
    CONFIG_COLUMNS,
    NOT_SET,
    added_keys,
    code_version,
    flat_config,
    load_runs,
    relative_iqr,
    saved_config,
    set_by_some,
)
from bench.tables import MISSING, cell, markdown

BAND = 0.05
FASTER, SAME, SLOWER = "faster", "same", "slower"
#: config keys that say where or how a run was measured, not what it trained: never matched on
NOT_MATCHED = ("device", "data_dir", "repeat", "profile")
#: settings that runs of these loaders record but do not use: not matched where every run on both sides is one
UNUSED_BY_LOADER = {"workers": {"resident"}}
#: a candidate status that is a regression where the baseline ran ok
BROKEN = ("oom", "failed", "diverged")
#: peak memory by what a side measured: CUDA allocated on a GPU, else the process's RSS
MEMORY = {"peak_memory_mb": "CUDA allocated", "peak_rss_mb": "RSS"}
REPORT_FILE, PLOT_FILE = "compare.md", "compare.png"
LIKE = {"baseline samples/s": "samples_per_s", "candidate samples/s": "samples_per_s",
        "baseline peak MB": "peak_memory_mb", "candidate peak MB": "peak_memory_mb"}  # fmt: skip


@dataclass
class Comparison:
    """One row per config of either side (the baseline's first), the keys matched on, and the fixed band."""

    table: pd.DataFrame
    keys: list[str]
    shown: list[str]
    band: float
    machines: tuple[str, str] = ("unknown", "unknown")
    #: the keys --ignore left out of the matching, each with its values on either side
    ignored: dict[str, tuple[list[str], list[str]]] = field(default_factory=dict)


# -------------------------------------------------------------------------------------------- matching


def load_side(paths: Sequence[Path]) -> pd.DataFrame:
    """load_runs, plus each run's saved config flattened (``_flat``): the settings beyond the columns."""
    df = load_runs([Path(p) for p in paths])
    return df.assign(_flat=[flat_config(saved_config(Path(d))) for d in df["run_dir"]])


def _norm(value: Any) -> Any:
    """A config value as a match key: 64 and 64.0 (a column with gaps) are one batch size."""
    if isinstance(value, (list, dict)):
        return repr(value)
    if value is None or pd.isna(value):
        return None
    if pd.api.types.is_bool(value):
        return str(bool(value)).lower()
    return float(value) if pd.api.types.is_number(value) else str(value)


def match_keys(base: pd.DataFrame, cand: pd.DataFrame, ignore: Sequence[str] = ()) -> list[str]:
    """The config columns both sides record but the device, plus every setting all runs record, not all alike."""
    skip = (*NOT_MATCHED, *ignore)

    def skipped(key: str) -> bool:
        return any(key == s or key.startswith(f"{s}.") for s in skip)

    configs = [c for c in [*base["_flat"], *cand["_flat"]] if c]
    common = set.intersection(*(set(c) for c in configs)) if configs else set()
    extra = [k for k in (configs[0] if configs else {}) if k in common and k not in CONFIG_COLUMNS]
    extra = [k for k in extra if not skipped(k) and len({repr(_norm(c[k])) for c in configs}) > 1]
    sides = pd.concat([base, cand])
    unset = set_by_some([(f, added_keys(Path(d))) for f, d in zip(sides["_flat"], sides["run_dir"], strict=True)])
    extra += sorted(k for k in unset if k not in extra and k not in CONFIG_COLUMNS and not skipped(k))
    recorded = [c for c in CONFIG_COLUMNS if base[c].notna().any() and cand[c].notna().any()]  # older runs lack some
    # Settings no run on either side used: the resident loader starts no workers, and runs that differed only in
    # workers (recorded, unused) were "different configs", never paired.
    recorded_loaders = {str(v) for v in sides["loader"] if isinstance(v, str)}  # an unreadable run records none
    unused = {key for key, loaders in UNUSED_BY_LOADER.items() if recorded_loaders and recorded_loaders <= loaders}
    return [c for c in recorded if not skipped(c) and c not in unused] + [k for k in extra if k not in unused]


def _by_config(df: pd.DataFrame, keys: list[str]) -> dict[tuple, pd.DataFrame]:
    index = [tuple(_norm(run[k]) for k in keys) for _, run in df.iterrows()]
    return {key: df[[k == key for k in index]] for key in dict.fromkeys(index)}


def _speed(run: pd.Series) -> tuple[float | None, float | None, float | None]:
    """The run's samples/s as its report gives it (every timed epoch's images ÷ their time), and its spread:
    (rate, the repeats' IQR / median, None) where it was repeated, else (rate, None, its epochs' IQR / median).
    The rate is the same figure on both sides: a repeated side's median beside the other's overall rate had
    set two statistics in one ratio, and shown a figure its own report did not."""
    rate, spread = finite(run.get("samples_per_s")), relative_iqr(run)
    if (finite(run.get("repeats")) or 1) > 1 and finite(run.get("samples_per_s_median")):
        return rate, spread, None
    return rate, None, spread  # one run: the median and IQR are its epochs'


def summarize_side(runs: pd.DataFrame | None) -> dict[str, Any]:
    """A config's runs on one side as one: how many, their status, and the medians of the ok runs' figures."""
    if runs is None or runs.empty:
        return {"runs": 0, "status": "", "samples_per_s": None, "rel_iqr": None, "epoch_iqr": None,
                "memory_mb": None, "memory": None, "broken": False}  # fmt: skip
    ok = runs[runs["status"] == "ok"]
    statuses = ", ".join(dict.fromkeys(str(s) for s in runs["status"]))
    speeds = [_speed(run) for _, run in ok.iterrows()]
    rates = [r for r, _, _ in speeds if r is not None]
    spreads, epochs = [s for _, s, _ in speeds if s is not None], [e for _, _, e in speeds if e is not None]
    memory = next((k for k in MEMORY if k in ok and ok[k].notna().any()), None)
    mems = [m for m in (finite(v) for v in ok[memory]) if m is not None] if memory else []
    status = "ok" if len(ok) == len(runs) else f"{len(ok)} of {len(runs)} ok" if len(ok) else statuses
    rel_iqr = statistics.median(spreads) if spreads and len(spreads) == len(ok) else None
    if len(rates) >= 2:  # several runs of the config (processes apart): their spread is noise measured here too
        q1, _, q3 = statistics.quantiles(rates, n=4, method="inclusive")
        # Three runs 46% apart judged within their epochs' ±5.5%: identical code read 1.83x faster.
        rel_iqr = max(rel_iqr or 0.0, (q3 - q1) / statistics.median(rates))
    return {
        "runs": len(runs), "status": status, "samples_per_s": statistics.median(rates) if rates else None,
        "rel_iqr": rel_iqr,
        "epoch_iqr": statistics.median(epochs) if epochs and len(epochs) == len(ok) else None,
        "memory_mb": statistics.median(mems) if mems else None, "memory": MEMORY[memory] if memory else None,
        "broken": bool(runs["status"].isin([*BROKEN, "unreadable"]).any()),
    }  # fmt: skip


def verdict(ratio: float, band: float) -> str:
    """faster above 1 + band, slower below 1 / (1 + band), else the same within noise.

    Symmetric on a log scale, as speed ratios are: 1 − band had called a 0.59× slowdown "same" within ±55%,
    where 1.55× was "faster", and no band of 100% or more could ever find a config slower."""
    return SLOWER if ratio * (1 + band) < 1 else FASTER if ratio > 1 + band else SAME


def noise_band(
    base_rel_iqr: float | None, cand_rel_iqr: float | None, band: float = BAND,
    base_epochs: float | None = None, cand_epochs: float | None = None,
) -> tuple[float, str]:  # fmt: skip
    """The band a ratio is judged within, and what it rests on: "IQR" (the repeats'), "epochs" (a single
    run's epochs'), "IQR+epochs", or "fixed".

    Both sides repeated: their relative IQRs summed. Else the widest of: twice the one repeated side's IQR (its
    spread taken for both); each side's spread (its repeats' IQR, else its epochs') summed, or twice the one
    known; and the fixed band. A side known to be noisy makes ±5% claim more than it can show; a single run's
    epochs only ever widen the band, never narrow it (runs differ from one another by more than their epochs
    do)."""
    if base_rel_iqr is not None and cand_rel_iqr is not None:
        return base_rel_iqr + cand_rel_iqr, "IQR"
    repeated = base_rel_iqr if base_rel_iqr is not None else cand_rel_iqr
    sides = [(base_rel_iqr, base_epochs), (cand_rel_iqr, cand_epochs)]
    known = [r if r is not None else e for r, e in sides if r is not None or e is not None]
    with_epochs = sum(known) if len(known) == 2 else 2 * known[0] if known else 0.0
    from_repeats = 2 * repeated if repeated is not None else 0.0
    if max(with_epochs, from_repeats) <= band:
        return band, "fixed"
    if from_repeats >= with_epochs:
        return from_repeats, "IQR"
    return with_epochs, "IQR+epochs" if repeated is not None else "epochs"


def _row(b: dict[str, Any], c: dict[str, Any], band: float) -> dict[str, Any]:
    """Both sides' figures (``base_*``, ``cand_*``), the ratios, the band, the verdict and the status."""
    # A verdict only where every run of the config is ok on both sides: a partly failed config is listed, not judged.
    judged = b["status"] == c["status"] == "ok" and b["samples_per_s"] and c["samples_per_s"] is not None
    ratio = c["samples_per_s"] / b["samples_per_s"] if judged else None
    width, rule = (noise_band(b["rel_iqr"], c["rel_iqr"], band, b["epoch_iqr"], c["epoch_iqr"])
                   if ratio is not None else (None, None))  # fmt: skip
    alike = b["memory"] == c["memory"] and b["memory_mb"] and c["memory_mb"] is not None
    if b["runs"] and c["runs"]:
        status = "ok" if b["status"] == c["status"] == "ok" else f"baseline {b['status']}, candidate {c['status']}"
    else:
        only, side = ("baseline", b) if b["runs"] else ("candidate", c)
        status = f"{only} only" + ("" if side["status"] == "ok" else f" ({side['status']})")
    return {**{f"base_{k}": v for k, v in b.items()}, **{f"cand_{k}": v for k, v in c.items()}, "ratio": ratio,
            "band": width, "band_rule": rule, "verdict": verdict(ratio, width) if ratio is not None else None,
            "memory_ratio": c["memory_mb"] / b["memory_mb"] if alike else None,
            "memory": " → ".join(dict.fromkeys(k for k in (b["memory"], c["memory"]) if k)) or None,
            "status": status}  # fmt: skip


def compare(base: pd.DataFrame, cand: pd.DataFrame, band: float = BAND, ignore: Sequence[str] = ()) -> Comparison:
    """Every config of either side, matched by config; the module's docstring gives the rules."""
    recorded = {*CONFIG_COLUMNS, *(k for c in [*base["_flat"], *cand["_flat"]] if c for k in c)}
    for key in ignore:  # a typo would silently ignore nothing
        if not any(k == key or k.startswith(f"{key}.") for k in recorded):
            raise UsageError(f"--ignore {key}: no run records that key (e.g. precision, batch_size, step.compile)")
    for side, df in (("baseline", base), ("candidate", cand)):  # another tool's folder: nothing to match on
        if not df[CONFIG_COLUMNS].notna().any().any():
            statuses = ", ".join(dict.fromkeys(map(str, df["status"])))
            raise UsageError(f"the {side} has no run whose config could be read ({statuses}): nothing to match its "
                             "runs on; give bench's run or sweep folders")  # fmt: skip
    keys = match_keys(base, cand, ignore)
    extra = [k for k in keys if k not in CONFIG_COLUMNS]  # settings from the saved configs, as columns
    base, cand = (df.assign(**{k: [_saved(f, k) for f in df["_flat"]] for k in extra}) for df in (base, cand))
    left, right = _by_config(base, keys), _by_config(cand, keys)
    if not set(left) & set(right):
        raise UsageError("no config of the candidate matches the baseline" + _mismatch(keys, left, right))
    rows = []
    for key in dict.fromkeys([*left, *right]):
        first = (left[key] if key in left else right[key]).iloc[0]
        sides = summarize_side(left.get(key)), summarize_side(right.get(key))
        rows.append({**{k: first[k] for k in keys}, **_row(*sides, band)})
    table = pd.DataFrame(rows)
    shown = [k for k in keys if len(set(map(_norm, table[k]))) > 1] or [k for k in ("model", "batch_size") if k in keys]
    ignored = {key: (_values_of(base, key), _values_of(cand, key)) for key in ignore}
    return Comparison(table, keys, shown, band, (_machines(base), _machines(cand)), ignored)


def _saved(flat: dict[str, Any], key: str) -> Any:
    """A setting as the matching reads it: NOT_SET where a readable config lacks a key others set."""
    return flat.get(key, NOT_SET) if flat else None


def _values_of(df: pd.DataFrame, key: str) -> list[str]:
    """The distinct values one side's runs have for ``key``: each run's column, else (where its cell is empty, as
    a CPU run's resolved cudnn_benchmark) the key of its saved config, as the matching read it."""
    saved = [_norm(_saved(f, key)) for f in df["_flat"]]
    recorded = [_norm(v) for v in df[key]] if key in df else [None] * len(df)
    values = {v if v is not None else s for v, s in zip(recorded, saved, strict=True)}
    return sorted(cell(v) for v in values if v is not None)  # as the refusal names them: false, not False


def _mismatch(keys: list[str], left: dict[tuple, Any], right: dict[tuple, Any]) -> str:
    """Which matched keys share no value, and how to compare across them anyway."""
    found = [(key, {k[i] for k in left}, {k[i] for k in right}) for i, key in enumerate(keys)]
    found = [(key, sorted(map(cell, a)), sorted(map(cell, b))) for key, a, b in found if a.isdisjoint(b)]
    what = "; ".join(f"{key} {', '.join(a)} vs {', '.join(b)}" for key, a, b in found)
    flags = " ".join(f"--ignore {key}" for key, _, _ in found)
    return f" (they differ in {what}; pass {flags} to compare them anyway)" if found else ""


def _machines(df: pd.DataFrame) -> str:
    """Where a side ran: the device and its name, the host, the commit; each distinct one once."""
    seen = []
    for _, r in df[df["env_torch"].notna()].iterrows():
        # The CPU's name only for a CPU run: a CUDA job skipped on a machine without one has no GPU to name.
        names = (r["device_name"], r["env_gpu"], r["env_cpu"] if r["device"] == "cpu" else None)
        name = next((n for n in names if isinstance(n, str)), None)
        parts = [f"({name})" if name else "", f"on {r['env_hostname']}" if isinstance(r["env_hostname"], str) else ""]
        code = code_version(r["env_git_commit"], r.get("env_git_dirty"))  # with its uncommitted changes, if any
        commit = f", commit {code}" if code else ""
        seen.append(" ".join([str(r["device"]), *filter(None, parts)]) + commit)
    return "; ".join(dict.fromkeys(seen)) or "unknown"


# ------------------------------------------------------------------------------------------- rendering


def _percent(share: float) -> str:
    """A band as a percentage to one decimal, without a trailing zero: 5%, 1.3%, 4% (not 3.95% beside 1.3%);
    under 1%, two significant digits (0.04%, not 0%)."""
    if 0 < share < 0.01:
        return f"{100 * share:.2g}%"
    return f"{100 * share:,.1f}".rstrip("0").rstrip(".") + "%"


def _like(c: Comparison) -> dict[str, str]:
    """Each figure column formatted as its metric: the peaks as RSS (whole MB, as the report has them) where
    every side of every row measured RSS, else as CUDA allocated (one decimal)."""
    memories = {*c.table["base_memory"].dropna(), *c.table["cand_memory"].dropna()}
    if memories == {MEMORY["peak_rss_mb"]}:
        return LIKE | {"baseline peak MB": "peak_rss_mb", "candidate peak MB": "peak_rss_mb"}
    return LIKE


def _limits(band: float) -> str:
    """A band as the verdict's two limits: ``+5%/−4.8%`` (above 1 + band, below 1 / (1 + band)); a "±54.5%"
    read as if 0.6× were inside it, where the slower limit is 0.65×."""
    return f"+{_percent(band)}/−{_percent(band / (1 + band))}"


def _times(values: pd.Series) -> list[str]:
    return [MISSING if pd.isna(v) else f"{v:.2f}×" for v in values]


def geometric_mean(ratios: Sequence[float]) -> float | None:
    """The mean speedup that multiplies out: 2× on one config and 0.5× on another average to 1×."""
    logs = [math.log(r) for r in ratios if r and r > 0]
    return math.exp(sum(logs) / len(logs)) if logs else None


def summary_line(c: Comparison) -> str:
    """``candidate vs baseline: 3 faster, 1 same, 0 slower (band 5%); geometric mean speedup 2.41×``."""
    judged = c.table[c.table["verdict"].notna()]
    if judged.empty:
        return ("candidate vs baseline: no config has all its runs ok on both sides (see the status column), so "
                "there is no verdict")  # fmt: skip
    n = judged["verdict"].value_counts()
    rules = set(judged["band_rule"]) - {"fixed"}
    measured = int((judged["band_rule"] != "fixed").sum())
    what = "the repeats' IQR" if rules == {"IQR"} else "the epochs' IQR" if rules == {"epochs"} else "measured spreads"
    band = f"band {_percent(c.band)}" if not measured else f"band: {what}" + (
        f" on {measured} of {len(judged)}, else {_percent(c.band)}" if measured < len(judged) else "")  # fmt: skip
    mean = geometric_mean(list(judged["ratio"]))
    return (f"candidate vs baseline: {n.get(FASTER, 0)} faster, {n.get(SAME, 0)} same, {n.get(SLOWER, 0)} slower "
            f"({band}); geometric mean speedup {f'{mean:.2f}×' if mean else MISSING}")  # fmt: skip


def _labels(c: Comparison) -> list[str]:
    return [", ".join(f"{k}={cell(r[k])}" for k in c.shown) for _, r in c.table.iterrows()]


def display(c: Comparison) -> pd.DataFrame:
    """The table as people read it: the config keys that vary, then both sides' figures, ratios, verdict."""
    t, out = c.table, c.table[c.shown].copy()
    out["baseline samples/s"], out["candidate samples/s"] = t["base_samples_per_s"], t["cand_samples_per_s"]
    out["ratio"], out["verdict"] = _times(t["ratio"]), t["verdict"].fillna(MISSING)
    out["band"] = [MISSING if pd.isna(b) else _limits(b) + (f" ({rule})" if rule != "fixed" else "")
                   for b, rule in zip(t["band"], t["band_rule"], strict=True)]  # fmt: skip
    out["baseline peak MB"], out["candidate peak MB"] = t["base_memory_mb"], t["cand_memory_mb"]
    out["memory ratio"], out["memory"] = _times(t["memory_ratio"]), t["memory"].fillna(MISSING)
    if (t["base_runs"] > 1).any() or (t["cand_runs"] > 1).any():
        out["runs (baseline / candidate)"] = [f"{a} / {b}" for a, b in zip(t["base_runs"], t["cand_runs"], strict=True)]
    return out.assign(status=t["status"])


def render(c: Comparison, baseline: Sequence[Path], candidate: Sequence[Path], figure: str | None = None) -> str:
    """compare.md: where each side ran, what was matched on, the table, the verdicts' rule and the summary."""
    unjudged = int(c.table["verdict"].isna().sum())
    lines = [
        "# bench compare", "",
        f"- baseline: {', '.join(f'`{p}`' for p in baseline)}: {c.machines[0]}",
        f"- candidate: {', '.join(f'`{p}`' for p in candidate)}: {c.machines[1]}",
        f"- matched on: {', '.join(c.keys)} (never the device or the environment)",
        *(f"- not matched on (--ignore): {key}: baseline {', '.join(b) or 'n/a'}; candidate {', '.join(a) or 'n/a'}"
          for key, (b, a) in c.ignored.items()),
        "",
        markdown(display(c), like=_like(c)), "",
        "ratio: candidate / baseline (above 1: the candidate is faster, or uses more memory). Verdict: faster "
        "above 1 + band, slower below 1 / (1 + band) (as far on a log scale), else same; the band is the sum of "
        "both sides' relative IQRs (IQR / median of samples/s over repeat=N, or over a side's several runs of a "
        "config where wider) where both have one; else the widest of twice a repeated side's IQR, the sides' "
        "spreads summed (a single run's from its epochs: marked epochs), and "
        f"{_percent(c.band)} (fixed). Memory: peak CUDA "
        "memory allocated on a GPU, else peak RSS; a ratio only where both sides measured the same.", "",
    ]  # fmt: skip
    if unjudged:
        lines += [f"{unjudged} config{'s' * (unjudged != 1)} without a verdict: on one side only, or not ok on a "
                  "side.", ""]  # fmt: skip
    # Nothing measured how far apart a side's runs fall here: a band of single runs' epochs on one side at least.
    if c.table["band_rule"].isin(["fixed", "epochs", "IQR+epochs"]).any():
        lines += [f"Where the band is the fixed {_percent(c.band)} or rests on a run's epochs (marked epochs), nothing "
                  "measured how far apart separate runs of a config fall on these machines, and on a busy one "
                  "they differ by more than a run's epochs do (of two identical sweeps of 256-image epochs on a "
                  "2-core box, one config ran 0.83× as fast). For a verdict to rely on, give each side several "
                  "runs of each config (several folders), or at least repeat=3.", ""]  # fmt: skip
    if figure:
        lines += [f"![samples/s ratio, candidate / baseline]({figure})", ""]
    return "\n".join([*lines, summary_line(c)]) + "\n"


def plot(c: Comparison, path: Path, baseline: Sequence[Path] = (), candidate: Sequence[Path] = ()) -> bool:
    """One bar per judged config: its samples/s ratio, the noise band shaded, a line at 1; False if none. The
    title names each side's folders and, for a key not matched on, its values: the bars alone do not say which
    side is which."""
    judged = c.table["verdict"].notna()
    if not judged.any():
        return False
    from bench import plots  # matplotlib is imported only when a figure is made

    labels = [label for label, j in zip(_labels(c), judged, strict=True) if j]
    ignored = "".join(f"; not matched on {key}: baseline {', '.join(b) or 'n/a'}, candidate {', '.join(a) or 'n/a'}"
                      for key, (b, a) in c.ignored.items())  # fmt: skip
    base, cand = c.machines
    sides = f"Both on {base}" if base == cand else f"Candidate on {cand}, baseline on {base}"
    # The folders' own names (compare.md has their paths): a long path wraps mid-word in a title.
    names = {side: " ".join(Path(p).resolve().name for p in paths) for side, paths in (("base", baseline),
                                                                                      ("cand", candidate))}  # fmt: skip
    who = f"Candidate {names['cand']} vs baseline {names['base']}" if all(names.values()) else "Candidate vs baseline"
    # The title says who and the result; the line under it where they ran (a machine's name is long).
    title = f"{who}: {summary_line(c).rsplit('; ', 1)[-1]}"
    colors = {FASTER: "tab:green", SAME: "0.55", SLOWER: "tab:red"}
    return plots.draw(plots.plot_ratios, c.table[judged], labels, title, path, colors, f"{sides}{ignored}")[0]


#: how a band that repeated runs did not measure is said beside a regression: on a busy machine, separate runs of
#: a config differ by more than it (two identical 1-epoch sweeps on a 2-core box read 0.35× and 0.75×)
UNMEASURED_BANDS = {"epochs": ", from one run's epochs", "IQR+epochs": ", partly from one run's epochs"}


def _band_basis(row: pd.Series) -> str:
    """What a regression's band rests on, where repeats on both sides did not measure it."""
    if row["band_rule"] != "fixed":
        return UNMEASURED_BANDS.get(row["band_rule"], "")
    repeated = pd.notna(row["base_rel_iqr"]) or pd.notna(row["cand_rel_iqr"])
    return ", fixed: wider than one side's repeats measured" if repeated else ", fixed: no repeats measured the spread"


def regressions(c: Comparison) -> list[str]:
    """Configs slower beyond the band, and configs the baseline ran ok that the candidate broke or did not finish
    (interrupted, missing: a CI sweep cut at its time limit shows nothing about its speed). A config skipped for
    want of its device says so in the table; that is the machine, not the code."""
    found = []
    for label, (_, row) in zip(_labels(c), c.table.iterrows(), strict=True):
        if row["verdict"] == SLOWER:
            # A CI log shows this line alone: whether anything measured the band is said here too.
            basis = _band_basis(row)
            found.append(f"{label} slower ({row['ratio']:.2f}×, below {1 / (1 + row['band']):.2f}×: band "
                         f"{_percent(row['band'])}{basis})")  # fmt: skip
        elif pd.notna(row["base_samples_per_s"]) and row["cand_runs"] and row["cand_status"] not in ("ok", "skipped"):
            found.append(f"{label} {row['cand_status']} in the candidate, ok in the baseline")
        elif row["cand_broken"] and "unreadable" in str(row["cand_status"]) and row[c.keys].isna().all():
            # Its config could not be read either, so it matched nothing: it may be any of the baseline's. One whose
            # config was read is a config of its own: where the baseline never ran it, there is nothing to regress.
            found.append(f"{label} unreadable in the candidate, config unknown")
    return found


# ------------------------------------------------------------------------------------------------- CLI


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = OneLineParser(
        prog="python -m bench.compare",
        description="Compare a candidate set of runs with a baseline, config by config: the samples/s and peak "
        "memory ratios (candidate / baseline) and a verdict, faster, slower or the same within noise. Runs are "
        "matched by config, never by device or environment: a CPU sweep pairs with a GPU sweep.",
    )
    add = parser.add_argument
    add("dirs", nargs="*", type=Path, metavar="BASELINE CANDIDATE",
        help="two run or sweep folders; with only --baseline or --candidate, the other side's")  # fmt: skip
    add("--baseline", nargs="+", type=Path, action="extend", metavar="DIR", help="baseline run or sweep folders")
    add("--candidate", nargs="+", type=Path, action="extend", metavar="DIR", help="candidate run or sweep folders")
    add("--band", type=float, default=BAND, metavar="SHARE",
        help="the noise band where a side was not repeated (default 0.05: faster above 1.05×, slower below "
             "1/1.05 = 0.95×)")  # fmt: skip
    add("--ignore", action="append", default=[], metavar="KEY",
        help="config keys not to match on, e.g. precision: fp32 against amp runs (repeatable, or a,b)")  # fmt: skip
    add("--out", type=Path, metavar="DIR", help=f"write {REPORT_FILE} and {PLOT_FILE} there (default: print only)")
    add("--fail-on-regression", action="store_true",
        help="exit 1 if a config is slower beyond the band, or broke or did not finish in the candidate (oom, "
        "failed, diverged, interrupted, missing) where the baseline ran it, or if no config could be judged at "
        "all: a CI guard")  # fmt: skip
    # Folders after an option too (`A --band 0.1 B`), as bench.reproduce takes its overrides anywhere.
    args = parser.parse_intermixed_args(argv)
    base, cand, rest = args.baseline or [], args.candidate or [], args.dirs
    if not base and not cand:  # BASELINE CANDIDATE; else the folders not after an option are the other side's
        base, cand, rest = rest[:1], rest[1:2], rest[2:]
    elif not base or not cand:
        base, cand, rest = base or rest, cand or rest, []
    if rest or not base or not cand:
        parser.error("expected BASELINE CANDIDATE (two folders), or --baseline DIR... --candidate DIR...")
    args.baseline, args.candidate = base, cand
    # --ignore loader,recipe as well as --ignore loader --ignore recipe
    args.ignore = [key.strip() for keys in args.ignore for key in keys.split(",") if key.strip()]
    if not 0 <= args.band < 1:
        parser.error(f"--band {args.band}: expected a share between 0 and 1, e.g. 0.05 for 5%")
    if args.out is not None and holds_run_dirs(args.out):  # a comparison is not a result: never among the runs
        parser.error(f"--out {args.out}: that folder holds runs; write the comparison to a folder of its own")
    if args.out is not None:  # nor inside one: a sweep's unrun job folder, which its resume would then skip
        try:
            refuse_inside_results(args.out, "--out")
        except UsageError as err:
            parser.error(str(err))
    return args


def run(args: argparse.Namespace) -> tuple[Comparison, str, list[Path]]:
    """Read both sides, compare, and write compare.md and compare.png into ``--out`` if given."""
    base, cand = load_side(args.baseline), load_side(args.candidate)
    _refuse_a_run_on_both_sides(base, cand)
    c = compare(base, cand, args.band, args.ignore)
    if args.out is None:
        return c, render(c, args.baseline, args.candidate), []
    made = first_missing(args.out)
    make_writable(args.out, "--out")
    try:
        earlier = linked_figures(args.out / REPORT_FILE) & {PLOT_FILE}  # the one figure it draws, nothing of the user's
        figure = PLOT_FILE if plot(c, args.out / PLOT_FILE, args.baseline, args.candidate) else None
        text = render(c, args.baseline, args.candidate, figure)
        files = [args.out / REPORT_FILE, *([args.out / PLOT_FILE] if figure else [])]
        with interrupts.deferred():
            write_atomically(args.out / REPORT_FILE, text)  # whole or not at all, as every result file
            remove_unlinked(args.out, earlier, files)
    except BaseException:  # a full disk, a signal: a folder made for nothing is not left behind
        remove_empty(args.out, made)
        raise
    return c, text, files


def _refuse_a_run_on_both_sides(base: pd.DataFrame, cand: pd.DataFrame) -> None:
    """A run compared with itself is always "same": a slip of the command line (the same folder twice, or a
    sweep and one of its jobs), never a measurement."""
    baseline = {Path(d).resolve(): d for d in base["run_dir"] if isinstance(d, str)}
    for d in cand["run_dir"]:
        there = baseline.get(Path(d).resolve()) if isinstance(d, str) else None
        if there is not None:
            also = "" if there == d else f" (as {there})"
            raise UsageError(f"{d} is on both sides{also}: a run compared with itself is always the same")
    # A copy (cp -r) is the same run in another folder: one host cannot begin two runs at the same instant.
    began = {key: run["run_dir"] for _, run in base.iterrows() if (key := _instant(run)) is not None}
    for _, run in cand.iterrows():
        there = began.get(key) if (key := _instant(run)) is not None else None
        if there is not None:
            raise UsageError(f"{run['run_dir']} is a copy of {there} (it began at the same instant on the same host): "
                             "a run compared with itself is always the same")  # fmt: skip


def _instant(run: pd.Series) -> tuple[float, str] | None:
    """When and where a run began, which no other run shares; None for a run that did not record it."""
    began, host = finite(run.get("ran_from")), run.get("env_hostname")
    return (began, str(host)) if began is not None and isinstance(host, str) else None


def main(argv: Sequence[str] | None = None) -> None:
    """Console entry point: 0; 1 on a regression with --fail-on-regression; 2 on bad input; never a traceback."""
    args = parse_args(argv)
    # An earlier comparison in --out is replaced (it is the folder's, as a report's is): said, not silent.
    earlier = args.out is not None and (args.out / REPORT_FILE).is_file()
    with interrupts.command("compare"):
        c, text, files = run(args)
    print(text, end="", flush=True)
    for path in files:
        replaced = earlier and path.name == REPORT_FILE
        print(f"wrote {path}" + (" (in place of the comparison it held)" if replaced else ""))
    found = regressions(c)
    if args.fail_on_regression and found:
        fail(f"{len(found)} regression{'s' * (len(found) != 1)}: {'; '.join(found)}", EXIT_RUN_FAILED)
    if args.fail_on_regression and c.table["verdict"].isna().all():  # a guard that judged nothing passes nothing
        fail("--fail-on-regression: no config was judged (none has all its runs ok on both sides), so nothing "
             "shows that the candidate is not slower", EXIT_RUN_FAILED)  # fmt: skip


if __name__ == "__main__":
    main()
