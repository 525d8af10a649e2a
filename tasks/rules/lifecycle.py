"""The lifecycle of a supervision order (SPEC §5), as one pure transition function.

States: `open → responded → rectified → closed(resolved | unresolved | excluded)`,
with `returned` (awaiting the centre) beside `open`, and a reopen taking a
closed(resolved) order back to `open`. Actions:

- unit reports: `responded`, `rectified`, `feedback` (resolved yes/no; closes),
  `returned` (reason required; before responding; once per holder);
- the unit's requests: `extend` N days (before completion_due; once per clock
  period; 1 ≤ N ≤ 10), `appeal` (not closed; once per holder);
- the centre's decisions: `reassign` UNIT (a returned or open order to another
  configured unit: fresh clocks, a new period), `keep` (a returned order back to
  open, unchanged), `approve-extension` / `reject-extension`, `uphold-appeal`
  (closed(excluded) at the ruling's time) / `reject-appeal`;
- `reopen`: a verification call-back said "not resolved" (tasks/stages/verification.py).

`transition(state, request)` returns the new state, or raises `OrderRefused`
with one line naming why; it never half-applies anything. Clocks are not
computed here: a move that restarts them returns the new `clock_start` and a
`period` + 1 with both dues cleared, an approved extension sets
`extension_status = "approved"`; the caller computes the instants with
tasks/rules/clocks.py (`due_instant`, `extended_due`).

Who and when (SPEC §5) lives here too: `when_recorded` checks `--at` against
`recorded_at` and says whether it is backdated, `clean_note` masks mobiles and
refuses a note over 2,000 characters, `operator` picks `by`.
"""

from __future__ import annotations

import getpass
import os
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Literal, get_args
from zoneinfo import ZoneInfo

from minyi.tasks.errors import InputError, MinyiError
from minyi.tasks.rules.masking import mask_text

__all__ = [
    "ACTIONS",
    "BACKDATED_AFTER",
    "CENTRE_ACTIONS",
    "MAX_EXTENSION_DAYS",
    "MAX_NOTE_CHARS",
    "STAGES",
    "Action",
    "Lifecycle",
    "OrderRefused",
    "Request",
    "Stage",
    "clean_note",
    "operator",
    "parse_ref",
    "transition",
    "when_recorded",
]

Stage = Literal["responded", "rectified", "feedback", "returned"]
STAGES: tuple[Stage, ...] = get_args(Stage)
# What an operator may do (CLI flags, the report-order form); a reopen comes only from a verification answer.
OperatorAction = Literal[
    "responded",
    "rectified",
    "feedback",
    "returned",
    "reassign",
    "keep",
    "extend",
    "approve-extension",
    "reject-extension",
    "appeal",
    "uphold-appeal",
    "reject-appeal",
]
Action = Literal[OperatorAction, "reopen"]
ACTIONS: tuple[Action, ...] = get_args(Action)
CENTRE_ACTIONS: frozenset[str] = frozenset(
    {"reassign", "keep", "approve-extension", "reject-extension", "uphold-appeal", "reject-appeal", "reopen"}
)
MAX_EXTENSION_DAYS = 10
MAX_NOTE_CHARS = 2000
BACKDATED_AFTER = timedelta(hours=24)

_RANK = {"open": 0, "returned": 0, "responded": 1, "rectified": 2, "closed": 3}
_STAGE_RANK = {"responded": 1, "rectified": 2, "feedback": 3}
_STATUS_AFTER = {"responded": "responded", "rectified": "rectified", "feedback": "closed"}


class OrderRefused(MinyiError):
    """An action that cannot be applied to the order; nothing was changed."""


class UnknownOrder(OrderRefused):
    """No order exists for the reference."""


def parse_ref(ref: str) -> tuple[str, str]:
    """`SOURCE:RECORD_ID` → (source, record_id); the record id may itself contain ':'."""
    source, sep, record_id = ref.strip().partition(":")
    if not sep or not source or not record_id:
        raise InputError(f"{ref!r} is not SOURCE:RECORD_ID (e.g. police110:110-20261121-000123)")
    return source, record_id


