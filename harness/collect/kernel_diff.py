"""Kernel tables side by side: time by category (torchao's summary) and differences."""
from __future__ import annotations

import pandas as pd

from harness.collect.kernel_categories import CATEGORIES


def category_summary(tables: dict[str, pd.DataFrame], by: str = "category") -> pd.DataFrame:
    """torchao's "time (ms) by kernel category": categories x backends, ms per iteration, and
    an `All` row. Categories no backend uses are left out, as torchao does. `by="op_category"`
    groups by the category of the source PyTorch op instead of the kernel's."""
    cols = {label: table.groupby(by)["time_us_per_iter"].sum() / 1000.0
            for label, table in tables.items()}
    out = pd.DataFrame(cols).fillna(0.0)
    out = out.reindex([c for c in CATEGORIES if c in out.index])
    out = pd.concat([out, out.sum(axis=0).to_frame("All").T])
    out.index.name = by
    return out


def kernel_diff(a: pd.DataFrame, b: pd.DataFrame, labels: tuple[str, str] = ("A", "B")
                ) -> pd.DataFrame:
    """Per kernel: time per iteration in A and B (us) and B - A, largest change first."""
    la, lb = labels
    ta = a.groupby(["kernel", "category"])["time_us_per_iter"].sum().rename(f"{la}_us")
    tb = b.groupby(["kernel", "category"])["time_us_per_iter"].sum().rename(f"{lb}_us")
    out = pd.concat([ta, tb], axis=1).fillna(0.0).reset_index()
    out["delta_us"] = out[f"{lb}_us"] - out[f"{la}_us"]
    out = out.reindex(out["delta_us"].abs().sort_values(ascending=False, kind="stable").index)
    return out.reset_index(drop=True)


def category_diff(a: pd.DataFrame, b: pd.DataFrame, labels: tuple[str, str] = ("A", "B"),
                  by: str = "category") -> pd.DataFrame:
    """Per category (ms per iteration): A, B and B - A, with the `All` row."""
    out = category_summary({labels[0]: a, labels[1]: b}, by=by)
    out["delta"] = out[labels[1]] - out[labels[0]]
    return out
