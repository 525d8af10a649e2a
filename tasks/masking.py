"""PII masking: the one place phone numbers and names are made safe to show (SPEC §7).

Every writer (logs, Slack posts, report files, artifacts) calls these; only the
call-centre visit list shows full numbers, because its readers must dial them.
"""

from __future__ import annotations

import re

_MOBILE_IN_TEXT = re.compile(r"(?<!\d)(?:\+?86)?(1[3-9]\d)(\d{4})(\d{4})(?!\d)")


def mask_phone(phone: str | None) -> str:
    """`13812345678` → `138****5678`; landlines keep their first 3 and last 4 digits."""
    if not phone:
        return ""
    digits = re.sub(r"\D", "", phone)
    if len(digits) <= 7:
        return "*" * len(digits)
    return f"{digits[:3]}{'*' * (len(digits) - 7)}{digits[-4:]}"


def mask_name(name: str | None) -> str:
    """`张三` → `张*`, `欧阳娜娜` → `欧***`: the surname's first character stays."""
    if not name:
        return ""
    name = name.strip()
    return name[:1] + "*" * max(len(name) - 1, 1)


def mask_text(text: str) -> str:
    """Mask any mobile number embedded in free text (summaries, error messages)."""
    return _MOBILE_IN_TEXT.sub(lambda m: f"{m.group(1)}****{m.group(3)}", text)