# ---------------------------------------------------------------------------------------------- who and when


def operator(by: str | None, env: Mapping[str, str] | None = None) -> str:
    """`by` of SPEC §5: `--by NAME`, else MINYI_OPERATOR, else the OS user."""
    name = (by or "").strip() or (env if env is not None else os.environ).get("MINYI_OPERATOR", "").strip()
    if not name:
        try:
            name = getpass.getuser()
        except Exception:  # no user database entry (some containers)
            name = "unknown"
    if len(name) > 128 or any(ord(c) < 32 for c in name):
        raise InputError("--by: a name of at most 128 printable characters")
    return name


def when_recorded(at: datetime | None, recorded_at: datetime, what: str = "--at") -> tuple[datetime, bool]:
    """(the instant it happened, backdated?) — `at` defaults to recorded_at; later than it is refused."""
    if at is None:
        return recorded_at, False
    if at.tzinfo is None or at.utcoffset() is None:
        raise InputError(f"{what} must carry a UTC offset")
    if at > recorded_at:
        raise InputError(
            f"{what} {at.isoformat(timespec='minutes')} is after the time it is recorded "
            f"({recorded_at.isoformat(timespec='minutes')}): nothing can be reported ahead of time"
        )
    return at, recorded_at - at > BACKDATED_AFTER


def clean_note(note: str | None) -> str | None:
    """An operator's note as stored: mobiles masked (SPEC §14); over 2,000 characters is refused."""
    if note is None or not note.strip():
        return None
    if len(note) > MAX_NOTE_CHARS:
        raise InputError(f"--note: {len(note)} characters, at most {MAX_NOTE_CHARS}")
    return mask_text(note.strip())


# ---------------------------------------------------------------------------------------------- the state


@dataclass(frozen=True)
class Lifecycle:
    """Everything an action can read or change on one order.

    `returned_by` / `appealed_by`: the holders that have already returned / appealed it (from its
    history). `clock_start` is where the current clocks run from; `period` counts clock starts.
    """

    status: str
    unit_code: str
    opened_at: datetime
    clock_start: datetime
    period: int = 1
    response_due: datetime | None = None
    completion_due: datetime | None = None
    completion_due_original: datetime | None = None
    responded_at: datetime | None = None
    rectified_at: datetime | None = None
    closed_at: datetime | None = None
    resolution: str | None = None
    extension_status: str | None = None
    extension_days: int | None = None
    appeal_status: str | None = None
    returned_by: frozenset[str] = field(default_factory=frozenset)
    appealed_by: frozenset[str] = field(default_factory=frozenset)

    @property
    def closed(self) -> bool:
        return self.status == "closed"


@dataclass(frozen=True)
class Request:
    """One action with its arguments. `units` are the configured unit codes (for `reassign`)."""

    action: str
    at: datetime
    ref: str = "?"
    resolved: bool | None = None
    note: str | None = None
    unit: str | None = None
    days: int | None = None
    units: Collection[str] = ()


def _show(instant: datetime | None, tz: ZoneInfo) -> str:
    return instant.astimezone(tz).isoformat(timespec="minutes") if instant else "-"


def _status(s: Lifecycle) -> str:
    return s.status + (f"({s.resolution})" if s.status == "closed" and s.resolution else "")


def transition(state: Lifecycle, req: Request, tz: ZoneInfo) -> Lifecycle:
    """The order after `req`, or OrderRefused / InputError naming why (SPEC §5). Pure.

    An exact repeat of the stage report that got the order where it is returns the state
    unchanged (a re-run); every other refusal raises.
    """
    a, ref = req.action, req.ref
    if a not in ACTIONS:
        raise InputError(f"order {ref}: unknown action {a!r}; expected one of {', '.join(ACTIONS)}")
    if req.at.tzinfo is None or req.at.utcoffset() is None:
        raise InputError(f"order {ref}: --at must carry a UTC offset")
    if (req.resolved is not None) != (a == "feedback"):
        if a == "feedback":
            raise InputError(f"order {ref}: --stage feedback needs --resolved or --unresolved")
        raise InputError(f"order {ref}: --resolved/--unresolved go only with --stage feedback")
    if req.at < state.opened_at:
        raise OrderRefused(
            f"order {ref}: '{a}' at {_show(req.at, tz)} is before the order was opened ({_show(state.opened_at, tz)})"
        )
    if a in _STAGE_RANK:
        return _stage(state, req, tz)
    if state.status == "closed" and a != "reopen":
        raise OrderRefused(f"order {ref} is {_status(state)} since {_show(state.closed_at, tz)}; '{a}' cannot apply")
    if req.at < state.clock_start:
        raise OrderRefused(
            f"order {ref}: '{a}' at {_show(req.at, tz)} is before its clocks started ({_show(state.clock_start, tz)})"
        )
    return _ACTION[a](state, req, tz)


