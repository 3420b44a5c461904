"""Run every benchmark in turn and gather their results in ``bench/results/README.md``.

A benchmark is a folder ``bench/NAME/`` with a ``run.py`` that prints Markdown and writes it to
``bench/results/NAME.md``, and writes the figures its issue set targets for with
``bench.targets.write_targets``. Each runs in a process of its own, with its output shown as it
goes. The summary opens with one table of every target and its verdict, then each benchmark's
own section.

    make bench                                  # every benchmark
    .venv/bin/python -m bench.run_all outbound  # only those named
    .venv/bin/python -m bench.run_all inbound   # SMTP accept (issue 3 point 15)
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from bench.support import RESULTS
from bench.targets import forget_targets, read_targets, summary_table

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent


def benchmarks() -> list[str]:
    return sorted(path.parent.name for path in BENCH.glob("*/run.py"))


def run(name: str) -> str:
    """Run one benchmark; its Markdown, or a line saying it failed."""
    result = RESULTS / f"{name}.md"
    result.unlink(missing_ok=True)
    forget_targets(name)
    print(f"\n=== bench/{name} ===", flush=True)
    began = time.monotonic()
    code = subprocess.run([sys.executable, "-m", f"bench.{name}.run"], cwd=REPO).returncode
    took = time.monotonic() - began
    if code == 0 and result.exists():
        return result.read_text()
    return f"## {name}\n\nFailed after {took:.0f} s (exit code {code}); its output says why.\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.run_all", description=__doc__)
    known = benchmarks()
    parser.add_argument("names", nargs="*", help=f"benchmarks to run: {', '.join(known)} (all)")
    args = parser.parse_args(argv)
    if unknown := sorted(set(args.names) - set(known)):
        parser.error(f"no benchmark named {', '.join(unknown)}; there are {', '.join(known)}")
    names = args.names or known
    sections = [run(name) for name in names]
    targets = summary_table([target for name in names for target in read_targets(name)])
    RESULTS.mkdir(parents=True, exist_ok=True)
    summary = RESULTS / "README.md"
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    summary.write_text(
        f"# Benchmark results\n\n`make bench`, {stamp}, on {os.cpu_count()} CPUs.\n\n"
        f"## Targets\n\nWhat each issue asked for, as measured in this run.\n\n{targets}\n"
        + "\n".join(sections)
    )
    print(f"\n{targets}", flush=True)
    print(f"\nbench: all results in {summary}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
