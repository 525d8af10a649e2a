"""A synthetic city: units, sources and a deterministic day of records with a share of messy rows.

Deterministic by (seed, source, date, index), so a page can be produced on
demand without holding the day in memory, and the same page asked twice (a
retry, a resumed run) is byte-for-byte the same.
"""

from __future__ import annotations

import random
import zlib
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

TZ = ZoneInfo("Asia/Shanghai")

UNITS: tuple[tuple[str, str, str], ...] = (
    ("QD-SN-PS01", "市南分局八大关派出所", "QD-SN"),
    ("QD-SN-PS02", "市南分局香港中路派出所", "QD-SN"),
    ("QD-SB-PS01", "市北分局台东派出所", "QD-SB"),
    ("QD-SB-PS02", "市北分局辽宁路派出所", "QD-SB"),
    ("QD-LC-PS01", "李沧分局李村派出所", "QD-LC"),
    ("QD-LS-PS01", "崂山分局沙子口派出所", "QD-LS"),
    ("QD-HD-PS01", "黄岛分局长江路派出所", "QD-HD"),
    ("QD-CY-PS01", "城阳分局城阳派出所", "QD-CY"),
    ("QD-JJ-SN", "交警支队市南大队", "QD-JJ"),
    ("QD-JJ-SB", "交警支队市北大队", "QD-JJ"),
    ("QD-CGS", "车辆管理所", "QD-JJ"),
    ("QD-CRJ", "出入境管理支队", "QD"),
)


@dataclass(frozen=True)
class SourceProfile:
    """One upstream system: its channel, the matters it carries, its share of the day and its units."""

    name: str
    channel: str
    matters: tuple[str, ...]
    share: float
    units: tuple[str, ...]


_PS = tuple(u[0] for u in UNITS if "-PS" in u[0])
SOURCES: tuple[SourceProfile, ...] = (
    SourceProfile("police110", "110", ("police_call",), 0.35, _PS),
    SourceProfile("traffic122", "122", ("traffic_call",), 0.15, ("QD-JJ-SN", "QD-JJ-SB")),
    SourceProfile("hotline12345", "12345", ("hotline_appeal",), 0.15, (*_PS, "QD-CGS", "QD-CRJ")),
    SourceProfile("supervision968110", "968110", ("supervision_complaint",), 0.03, _PS),
    SourceProfile(
        "window",
        "window",
        ("household_registration", "entry_exit", "vehicle_driver"),
        0.25,
        (*_PS, "QD-CGS", "QD-CRJ"),
    ),
    SourceProfile(
        "online",
        "online",
        ("household_registration", "entry_exit", "vehicle_driver"),
        0.07,
        ("QD-CGS", "QD-CRJ", *_PS),
    ),
)
SOURCE_BY_NAME = {s.name: s for s in SOURCES}

_SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程苏魏吕丁任沈姚卢姜崔钟谭陆汪范金石廖贾夏韦付方白邹孟熊秦邱江尹薛闫段雷侯龙史陶黎贺顾毛郝龚邵万钱严覃武戴莫孔向汤"
_GIVEN = "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚桂英华建文玉兰红梅鹏飞宇浩然欣怡子涵梓轩一诺晨曦海燕国庆志强春花"
_SUMMARIES = {
    "police_call": ("邻里纠纷调解", "噪音扰民", "丢失物品求助", "醉酒滋事", "家庭纠纷"),
    "traffic_call": ("交通事故处理", "违停挪车", "道路拥堵", "信号灯故障"),
    "hotline_appeal": ("办事效率投诉", "政策咨询", "噪音扰民投诉"),
    "supervision_complaint": ("民警态度投诉", "办事拖延", "执法不规范"),
    "household_registration": ("户口迁入", "身份证补领", "居住证办理"),
    "entry_exit": ("护照办理", "港澳通行证签注", "出入境证件换发"),
    "vehicle_driver": ("驾驶证换证", "机动车年检", "车辆过户"),
}


