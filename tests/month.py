"""A hand-built month in the store (November 2026, business date the 20th), for the KPI and report tests.

Every row is written directly so each number of assessment.json can be
computed by hand from this file (see tests/test_kpis.py for the arithmetic).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy.engine import Engine
from sqlmodel import Session

from minyi.schemas.followups import Followup
from minyi.schemas.orders import EscalationRecord, Order
from minyi.schemas.records import Quarantine, Record
from tests.support import at

BUSINESS_DATE = date(2026, 11, 20)
AS_OF = at("2026-11-21 09:30")
A, B, C, D = "QD-SN-PS01", "QD-SB-PS01", "QD-CGS", "QD-XX-UNKNOWN"


@dataclass
class Builder:
    session: Session
    n: int = 0

    def record(self, unit: str, day: date, phone: str | None = "13812345678", name: str = "张三") -> Record:
        self.n += 1
        rec = Record(
            source="police110",
            record_id=f"110-{day:%Y%m%d}-{self.n:04d}",
            business_date=day,
            channel="110",
            matter="police_call",
            handled_at=datetime.combine(day, datetime.min.time()).replace(tzinfo=AS_OF.tzinfo).replace(hour=10),
            unit_code=unit,
            citizen_name=name,
            phone_norm=phone,
            phone_kind="mobile" if phone and phone.startswith("1") else "landline",
            ingested_at=AS_OF,
            updated_at=AS_OF,
        )
        self.session.add(rec)
        self.session.flush()
        return rec

    def followup(self, rec: Record, sent: bool = True, satisfaction: str | None = None, **over: Any) -> Followup:
        fu = Followup(
            record_pk=rec.id,
            source=rec.source,
            record_id=rec.record_id,
            business_date=rec.business_date,
            unit_code=rec.unit_code,
            phone_norm=rec.phone_norm,
            plan="sms" if sent else over.pop("plan", "manual"),
            sms_status="sent" if sent else None,
            sent_at=at(f"{rec.business_date} 09:00") if sent else None,
            satisfaction=satisfaction,
            planned_at=AS_OF,
            **over,
        )
        self.session.add(fu)
        self.session.flush()
        return fu

    def order(self, fu: Followup, opened: str, **times: str | None) -> Order:
        status = "closed" if times.get("closed_at") else "rectified" if times.get("rectified_at") else "open"
        if status == "open" and times.get("responded_at"):
            status = "responded"
        order = Order(
            followup_id=fu.id,
            source=fu.source,
            record_id=fu.record_id,
            unit_code=fu.unit_code,
            opened_at=at(opened),
            status=status,
            resolution=times.pop("resolution", None),
            created_at=at(opened),
            updated_at=AS_OF,
            **{k: at(v) if v else None for k, v in times.items()},
        )
        self.session.add(order)
        self.session.flush()
        return order

    def escalation(self, order: Order, level: str, due: str, fired: str) -> None:
        self.session.add(
            EscalationRecord(order_id=order.id, level=level, due=at(due), fired_at=at(fired), sweep_id="s1")
        )


def build_month(engine: Engine) -> None:
    """Four units: A fails satisfaction, B meets exactly at the 0.8 target, C has nothing to judge, D is unknown."""
    with Session(engine) as s:
        b = Builder(s)
        # --- A: 6 records in the period; 5 SMS sent; 2 satisfied, 1 basically, 2 dissatisfied (one by visit)
        b.followup(b.record(A, date(2026, 11, 2)), satisfaction="satisfied")
        b.followup(b.record(A, date(2026, 11, 3)), satisfaction="satisfied")
        b.followup(b.record(A, date(2026, 11, 4)), satisfaction="basically_satisfied")
        a4 = b.followup(b.record(A, date(2026, 11, 2)), satisfaction="dissatisfied")
        b.followup(b.record(A, date(2026, 11, 18)))  # sent, no answer yet
        a6 = b.followup(b.record(A, date(2026, 11, 18), phone="053288886666"), sent=False, satisfaction="dissatisfied")
        # A's orders: one done on time and resolved; one opened on the 19th whose clocks have not run out
        o1 = b.order(
            a4,
            "2026-11-03 10:00",
            response_due="2026-11-07 00:00",
            completion_due="2026-11-11 00:00",
            responded_at="2026-11-04 09:00",
            rectified_at="2026-11-09 09:00",
            closed_at="2026-11-10 15:00",
            resolution="resolved",
        )
        o2 = b.order(a6, "2026-11-19 10:00", response_due="2026-11-25 00:00", completion_due="2026-11-27 00:00")
        # outside the period: a record of 31 October (its order too) and one of the 21st
        old = b.followup(b.record(A, date(2026, 10, 31)), satisfaction="dissatisfied")
        b.order(old, "2026-11-01 10:00", response_due="2026-11-05 00:00", completion_due="2026-11-07 00:00")
        # --- B: 5 records, 5 sent; 3 satisfied + 1 basically of 5 responses = exactly 0.8
        for day, answer in ((5, "satisfied"), (6, "satisfied"), (9, "satisfied"), (10, "basically_satisfied")):
            b.followup(b.record(B, date(2026, 11, day), name="欧阳娜娜"), satisfaction=answer)
        b5 = b.followup(b.record(B, date(2026, 11, 9)), satisfaction="dissatisfied")
        # responded on time, rectified, never closed: the completion clock ran out on the 18th
        o3 = b.order(
            b5,
            "2026-11-10 10:00",
            response_due="2026-11-14 00:00",
            completion_due="2026-11-18 00:00",
            responded_at="2026-11-12 09:00",
            rectified_at="2026-11-19 09:00",
        )
        b.escalation(o3, "completion_overdue", "2026-11-18 00:00", "2026-11-18 09:15")
        b.followup(b.record(B, date(2026, 11, 21)), satisfaction="satisfied")  # after the business date
        # --- C: 2 records, no follow-up reached anyone (invalid phone, confidential)
        b.followup(b.record(C, date(2026, 11, 12), phone=None), sent=False, plan="skipped", skip_reason="invalid_phone")
        b.followup(b.record(C, date(2026, 11, 13)), sent=False, plan="skipped", skip_reason="confidential")
        # --- D (unknown unit): 3 records, 2 sent; satisfied 1, dissatisfied 2; both orders pending_calendar
        b.followup(b.record(D, date(2026, 11, 14)), satisfaction="satisfied")
        d2 = b.followup(b.record(D, date(2026, 11, 15), phone="053288887777"), sent=False, satisfaction="dissatisfied")
        d3 = b.followup(b.record(D, date(2026, 11, 16)), satisfaction="dissatisfied")
        b.order(d2, "2026-11-16 10:00", responded_at="2026-11-20 10:00")  # done, but due unknown: due, not on time
        b.order(d3, "2026-11-17 10:00")  # not done and due unknown: not due
        s.add(
            Quarantine(
                source="police110",
                business_date=date(2026, 11, 20),
                record_id=None,
                reasons="missing_unit_code",
                raw='{"phone": "13900001111"}',
                fingerprint="q1",
                received_at=AS_OF,
            )
        )
        b.escalation(o1, "response_reminder", "2026-11-07 00:00", "2026-11-06 09:15")
        del o2
        s.commit()
