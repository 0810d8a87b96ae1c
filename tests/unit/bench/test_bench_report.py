"""The harness's report over the committed full run (bench/results/bench.json): every comparison renders,
every target is decided, the durable baseline's rows are the ratios of the measured numbers, and the file is
the small summary it is meant to be."""

from __future__ import annotations

import json
from pathlib import Path

from bench import report

RESULTS = Path(__file__).resolve().parents[3] / "bench" / "results"


def test_the_committed_run_renders_every_comparison_with_its_targets():
    results = json.loads((RESULTS / "bench.json").read_text())
    rows = report.build_rows(results)
    scenarios = {r.scenario.split()[0] for r in rows}
    assert {"1", "1b", "2", "3", "4", "5", "6"} <= scenarios <= {"1", "1b", "2", "3", "4", "5", "6", "7", "8"}
    targets = report.targets(rows)
    assert len(targets) >= 11 and all(t["pass"] in (True, False) for t in targets)
    assert report.targets(rows) == results["targets"]  # the file holds what its numbers give

    q = results["scenarios"]["sync"]
    medium = q["medium"]["c16_req_s"]
    by_metric = {r.metric: r for r in rows if r.scenario.startswith("1b")}
    vs = by_metric["medium req/s c16: ours/bare vs durable/bare"]
    assert (vs.ours, vs.baseline) == (round(medium["ours"] / medium["bare"], 3),
                                      round(medium["durable"] / medium["bare"], 3))
    cpu = q["cpu_ms"]["durable"]
    assert cpu["total"] == round(cpu["durable"] + cpu["temporal"], 2)
    assert "ours" in report.table(rows) and "durable" in report.table(rows)


def test_async_rows_take_the_durable_jobs_as_their_baseline():
    summary = {"submitted": 10, "completed": 10, "failed": 0, "unfinished": 0, "submit_per_s": 50.0,
               "completed_per_s": 40.0, "submit_to_completed_ms": {"p50": 200.0, "p95": 300.0, "p99": 350.0}}
    durable = summary | {"completed_per_s": 80.0, "unfinished": 2}
    rows = report.build_rows({"scenarios": {"async": {"ours": summary, "durable": durable}}})
    jobs = rows[0]
    assert (jobs.ours, jobs.baseline, jobs.passed) == (40.0, 80.0, False) and "baseline durable" in jobs.metric
    assert any("durable: failed 0, unfinished 2" in r.metric for r in rows)


def test_committed_results_are_small_summaries():
    for name in ("bench.json", "soak.json", "authcheck.json"):
        text = (RESULTS / name).read_text()
        assert len(text) < 10_000 and len(text.splitlines()) < 250, name
        assert '"samples": [' not in text  # summaries, never raw sample arrays
        assert json.loads(text) == json.loads(report.dumps(json.loads(text)))


def test_dumps_keeps_inner_values_and_scalar_lists_on_one_line():
    value = {"meta": {"load": [1.0, 2.5], "plan": {"rows": 10}}, "rows": [{"a": 1}, {"b": [2]}]}
    text = report.dumps(value, depth=2)
    assert json.loads(text) == value
    assert ' "meta": {\n  "load": [1.0, 2.5],\n  "plan": {"rows": 10}\n }' in text
    assert '  {"a": 1},\n  {"b": [2]}' in text


def test_cached_rows_judge_the_result_cache_against_bare_and_datasette():
    def side(cached, bare, datasette):
        return {"cached": cached, "bare": bare, "datasette": datasette}

    k = {"point": {"c1_ms": side({"p50": 1.5, "p99": 3.0}, {"p50": 1.0, "p99": 2.0}, {"p50": 0.9, "p99": 3.0}),
                   "c16_req_s": side(1300.0, 1500.0, 1400.0)},
         "medium": {"c1_ms": side({"p50": 1.6, "p99": 3.0}, {"p50": 10.0, "p99": 16.0}, {"p50": 750.0, "p99": 860.0}),
                    "c16_req_s": side(1000.0, 110.0, 2.3)},
         "cache": {"bytes": 9000, "max_bytes": 67108864, "hits": 10, "misses": 2, "evictions": 0}}
    rows = {r.metric: r for r in report.build_rows({"scenarios": {"cached": k}}) if r.target}
    assert rows["point p50 c1 (ms) vs bare"].passed is True  # +0.5 ms
    assert rows["point req/s c16 vs bare"].passed is True  # 0.87x >= 0.8x
    assert rows["point req/s c16 vs Datasette"].passed is False  # 1300 < 1400
    assert rows["medium req/s c16 vs bare"].passed is True  # 9x >= 2x
    bound = next(r for m, r in rows.items() if m.startswith("cache bytes"))
    assert (bound.ours, bound.baseline, bound.passed) == (9000, 67108864, True)
    k["cache"]["bytes"] = 67108865
    assert not next(r for r in report.build_rows({"scenarios": {"cached": k}})
                    if r.metric.startswith("cache bytes")).passed
