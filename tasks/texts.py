"""Every text minyi sends or posts (SMS, channel posts, alerts) and every outbox key, in one place.

Why one module: the centre reviews its wording in one file, and a rule that names a
message (its outbox key) cannot drift from the text that goes out under it.
"""

from __future__ import annotations
