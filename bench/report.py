"""The run's output: targets (PASS/FAIL, never failing the run), the printed table and the committed JSON."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path


@dataclass
class Row:
    scenario: str
    metric: str
    ours: float | None
    baseline: float | None = None
    target: str = ""
    passed: bool | None = None  # None: no target on this row

    @property
    def ratio(self) -> float | None:
        if self.ours is None or not self.baseline:
            return None
        return self.ours / self.baseline


def _get(d: dict | None, *path):
    for key in path:
        if not isinstance(d, dict) or key not in d:
            return None
        d = d[key]
    return d


def _sub(a, b):
    return None if a is None or b is None else a - b


def _check(value, ok) -> bool | None:
    return None if value is None else bool(ok(value))


def _query_rows(q: dict, side: str, label: str, concurrency: int) -> list[Row]:
    """Comparisons 1, 1b and 2: ours against ``side`` on both queries, with their targets."""
    rows = []
    for query in ("point", "medium"):
        c1 = _get(q, query, "c1_ms") or {}
        if side not in c1:
            continue
        for p in ("p50", "p95", "p99"):
            o, b = _get(c1, "ours", p), c1[side].get(p)
            target, passed, over = "", None, _sub(o, b)
            if side == "durable" and p == "p50":  # uncached: within 3 ms of Temporal's own floor
                target, passed = f"<= durable + 3 ms ({_fmt(over, '+')})", _check(over, lambda v: v <= 3)
            if side == "datasette" and query == "medium" and p == "p50":
                target, passed = "faster than Datasette", _check(over, lambda v: v < 0)
            rows.append(Row(label, f"{query} {p} c1 (ms)", o, b, target, passed))
        o, b = _get(q, query, "c16_req_s", "ours"), _get(q, query, "c16_req_s", side)
        target, passed = "", None
        if side == "durable":
            target, passed = ">= 0.9x durable", _check(_ratio(o, b), lambda v: v >= 0.9)
        if query == "medium" and side == "datasette":
            target, passed = "more than Datasette", _check(_sub(o, b), lambda v: v > 0)
        rows.append(Row(label, f"{query} req/s c{concurrency}", o, b, target, passed))
        errors = {k: v for k, v in (_get(q, query, "c16_errors") or {}).items() if k in ("ours", side)}
        if errors:
            rows.append(Row(label, f"{query} errors c{concurrency} {errors}", None))
        cpu = _get(q, query, "c16_cpu_ms") or {}
        if side in cpu and "ours" in cpu:
            rows.append(Row(label, f"{query} CPU ms per request c{concurrency}", cpu["ours"]["total"],
                            cpu[side]["total"]))
        harness = [_get(q, query, "c16_harness_cpu_ms", k) for k in ("ours", side)]
        if None not in harness:  # the load generator shares the CPUs with both sides
            rows.append(Row(label, f"  {query} load generator's CPU ms per request c{concurrency}", *harness))
    return rows


def _ratio(a, b) -> float | None:
    return None if a is None or not b else a / b


def _cached_rows(k: dict, concurrency: int) -> list[Row]:
    """Comparison 7: answers from the result cache against the bare handler and Datasette computing them."""
    label, rows = "7 cached vs bare/Datasette", []
    for query in ("point", "medium"):
        c1, c16 = _get(k, query, "c1_ms") or {}, _get(k, query, "c16_req_s") or {}
        if "cached" not in c1:
            continue
        o, b = _get(c1, "cached", "p50"), _get(c1, "bare", "p50")
        over = _sub(o, b)
        target, passed = ("", None) if query != "point" else (
            f"<= bare + 1 ms ({_fmt(over, '+')})", _check(over, lambda v: v <= 1))
        rows.append(Row(label, f"{query} p50 c1 (ms) vs bare", o, b, target, passed))
        rows.append(Row(label, f"{query} p99 c1 (ms) vs bare", _get(c1, "cached", "p99"), _get(c1, "bare", "p99")))
        o, b, d = c16.get("cached"), c16.get("bare"), c16.get("datasette")
        need = 0.8 if query == "point" else 2.0
        rows.append(Row(label, f"{query} req/s c{concurrency} vs bare", o, b, f">= {need:g}x bare",
                        _check(_ratio(o, b), lambda v, n=need: v >= n)))
        if d is not None:
            target, passed = ("", None) if query != "point" else (">= Datasette", _check(_ratio(o, d),
                                                                                        lambda v: v >= 1))
            rows.append(Row(label, f"{query} req/s c{concurrency} vs Datasette", o, d, target, passed))
        errors = _get(k, query, "c16_errors")
        if errors:
            rows.append(Row(label, f"{query} errors c{concurrency} {errors}", None))
    cache = k.get("cache") or {}
    if "bytes" in cache:
        rows.append(Row(label, f"cache bytes (hits {cache.get('hits')}, misses {cache.get('misses')}, "
                               f"evictions {cache.get('evictions')}); baseline: the bound", cache["bytes"],
                        cache.get("max_bytes"), "<= its setting",
                        _check(cache["bytes"], lambda v: v <= (cache.get("max_bytes") or 0))))
    return rows


def _durable_rows(q: dict, label: str, concurrency: int) -> list[Row]:
    """The durable handler against the plain one (what Temporal's least costs on these cores), and ours/bare
    beside durable/bare: the part of our gap to the bare handler that is our own code."""
    rows = []
    for query, metric, key, field in (("point", "p50 c1 (ms)", "c1_ms", "p50"),
                                      ("medium", f"req/s c{concurrency}", "c16_req_s", None)):
        o, d, b = ((_get(q, query, key, side, field) if field else _get(q, query, key, side))
                   for side in ("ours", "durable", "bare"))
        if d is not None and b:
            rows.append(Row(label, f"{query} {metric}: durable vs bare", d, b))
            if o is not None:
                rows.append(Row(label, f"{query} {metric}: ours/bare vs durable/bare", round(o / b, 3),
                                round(d / b, 3)))
    return rows


def build_rows(results: dict) -> list[Row]:
    s, rows = results.get("scenarios", {}), []
    c = _get(results, "meta", "plan", "concurrency") or 16
    q = s.get("sync") or {}
    cpu = q.get("cpu_ms") or {}
    for side, label in (("bare", "1 sync vs bare"), ("durable", "1b sync vs durable"),
                        ("datasette", "2 sync vs Datasette")):
        rows += _query_rows(q, side, label, c)
        if side in cpu and "ours" in cpu:
            o = cpu["ours"]
            rows.append(Row(label, "CPU ms per request (all queries)", o["total"], cpu[side]["total"]))
            if side == min(set(cpu) - {"ours"}):  # once, under the first comparison that ran
                rows.append(Row(label, f"  ours = API {o['api']} + worker {o['worker']} + Temporal {o['temporal']}",
                                None))
            if side == "durable":
                d = cpu["durable"]
                rows.append(Row(label, f"  durable = handler {d['durable']} + Temporal {d['temporal']}", None))
        if side == "durable":
            rows += _durable_rows(q, label, c)

    k = s.get("cached")
    if k and "error" not in k:
        rows += _cached_rows(k, c)

    a = s.get("async")
    if a and "ours" in a:
        label, o, d = "3 async", a["ours"], a.get("durable") or {}
        rows.append(Row(label, f"completed jobs/s ({o['submitted']} submitted{'; baseline durable' if d else ''})",
                        o["completed_per_s"], d.get("completed_per_s"), ">= 100 jobs/s",
                        _check(o["completed_per_s"], lambda v: v >= 100)))
        rows.append(Row(label, f"submissions/s (c{c})", o["submit_per_s"], d.get("submit_per_s")))
        for p in ("p50", "p95"):
            rows.append(Row(label, f"submit->completed {p} (ms)", o["submit_to_completed_ms"][p],
                            _get(d, "submit_to_completed_ms", p)))
        for side, r in a.items():
            if isinstance(r, dict) and (r.get("failed") or r.get("unfinished")):
                rows.append(Row(label, f"{side}: failed {r['failed']}, unfinished {r['unfinished']}", None))

    w = s.get("wide")
    if w and "c1_ms" in w:
        label = "4 10k rows"
        o, b = w["c1_ms"]["ours"]["p50"], w["c1_ms"]["bare"]["p50"]
        rows.append(Row(label, "p50 c1 (ms)", o, b, "<= 2x bare", _check(o / b if b else None, lambda v: v <= 2)))
        rows.append(Row(label, "p99 c1 (ms)", w["c1_ms"]["ours"]["p99"], w["c1_ms"]["bare"]["p99"]))
        rows.append(Row(label, f"req/s c{c}", w["c16_req_s"]["ours"], w["c16_req_s"]["bare"]))
        for conc, growth in w["rss_growth_mb"].items():
            rows.append(Row(label, f"API RSS growth {conc} (MB; baseline: bare's)", growth["ours"], growth["bare"],
                            "<= 100 MB", _check(growth["ours"], lambda v: v <= 100)))
        rows.append(Row(label, "worker RSS growth (MB)", w["worker_rss_growth_mb"]))

    cb = s.get("callback")
    if cb and "jobs" in cb:
        label = "5 callback"
        rows.append(Row(label, f"completed_at->receipt p50 (ms, {cb['jobs']} jobs)",
                        cb["completed_to_receipt_ms"]["p50"]))
        rows.append(Row(label, "polling sees completed->receipt p50 (ms)", cb["polled_to_receipt_ms"]["p50"]))
        if cb["missing"]:
            rows.append(Row(label, f"callbacks missing: {cb['missing']}", None))

    u = s.get("upload")
    if u and "error" not in u:
        label = "6 Jobs API upload"
        sizes = sorted((k for k in u if isinstance(u[k], dict)), key=lambda k: u[k]["bytes"])
        for key in sizes:
            rows.append(Row(label, f"{key} to completed (s)", u[key]["to_completed_s"]))
            rows.append(Row(label, f"{key} API RSS growth (MB)", u[key]["api_rss_growth_mb"]))
            if not u[key]["result_ok"]:
                rows.append(Row(label, f"{key} result wrong", None))
        if len(sizes) > 1:
            small, big = u[sizes[0]], u[sizes[-1]]
            allowed = round(0.25 * (big["bytes"] - small["bytes"]) / 1e6)
            delta = big["api_rss_growth_mb"] - small["api_rss_growth_mb"]
            rows.append(Row(label, f"API RSS growth {sizes[-1]} minus {sizes[0]} (MB)", round(delta, 1), None,
                            f"<= {allowed} MB (flat)", delta <= allowed))

    from bench.export import report_rows  # bench.export builds Rows of this module
    rows += report_rows(s.get("export"))
    return rows


def _fmt(v: float | None, sign: str = "") -> str:
    if v is None:
        return "-"
    if sign and v >= 0:
        return f"+{v:.1f}" if abs(v) < 1000 else f"+{v:,.0f}"
    return f"{v:.2f}" if abs(v) < 10 else f"{v:.1f}" if abs(v) < 1000 else f"{v:,.0f}"


def table(rows: list[Row]) -> str:
    head = ("scenario", "metric", "ours", "baseline", "ratio", "target", "result")
    lines = [(r.scenario, r.metric, _fmt(r.ours), _fmt(r.baseline), f"{r.ratio:.2f}x" if r.ratio else "-",
              r.target or "-", {True: "PASS", False: "FAIL", None: ""}[r.passed] if r.target else "")
             for r in rows]
    widths = [max(len(x[i]) for x in [head, *lines]) for i in range(len(head))]
    align = ["<", "<", ">", ">", ">", "<", "<"]

    def fmt(cells):
        return "  ".join(f"{c:{a}{w}}" for c, a, w in zip(cells, align, widths, strict=True)).rstrip()

    return "\n".join([fmt(head), fmt(["-" * w for w in widths]), *map(fmt, lines)])


def targets(rows: list[Row]) -> list[dict]:
    return [{"scenario": r.scenario, "metric": r.metric, "target": r.target, "ours": r.ours,
             "baseline": r.baseline, "pass": r.passed} for r in rows if r.target]


def dumps(value, depth: int = 3, indent: str = "") -> str:
    """JSON with the outer ``depth`` levels of objects and lists one entry a line, the rest on that line:
    small files whose diffs read by figure."""
    flat = isinstance(value, list) and not any(isinstance(v, dict | list) for v in value)
    if depth <= 0 or flat or not isinstance(value, dict | list) or not value:
        return json.dumps(value, separators=(", ", ": "))
    inner = indent + " "
    if isinstance(value, list):
        items = [inner + dumps(v, depth - 1, inner) for v in value]
        return "[\n" + ",\n".join(items) + f"\n{indent}]"
    items = [f"{inner}{json.dumps(k)}: {dumps(v, depth - 1, inner)}" for k, v in value.items()]
    return "{\n" + ",\n".join(items) + f"\n{indent}}}"


def write_json(results: dict, path: Path, depth: int = 3) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(dumps(results, depth) + "\n")
