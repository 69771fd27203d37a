"""Benchmarks of streamapp against a naive baseline, a peer framework and the limits."""
