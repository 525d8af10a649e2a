"""The assessment chart (SPEC §7): each unit's three targeted rates against the target lines.

One horizontal bar group per unit, in rank order from the top, so the meeting's
question "who is below the line?" is answered by looking, not reading: a bar
that stops short of its dashed target line of the same colour has missed it.
A rate with nothing to judge (null) is drawn as a grey "n/a" instead of a zero
bar, because a zero bar would read as a failure.

Labels: this machine may have no CJK font (`fc-list :lang=zh` is empty in the
reference environment); matplotlib would draw tofu boxes for the unit names, so
the chart labels units by unit_code and uses the names only when a CJK font is
installed. Rendered with the Agg backend (no display), returned as PNG bytes.
"""

from __future__ import annotations

import io
from functools import cache
from typing import Any

SERIES: tuple[tuple[str, str, str, str], ...] = (
    # (rate, target key, legend label, colour)
    ("timely_response_rate", "timely_response", "timely response", "#1f77b4"),
    ("satisfaction_rate", "satisfaction", "satisfaction", "#2ca02c"),
    ("resolution_rate", "resolution", "resolution", "#d62728"),
)
_CJK_HINTS = ("CJK", "Hei", "Song", "Kai", "WenQuanYi", "Source Han", "Noto Sans SC", "Droid Sans Fallback", "PingFang")


@cache
def cjk_font() -> str | None:
    """The name of an installed font that can draw Chinese, or None."""
    from matplotlib import font_manager

    for font in font_manager.fontManager.ttflist:
        if any(h.lower() in font.name.lower() for h in _CJK_HINTS):
            return font.name
    return None


def unit_label(code: str, names: dict[str, str], cjk: bool) -> str:
    name = names.get(code)
    if cjk and name:
        return f"{name}\n{code}"
    return code if code in names else f"{code} (unknown)"


def render_assessment_chart(report: dict[str, Any], unit_names: dict[str, str]) -> bytes:
    """PNG bytes of the chart for one assessment.json."""
    import matplotlib

    from minyi.tasks.reports import fmt_rate, fmt_score

    matplotlib.use("Agg")
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    font = cjk_font()
    units = report["units"]
    n = max(len(units), 1)
    fig = Figure(figsize=(10, 2.2 + 0.62 * n), dpi=110)
    ax = fig.add_subplot(1, 1, 1)
    if font:
        matplotlib.rcParams["font.sans-serif"] = [font, *matplotlib.rcParams["font.sans-serif"]]
    height = 0.26
    for i, (rate, target_key, _label, colour) in enumerate(SERIES):
        offset = (1 - i) * height  # timely response on top of each group
        for row, unit in enumerate(units):
            y = (n - 1 - row) + offset
            value = unit[rate]
            if value is None:
                ax.text(0.005, y, "n/a", va="center", ha="left", fontsize=7, color="#888888")
                continue
            ax.barh(y, value, height=height * 0.92, color=colour)
            ax.text(min(value, 1.0) + 0.005, y, fmt_rate(value), va="center", fontsize=7, color="#333333")
        target = report["targets"][target_key]
        ax.axvline(target, color=colour, linestyle="--", linewidth=1.3)
    ax.set_yticks(
        [n - 1 - row for row in range(len(units))],
        [
            f"{'#' + str(u['rank']) if u['ranked'] else 'unranked'} {unit_label(u['unit_code'], unit_names, font is not None)}"
            + ("" if u["meets_targets"] else "  ✗")
            + f"\nreply {fmt_rate(u['reply_rate'])} · score {fmt_score(u['score'])}"
            for u in units
        ],
        fontsize=8,
    )
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
        f"Public Opinion 110 assessment {period['start']} .. {period['end']} (as of {report['as_of'][:16].replace('T', ' ')})\n"
        "bars: each unit's rates; dashed lines: targets; red label: misses a target; n/a: nothing to judge",
        fontsize=9,
    )
    # built by hand so every series shows even when all its rates are null; below the plot, never over a bar
    handles = [  # one legend column per series: its bars above its target line
        h
        for _, key, label, colour in SERIES
        for h in (
            Patch(color=colour, label=label),
            Line2D([], [], color=colour, linestyle="--", label=f"{label} target {report['targets'][key] * 100:.0f}%"),
        )
    ]
    ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.06), fontsize=7, ncol=3, frameon=False)
    if not units:
        ax.text(0.5, 0, "no records in the period", ha="center", va="center")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()
