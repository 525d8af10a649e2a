"""The assessment chart (SPEC §7) is Chinese: unit names, title and legend draw with a real CJK font."""

from __future__ import annotations

import warnings
from typing import Any

import pytest

from minyi.sim.city import UNITS
from minyi.tasks.adapters.charts import NO_DATA, build_assessment_figure, render_assessment_chart

NAMES = {code: name for code, name, _ in UNITS}


def _unit(code: str, rank: int | None, **rates: Any) -> dict[str, Any]:
    base = {"timely_response_rate": 0.97, "satisfaction_rate": 0.85, "resolution_rate": 0.8, "reply_rate": 0.6}
    return {"unit_code": code, "rank": rank, "ranked": rank is not None, "meets_targets": rank == 1, **base, **rates}


def _report(**unit_over: Any) -> dict[str, Any]:
    units = [_unit(code, i + 1) for i, code in enumerate(NAMES)]
    units.append(_unit("QD-XX-NEW", None, resolution_rate=None, **unit_over))
    return {
        "business_date": "2026-11-13",
        "as_of": "2026-11-14T12:05:00+08:00",
        "period": {"start": "2026-11-01", "end": "2026-11-13"},
        "targets": {"timely_response": 0.95, "satisfaction": 0.9, "resolution": 0.85},
        "units": units,
    }


def _texts(fig: Any) -> list[str]:
    from matplotlib.text import Text

    return [t.get_text() for t in fig.findobj(Text)]


def test_rendering_the_chart_draws_every_glyph_with_the_bundled_font() -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        png = render_assessment_chart(_report(), NAMES)
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    glyphs = [str(w.message) for w in caught if "glyph" in str(w.message).lower() or "missing" in str(w.message)]
    assert glyphs == []


def test_every_unit_is_named_on_the_chart() -> None:
    texts = "\n".join(_texts(build_assessment_figure(_report(), NAMES)))
    for code, name in NAMES.items():
        assert name in texts and code in texts
    assert "QD-XX-NEW\n未配置单位" in texts


def test_the_title_and_legend_are_chinese_with_the_period_and_as_of() -> None:
    fig = build_assessment_figure(_report(), NAMES)
    (ax,) = fig.axes
    assert "2026-11-01 至 2026-11-13" in ax.get_title() and "截至 2026-11-14 12:05" in ax.get_title()
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend[:2] == ["及时响应率", "及时响应率目标 95%"] and "回复率" in legend and "解决率目标 85%" in legend


def test_a_rate_with_nothing_to_judge_says_no_data_and_rates_round_down() -> None:
    texts = _texts(build_assessment_figure(_report(satisfaction_rate=0.89996), NAMES))
    assert texts.count(NO_DATA) == 1  # the unconfigured unit's resolution
    assert "89.9%" in texts and "90.0%" not in texts


@pytest.mark.parametrize("with_new_keys", [False, True])
def test_reply_rate_and_score_are_drawn_only_when_the_assessment_has_them(with_new_keys: bool) -> None:
    report = _report()
    for u in report["units"]:
        if with_new_keys:
            u["score"] = 87.5
        else:
            u.pop("reply_rate")
    fig = build_assessment_figure(report, NAMES)
    legend = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert ("回复率" in legend) is with_new_keys
    assert any("积分 87.5" in t for t in _texts(fig)) is with_new_keys
