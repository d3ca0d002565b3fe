"""Tests of the benchmark harnesses in ``benchmarks/``."""
