"""The dashboard's plotly figures: a series over nights (wall with its process spread, GPU time
and host gap, flags, commits, change points), a sparkline, and the fair pairs' ratio.

Every figure names what it draws in its axes or legend, and a flagged night is never drawn bare:
it carries a marker whose hover lists its flag codes with what they mean (describe.FLAG_CODES).
"""
from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from harness.describe import FLAG_CODES
from harness.report.load import finite

WALL = "#1f77b4"
SPREAD = "rgba(31, 119, 180, 0.18)"
GPU = "#2ca02c"
GAP = "#ff7f0e"
FLAGGED = "#d62728"       # a night `regressions` does not judge (failed, or a noise flag)
NOTED = "#e3a21a"         # a flagged night that is still judged (throttled, host_bound, ...):
                          # on the H200 every GEMM-bound night is power-capped, and red on every
                          # night would hide the nights that decide nothing
CHANGE = "#7f7f7f"
PAIR_COLOURS = ("#1f77b4", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22")
SHA_CHARS = 10


def short_sha(sha) -> str:
    return str(sha)[:SHA_CHARS] if isinstance(sha, str) and sha else "unknown"


def flag_text(flags: str) -> str:
    """`high_cv,process_spread` -> one line per code with its meaning, for a hover."""
    codes = [c for c in str(flags or "").split(",") if c]
    return "<br>".join(f"{c}: {FLAG_CODES.get(c, 'unknown flag')}" for c in codes)


def spread_text(row: pd.Series) -> str:
    lo, hi = row.get("between_min_ms"), row.get("between_max_ms")
    if finite(lo) and finite(hi):
        return f"processes {lo:.4g}-{hi:.4g} ms (CV {100 * row['between_cv']:.1f}%)"
    cv = row.get("cv")
    return f"one process, CV {100 * cv:.1f}%" if finite(cv) else "not measured"


def judged_text(row: pd.Series) -> str:
    """Whether `regressions` may rest a verdict on the night, and why not."""
    return "judged" if row["usable"] else f"not judged ({row['excluded']})"


def _hover_data(nights: pd.DataFrame) -> list[list[str]]:
    return [[spread_text(r), short_sha(r["git_sha"]), r["flags"] or "none", judged_text(r)]
            for _, r in nights.iterrows()]


HOVER = ("%{x|%Y-%m-%d}<br>%{fullData.name}: %{y:.4g} ms<br>spread: %{customdata[0]}"
         "<br>commit: %{customdata[1]}<br>flags: %{customdata[2]}<br>%{customdata[3]}"
         "<extra></extra>")


def _spread_band(nights: pd.DataFrame) -> go.Scatter | None:
    band = nights[nights["between_min_ms"].map(finite) & nights["between_max_ms"].map(finite)]
    if band.empty:
        return None
    return go.Scatter(x=[*band["date"], *band["date"][::-1]],
                      y=[*band["between_max_ms"], *band["between_min_ms"][::-1]],
                      fill="toself", fillcolor=SPREAD, line={"width": 0}, hoverinfo="skip",
                      mode="lines",
                      name="process spread (min-max of the processes' medians)")


# a flagged night's marker, by whether `regressions` still judges it: legend name and colour
FLAG_MARKER = {False: ("not judged (hover: why)", FLAGGED),
               True: ("flagged, still judged (hover: flags)", NOTED)}


def _flag_markers(nights: pd.DataFrame, column: str, judged: bool, showlegend: bool) -> go.Scatter | None:
    """Circles on the flagged nights that are (or are not) judged: amber, or red."""
    name, colour = FLAG_MARKER[judged]
    usable = nights["usable"].astype(bool)
    kind = usable if judged else ~usable
    flagged = nights[(nights["flags"] != "") & kind & nights[column].map(finite)]
    if flagged.empty:
        return None
    return go.Scatter(x=flagged["date"], y=flagged[column], mode="markers", name=name,
                      legendgroup=name, showlegend=showlegend,
                      marker={"symbol": "circle-open", "size": 14, "color": colour,
                              "line": {"width": 2}},
                      customdata=[[flag_text(r["flags"]), short_sha(r["git_sha"]),
                                   judged_text(r)] for _, r in flagged.iterrows()],
                      hovertemplate="%{x|%Y-%m-%d} flagged<br>%{customdata[0]}"
                                    "<br>commit: %{customdata[1]}<br>%{customdata[2]}"
                                    "<extra></extra>")


def _line(nights: pd.DataFrame, column: str, name: str, colour: str,
          hover: list[list[str]]) -> go.Scatter:
    """`hover`: _hover_data(nights), built once for the figure's lines."""
    return go.Scatter(x=nights["date"], y=nights[column], mode="lines+markers", name=name,
                      line={"color": colour}, marker={"size": 6}, connectgaps=False,
                      customdata=hover, hovertemplate=HOVER)


def _mark_nights(fig: go.Figure, dates: list[str], name: str, colour: str, dash: str,
                 rows: int) -> None:
    """A vertical line at each date on every row, in the legend once."""
    for i, date in enumerate(dates):
        for row in range(1, rows + 1):
            fig.add_shape(type="line", x0=date, x1=date, y0=0, y1=1, yref="y domain",
                          line={"color": colour, "dash": dash, "width": 1.5},
                          name=name, showlegend=(i == 0 and row == 1), row=row, col=1)


def wide_spread(nights: pd.DataFrame, ratio: float = 10.0) -> bool:
    """Whether the process spread reaches `ratio` x the smallest median (a loaded machine: one
    process of 3 at 16.7 ms beside 0.32 and 0.37): on a linear axis the medians would be a flat
    line at the bottom."""
    top = nights["between_max_ms"].max()
    low = nights["median_ms"].min()
    return finite(top) and finite(low) and low > 0 and top / low >= ratio


DAY_MS = 86_400_000
DAILY_TICKS_UP_TO = 16      # nights; beyond, plotly's own ticks (weeks, months)


def night_axis(fig: go.Figure, dates: pd.Series) -> None:
    """Dates on x over the nights, half a day either side; one tick a night while they fit
    (plotly would tick a few nights by hours). The range is set: a row without data (GPU time
    not measured) would otherwise stretch the shared axis over decades."""
    days = pd.to_datetime(pd.Series(dates).dropna().unique())
    if not len(days):
        return
    half = pd.Timedelta(hours=12)
    ticks = {"dtick": DAY_MS, "tickformat": "%b %d"} if len(days) <= DAILY_TICKS_UP_TO else {}
    fig.update_xaxes(type="date", range=[str(days.min() - half), str(days.max() + half)], **ticks)


def series_figure(nights: pd.DataFrame, change_dates: list[str], title: str) -> go.Figure:
    """Wall median over nights with the process spread as a band, flagged nights circled, GPU
    busy time and host gap below (where measured), the change points and failed nights as
    vertical lines. `nights`: the series' night_series rows (in night order, flags "" if none)."""
    ok = nights[nights["status"] == "ok"]
    gpu_measured = bool(ok["gpu_busy_ms_per_iter"].map(finite).any())
    rows = 2 if gpu_measured else 1
    fig = make_subplots(rows=rows, cols=1, shared_xaxes=True, vertical_spacing=0.08,
                        row_heights=[0.62, 0.38][:rows])
    band = _spread_band(ok)
    if band is not None:
        fig.add_trace(band, row=1, col=1)
    hover = _hover_data(ok)
    fig.add_trace(_line(ok, "median_ms", "wall median (ms/iter)", WALL, hover), row=1, col=1)
    for judged in FLAG_MARKER:
        markers = _flag_markers(ok, "median_ms", judged, True)
        if markers is not None:
            fig.add_trace(markers, row=1, col=1)
    if gpu_measured:
        fig.add_trace(_line(ok, "gpu_busy_ms_per_iter", "GPU busy (ms/iter)", GPU, hover),
                      row=2, col=1)
        fig.add_trace(_line(ok, "host_gap_ms", "host gap (ms/iter)", GAP, hover), row=2, col=1)
        for column in ("gpu_busy_ms_per_iter", "host_gap_ms"):
            for judged in FLAG_MARKER:
                markers = _flag_markers(ok, column, judged, False)
                if markers is not None:
                    fig.add_trace(markers, row=2, col=1)
        fig.update_yaxes(title_text="GPU busy, host gap ms/iter", rangemode="tozero", row=2,
                         col=1)
    else:
        title += ("<br><sup>GPU busy time and host gap: not measured on these nights "
                  "(no profiling pass, or no GPU)</sup>")
    _mark_nights(fig, change_dates, "change point (first night after)", CHANGE, "dash", rows)
    failed = nights.loc[nights["status"] != "ok", "date"].tolist()
    _mark_nights(fig, failed, "failed night (no measurement)", FLAGGED, "dot", rows)
    if wide_spread(ok):
        fig.update_yaxes(title_text="wall ms/iter (log scale)", type="log", row=1, col=1)
    else:
        fig.update_yaxes(title_text="wall ms/iter", rangemode="tozero", row=1, col=1)
    night_axis(fig, nights["date"])
    fig.update_xaxes(title_text="night", row=rows, col=1)
    fig.update_layout(title=title, height=620 if gpu_measured else 460,
                      margin={"t": 70, "l": 70, "r": 20, "b": 40}, hovermode="closest",
                      legend={"orientation": "h", "yanchor": "top", "y": -0.12},
                      template="plotly_white")
    return fig


def sparkline(nights: pd.DataFrame) -> go.Figure:
    """The wall median over the nights (night_series rows) in a cell of the index; nights not
    judged in red, flagged nights still judged in amber."""
    ok = nights[nights["status"] == "ok"]
    flagged = (ok["flags"] != "").tolist()
    colours = [WALL if not f else NOTED if usable else FLAGGED for f, usable in zip(flagged, ok["usable"])]
    fig = go.Figure(go.Scatter(
        x=ok["date"], y=ok["median_ms"], mode="lines+markers", name="wall median (ms/iter)",
        line={"color": WALL, "width": 1.5},
        marker={"size": [7 if f else 3 for f in flagged], "color": colours},
        customdata=[f or "none" for f in ok["flags"]],
        hovertemplate="%{x|%Y-%m-%d}: wall %{y:.4g} ms, flags %{customdata}<extra></extra>"))
    fig.update_xaxes(visible=False, type="date")
    fig.update_yaxes(visible=False)
    fig.update_layout(width=180, height=44, margin={"t": 2, "b": 2, "l": 2, "r": 2},
                      showlegend=False, template="none")   # a template weighs 6 KB a figure
    return fig


def _pair_hover(rows: pd.DataFrame) -> list[list[str]]:
    def side(prefix: str, r: pd.Series) -> str:
        return f"{r[prefix]} {r[f'{prefix}_ms']:.4g} ms" + (
            f" [flags: {r[f'{prefix}_flags']}]" if r[f"{prefix}_flags"] else "")
    return [[side("inductor", r), side("xla", r), _pair_flags(r) or "none"]
            for _, r in rows.iterrows()]


def _pair_flags(row: pd.Series) -> str:
    return ",".join(sorted({c for side in ("inductor", "xla")
                            for c in str(row[f"{side}_flags"] or "").split(",") if c}))


def pairs_figure(pairs: pd.DataFrame, pair: str, meaning: str) -> go.Figure:
    """Inductor / XLA wall over nights, one line per workload variant (and device); nights
    where either side was flagged are circled."""
    fig = go.Figure()
    mine = pairs[pairs["pair"] == pair]
    for i, (key, rows) in enumerate(mine.groupby(["workload", "variant", "device"], sort=True)):
        name = f"{key[0]} [{key[1]}]" + (f" on {key[2]}" if key[2] else "")
        colour = PAIR_COLOURS[i % len(PAIR_COLOURS)]
        fig.add_trace(go.Scatter(
            x=rows["date"], y=rows["inductor_over_xla"], mode="lines+markers", name=name,
            line={"color": colour}, customdata=_pair_hover(rows),
            hovertemplate="%{x|%Y-%m-%d}: Inductor / XLA wall %{y:.3f}<br>%{customdata[0]}"
                          "<br>%{customdata[1]}<br>flags: %{customdata[2]}<extra></extra>"))
        flagged = rows[[bool(_pair_flags(r)) for _, r in rows.iterrows()]]
        fig.add_trace(go.Scatter(
            x=flagged["date"], y=flagged["inductor_over_xla"], mode="markers",
            name="a side flagged (hover: flags)", legendgroup="flagged", showlegend=i == 0,
            marker={"symbol": "circle-open", "size": 14, "color": FLAGGED, "line": {"width": 2}},
            customdata=[flag_text(_pair_flags(r)) for _, r in flagged.iterrows()],
            hovertemplate="%{x|%Y-%m-%d} flagged<br>%{customdata}<extra></extra>"))
    fig.add_hline(y=1.0, line={"color": CHANGE, "dash": "dot", "width": 1})
    # a ratio on a log axis: 2x and 0.5x lie as far from 1
    fig.update_yaxes(title_text="Inductor / XLA wall (> 1: XLA faster, log scale)", type="log")
    night_axis(fig, mine["date"])
    fig.update_xaxes(title_text="night")
    fig.update_layout(title=f"{pair} pair: {meaning}", height=520, template="plotly_white",
                      margin={"t": 60, "l": 70, "r": 20, "b": 40},
                      legend={"orientation": "h", "yanchor": "top", "y": -0.18})
    return fig
