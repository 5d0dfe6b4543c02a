"""Benchmarks of ecr-mirror (figures, not tests): see docs/benchmarks.md."""
