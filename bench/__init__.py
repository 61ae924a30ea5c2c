"""Benchmarks of the engine core: `python -m bench.run` (see bench/RESULTS.md)."""