def _need_note(req: Request, what: str) -> None:
    if not (req.note or "").strip():
        raise InputError(f"order {req.ref}: {what} needs --note REASON")


def _stage(s: Lifecycle, req: Request, tz: ZoneInfo) -> Lifecycle:
    stage, ref, at = req.action, req.ref, req.at
    resolution = None if req.resolved is None else ("resolved" if req.resolved else "unresolved")
    wanted, current = _STAGE_RANK[stage], _RANK[s.status]
    if s.status == "returned":
        raise OrderRefused(f"order {ref} is returned, awaiting the centre (--reassign or --keep); '{stage}' waits")
    if wanted <= current:
        recorded = {"responded": s.responded_at, "rectified": s.rectified_at, "feedback": s.closed_at}[stage]
        if wanted == current and recorded == at and s.resolution == resolution:
            return s  # the same report again: already applied
        since = s.closed_at or s.rectified_at or s.responded_at
        when = f" since {_show(since, tz)}" if since else ""
        raise OrderRefused(f"order {ref} is already {_status(s)}{when}; a '{stage}' report cannot go back")
    if at < s.clock_start:
        raise OrderRefused(
            f"order {ref}: '{stage}' at {_show(at, tz)} is before its clocks started ({_show(s.clock_start, tz)})"
        )
    latest = s.rectified_at or s.responded_at
    if latest is not None and at < latest:
        previous = "rectified" if s.rectified_at else "responded"
        raise OrderRefused(
            f"order {ref}: '{stage}' at {_show(at, tz)} is before its '{previous}' at {_show(latest, tz)}"
        )
    after = replace(
        s,
        status=_STATUS_AFTER[stage],
        responded_at=s.responded_at or at,
        rectified_at=(s.rectified_at or at) if wanted >= 2 else None,
    )
    if stage == "feedback":
        after = replace(after, closed_at=at, resolution=resolution)
    return after


def _returned(s: Lifecycle, req: Request, tz: ZoneInfo) -> Lifecycle:
    if s.status == "returned":
        raise OrderRefused(f"order {req.ref} is already returned, awaiting the centre")
    if s.status != "open":
        raise OrderRefused(f"order {req.ref} is {s.status}: a unit may return an order only before it has responded")
    if s.unit_code in s.returned_by:
        raise OrderRefused(f"order {req.ref}: {s.unit_code} has already returned it once (a return is allowed once)")
    _need_note(req, "a return")
    return replace(s, status="returned", returned_by=s.returned_by | {s.unit_code})


def _restart(s: Lifecycle, at: datetime, **changes: object) -> Lifecycle:
    """Fresh clocks from `at`: a new period, both dues to be computed, no extension of the old period."""
    return replace(
        s,
        clock_start=at,
        period=s.period + 1,
        response_due=None,
        completion_due=None,
        completion_due_original=None,
        extension_status=None,
        extension_days=None,
        **changes,  # type: ignore[arg-type]
    )


def _reassign(s: Lifecycle, req: Request, tz: ZoneInfo) -> Lifecycle:
    unit = (req.unit or "").strip()
    if not unit:
        raise InputError(f"order {req.ref}: --reassign needs a unit code")
    if unit not in req.units:
        raise OrderRefused(f"order {req.ref}: unit {unit!r} is not a configured unit; nothing was reassigned")
    if unit == s.unit_code:
        raise OrderRefused(f"order {req.ref} is already held by {unit}")
    if s.status not in ("returned", "open"):
        raise OrderRefused(f"order {req.ref} is {s.status}: only a returned or open order can be reassigned")
    # A pending appeal belongs to the old holder and lapses with the move.
    appeal = None if s.appeal_status == "pending" else s.appeal_status
    return _restart(s, req.at, status="open", unit_code=unit, appeal_status=appeal)


