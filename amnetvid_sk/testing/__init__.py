"""Helpers for tests, benchmarks and the demo: small real video clips and synthetic data sets."""
