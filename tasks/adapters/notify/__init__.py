"""Notifiers (SPEC §7, §13): one neutral message, one delivery engine, one file per vendor.

- `base`: the neutral `Message` producers enqueue, the `Post` a notifier receives, the `Notifier` protocol.
- `engine`: the outbox delivery (claim with owner and expiry, retry with back-off, rate limits, reconcile).
- `slack`, `wecom`, `dingtalk`, `files`: one vendor each. The runtime (`tasks.runtime.NOTIFIERS`) picks one.
"""
