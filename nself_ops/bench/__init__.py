"""Benchmarks of an environment: HTTP load, pgbench, scenarios and comparisons.

Controller-side only: nothing here runs on a target host.
"""
