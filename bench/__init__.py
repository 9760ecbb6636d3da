"""Benchmarks: each compares ceap-stage against a baseline measured in the same run."""
