"""`python -m benchmarks --quick` never touches a full-size record (issue 17)."""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import pytest

import benchmarks.__main__ as runner
from benchmarks import common


def test_quick_run_writes_only_quick_records(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    full = tmp_path / "fake_full.json"
    full.write_text(json.dumps({"name": "fake_full", "untouched": True}))
    before = full.read_bytes()
    mod = types.ModuleType("benchmarks.bench_fake_full")
    # a module that forgets the _quick convention: the runner must apply it
    mod.run = lambda quick=False: [common.make_result("fake_full", 1.0, 2.0, True)]
    monkeypatch.setitem(sys.modules, "benchmarks.bench_fake_full", mod)
    monkeypatch.setattr(common, "RESULTS_DIR", tmp_path)
    monkeypatch.setattr(runner, "discover", lambda: ["fake_full"])
    assert runner.main(["--quick"]) == 0
    assert full.read_bytes() == before  # the full-size record is byte-identical
    quick = json.loads((tmp_path / "fake_full_quick.json").read_text())
    assert quick["quick"] is True and quick["name"] == "fake_full_quick"
    assert sorted(p.name for p in tmp_path.glob("*.json")) == ["fake_full.json", "fake_full_quick.json"]
    # and a full run does write the full record
    assert runner.main([]) == 0
    assert json.loads(full.read_text())["quick"] is False


def test_save_result_never_writes_a_quick_record_under_a_full_name(tmp_path: Path) -> None:
    rec = common.make_result("fake_mod", 1.0, 2.0, True, quick=True)  # e.g. `python -m benchmarks.bench_x --quick`
    path = common.save_result(rec, tmp_path)
    assert path.name == "fake_mod_quick.json" and not (tmp_path / "fake_mod.json").exists()


def test_save_records_marks_quick_runs_and_writes_each_record(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(common, "RESULTS_DIR", tmp_path)
    recs = [common.make_result("fake_a", 1.0, 2.0, True), common.make_result("fake_b", 1.0, 3.0, True)]
    assert common.save_records(recs, quick=True) is recs
    assert sorted(p.name for p in tmp_path.glob("*.json")) == ["fake_a_quick.json", "fake_b_quick.json"]
    common.save_records([common.make_result("fake_a", 1.0, 2.0, True)], quick=False)
    assert json.loads((tmp_path / "fake_a.json").read_text())["quick"] is False
