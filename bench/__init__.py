"""Benchmarks: each ``bench/NAME/run.py`` prints Markdown and writes ``bench/results/NAME.md``."""
