"""PII masking and pseudonymisation: the one place phone numbers and names are made safe (SPEC §7, PIPL).

Every writer (logs, Slack posts, report files, artifacts) calls these; only the
call-centre visit list shows full numbers, because its readers must dial them.

- `mask_phone` / `mask_name`: what a person may see (`138****5678`, `张*`).
- `mask_text`: any mobile number inside free text (summaries, error messages,
  log lines), written plainly or with the separators citizens and upstream
  systems use (`+86 138-1234-5678`, `138 1234 5678`), and landlines
  (`0532-88887777` → `053*****7777`).
- `phone_hmac`: a keyed pseudonym of a number, for joins and de-duplication
  where the number itself is not needed (de-identified rows after retention).
  The key comes from `MINYI_PII_KEY`; without it a documented demo key is used
  and a loud warning is logged once, because anyone who knows the demo key can
  test a guessed number against the pseudonym.
- `install_log_masking`: every log record of the process passes through
  `mask_text` before any handler (console, Prefect's API) sees it, its
  traceback (`exc_info`) and stack included.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import re
import threading

_DIGIT_GAP = r"[ \-\u00a0\u3000]?"
# A mobile number, optionally with +86/0086 and the separators people type; not part of a longer digit run.
_MOBILE_IN_TEXT = re.compile(
    r"(?<![\d])(?:(?:\+|00)?86" + _DIGIT_GAP + r")?"
    r"(1[3-9]\d)" + _DIGIT_GAP + r"(\d{4})" + _DIGIT_GAP + r"(\d{4})(?![\d])"
)
# A landline (SPEC §4: 0 + area code + number), optionally with a separator after the area code.
_LANDLINE_IN_TEXT = re.compile(r"(?<![\d.])(0\d{2,3})[ \-]?(\d{3,4})(\d{4})(?![\d])")
_MAYBE_LANDLINE = re.compile(r"(?<![\d.])0\d{2,3}[ \-]?\d{7,8}(?![\d])")
# Every match of _MOBILE_IN_TEXT holds its group 1 as is: text without it has no number to mask.
# Why the pre-check: the full pattern backtracks at every position of a post, the pre-check is a
# fraction of its cost, and the outbox masks every post (millions in a catch-up sweep); the
# figures are in docs/performance.md ("Figures behind code decisions").
_MAYBE_MOBILE = re.compile(r"1[3-9]\d")

PII_KEY_ENV = "MINYI_PII_KEY"
# Documented in docs/security.md: fine for the synthetic city, never for citizens' numbers.
DEMO_PII_KEY = "minyi-demo-pii-key-not-for-production"
HMAC_PREFIX = "h:"
_warned = threading.Event()
log = logging.getLogger("minyi.privacy")


def mask_phone(phone: str | None) -> str:
    """`13812345678` → `138****5678`; landlines keep their first 3 and last 4 digits."""
    if not phone:
        return ""
    if phone.startswith(HMAC_PREFIX):  # already a pseudonym (a de-identified row): nothing left to mask
        return "h:…"
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
    """Mask any mobile or landline number embedded in free text (summaries, error messages, log lines)."""
    if _MAYBE_MOBILE.search(text):
        text = _MOBILE_IN_TEXT.sub(lambda m: f"{m.group(1)}****{m.group(3)}", text)
    if "0" in text and _MAYBE_LANDLINE.search(text):
        text = _LANDLINE_IN_TEXT.sub(_mask_landline, text)
    return text


def _mask_landline(m: re.Match[str]) -> str:
    digits = m.group(1) + m.group(2) + m.group(3)
    return mask_phone(digits)


def pii_key() -> bytes:
    """The HMAC key from MINYI_PII_KEY; the demo key (with a warning, once per process) when unset."""
    key = os.environ.get(PII_KEY_ENV, "").strip()
    if key:
        return key.encode("utf-8")
    if not _warned.is_set() and os.environ.get("MINYI_DEMO") != "1":
        _warned.set()
        log.warning(
            "%s is not set: phone pseudonyms use the public demo key; set a secret key before real data (docs/security.md)",
            PII_KEY_ENV,
        )
    return DEMO_PII_KEY.encode("utf-8")


def phone_hmac(phone: str | None) -> str | None:
    """A stable keyed pseudonym of a normalised number (`h:` + 30 hex digits, fits every phone column).

    Equal numbers give equal pseudonyms under one key, so counts of distinct
    citizens and joins between de-identified rows still work; the number cannot
    be read back, and guessing it needs the key. An existing pseudonym is returned as is.
    """
    if not phone:
        return None
    if phone.startswith(HMAC_PREFIX):
        return phone
    digest = hmac.new(pii_key(), phone.encode("utf-8"), hashlib.sha256).hexdigest()
    return HMAC_PREFIX + digest[:30]


class _MaskingRecordFactory:
    """Wraps the process's LogRecord factory: the rendered message is masked once, before any handler."""

    def __init__(self, inner: logging._LogRecordFactory) -> None:  # type: ignore[name-defined]
        self.inner = inner

    def __call__(self, *args: object, **kwargs: object) -> logging.LogRecord:
        record = self.inner(*args, **kwargs)
        try:
            message = record.getMessage()
        except Exception:  # a malformed format string: leave it for the handler to report
            return record
        masked = mask_text(message)
        if masked != message:  # untouched otherwise: some formatters (uvicorn's) read record.args
            record.msg, record.args = masked, None
        if record.exc_info and record.exc_info[0] is not None:
            # a traceback carries exception messages (and SQL errors their values): formatted and masked
            # here, once, so no handler formats the raw one
            record.exc_text = mask_text(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        if record.stack_info:
            record.stack_info = mask_text(record.stack_info)
        return record


def install_log_masking() -> None:
    """Mask mobile numbers in every log record of this process (idempotent)."""
    current = logging.getLogRecordFactory()
    if not isinstance(current, _MaskingRecordFactory):
        logging.setLogRecordFactory(_MaskingRecordFactory(current))
