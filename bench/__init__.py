"""Benchmarks for pypoints (pytest-benchmark) and a SQLite WAL baseline.

Not collected by the normal test run (pyproject sets testpaths=["tests"]); run them with
`python -m pytest bench/ --benchmark-only -q`. See bench/README.md.
"""
