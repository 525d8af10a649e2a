"""SPEC §2: a strict config whose every error names its key in one line."""

from __future__ import annotations

from pathlib import Path

import pytest

from minyi.tasks.config import parse_config
from minyi.tasks.errors import ConfigError
from tests.support import config_toml

GOOD = config_toml({"police110": "http://127.0.0.1:8800/police110"})


def error_of(text: str) -> str:
    with pytest.raises(ConfigError) as exc:
        parse_config(text, "minyi.toml")
    message = str(exc.value)
    assert "\n" not in message
    return message


def test_the_shipped_sample_config_is_valid() -> None:
    cfg = parse_config((Path(__file__).parent.parent / "minyi.toml").read_text(encoding="utf-8"))
    assert cfg.sources and cfg.units and cfg.timezone == "Asia/Shanghai"


def test_defaults_follow_the_published_targets() -> None:
    cfg = parse_config(GOOD)
    assert (cfg.targets.timely_response, cfg.targets.satisfaction, cfg.targets.resolution) == (1.0, 0.8, 0.7)
    assert (cfg.clock.response_days, cfg.clock.completion_days, cfg.clock.mode) == (3, 5, "working")


def test_an_unknown_key_is_named() -> None:
    assert error_of(GOOD.replace("[ingest]", "[ingest]\nrespone_days = 3")) == (
        "config minyi.toml: ingest.respone_days: unknown key"
    )


def test_a_bad_type_is_named() -> None:
    assert "clock.response_days" in error_of(GOOD + '\n[clock]\nresponse_days = "three"\n')


def test_a_unit_without_a_channel_is_named() -> None:
    text = config_toml({"a": "http://127.0.0.1:1/a"}, units=[{"code": "U1", "name": "单位"}])
    assert error_of(text) == "config minyi.toml: units[0].channel: missing required key"


def test_an_unknown_timezone_and_bad_toml_are_refused() -> None:
    assert "timezone" in error_of(GOOD.replace("Asia/Shanghai", "Mars/Olympus"))
    assert "invalid TOML" in error_of("timezone = ")


def test_duplicate_source_names_are_refused() -> None:
    text = GOOD + '\n[[sources]]\nname = "police110"\nurl = "http://127.0.0.1:1/x"\n'
    assert "duplicate" in error_of(text)


def test_an_empty_send_window_is_refused() -> None:
    assert "send_from" in error_of(GOOD + "\n[followup]\nsend_from = 21:00:00\nsend_until = 09:00:00\n")


def test_assessment_defaults_rank_by_targets_from_30_responses_with_the_published_weights() -> None:
    a = parse_config(GOOD).assessment
    assert (a.min_responses, a.rank_by) == (30, "targets")
    assert a.weights.model_dump() == {
        "timely_response": 30,
        "satisfaction": 40,
        "resolution": 20,
        "timely_completion": 10,
    }


def test_the_spec_example_assessment_table_is_accepted() -> None:
    section = {
        "min_responses": 10,
        "rank_by": "score",
        "weights": {"timely_response": 30, "satisfaction": 40, "resolution": 20, "timely_completion": 10},
    }
    a = parse_config(config_toml(sections={"assessment": section})).assessment
    assert (a.min_responses, a.rank_by, a.weights.satisfaction) == (10, "score", 40)


def test_a_negative_weight_is_a_config_error_naming_it() -> None:
    text = config_toml(sections={"assessment": {"weights": {"satisfaction": -1}}})
    assert "assessment.weights.satisfaction" in error_of(text)


def test_weights_summing_to_zero_are_a_config_error_naming_the_weights() -> None:
    zero = {"timely_response": 0, "satisfaction": 0, "resolution": 0, "timely_completion": 0}
    message = error_of(config_toml(sections={"assessment": {"weights": zero}}))
    assert "assessment.weights" in message and "positive sum" in message


def test_an_unknown_weight_or_rank_by_is_a_config_error_naming_it() -> None:
    assert "assessment.weights.speed" in error_of(config_toml(sections={"assessment": {"weights": {"speed": 1}}}))
    assert "assessment.rank_by" in error_of(config_toml(sections={"assessment": {"rank_by": "points"}}))
