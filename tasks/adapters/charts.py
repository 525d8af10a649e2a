"""The assessment chart (SPEC §7), in Chinese: each unit's rates against the target lines.

One horizontal bar group per unit, in rank order from the top, so the meeting's
question "who is below the line?" is answered by looking, not reading: a bar
that stops short of its dashed target line of the same colour has missed it.
A rate with nothing to judge (null) is drawn as a grey "无数据" instead of a zero
bar, because a zero bar would read as a failure. Rates are shown rounded *down*
to 0.1% (`fmt_rate`), like every post.

Rows are the configured unit names (the code below in small print; an
unconfigured unit shows its code and "未配置单位"). `reply_rate` is drawn beside
satisfaction (a satisfaction rate is read beside it; no target line) and
`score` is printed with the unit when the assessment carries them, so the chart
works with or without those keys.

The font is Noto Sans SC (SIL OFL 1.1) from the pinned `pylopdf-fonts-zh-cn`
package, registered with matplotlib's font manager on first use: no system
font is needed, and no rc file is touched. matplotlib is imported only inside
these functions (the other commands pay nothing for it); rendering uses the Agg
canvas (no display) and returns PNG bytes.
"""

from __future__ import annotations

import io
from functools import cache
from typing import Any

from minyi.tasks.heap import freeze_heap

# (rate, target key or None, legend label, colour); drawn top to bottom within a unit's group
SERIES: tuple[tuple[str, str | None, str, str], ...] = (
    ("timely_response_rate", "timely_response", "及时响应率", "#1f77b4"),
    ("satisfaction_rate", "satisfaction", "满意率", "#2ca02c"),
    ("reply_rate", None, "回复率", "#9467bd"),
    ("resolution_rate", "resolution", "解决率", "#d62728"),
)
NO_DATA = "无数据"
UNKNOWN_UNIT = "未配置单位"


@cache
def chinese_font() -> str:
    """Register Noto Sans SC with matplotlib (once per process) and return its family name."""
    import pylopdf_fonts_zh_cn
    from matplotlib import font_manager

    path = str(pylopdf_fonts_zh_cn.sans_path())
    font_manager.fontManager.addfont(path)
    return font_manager.FontProperties(fname=path).get_name()


def load_renderer() -> None:
    """Import what rendering needs and register the font: ~1 s of CPU the first time in a process, which the
    report task spends in a thread of its own while its counts statements run (docs/performance.md, session 5)."""

    chinese_font()
    freeze_heap()  # matplotlib's modules stay for the process's life (tasks/heap.py)


def unit_label(code: str, names: dict[str, str]) -> str:
    name = names.get(code)
    return f"{name}\n{code}" if name else f"{code}\n{UNKNOWN_UNIT}"


def series_for(report: dict[str, Any]) -> list[tuple[str, str | None, str, str]]:
    """The series this assessment can show: reply_rate only when its units carry it."""
    units = report["units"]
    return [s for s in SERIES if s[0] != "reply_rate" or (units and all("reply_rate" in u for u in units))]


def _local(instant: str) -> str:
    return instant[:16].replace("T", " ")


def build_assessment_figure(report: dict[str, Any], unit_names: dict[str, str]) -> Any:
    """The chart of one assessment.json as a matplotlib Figure (not yet drawn)."""
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    from minyi.tasks.stages.reports import fmt_rate

    family = chinese_font()
    series = series_for(report)
    units = report["units"]
    n = max(len(units), 1)
    per_unit = len(series)
    fig = Figure(figsize=(11, 2.6 + 0.2 * per_unit * n), dpi=110)
    ax = fig.add_subplot(1, 1, 1)
    height = 0.8 / per_unit
    for i, (rate, target_key, _label, colour) in enumerate(series):
        offset = ((per_unit - 1) / 2 - i) * height  # first series on top of each group
        for row, unit in enumerate(units):
            y = (n - 1 - row) + offset
            value = unit.get(rate)
            if value is None:
                ax.text(0.005, y, NO_DATA, va="center", ha="left", fontsize=7, color="#888888", family=family)
                continue
            ax.barh(y, value, height=height * 0.9, color=colour)
            ax.text(min(value, 1.0) + 0.005, y, fmt_rate(value), va="center", fontsize=7, color="#333333")
        if target_key is not None:
            ax.axvline(report["targets"][target_key], color=colour, linestyle="--", linewidth=1.3)

    def label(u: dict[str, Any]) -> str:
        rank = f"第{u['rank']}名" if u.get("rank") is not None else "未排名"
        text = f"{rank} {unit_label(u['unit_code'], unit_names)}"
        if u.get("score") is not None:
            text += f"  积分 {u['score']:g}"
        return text + ("" if u["meets_targets"] else "  未达标")

    ax.set_yticks([n - 1 - row for row in range(len(units))], [label(u) for u in units], fontsize=8, family=family)
    for tick, unit in zip(ax.get_yticklabels(), units, strict=True):
        if not unit["meets_targets"]:
            tick.set_color("#b00020")
    ax.set_xlim(0, 1.12)
    ax.set_ylim(-0.6, n - 0.4)
    ax.set_xticks([0, 0.2, 0.4, 0.6, 0.8, 1.0], ["0", "20%", "40%", "60%", "80%", "100%"])
    ax.grid(axis="x", color="#eeeeee")
    ax.set_axisbelow(True)
    period = report["period"]
    ax.set_title(
        f"民意110 考核  {period['start']} 至 {period['end']}（截至 {_local(report['as_of'])}）\n"
        f"条：各单位指标（向下取整到 0.1%）；虚线：目标；红字：未达标；{NO_DATA}：该项本期无可评价",
        fontsize=10,
        family=family,
    )
    # built by hand so every series shows even when all its rates are null; below the plot, never over a bar
    handles: list[Any] = []
    for _, key, name, colour in series:
        handles.append(Patch(color=colour, label=name))
        if key is not None:
            target = report["targets"][key]
            handles.append(Line2D([], [], color=colour, linestyle="--", label=f"{name}目标 {target * 100:g}%"))
    ax.legend(
        handles=handles,
        loc="upper center",
        bbox_to_anchor=(0.5, -0.04),
        ncol=len(handles),
        frameon=False,
        prop={"family": family, "size": 8},
    )
    if not units:
        ax.text(0.5, 0, "本期无记录", ha="center", va="center", family=family)
    fig.tight_layout()
    return fig


def render_assessment_chart(report: dict[str, Any], unit_names: dict[str, str]) -> bytes:
    """PNG bytes of the chart for one assessment.json."""
    fig = build_assessment_figure(report, unit_names)
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()
