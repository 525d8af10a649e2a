"""Masked Prefect state messages: what the Prefect API stores about a failed or crashed run.

Why: Prefect builds a failed run's state message from the exception's text
(`prefect.states.format_exception`) and sends it to the API, where it sits in
the UI and the database beside the run; an exception raised on a bad row, a SQL
error with its parameters or an upstream's error body can carry a citizen's
number. The process's log records are already masked (`install_log_masking`),
but a state message is not a log record. Every state message Prefect derives
from an exception passes through that one function, in `prefect.states` and in
`prefect._internal.states` (which imported it by name), so masking its result
there masks every such message of this process, failed and crashed, task and
flow, before it leaves.
"""

from __future__ import annotations

from collections.abc import Callable

from minyi.tasks.rules.masking import mask_text

_MARK = "_minyi_masked"


def install_state_masking() -> None:
    """Mask phone numbers in every state message Prefect builds from an exception (idempotent)."""
    import prefect._internal.states as internal_states
    import prefect.states as states

    for module in (states, internal_states):
        current: Callable[[BaseException], str] = module.format_exception
        if getattr(current, _MARK, False):
            continue

        def masked(exc: BaseException, _inner: Callable[[BaseException], str] = current) -> str:
            return mask_text(_inner(exc))

        setattr(masked, _MARK, True)
        module.format_exception = masked