@dataclass(frozen=True)
class CityConfig:
    """Volumes and mess: `records_per_day` is the whole city's day, split over sources by share."""

    seed: int = 7
    records_per_day: int = 2000
    messy_share: float = 0.02


def _source_salt(source: str) -> int:
    """A stable per-source number (not `hash()`, which changes per process)."""
    return zlib.crc32(source.encode())


def volume(city: CityConfig, source: str, day: date) -> int:
    """Records a source has for a day: its share of the city, ±10% by weekday."""
    profile = SOURCE_BY_NAME[source]
    wobble = 1.0 + 0.1 * ((day.toordinal() * 7 + _source_salt(source)) % 5 - 2) / 2
    return max(1, round(city.records_per_day * profile.share * wobble))


def _phone(rng: random.Random) -> str:
    return f"1{rng.choice('3456789')}{rng.randrange(10**9):09d}"


def record(city: CityConfig, source: str, day: date, index: int) -> dict[str, Any]:
    """The `index`-th record of a source's day, as the source's JSON would carry it."""
    profile = SOURCE_BY_NAME[source]
    rng = random.Random((city.seed * 1_000_003 + day.toordinal()) * 10_007 + index * 31 + _source_salt(source) * 7919)
    matter = profile.matters[rng.randrange(len(profile.matters))]
    handled = datetime.combine(day, datetime.min.time(), TZ) + timedelta(seconds=rng.randrange(8 * 3600, 22 * 3600))
    row: dict[str, Any] = {
        "record_id": f"{profile.channel.upper()}-{day:%Y%m%d}-{index:07d}",
        "channel": profile.channel,
        "matter": matter,
        "handled_at": handled.isoformat(),
        "unit_code": profile.units[rng.randrange(len(profile.units))],
        "officer_id": f"{rng.randrange(10**6):06d}",
        "citizen_name": rng.choice(_SURNAMES) + "".join(rng.choice(_GIVEN) for _ in range(rng.choice((1, 2)))),
        "phone": _phone(rng),
        "summary": rng.choice(_SUMMARIES[matter]),
        "confidential": rng.random() < 0.01,
    }
    roll = rng.random()
    if roll < city.messy_share:
        _mess(row, rng)
    elif roll < city.messy_share * 4:
        _variant(row, rng, city, source, day, index)
    return row


def _mess(row: dict[str, Any], rng: random.Random) -> None:
    """A row the centre must quarantine, one reason of SPEC §3 at a time."""
    kind = rng.randrange(5)
    if kind == 0:
        del row["record_id"]
    elif kind == 1:
        row["channel"] = rng.choice(("weixin", "", "110 ", "fax"))
    elif kind == 2:
        row["handled_at"] = rng.choice(("昨天下午", "2026-13-45T25:00:00", "", None))
    elif kind == 3:
        row["handled_at"] = (datetime.fromisoformat(row["handled_at"]) - timedelta(days=5)).isoformat()
    else:
        row["unit_code"] = rng.choice(("", None))


def _variant(row: dict[str, Any], rng: random.Random, city: CityConfig, source: str, day: date, index: int) -> None:
    """A row that is accepted but exercises follow-up rules: landlines, garbage, repeats, unknown units."""
    kind = rng.randrange(6)
    if kind == 0:
        row["phone"] = f"0532{rng.randrange(10**8):08d}"
    elif kind == 1:
        row["phone"] = rng.choice(("12345", "未提供", "1381234", ""))
    elif kind == 2:
        row.pop("phone")
    elif kind == 3:
        row["phone"] = "+86 " + row["phone"][:3] + "-" + row["phone"][3:7] + "-" + row["phone"][7:]
    elif kind == 4 and index > 0:
        row["phone"] = record(city, source, day, index - 1).get("phone") or row["phone"]
    else:
        row["unit_code"] = "QD-XX-NEW"


def unit_rows() -> list[dict[str, str]]:
    """The demo config's [[units]]: each unit with its duty channel."""
    return [
        {"code": code, "name": name, "parent": parent, "channel": "C0" + code.replace("-", "")}
        for code, name, parent in UNITS
    ]
