"""The load history the loader keeps next to a company's database versions (``activities.duck.load_history``):
every load that took effect is one line (mode, counts, source, size, who), none for a failed load, newest first,
bounded, readable after a torn line, and complete when loads from several processes race."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import replace

import pytest

from activities.duck import load_history
from activities.duck.errors import LoadFailed
from activities.duck.versions import company_dir, load, read_current


def test_each_load_is_recorded_with_its_mode_counts_source_and_author(tmp_path):
    data = tmp_path / "data"
    first = tmp_path / "metas.csv"
    first.write_text("regiao,meta\nSul,1\nNorte,2\nSudeste,3\n")
    more = tmp_path / "mais.csv"
    more.write_text("regiao,meta\nOeste,4\nLeste,5\n")

    created = load(data, "acme", "metas", first, by="ana", via="cli")
    appended = load(data, "acme", "metas", more, replace=False, name="upload de maio.csv", by="rui", via="console")
    replaced = load(data, "acme", "metas", more)
    with pytest.raises(LoadFailed):
        load(data, "acme", "metas", tmp_path / "missing.csv")
    broken = tmp_path / "broken.csv"
    broken.write_text("outra,coluna\n1,2\n")
    with pytest.raises(LoadFailed):
        load(data, "acme", "metas", broken, replace=False)  # the columns do not match: nothing switched

    assert (created.mode, created.rows, created.table_rows) == ("create", 3, 3)
    assert (appended.mode, appended.rows, appended.table_rows) == ("append", 2, 5)
    assert (replaced.mode, replaced.rows, replaced.table_rows) == ("replace", 2, 2)
    assert created.file == "metas.csv" and appended.file == "upload de maio.csv"
    assert created.bytes == first.stat().st_size and appended.bytes == more.stat().st_size
    assert created.db_bytes > 0 and created.ms >= 0 and created.at.endswith("Z")

    cdir = company_dir(data.resolve(), "acme")
    history = load_history.read(cdir)
    assert [h["version"] for h in history] == [replaced.version, appended.version, created.version]
    assert history[0]["version"] == read_current(cdir)
    assert [(h["mode"], h["rows"], h["by"], h["via"]) for h in history] == [
        ("replace", 2, None, None), ("append", 2, "rui", "console"), ("create", 3, "ana", "cli")]
    assert load_history.read(cdir, limit=1) == history[:1]
    assert load_history.read(company_dir(data.resolve(), "other")) == []


def test_the_history_is_bounded_and_survives_a_torn_line(tmp_path):
    cdir = tmp_path / "acme"
    cdir.mkdir()
    record = load_history.LoadRecord(version="db-000001.duckdb", table="t", mode="create", rows=1, table_rows=1,
                                     file="t.csv", bytes=4, db_bytes=100, at="2026-01-01T00:00:00Z", ms=1)
    for i in range(1, 8):
        load_history.append(cdir, replace(record, version=f"db-{i:06d}.duckdb"), keep=5)
    assert [h["version"] for h in load_history.read(cdir)] == [f"db-{i:06d}.duckdb" for i in range(7, 2, -1)]
    assert len((cdir / load_history.FILE).read_text().splitlines()) == 5
    assert not list(cdir.glob("*.tmp-*"))

    with (cdir / load_history.FILE).open("a") as f:
        f.write('{"version": "db-000008.duckdb"}\n')  # not a line the loader writes
        f.write('{"version": "db-0000')  # a crash in the middle of a line
    assert load_history.read(cdir)[0]["version"] == "db-000007.duckdb"
    load_history.append(cdir, replace(record, version="db-000009.duckdb"), keep=5)
    assert [h["version"] for h in load_history.read(cdir, limit=2)] == ["db-000009.duckdb", "db-000007.duckdb"]


def test_loads_racing_from_several_processes_are_all_recorded_in_version_order(tmp_path):
    data = tmp_path / "data"
    sources = []
    for i in range(4):
        path = tmp_path / f"part{i}.csv"
        path.write_text("n\n" + "".join(f"{i}\n" for _ in range(i + 1)))
        sources.append(path)
    script = ("import sys; from pathlib import Path; from activities.duck.versions import load; "
              "load(Path(sys.argv[1]), 'acme', 'parts', Path(sys.argv[2]), replace=False, via='p' + sys.argv[3])")
    procs = [subprocess.Popen([sys.executable, "-c", script, str(data), str(p), str(i)])
             for i, p in enumerate(sources)]
    assert [p.wait(timeout=120) for p in procs] == [0, 0, 0, 0]

    history = load_history.read(company_dir(data.resolve(), "acme"))
    assert [h["version"] for h in history] == [f"db-{v:06d}.duckdb" for v in (4, 3, 2, 1)]
    assert sorted(h["via"] for h in history) == ["p0", "p1", "p2", "p3"]
    assert {h["via"]: h["rows"] for h in history} == {"p0": 1, "p1": 2, "p2": 3, "p3": 4}
    assert history[0]["table_rows"] == 10 and history[-1]["mode"] == "create"
    assert [h["table_rows"] for h in reversed(history)] == sorted(h["table_rows"] for h in history)


def test_a_history_that_cannot_be_written_does_not_fail_a_load_that_took_effect(tmp_path, caplog):
    data = tmp_path / "data"
    csv = tmp_path / "t.csv"
    csv.write_text("a\n1\n2\n")
    cdir = company_dir(data.resolve(), "acme")
    (cdir / load_history.FILE).mkdir()  # opening it for writing fails
    done = load(data, "acme", "t", csv)
    assert done.rows == 2 and read_current(cdir) == done.version
    assert "not recorded in the history" in caplog.text
