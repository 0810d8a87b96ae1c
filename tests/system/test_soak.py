"""The soak harness (bench/soak.py): its receiver tells good deliveries from bad ones, its trend arithmetic is
right, and a 20-second soak of the whole stack passes (``make soak`` runs it for 5 minutes)."""

from __future__ import annotations

import json
import ssl
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from bench.receiver import make_pki
from bench.soak import CallbackReceiver, mix_sequence, slope_per_minute, trend, verdict
from dataapi.callbacks.webhooks import new_secret, webhook_headers

ROOT = Path(__file__).resolve().parents[2]


def test_the_mix_is_spread_evenly():
    seq = mix_sequence({"a": 8, "b": 4, "c": 3, "d": 2, "e": 1})
    assert len(seq) == 18 and {k: seq.count(k) for k in "abcde"} == {"a": 8, "b": 4, "c": 3, "d": 2, "e": 1}
    assert all(x != y or x == "a" for x, y in zip(seq, seq[1:], strict=False))  # only the heaviest ever repeats


def test_slope_and_verdict():
    assert slope_per_minute([(0, 100), (30, 101), (60, 102)]) == pytest.approx(2.0)
    flat = [{"t": t, "api": {"rss_mb": 150 + (t % 10) / 10}} for t in range(0, 300, 5)]
    growing = [{"t": t, "api": {"rss_mb": 150 + t / 30}} for t in range(0, 300, 5)]  # 2 MB/min
    assert trend(flat, "api", 300, 1.0, judged=True)["verdict"] == "no upward trend"
    rising = trend(growing, "api", 300, 1.0, judged=True)
    assert rising["verdict"] == "UPWARD TREND" and rising["second_half_slope_mb_per_min"] == pytest.approx(2.0)
    assert rising["first_to_last_minute_mb"] == pytest.approx(8.0, abs=0.5)
    assert trend(growing, "api", 300, 1.0, judged=False)["verdict"] == "not judged"
    assert rising["samples"] == len(growing)
    results = {"fatal": None, "kinds": {}, "callbacks": {"problems": {}}, "rss_trend": {"api": rising}}
    assert verdict(results) and "trends upward" in verdict(results)[0]
    healthy = {"fatal": None, "kinds": {}, "callbacks": {"problems": {}}, "rss_trend": {}}
    cache = {"bound_bytes": 1000, "samples": 5, "max_bytes": 1000}
    assert verdict({**healthy, "result_cache": cache}) == []
    assert "over its bound" in verdict({**healthy, "result_cache": {**cache, "max_bytes": 1001}})[0]
    assert "never read" in verdict({**healthy, "result_cache": {**cache, "samples": 0}})[0]


def test_the_receiver_checks_signatures_and_keeps_every_delivery(tmp_path):
    pki = tmp_path / "pki"
    make_pki(pki)
    secret = new_secret()
    trust = ssl.create_default_context(cafile=pki / "ca.pem")
    with CallbackReceiver(pki, secret) as rx, httpx.Client(verify=trust) as client:
        body = json.dumps({"job_id": "j1", "status": "completed"}).encode()
        now = int(time.time())
        for signed_with, msg_id in ((secret, "msg_1"), (secret, "msg_1"), (new_secret(), "msg_2")):
            r = client.post(rx.url, content=body, headers=webhook_headers(msg_id, now, body, [signed_with]))
            assert r.status_code == 204
        assert client.post(rx.url, content=b"not json").status_code == 204
    got = rx.deliveries["j1"]
    assert [(d.webhook_id, d.signature_ok, d.status) for d in got] == [
        ("msg_1", True, "completed"), ("msg_1", True, "completed"), ("msg_2", False, "completed")]
    assert rx.unreadable == 1


@pytest.mark.slow
def test_a_short_soak_passes(tmp_path):
    out = tmp_path / "soak.json"
    proc = subprocess.run([sys.executable, "-m", "bench.soak", "--minutes", "0.33", "--rate", "3", "--out", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=180, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    results = json.loads(out.read_text())
    assert results["passed"] and not results["failures"]
    kinds = results["kinds"]
    assert all(kinds[k]["ok"] > 0 for k in ("sync", "cached", "async_poll", "callback", "upload")), kinds
    cache = results["result_cache"]
    assert cache["samples"] >= 10 and 0 < cache["max_bytes"] <= cache["bound_bytes"] and cache["misses"] > 0
    assert sum(kinds["bad"]["expected_errors"].values()) == kinds["bad"]["count"] > 0
    cb = results["callbacks"]
    assert cb["jobs"] == cb["exactly_once"] == cb["deliveries_received"] > 0
    assert "samples" not in results  # summarised below, never committed raw
    assert results["rss_trend"]["api"]["samples"] >= 10 and results["rss_trend"]["api"]["start_mb"] > 0