def _keep(s: Lifecycle, req: Request, tz: ZoneInfo) -> Lifecycle:
    if s.status != "returned":
        raise OrderRefused(f"order {req.ref} is {s.status}, not returned: there is no return to refuse")
    return replace(s, status="open")


def _extend(s: Lifecycle, req: Request, tz: ZoneInfo) -> Lifecycle:
    days = req.days
    if days is None or not 1 <= days <= MAX_EXTENSION_DAYS:
        raise InputError(f"order {req.ref}: --extend N takes 1 to {MAX_EXTENSION_DAYS} days, got {days}")
    if s.status == "returned":
        raise OrderRefused(f"order {req.ref} is returned, awaiting the centre: no extension while it is")
    if s.extension_status is not None:
        raise OrderRefused(f"order {req.ref}: an extension was already asked for in this period ({s.extension_status})")
    if s.completion_due is None:
        raise OrderRefused(f"order {req.ref}: its completion_due is not known yet (pending_calendar); ask again later")
    if req.at >= s.completion_due:
        raise OrderRefused(
            f"order {req.ref}: an extension must be asked before completion_due {_show(s.completion_due, tz)}; "
            f"this request is at {_show(req.at, tz)}"
        )
    _need_note(req, "an extension request")
    return replace(s, extension_status="pending", extension_days=days)


def _decide_extension(approve: bool):
    def decide(s: Lifecycle, req: Request, tz: ZoneInfo) -> Lifecycle:
        if s.extension_status != "pending":
            raise OrderRefused(f"order {req.ref}: no pending extension request to decide")
        if not approve:
            return replace(s, extension_status="rejected")
        return replace(s, extension_status="approved", completion_due_original=s.completion_due, completion_due=None)

    return decide


def _appeal(s: Lifecycle, req: Request, tz: ZoneInfo) -> Lifecycle:
    if s.appeal_status == "pending":
        raise OrderRefused(f"order {req.ref}: an appeal is already pending")
    if s.unit_code in s.appealed_by:
        raise OrderRefused(f"order {req.ref}: {s.unit_code} has already appealed it once")
    _need_note(req, "an appeal")
    return replace(s, appeal_status="pending", appealed_by=s.appealed_by | {s.unit_code})


def _rule_appeal(uphold: bool):
    def rule(s: Lifecycle, req: Request, tz: ZoneInfo) -> Lifecycle:
        if s.appeal_status != "pending":
            raise OrderRefused(f"order {req.ref}: no pending appeal to rule on")
        if not uphold:
            return replace(s, appeal_status="rejected")
        return replace(s, appeal_status="upheld", status="closed", resolution="excluded", closed_at=req.at)

    return rule


def _reopen(s: Lifecycle, req: Request, tz: ZoneInfo) -> Lifecycle:
    if not (s.status == "closed" and s.resolution == "resolved"):
        raise OrderRefused(f"order {req.ref} is {_status(s)}: only an order closed as resolved can be reopened")
    if s.closed_at is not None and req.at < s.closed_at:
        raise OrderRefused(f"order {req.ref}: a reopen at {_show(req.at, tz)} is before it closed")
    return _restart(s, req.at, status="open", responded_at=None, rectified_at=None, closed_at=None, resolution=None)


_ACTION = {
    "returned": _returned,
    "reassign": _reassign,
    "keep": _keep,
    "extend": _extend,
    "approve-extension": _decide_extension(True),
    "reject-extension": _decide_extension(False),
    "appeal": _appeal,
    "uphold-appeal": _rule_appeal(True),
    "reject-appeal": _rule_appeal(False),
    "reopen": _reopen,
}
assert set(_ACTION) | set(_STAGE_RANK) == set(ACTIONS)
