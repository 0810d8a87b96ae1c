"""The harness's report over the committed full run (bench/results/latest.json): every comparison renders,
every target is decided, and the durable baseline's rows are the ratios of the measured numbers."""

from __future__ import annotations

import json
from pathlib import Path

from bench import report

LATEST = Path(__file__).resolve().parent.parent / "bench" / "results" / "latest.json"


def test_the_committed_run_renders_every_comparison_with_its_targets():
    results = json.loads(LATEST.read_text())
    rows = report.build_rows(results)
    scenarios = {r.scenario.split()[0] for r in rows}
    assert scenarios == {"1", "1b", "2", "3", "4", "5", "6", "7"}
    targets = report.targets(rows)
    assert len(targets) >= 12 and all(t["pass"] in (True, False) for t in targets)
    assert report.targets(rows) == results["targets"]  # the file holds what its numbers give

    q = results["scenarios"]["queries"]
    medium = {side: q["medium"]["throughput"][side]["req_per_s"] for side in ("ours", "bare", "durable")}
    by_metric = {r.metric: r for r in rows if r.scenario.startswith("1b")}
    vs = by_metric["medium req/s c16: ours/bare vs durable/bare"]
    assert (vs.ours, vs.baseline) == (round(medium["ours"] / medium["bare"], 3),
                                      round(medium["durable"] / medium["bare"], 3))
    cpu = q["cpu_ms_per_request"]["durable"]
    assert cpu["total"] == round(cpu["durable"] + cpu["temporal"], 2)
    assert "ours" in report.table(rows) and "durable" in report.table(rows)
