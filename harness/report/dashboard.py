"""`python -m harness.report dashboard STORE --out DIR`: the nights of a history store as a
static site that works from file:// with no network (clusters have none).

    DIR/index.html          open regressions first, then every series: sparkline, latest night
    DIR/series/<slug>.html  one per series (workload variant x backend label x device): wall
                            median with the process spread, GPU time and host gap, flags,
                            commits, change points, and the nights as a table
    DIR/pairs.html          the fair pairs' Inductor / XLA wall ratio over nights
    DIR/plotly.min.js       plotly.js from the installed plotly package, shared by every page

The verdicts (`Change`) and change points come from harness.report.regressions; the series'
nights from its `night_series`. The pairs are the runs' declared traits (`pair`, `family`
columns of the history), never their labels.
"""
from __future__ import annotations

import hashlib
import html
import re
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from harness.describe import FLAG_CODES
from harness.errors import InputError
from harness.report import dashboard_figures as figs
from harness.report.history import read_store
from harness.report.load import finite
from harness.report.pairs import PAIRS, pair_table
from harness.report.regressions import (SERIES, Change, detect, night_series,
                                        open_regressions)

PLOTLY_JS = "plotly.min.js"
PLOT_CONFIG = {"displaylogo": False, "responsive": True}
SPARK_CONFIG = {"displayModeBar": False, "staticPlot": False}
CSS = """
body { font-family: system-ui, sans-serif; margin: 1.5em; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; }
th, td { border-bottom: 1px solid #ddd; padding: 0.25em 0.6em; text-align: left;
         vertical-align: middle; font-size: 0.9em; }
th { background: #f4f4f4; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.flag { color: #b00; font-weight: 600; }
.noted { color: #b07800; font-weight: 600; }
.regression { color: #b00; font-weight: 600; }
.improvement { color: #080; font-weight: 600; }
.suspicious { color: #a60; }
.none { color: #080; }
small { color: #666; }
"""


@dataclass
class Site:
    out: Path
    index: Path
    pages: list[Path]
    series: int
    nights: int
    open_regressions: int
    plotly_js_bytes: int


def series_key(row) -> tuple[str, ...]:
    return tuple(str(row[c]) for c in SERIES)


def series_name(key: tuple[str, ...]) -> str:
    workload, variant, backend, device = key
    return f"{workload} [{variant}] {backend} on {device or 'unknown device'}"


def slug(key: tuple[str, ...]) -> str:
    """A file name for a series: readable, and unique through a hash of the whole key (two
    variants differing only in punctuation must not share a page)."""
    readable = re.sub(r"[^A-Za-z0-9]+", "-", f"{key[0]}-{key[2]}").strip("-")[:60]
    digest = hashlib.sha1("\x1f".join(key).encode()).hexdigest()[:8]
    return f"{readable}-{digest}"


def esc(value) -> str:
    return html.escape(str(value))


def flags_html(flags: str, judged: bool = False) -> str:
    """The flag codes, meaning on hover: red on a night that decides nothing, amber on one judged."""
    codes = [c for c in str(flags or "").split(",") if c]
    if not codes:
        return '<span class="none">none</span>'
    style = "noted" if judged else "flag"
    return " ".join(f'<span class="{style}" title="{esc(FLAG_CODES.get(c, "unknown flag"))}">'
                    f"{esc(c)}</span>" for c in codes)


def ms(value) -> str:
    return f"{value:.4g}" if finite(value) else "-"


def pct(value) -> str:
    return f"{value:+.1f}%" if finite(value) else "-"


def wall_html(row) -> str:
    """The wall median with its spread; a flagged value carries `!!` and its flags on hover."""
    if row["status"] != "ok" or not finite(row["median_ms"]):
        return f'<span class="flag">{esc(row["status"])}</span>'
    # red where the night decides nothing, amber where it is flagged and still judged
    style = "noted" if row["usable"] else "flag"
    mark = (f' <span class="{style}" title="{esc(figs.flag_text(row["flags"]).replace("<br>", "; "))}">'
            "!!</span>" if row["flags"] else "")
    return f"{ms(row['median_ms'])} ms{mark} <small>{esc(figs.spread_text(row))}</small>"


def table_html(header: list[str], rows: list[list[str]], table_id: str = "") -> str:
    """Cells are HTML already (escaped where they hold data)."""
    ident = f' id="{table_id}"' if table_id else ""
    head = "".join(f"<th>{h}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>\n" for row in rows)
    return f"<table{ident}><thead><tr>{head}</tr></thead><tbody>\n{body}</tbody></table>"


def figure_html(fig, div_id: str, config: dict = PLOT_CONFIG) -> str:
    import plotly.io as pio
    return pio.to_html(fig, full_html=False, include_plotlyjs=False, config=config,
                       div_id=div_id)


