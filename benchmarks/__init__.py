"""Benchmarks of triage against its peers, run by ``make bench`` (results in docs/benchmarks.md)."""
