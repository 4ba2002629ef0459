"""The report's figures show what they are about: nothing vanishes, is cut or is covered.

Checked on the drawn figure (positions in pixels after layout), not by looking at a PNG."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg

from harness.report import plots as P
from harness.report.tables import COMPILE_PHASES, speedup_table


def drawn(fig):
    """The figure laid out and drawn as savefig draws it, and its renderer."""
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    return canvas.get_renderer()


def summary(rows: list[tuple[str, str, float, str]]) -> pd.DataFrame:
    return pd.DataFrame([{"workload": "fp8_linear", "variant": variant, "backend": backend,
                          "status": "ok", "median_ms": ms, "flags": flags}
                         for variant, backend, ms, flags in rows])


def test_speedup_is_log_scale_from_1x_and_a_slow_bar_does_not_vanish():
    s = speedup_table(summary([("a", "eager", 1.0, ""), ("a", "inductor", 2.5, ""),
                               ("a", "xla", 0.4, "")]))
    fig = P.speedup_figure(s)
    renderer = drawn(fig)
    ax = fig.axes[0]
    assert ax.get_xscale() == "log"
    assert any(list(line.get_xdata()) == [1.0, 1.0] for line in ax.lines)   # the 1x line
    bars = {b.get_label(): b for b in ax.containers}
    # 0.4x (slower) and 2.5x (faster) are equally far from 1x: on a linear scale the first was
    # a sliver at the axis
    widths = {name: c.patches[0].get_window_extent(renderer).width for name, c in bars.items()}
    assert widths["xla"] == pytest.approx(widths["inductor"], rel=0.05)
    assert widths["xla"] > 30
    assert "0.5x" in [t.get_text() for t in ax.get_xticklabels()]


def test_speedup_marks_flagged_runs_and_a_flagged_baseline():
    s = speedup_table(summary([("a", "eager", 1.0, ""), ("a", "inductor", 2.0, "high_cv"),
                               ("a", "xla", 1.5, ""),
                               ("b", "eager", 1.0, "host_bound"), ("b", "inductor", 0.5, "")]))
    assert s.set_index(["variant", "backend"]).loc[("a", "inductor"), "flags"] == "high_cv"
    assert s.set_index(["variant", "backend"]).loc[("b", "inductor"), "baseline_flags"] == "host_bound"
    fig = P.speedup_figure(s)
    drawn(fig)
    ax = fig.axes[0]
    hatched = {(c.get_label(), i) for c in ax.containers for i, p in enumerate(c.patches)
               if p.get_hatch() == P.FLAGGED_HATCH}
    # inductor's bars are (b, a) top-down reversed: rows are listed in the figure top to bottom
    assert len(hatched) == 2 and all(label == "inductor" for label, _ in hatched)
    assert {t.get_text() for t in ax.texts} == {"high_cv", "eager: host_bound"}
    assert "flagged run\n(see Flags)" in [t.get_text() for t in fig.legends[0].get_texts()]


def compile_table(n: int) -> pd.DataFrame:
    rows = []
    for i in range(n):
        phases = dict(zip(COMPILE_PHASES, [0.5, 3.0 + i % 3, 1.0, 0.2]))
        rows.append({"workload": "qwen_decoder", "variant": f"fwd,static,prompt_{i // 2}",
                     "backend": ("inductor:max-autotune", "xla")[i % 2], "cache": "cold",
                     "first_call_s": sum(phases.values()) + 0.3, **phases})
    return pd.DataFrame(rows)


@pytest.mark.parametrize("runs", [1, 4, 40])
def test_compile_phases_title_labels_and_legend_are_neither_cut_nor_over_a_bar(runs):
    fig = P.compile_figure(compile_table(runs))
    renderer = drawn(fig)
    ax = fig.axes[0]
    page = fig.bbox
    title = fig._suptitle.get_window_extent(renderer)
    assert page.x0 <= title.x0 and title.x1 <= page.x1 and title.y1 <= page.y1
    assert title.y0 >= ax.get_window_extent(renderer).y1          # above the axes
    legend = fig.legends[0].get_window_extent(renderer)
    assert legend.x1 <= page.x1 and legend.y1 <= page.y1
    for bar in ax.patches:
        assert not legend.overlaps(bar.get_window_extent(renderer))
    for text in [*ax.get_yticklabels(), *ax.texts]:                # backend and variant names
        box = text.get_window_extent(renderer)
        assert box.x0 >= page.x0 and box.x1 <= ax.get_window_extent(renderer).x0
    assert {t.get_text() for t in fig.legends[0].get_texts()} == {
        "capture", "graph_codegen", "kernel_compile_wait", "other", "not split"}


def test_memory_stacks_the_parts_and_marks_the_total_and_the_runtime_peak():
    memory = pd.DataFrame([
        {"workload": "conv", "variant": "fwd", "backend": b, "kind": k, "bytes": v * 2 ** 20}
        for b, parts in (("eager", (4, 1, 2, 6, 9)), ("inductor", (4, 1, 8, 12, 14)))
        for k, v in zip(("parameter", "output", "temp", "total", "runtime_peak"), parts)])
    fig = P.memory_figure(memory, "conv")
    drawn(fig)
    ax = fig.axes[0]
    ends = sorted(p.get_x() + p.get_width() for p in ax.patches)
    assert ends[-2:] == [7.0, 13.0]                 # parameter + output + temp per backend
    marks = sorted(x for c in ax.collections for seg in c.get_segments() for x in {seg[0][0]})
    assert marks == [6.0, 9.0, 12.0, 14.0]          # total and runtime peak of each
    assert [t.get_text() for t in ax.get_yticklabels()] == ["eager", "inductor"]