def page_html(title: str, body: str, depth: int = 0) -> str:
    up = "../" * depth
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f"<title>{esc(title)}</title><style>{CSS}</style>"
            f'<script src="{up}{PLOTLY_JS}"></script></head>\n<body>\n{body}\n</body></html>\n')


# --- the changes --------------------------------------------------------------------------

CHANGE_HEADER = ["series", "kind", "first night", "commit range", "wall before", "wall after",
                 "change", "nights held", "GPU change", "host gap change"]


def change_row(change: Change, depth: int) -> list[str]:
    key = series_key(change.__dict__)
    link = f'<a href="{"../" * depth}series/{slug(key)}.html">{esc(series_name(key))}</a>'
    commits = f"{figs.short_sha(change.git_before)}..{figs.short_sha(change.git_after)}"
    return [link, f'<span class="{esc(change.kind)}">{esc(change.kind)}'
                  f'{"" if change.open else " (closed)"}</span>',
            esc(change.first_date), f"<code>{esc(commits)}</code>",
            f"{ms(change.median_before_ms)} ms", f"{ms(change.median_after_ms)} ms",
            pct(change.change_pct), str(change.nights_held), pct(change.gpu_change_pct),
            pct(change.host_gap_change_pct)]


def changes_html(changes: list[Change], depth: int = 0) -> str:
    opened = open_regressions(changes)
    others = [c for c in changes if c not in opened]
    parts = ["<h2>Open regressions</h2>"]
    if opened:
        parts.append(table_html(CHANGE_HEADER, [change_row(c, depth) for c in opened],
                                "open-regressions"))
    else:
        parts.append('<p id="open-regressions" class="none">No open regression.</p>')
    if others:
        parts += ["<h2>Other changes</h2>",
                  table_html(CHANGE_HEADER, [change_row(c, depth) for c in others],
                             "other-changes")]
    return "\n".join(parts)


# --- the pages ----------------------------------------------------------------------------

def verdict_html(last: pd.Series, changes: list[Change]) -> str:
    """The series' open changes (`changes`: its own), and whether its latest night could be
    judged at all."""
    kinds = sorted({c.kind for c in changes if c.open})
    parts = [f'<span class="{esc(k)}">{esc(k)}</span>' for k in kinds] or ["no open change"]
    if not last["usable"]:
        parts.append(f'<span class="suspicious">latest night {esc(figs.judged_text(last))}'
                     "</span>")
    return "<br>".join(parts)


def index_html(store: Path, by_series: dict, changes: list[Change], changes_of: dict,
               has_pairs: bool) -> str:
    """`changes_of`: each series' changes, by its key."""
    dates = sorted({d for nights in by_series.values() for d in nights["date"]})
    rows = []
    for key, nights in by_series.items():
        last = nights.iloc[-1]      # night_series rows: in night order
        rows.append([
            f'<a href="series/{slug(key)}.html">{esc(series_name(key))}</a>',
            figure_html(figs.sparkline(nights), f"spark-{slug(key)}", SPARK_CONFIG),
            esc(last["date"]), wall_html(last),
            f'<span class="num">{ms(last["gpu_busy_ms_per_iter"])}</span>',
            f'<span class="num">{ms(last["host_gap_ms"])}</span>', flags_html(last["flags"], last["usable"]),
            verdict_html(last, changes_of.get(key, [])),
            f"<code>{esc(figs.short_sha(last['git_sha']))}</code>"])
    flag_rows = [[f'<span class="flag">{esc(c)}</span>', esc(m)] for c, m in FLAG_CODES.items()]
    span = f"{dates[0]} to {dates[-1]}" if dates else "no nights"
    body = [f"<h1>Nightly: {esc(store)}</h1>",
            f"<p>{len(dates)} night(s), {span}; {len(by_series)} series (workload variant x "
            "backend x device). A regression: a change point after which a series stayed "
            "slower than the minimum effect and its own noise for 2 nights or more; one slow "
            "night is suspicious. Failed and noise-flagged nights are shown but never judged "
            "(<code>python -m harness.report regressions</code>).</p>",
            changes_html(changes),
            '<p><a href="pairs.html">The fair pairs: Inductor / XLA wall over nights</a></p>'
            if has_pairs else "<p><small>No fair pair ran on both sides in these nights."
                              "</small></p>",
            "<h2>Series</h2>",
            table_html(["series", "wall median over nights (red: not judged; amber: flagged, judged)", "latest night",
                        "wall ms/iter (spread)", "GPU busy ms/iter", "host gap ms/iter",
                        "flags", "verdict", "commit"], rows, "series"),
            "<h2>Flags</h2>", table_html(["code", "meaning"], flag_rows, "flags")]
    return page_html(f"Nightly: {store}", "\n".join(body))


