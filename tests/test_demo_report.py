"""Stage cache (skip finished stages, rerun unfinished/changed ones) and the two-format report."""
from __future__ import annotations

import json

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pytest

from toto_robot.demo.cache import StageCache
from toto_robot.demo.report import Report


def test_finished_stage_is_skipped_and_changed_config_reruns(tmp_path):
    cache = StageCache(tmp_path)
    calls = []

    def work(d):
        calls.append(d)
        (d / "out.txt").write_text("x")
        return {"value": len(calls)}

    first = cache.run("tokenize", {"vocab": 512}, work)
    again = cache.run("tokenize", {"vocab": 512}, work)
    other = cache.run("tokenize", {"vocab": 1024}, work)
    assert (first.cached, again.cached, other.cached) == (False, True, False)
    assert again.result == {"value": 1} and other.result == {"value": 2}
    assert again.dir == first.dir != other.dir
    assert json.loads((first.dir / "config.json").read_text()) == {"vocab": 512}


def test_stage_that_dies_leaves_no_marker_and_runs_again(tmp_path):
    cache = StageCache(tmp_path)

    def dies(d):
        (d / "partial").write_text("half")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        cache.run("pretrain", {"steps": 3}, dies)
    assert not cache.is_done("pretrain", {"steps": 3})
    res = cache.run("pretrain", {"steps": 3}, lambda d: {"resumed_from_partial": (d / "partial").exists()})
    assert res.result == {"resumed_from_partial": True} and not res.cached


def test_report_writes_markdown_and_self_contained_html(tmp_path):
    fig_path = tmp_path / "figs" / "curve.png"
    fig_path.parent.mkdir()
    plt.plot([0, 1], [1, 0])
    plt.savefig(fig_path)
    plt.close()
    rep = Report("Demo", tmp_path / "run")
    s = rep.section("Policies")
    s.text.append("BC on frozen `toto_tiny` features.")
    s.tables.append((["encoder", "success"], [["toto_tiny", "0.60 [0.40, 0.77]"], ["random", "0.10"]]))
    s.figures.append((fig_path, "learning curve"))
    md, page = rep.write()
    text = md.read_text()
    assert "| toto_tiny | 0.60 [0.40, 0.77] |" in text
    assert "![learning curve](../figs/curve.png)" in text
    html = page.read_text()
    assert "data:image/png;base64," in html and "<code>toto_tiny</code>" in html
    assert html.count("<tr>") == 3
