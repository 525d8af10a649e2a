"""Prefect flows: the daily loop, one flow per stage, and operator flows."""