def judged_html(row) -> str:
    text = figs.judged_text(row)
    return esc(text) if row["usable"] else f'<span class="suspicious">{esc(text)}</span>'


def night_rows(nights: pd.DataFrame) -> list[list[str]]:
    return [[esc(r["date"]), wall_html(r), f'<span class="num">{ms(r["gpu_busy_ms_per_iter"])}</span>',
             f'<span class="num">{ms(r["host_gap_ms"])}</span>', flags_html(r["flags"], r["usable"]),
             f"<code>{esc(figs.short_sha(r['git_sha']))}</code>", judged_html(r)]
            for _, r in nights.sort_values("date", ascending=False).iterrows()]


def change_dates(changes: list[Change]) -> list[str]:
    """Where a series' lines are drawn: the first night of each of its changes, the verdicts of
    its changes table (a fit of its own could disagree with them)."""
    return sorted({c.first_date for c in changes})


def series_html(key: tuple[str, ...], nights: pd.DataFrame, changes: list[Change]) -> str:
    """The series' page; `changes`: its own."""
    name = series_name(key)
    fig = figs.series_figure(nights, change_dates(changes), name)
    body = ['<p><a href="../index.html">All series</a></p>', f"<h1>{esc(name)}</h1>",
            table_html(CHANGE_HEADER, [change_row(c, 1) for c in changes], "changes") if changes
            else '<p class="none">No change detected in this series.</p>',
            figure_html(fig, "series-figure"),
            "<h2>Nights</h2>",
            table_html(["night", "wall ms/iter (spread)", "GPU busy ms/iter", "host gap ms/iter",
                        "flags", "commit", "verdict on it"], night_rows(nights), "nights")]
    return page_html(name, "\n".join(body), depth=1)


def nightly_pairs(history: pd.DataFrame) -> pd.DataFrame:
    """The fair pairs of every night and device (report.pairs.pair_table per night), with
    `date` and `device` columns."""
    parts = [pair_table(g).assign(date=date, device=device)
             for (date, device), g in history.groupby(["date", "device"], sort=True)]
    parts = [p for p in parts if len(p)]
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()


def pairs_html(pairs: pd.DataFrame) -> str:
    body = ['<p><a href="index.html">All series</a></p>',
            "<h1>The fair pairs: Inductor / XLA wall over nights</h1>",
            "<p>Each pair is two backends that each declare a side of it (docs/DESIGN.md, "
            "\"What is fair\"). Above 1, XLA is faster end to end.</p>"]
    for pair in PAIRS:
        if (pairs["pair"] == pair.name).any():
            fig = figs.pairs_figure(pairs, pair.name, pair.meaning)
            body.append(figure_html(fig, f"pair-{pair.name}"))
        else:
            body.append(f"<h2>{esc(pair.name)} pair</h2><p>No night had both of its sides "
                        "ok.</p>")
    return page_html("The fair pairs over nights", "\n".join(body))


# --- the site -----------------------------------------------------------------------------

def write_plotly_js(out: Path) -> int:
    from plotly.offline import get_plotlyjs
    path = out / PLOTLY_JS
    path.write_text(get_plotlyjs(), encoding="utf-8")
    return path.stat().st_size


def build(store: str | Path, out: str | Path) -> Site:
    store, out = Path(store), Path(out)
    history = read_store(store)
    if history.empty:
        raise InputError(f"{store}: no history rows (expected <store>/date=YYYY-MM-DD/*.parquet;"
                         f" e.g. python -m harness.report history SWEEP --store {store})")
    nights = night_series(history)
    by_series = {key: g.reset_index(drop=True)
                 for key, g in nights.groupby(list(SERIES), sort=True)}
    changes = detect(history, nights=nights)
    changes_of: dict[tuple[str, ...], list[Change]] = {}    # in detect's order
    for c in changes:
        changes_of.setdefault(series_key(c.__dict__), []).append(c)
    pairs = nightly_pairs(history)
    try:
        (out / "series").mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise InputError(f"{out}: cannot write the dashboard there ({e})") from None
    js_bytes = write_plotly_js(out)
    pages = []
    for key, series in by_series.items():
        page = out / "series" / f"{slug(key)}.html"
        page.write_text(series_html(key, series, changes_of.get(key, [])), encoding="utf-8")
        pages.append(page)
    if len(pairs):
        (out / "pairs.html").write_text(pairs_html(pairs), encoding="utf-8")
        pages.append(out / "pairs.html")
    index = out / "index.html"
    index.write_text(index_html(store, by_series, changes, changes_of, bool(len(pairs))),
                     encoding="utf-8")
    return Site(out=out, index=index, pages=[index, *pages], series=len(by_series),
                nights=nights["date"].nunique(),
                open_regressions=len(open_regressions(changes)),
                plotly_js_bytes=js_bytes)
