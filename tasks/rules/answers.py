"""What a citizen's SMS answer means (SPEC §4 replies, §5 verification call-back): pure parsing.

Why one module: the follow-up reply and the verification answer are read by the same rule —
trimmed, full-width folded, lower-cased, then an exact word — and differ only in their words.
Before, the fold and the rule were written once in each stage.
"""

from __future__ import annotations

from typing import Literal

ReplyValue = Literal["satisfied", "basically_satisfied", "dissatisfied", "opt_out", "unrecognised"]
VerifyAnswer = Literal["confirmed", "not_resolved", "opt_out", "unrecognised"]

REPLY_WORDS: dict[str, ReplyValue] = {
    "1": "satisfied",
    "满意": "satisfied",
    "2": "basically_satisfied",
    "基本满意": "basically_satisfied",
    "3": "dissatisfied",
    "不满意": "dissatisfied",
    "td": "opt_out",
    "退订": "opt_out",
}
VERIFY_WORDS: dict[str, VerifyAnswer] = {
    "1": "confirmed",
    "已解决": "confirmed",
    "2": "not_resolved",
    "未解决": "not_resolved",
    "td": "opt_out",
    "退订": "opt_out",
}
# Full-width ASCII (U+FF01–U+FF5E) to ASCII, and the ideographic space: phones send '１' and 'ＴＤ' as often as '1'.
_FOLD = {cp: cp - 0xFEE0 for cp in range(0xFF01, 0xFF5F)} | {0x3000: 0x20}


def answer_word(raw: str) -> str:
    """The word an answer is matched on: full-width folded, trimmed, lower-cased."""
    return raw.translate(_FOLD).strip().lower()


def parse_reply(raw: str) -> ReplyValue:
    """A follow-up reply: '１' and ' 3 ' count, '不满意' is not '满意', 'td' opts out, anything else unrecognised."""
    return REPLY_WORDS.get(answer_word(raw), "unrecognised")


def parse_verification(raw: str) -> VerifyAnswer:
    """A verification answer: 1/已解决 confirmed, 2/未解决 not resolved, TD/退订 opts out, else unrecognised."""
    return VERIFY_WORDS.get(answer_word(raw), "unrecognised")
