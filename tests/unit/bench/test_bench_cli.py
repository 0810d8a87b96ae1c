"""The benchmark's command line: which measurements a selection runs, and settings passed to our processes
only when named."""

from __future__ import annotations

import pytest

from bench import cli
from bench.stack import env
from dataapi.settings import Settings


def test_a_selection_runs_the_sync_measurement_once_with_every_baseline_it_names():
    assert list(cli._runs(None, ["async"])) == ["async"]
    assert list(cli._runs(None, ["durable", "wide"])) == ["sync", "wide"]  # 1b is a side of the sync measurement
    assert list(cli._runs(None, ["cached"])) == ["cached"]
    assert list(cli._runs(None, list(cli.COMPARISONS))) == ["sync", "cached", "async", "wide", "callback", "upload",
                                                            "export"]


def test_settings_reach_our_processes_only_through_env(monkeypatch, tmp_path):
    args = cli.parse_args(["--only", "sync", "--env", "DATAAPI_SYNC_FAST_LANE=false"])
    assert args.only == ["sync"] and args.env == {"DATAAPI_SYNC_FAST_LANE": "false"}
    with pytest.raises(SystemExit):
        cli.parse_args(["--env", "SYNC_FAST_LANE=false"])
    monkeypatch.setenv("DATAAPI_DATABASE_URL", "postgresql://elsewhere/db")  # a developer's own setting
    out = env(Settings(var_dir=tmp_path), tmp_path / "ca.pem", args.env)
    assert out["DATAAPI_SYNC_FAST_LANE"] == "false" and "DATAAPI_DATABASE_URL" not in out
    assert out["DATAAPI_VAR_DIR"] == str(tmp_path)
