"""The `explain` operator flow (SPEC §12): the records behind one unit's count, as a table on the run's page.

A unit commander who disputes a rank asks the centre "which records is our
78.4% computed from?"; the centre runs this from the Prefect UI's form (or
`minyi explain UNIT_CODE METRIC` at a shell) and reads every `SOURCE:RECORD_ID`
behind the count, then the count itself, equal to the one in assessment.json.
Masked data only: record references, never a phone or a name.
"""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger
from prefect.artifacts import create_table_artifact
from pydantic import Field

from minyi.tasks.runtime import load_runtime
from minyi.tasks.stages.kpis import LineageMetric, explain_count

Metric = LineageMetric  # a drop-down of the traceable counts, in the form


def _form(title: str, default: Any = ..., description: str = "") -> Any:
    """A form field with a bilingual title (Prefect titles a field by its parameter name unless told)."""
    return Field(default, description=description, json_schema_extra={"title": title})


@flow(name="explain", flow_run_name="explain-{unit_code}-{metric}")
def explain_flow(
    unit_code: str = _form("单位代码 unit_code", description="e.g. QD-SN-PS01"),
    metric: Metric = _form("指标 metric", description="The count of assessment.json to trace to its records."),
    business_date: str = _form(
        "业务日期 business_date", "", "YYYY-MM-DD: the month to date up to it. Empty = yesterday."
    ),
    as_of: str = _form("评估时点 as_of", "", "ISO 8601 with its UTC offset. Empty = now."),
) -> list[str]:
    """Every record behind one unit's count in the assessment (what `minyi explain` prints), as a table artifact.

    The last line is `UNIT_CODE METRIC = N`, N equal to the count in assessment.json.
    """
    from minyi.tasks.rules.days import parse_date, parse_instant, resolve_day

    rt = load_runtime()
    day, now = resolve_day(
        parse_date(business_date, "business_date") if business_date else None,
        parse_instant(as_of, "as_of") if as_of else None,
        rt.tz,
    )
    with rt.engine.connect() as conn:
        refs = explain_count(conn, unit_code, metric, day, now)
    last = f"{unit_code} {metric} = {len(refs)}"
    create_table_artifact(
        key="explain",
        table=[{"source": ref.split(":", 1)[0], "record_id": ref.split(":", 1)[1]} for ref in refs],
        description=f"{last} ({day:%Y-%m}-01 .. {day}, as of {now.astimezone(rt.tz).isoformat()})",
    )
    get_run_logger().info(last)
    return [*refs, last]
