"""Benchmarks: ``make bench`` (or ``python -m benchmarks [name ...]``).

Each benchmark measures the engine and the thing it is compared with in the same run, prints a
row per metric and writes ``benchmarks/results/<name>.json``. Targets are reported, never
asserted: these are measurements, not tests.
"""
