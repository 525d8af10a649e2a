"""State hooks that write each finished daily loop and sweep to the `runs` table (for `minyi status`).

Hooks rather than code in the flows' bodies: a run that fails or is cancelled is
recorded as well as one that completes, and the flows' code stays as it is.
A hook never fails the run: a store it cannot write is logged and skipped.
"""

from __future__ import annotations

import logging
from datetime import date, datetime
from typing import Any

log = logging.getLogger(__name__)


def _value(params: dict[str, Any], name: str) -> Any:
    v = params.get(name)
    return v.default if hasattr(v, "json_schema_extra") else v  # a form field's unresolved default


def describe(result: Any) -> str | None:
    """One line for the status screen from a loop's or a sweep's summary."""
    parts: list[str] = []
    followup = getattr(result, "followup", None)
    sms = getattr(result, "sms", None) or getattr(followup, "sms", None)
    replies = getattr(result, "replies", None) or getattr(followup, "replies", None)
    supervision = getattr(result, "supervision", None)
    if sms is not None:
        parts.append(f"sms sent {sms.sent}, queued {sms.queued}")
    if replies is not None:
        parts.append(f"replies {replies.new}")
    if supervision is not None:
        parts.append(f"orders opened {supervision.opened}, escalations {sum(supervision.escalations.values())}")
    return "; ".join(parts) or None


def record_finished(kind: str) -> Any:
    """A Prefect flow-run state hook recording a finished run of `kind` (daily-loop | sweep)."""

    def hook(flow: Any, flow_run: Any, state: Any) -> None:
        try:
            from minyi.tasks.rules.days import now, parse_date, parse_instant
            from minyi.tasks.runtime import load_runtime
            from minyi.tasks.store.runs import record_run

            rt = load_runtime(check_store=False)
            result = state.result(raise_on_failure=False) if state.is_completed() else None
            params = dict(flow_run.parameters or {})
            day = getattr(result, "business_date", None) or _value(params, "business_date") or None
            if isinstance(day, str):
                day = parse_date(day, "business_date")
            as_of = getattr(result, "as_of", None) or _value(params, "as_of") or None
            if isinstance(as_of, str):
                as_of = parse_instant(as_of, "as_of")
            finished = now()
            outcome = state.type.value.lower() if hasattr(state.type, "value") else str(state.type).lower()
            detail = (describe(result) if result is not None else None) or state.message
            record_run(
                rt.engine,
                kind,
                day if isinstance(day, date) else None,
                as_of if isinstance(as_of, datetime) else finished,
                outcome,
                detail,
                finished,
            )
        except Exception as exc:  # recording is for the duty officer's screen; it must never fail the run
            log.warning("could not record the %s run in the store: %s", kind, exc)

    return hook


def hooks(kind: str) -> dict[str, list[Any]]:
    """The decorator arguments: the same recorder on completion, failure and cancellation."""
    h = record_finished(kind)
    return {"on_completion": [h], "on_failure": [h], "on_cancellation": [h], "on_crashed": [h]}
