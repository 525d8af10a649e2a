"""Prefect tasks and the pure domain logic they wrap (clocks, KPIs, parsing, clients)."""
