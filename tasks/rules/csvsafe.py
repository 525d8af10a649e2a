"""Formula-safe CSV cells (SPEC §7): every CSV minyi writes passes its cells through `csv_cell`.

Why: the duty office opens the CSVs in a spreadsheet, and an upstream string
such as `=HYPERLINK("http://…","点此")` in a record id or a unit code would run
as a formula there. A text cell starting with `=`, `+`, `-`, `@`, tab or CR is
written with a leading `'` (shown as text, not run); numbers stay numbers.
lineage.csv does the same in bulk (tasks.kpis `_lineage_lines`: one check per unit and metric
mask, a cell at a time only where one needs it), so a million rows cost no Python per cell.
"""

from __future__ import annotations

from typing import Any

FORMULA_STARTS: tuple[str, ...] = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value: Any) -> Any:
    """A cell as minyi writes it: null empty, booleans `true`/`false`, formula-looking text quoted with `'`."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value
