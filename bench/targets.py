"""The targets the issues set, as each benchmark measured them, for one summary table.

Each ``bench/NAME/run.py`` ends by calling :func:`write_targets` with one :class:`Target` per
figure an issue asked for; ``make bench`` (``bench/run_all.py``) then reads every
``bench/results/NAME.targets.json`` and puts one Markdown table at the top of
``bench/results/README.md``, so a reader sees at once which targets hold and which do not.
A benchmark that failed or was not run simply has no rows.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from bench.support import RESULTS, markdown_table

__all__ = [
    "Target",
    "forget_targets",
    "ratio_target",
    "read_targets",
    "summary_table",
    "write_targets",
]


@dataclass(frozen=True)
class Target:
    """One figure an issue asked for: what was measured, against what, and the verdict."""

    issue: int
    benchmark: str
    measure: str  # e.g. "embedded: send req/s vs GET /healthz"
    result: str  # e.g. "0.31x (152 vs 490 req/s)"
    wanted: str  # e.g. "≥ 0.3x"
    met: bool | None  # None: not measured in this run (a peer missing, a run failed)


def ratio_target(
    issue: int,
    benchmark: str,
    measure: str,
    value: float | None,
    baseline: float | None,
    wanted: float,
    unit: str,
) -> Target:
    """A "value is at least ``wanted`` times the baseline" target, both rates in ``unit``."""
    if value is None or not baseline:
        return Target(issue, benchmark, measure, "not measured", f"≥ {wanted}x", None)
    got = value / baseline
    result = f"{got:.2f}x ({value:.0f} vs {baseline:.0f} {unit})"
    return Target(issue, benchmark, measure, result, f"≥ {wanted}x", got >= wanted)


def _path(benchmark: str) -> Path:
    return RESULTS / f"{benchmark}.targets.json"


def write_targets(benchmark: str, targets: Sequence[Target]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = _path(benchmark)
    path.write_text(json.dumps([asdict(target) for target in targets], indent=1))
    return path


def read_targets(benchmark: str) -> list[Target]:
    path = _path(benchmark)
    if not path.exists():
        return []
    return [Target(**row) for row in json.loads(path.read_text())]


def forget_targets(benchmark: str) -> None:
    """Drop an earlier run's figures, so a failed run cannot show stale verdicts."""
    _path(benchmark).unlink(missing_ok=True)


def summary_table(targets: Sequence[Target]) -> str:
    verdict = {True: "met", False: "**missed**", None: "not measured"}
    rows = [
        [f"#{t.issue}", t.benchmark, t.measure, t.result, t.wanted, verdict[t.met]]
        for t in sorted(targets, key=lambda t: (t.issue, t.benchmark))
    ]
    return markdown_table(["issue", "bench", "measure", "result", "target", "verdict"], rows, 3)
