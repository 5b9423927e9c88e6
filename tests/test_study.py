"""The recipe study: recipes share cached stages, the page and table hold every recipe x encoder with
intervals, FLOPs and minutes, and the verdict says what the intervals say."""
import csv
import json

import pytest

from toto_robot.demo.study import StudyConfig, run_study, study_rows, verdict


def _results(toto, random, mae, episodes=20):
    """A demo results.json with BC summaries (successes out of ``episodes`` for each backbone)."""
    from toto_robot.policies.evaluate import wilson_interval

    bc = []
    for label, k in (("toto", toto), ("random-init", random), ("mae", mae)):
        lo, hi = wilson_interval(k, episodes)
        bc.append({"encoder": label, "seeds": 1, "success_rate": k / episodes, "ci_low": lo, "ci_high": hi})
    best = {f"{b}/attention": {"layer": 2, "val_acc": 0.5} for b in ("toto", "random-init", "mae")}
    return {"config": {"eval_episodes": episodes, "probe_val": 100, "bc_task": "franka_cabinet", "camera": "agentview"}, "probe": {"best": best, "chance": 0.11}, "bc": bc,
            "pretrain": {"train_flops": 2e12, "eval_loss": 0.2}, "mae": {"train_flops": 3e12},
            "stages": {k: {"seconds": 60.0} for k in ("pretrain", "mae", "tokenizer")}}


def test_verdict_reads_the_intervals():
    rows = study_rows({"good": _results(18, 4, 18), "tie": _results(10, 9, 20), "bad": _results(2, 17, 10)})
    assert verdict(rows, "good", "attention") == "good, attention pool: Toto beats random-init by 70 points (intervals separate); 100% of MAE's success."
    assert "+5 points against random-init (intervals overlap); 50% of MAE's success" in verdict(rows, "tie", "attention")
    assert "loses to random-init by 75 points (intervals separate)" in verdict(rows, "bad", "attention")
    paired = [{"what": "bc", "pooling": "attention", "control": "random-init", "p": 0.0123},
              {"what": "probe", "pooling": "attention", "control": "random-init", "p": 0.5},
              {"what": "bc", "pooling": "spatial_attention", "control": "random-init", "p": 0.9}]
    assert "(intervals overlap), paired p = 0.012 over the same episodes; probe" in verdict(rows, "tie", "attention", paired)
    assert verdict(rows, "tie", "attention", paired).endswith("; probe +0 points, paired p = 0.5; 50% of MAE's success.")
    toto = next(r for r in rows if r["recipe"] == "good" and r["backbone"] == "toto")
    assert toto["pretrain_gflop"] == 2000 and toto["episodes"] == 20 and toto["pretrain_minutes"] == 1.0
    assert next(r for r in rows if r["backbone"] == "random-init")["pretrain_gflop"] == 0


def test_recipes_must_name_demo_fields():
    with pytest.raises(ValueError, match="unknown demo fields \\['pretrain_stepz'\\]"):
        StudyConfig(base={}, recipes={"x": {"pretrain_stepz": 10}})
    with pytest.raises(ValueError, match="select names recipes \\['c'\\]"):
        StudyConfig(base={}, recipes={"a": {}, "b": {}}, select=["a", "c"])
    assert list(StudyConfig(base={}, recipes={"a": {}, "b": {}}, select=["b"]).recipes) == ["b"]


