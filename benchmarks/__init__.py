"""Benchmarks: run as modules, e.g. python -m benchmarks.ingest --records 100000 --db sqlite."""
