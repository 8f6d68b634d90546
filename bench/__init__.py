"""Benchmarks: what a reading costs, each figure beside a limit measured in the same run.

``python -m bench`` (``make bench``) runs every scenario and writes bench/results.json;
see docs/benchmarks.md.
"""
