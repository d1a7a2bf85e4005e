"""Benchmarks (``python -m bench.latency``).  Nothing here is imported by the product."""
