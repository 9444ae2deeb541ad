"""Tables for people: one renderer for report.md, reproduce.md, bench.compare and the console.

Metric columns are formatted by their entry in :data:`bench.metrics.METRICS` (``26,586``, ``33%``, units in
the header, never ``2.659e+04``); other cells print as written (a batch size is ``64``, not ``64.0``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from bench.metrics import METRICS, Metric

MISSING = "n/a"


def as_text(value: Any) -> str:
    """A value as a person would write it, the project's one rule for it: a swept 512 read back as 512.0 (a
    column pandas made float for a run without the key) is 512; 1e-08 stays 1e-08; nothing is n/a. Used by
    the tables, the findings' sentences and the plots' labels alike."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return MISSING
    if isinstance(value, float):
        # Whole numbers as the integers they were (a float here is often an int column pandas made float): in
        # full, so dataset.train_size=1281167 keeps its digits and reads as it does in an int column.
        return str(int(value)) if value.is_integer() and abs(value) < 1e15 else f"{value:.6g}"
    return str(value)


def cell(value: Any, metric: Metric | None = None) -> str:
    """One markdown cell: a metric by its format, anything else as :func:`as_text` writes it."""
    if metric is not None:
        return metric.format(value, MISSING)
    return as_text(value).replace("|", "\\|").replace("\n", " ")


def formatted(
    df: pd.DataFrame, columns: Sequence[str] | None = None, like: Mapping[str, str] | None = None
) -> pd.DataFrame:
    """The given columns as display strings: a metric's column under its header (units included), and a
    column named in ``like`` formatted as the metric it maps to, under its own name."""
    columns = [c for c in (columns if columns is not None else df.columns) if c in df]
    like = like or {}
    by_key = {m.key: m for m in METRICS}
    out = pd.DataFrame(index=df.index)
    for col in columns:
        metric = by_key.get(like.get(col, col))
        header = metric.header if metric is not None and col not in like else col
        out[header] = [cell(v, metric) for v in df[col]]
    return out


def markdown(df: pd.DataFrame, columns: Sequence[str] | None = None, like: Mapping[str, str] | None = None) -> str:
    """A GitHub table of ``df``'s columns (default: all), numbers right-aligned; see :func:`formatted`."""
    shown = formatted(df, columns, like)
    if shown.empty and not len(shown.columns):
        return ""
    align = ["right" if _numeric(shown[c]) else "left" for c in shown.columns]
    return shown.to_markdown(index=False, disable_numparse=True, colalign=align)


def _numeric(col: pd.Series) -> bool:
    values = [v for v in col if v != MISSING]
    stripped = [v.replace(",", "").rstrip("%×").strip() for v in values]  # 33%, 2.41× are numbers too
    return bool(values) and all(_is_number(v) for v in stripped)


def _is_number(text: str) -> bool:
    try:
        float(text.removeprefix("+"))
    except ValueError:
        return False
    return True