@pytest.mark.slow
def test_fast_study_runs_two_recipes_on_shared_stages_and_publishes_its_page(tmp_path):
    cfg = StudyConfig(base={"bc_pooling": None}, recipes={"attn": {"poolings": ["attention"]}, "spatial": {"poolings": ["attention", "spatial_attention"]}},
                      out_dir=str(tmp_path / "study"),
                      cache_dir=str(tmp_path / "cache"), fast=True, publish=str(tmp_path / "docs"))
    page = run_study(cfg)
    with open(tmp_path / "study" / "study.csv") as f:
        rows = list(csv.DictReader(f))
    assert {(r["recipe"], r["encoder"]) for r in rows} >= {("attn", "toto"), ("attn", "random-init"), ("attn", "mae"),
                                                          ("spatial", "toto+spatial_attention"), ("spatial", "mae+spatial_attention")}
    toto = next(r for r in rows if r["recipe"] == "attn" and r["encoder"] == "toto")
    assert float(toto["pretrain_gflop"]) > 0 and 0 <= float(toto["ci_low"]) <= float(toto["success_rate"]) <= float(toto["ci_high"]) <= 1
    res = json.loads((tmp_path / "study" / "attn" / "results.json").read_text())
    assert res["mae"]["train_flops"] > 0
    # runs cached before the trainers counted FLOPs get them measured afterwards: the same number
    from pathlib import Path

    from toto_robot.demo.pipeline import _step_flops_of_mae, _step_flops_of_run

    assert _step_flops_of_run(Path(res["stages"]["pretrain"]["dir"]) / "run")["flops_per_step"] == res["pretrain"]["flops_per_step"]
    assert _step_flops_of_mae(Path(res["stages"]["mae"]["dir"]), 32)["flops_per_step"] == res["mae"]["flops_per_step"]
    # the second recipe changes only the read-out: pre-training and MAE came from the first recipe's cache
    stages = json.loads((tmp_path / "study" / "spatial" / "results.json").read_text())["stages"]
    assert stages["pretrain"]["cached"] and stages["mae"]["cached"] and not stages["compare"]["cached"]
    md = page.read_text()
    assert "| spatial | toto+spatial_attention |" in md and "Toto against its controls" in md
    # end-effector xyz from each encoder's frozen features, beside raw pixels, on the recipe's demonstrations
    assert "## Frames no policy trained on" in md and "| attn | random-init |" in md
    assert all(-10 < float(r["robot_r2_spatial2"]) <= 1 and r["robot_raw_pixels_r2"] for r in rows)
    scores = json.loads((tmp_path / "study" / "attn" / "frame_scores.json").read_text())["scores"]
    assert set(scores) == {"toto", "random-init", "mae"}
    for name in ("study.md", "study_bc.png", "study_probe.png", "study.csv"):
        assert (tmp_path / "docs" / name).stat().st_size > 100


def test_demo_config_names_a_bad_number_before_any_stage_runs(tmp_path):
    from toto_robot.demo.pipeline import DemoConfig
    from toto_robot.utils.config import ConfigError

    with pytest.raises(ConfigError, match="pretrain_steps must be an integer >= 1, got 0"):
        DemoConfig(cache_dir=str(tmp_path / "c"), pretrain_steps=0)
    with pytest.raises(ConfigError, match="poolings must be one of"):
        DemoConfig(cache_dir=str(tmp_path / "c"), poolings=["max"])
    with pytest.raises(ConfigError, match="seeds"):
        DemoConfig(cache_dir=str(tmp_path / "c"), seeds=[])
    assert not (tmp_path / "c").exists()


def test_your_own_video_folders_join_pretraining_and_a_changed_folder_changes_the_cache_key(tmp_path):
    import numpy as np

    from toto_robot.data.synthetic import moving_shapes
    from toto_robot.data.video import write_video
    from toto_robot.demo.pipeline import DemoConfig, pretraining_datasets, user_video_fingerprints
    from toto_robot.utils.config import ConfigError

    clips = tmp_path / "my_robot"
    write_video(clips / "a.mp4", moving_shapes(12, 32, 2, np.random.default_rng(0))[0])
    cfg = DemoConfig(cache_dir=str(tmp_path / "c"), extra_videos=[str(clips)])
    user = [d for d in pretraining_datasets(cfg, tmp_path / "videos") if d["name"].startswith("user_")]
    assert user == [{"name": "user_0", "kind": "video", "path": str(clips.resolve()), "clips_per_video": 4}]
    before = user_video_fingerprints(cfg)
    write_video(clips / "b.mp4", moving_shapes(12, 32, 2, np.random.default_rng(1))[0])
    assert user_video_fingerprints(cfg) != before
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match=r"extra_videos\[0\]: .*empty is not a folder holding videos"):
        DemoConfig(cache_dir=str(tmp_path / "c"), extra_videos=[str(tmp_path / "empty")])
