"""Phone normalisation (SPEC §4 rule 2), shared by ingest, eligibility and replies.

Why one function: the same number must compare equal whether it arrived as
"+86 138-1234-5678" from one source or "13812345678" from another, or the
per-phone daily limit and opt-outs would not hold across sources.
"""

from __future__ import annotations

import re
from typing import Literal

PhoneKind = Literal["mobile", "landline", "invalid", "missing"]

MOBILE = re.compile(r"^1[3-9]\d{9}$")
LANDLINE = re.compile(r"^0\d{2,3}\d{7,8}$")
_SEPARATORS = str.maketrans("", "", " -\u00a0\u3000\t")


def normalise_phone(raw: object) -> tuple[PhoneKind, str | None]:
    """Classify a phone field and return its normalised digits (None unless mobile or landline)."""
    if raw is None:
        return "missing", None
    if isinstance(raw, bool) or not isinstance(raw, str | int):
        return "invalid", None
    s = str(raw).translate(_SEPARATORS)
    if not s:
        return "missing", None
    if s.startswith("+86"):
        s = s[3:]
    elif s.startswith("0086"):
        s = s[4:]
    if MOBILE.match(s):
        return "mobile", s
    if LANDLINE.match(s):
        return "landline", s
    return "invalid", None
