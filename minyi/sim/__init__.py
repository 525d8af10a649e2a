"""Stand-ins for the upstream systems (records sources, SMS gateway, Slack) that speak the real protocols.

Used by `minyi demo`, the tests and the benchmark; they listen on loopback only.
"""
