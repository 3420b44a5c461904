"""The summary table `make bench` opens with: every target an issue set, with its verdict."""

from __future__ import annotations

from pathlib import Path

import pytest

import bench.targets as targets
from bench.targets import Target, ratio_target


@pytest.fixture(autouse=True)
def results_in(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr(targets, "RESULTS", tmp_path)
    return tmp_path


def test_a_ratio_below_its_target_is_missed_and_above_it_met() -> None:
    slow = ratio_target(5, "api", "send vs trivial", 100.0, 1000.0, 0.3, "req/s")
    fast = ratio_target(5, "api", "list vs trivial", 600.0, 1000.0, 0.5, "req/s")
    assert (slow.met, slow.result) == (False, "0.10x (100 vs 1000 req/s)")
    assert (fast.met, fast.result) == (True, "0.60x (600 vs 1000 req/s)")


def test_a_missing_baseline_is_not_measured_rather_than_a_verdict() -> None:
    target = ratio_target(4, "outbound", "vs Postfix", 200.0, None, 1.0, "msg/s")
    assert (target.met, target.result) == (None, "not measured")


def test_targets_survive_the_round_trip_and_a_failed_run_leaves_none() -> None:
    written = [Target(6, "search", "sqlite: words p95", "4.0 ms", "< 50 ms", True)]
    targets.write_targets("search", written)
    assert targets.read_targets("search") == written
    targets.forget_targets("search")
    assert targets.read_targets("search") == []


def test_the_summary_lists_every_target_by_issue_with_its_verdict() -> None:
    table = targets.summary_table(
        [
            Target(7, "realtime", "fan-out p99", "0.4 s", "< 1 s", True),
            Target(4, "outbound", "vs Postfix", "0.50x (100 vs 200 msg/s)", "≥ 1.0x", False),
            Target(3, "inbound", "vs sink", "not measured", "≥ 0.8x", None),
        ]
    )
    lines = table.splitlines()
    assert lines[0] == "| issue | bench | measure | result | target | verdict |"
    assert [line.split(" | ")[0] for line in lines[2:]] == ["| #3", "| #4", "| #7"]
    assert lines[3].endswith("| **missed** |")
    assert lines[2].endswith("| not measured |") and lines[4].endswith("| met |")
