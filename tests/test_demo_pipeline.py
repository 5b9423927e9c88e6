"""`toto-robot demo fast=true`: every stage runs, the report has each section and its figures, and a
second run reuses the cache."""
import json

import pytest

from toto_robot.demo.pipeline import DemoConfig, run_demo


@pytest.mark.slow
def test_fast_demo_runs_end_to_end_then_reuses_its_cache(tmp_path):
    cfg = DemoConfig(out_dir=str(tmp_path / "out"), cache_dir=str(tmp_path / "cache"), fast=True)
    html = run_demo(cfg)
    md = (tmp_path / "out" / "report.md").read_text()
    for title in ("Simulated robot videos", "Tokenizer", "pre-training", "Probing", "Behaviour cloning"):
        assert title in md
    figures = sorted(p.name for p in (tmp_path / "out" / "figures").iterdir())
    assert {"tokenizer_recon.png", "pretrain_loss.png", "probe_layer_sweep.png", "mae_loss.png", "bc_success.png", "bc_learning_curves.png"} <= set(figures)
    assert html.read_text().count("data:image/png;base64") >= 5  # self-contained page
    # the default: Franka pick from the wrist camera, probed on where the cube sits relative to the gripper
    assert "relative to the gripper" in md and "| toto+grid | franka_pick |" in md  # BC reads the grid pool (bc_pooling)
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    assert results["probe"]["target"] == "offset"
    paired = {(t["what"], t["pooling"], t["control"]) for t in results["paired"]}
    assert ("bc", "grid", "random-init+grid") in paired and ("probe", "spatial_attention", "mae") in paired
    cmp = json.loads(next((tmp_path / "cache").glob("compare-*/compare_config.json")).read_text())
    assert cmp["bc"]["lr"] == 5e-4 and {spec["pooling"] for spec in cmp["encoders"].values()} == {"grid"}
    assert "Toto against its controls, item by item" in md
    pre = next((tmp_path / "cache").glob("pretrain-*"))
    metrics = json.loads((pre / "result.json").read_text())["result"]
    assert metrics["steps"] == 4 and metrics["eval_loss"] > 0
    assert (pre / "run" / "final" / "tokenizer").is_dir()

    run_demo(DemoConfig(out_dir=str(tmp_path / "out2"), cache_dir=str(tmp_path / "cache"), fast=True))
    table = (tmp_path / "out2" / "report.md").read_text().split("## 1.")[0]
    assert table.count("| yes |") == 8  # every stage came from the cache


@pytest.mark.slow
def test_fast_demo_with_patch_tokens_on_the_wrist_camera_compares_every_pooling_at_a_fixed_layer(tmp_path):
    cfg = DemoConfig(out_dir=str(tmp_path / "out"), cache_dir=str(tmp_path / "cache"), bc_task="franka_pick", camera="wrist", bc_layer=3,
                     poolings=["attention", "spatial_attention"], bc_pooling=None,
                     tokenizer={"kind": "patch", "params": {"patch_size": 8}}).shrink()
    assert cfg.bc_layer == 2  # clamped to the fast model's depth
    run_demo(cfg)
    md = (tmp_path / "out" / "report.md").read_text()
    assert "Continuous 8x8 patch tokens" in md and "patchified on the fly" in md
    pre = json.loads(next((tmp_path / "cache").glob("pretrain-*/result.json")).read_text())["result"]
    assert pre["eval_loss"] > 0 and "mean_patch_loss" in pre
    for label in ("| toto |", "| toto+spatial_attention |", "| random-init+spatial_attention |", "| mae+spatial_attention |"):
        assert label in md
    assert "toto/spatial_attention" in md  # the probe sweeps the extra pooling too
    meta = json.loads(next((tmp_path / "cache").glob("demos-*/demos/meta.json")).read_text())
    assert meta["extra"]["camera"] == "wrist" and meta["task"] == "franka_pick"
    # DART by default: the noisy expert drove, every state is labelled with the clean expert's action
    assert (meta["extra"]["label"], meta["extra"]["noise"], meta["extra"]["noise_all"]) == ("expert", 0.3, True)
    specs = json.loads(next((tmp_path / "cache").glob("compare-*/compare_config.json")).read_text())["encoders"]
    assert {spec["layer"] for label, spec in specs.items() if not label.startswith("mae")} == {2}
    assert "Toto and random-init features come from layer 2 (set by `bc_layer`)" in md


def test_demo_bc_options_are_checked_before_any_stage_runs(tmp_path):
    from toto_robot.utils.config import ConfigError

    with pytest.raises(ConfigError, match=r"bc: unknown BC option\(s\) \['lrr'\]"):
        DemoConfig(out_dir=str(tmp_path), bc={"lrr": 1e-3})
    with pytest.raises(ConfigError, match="bc_pooling"):
        DemoConfig(out_dir=str(tmp_path), bc_pooling="mean")
    assert DemoConfig(out_dir=str(tmp_path)).bc_poolings == ["grid"]
    with pytest.raises(ConfigError, match=r"bc_demos: unknown key\(s\) \['nosie'\]"):
        DemoConfig(out_dir=str(tmp_path), bc_demos={"nosie": 0.2})
    with pytest.raises(ConfigError, match="bc_demos.label"):
        DemoConfig(out_dir=str(tmp_path), bc_demos={"label": "clean"})
    assert DemoConfig(out_dir=str(tmp_path), bc_demos={"label": "executed"}).bc_demos == {"label": "executed", "noise": 0.1, "noise_all": False}
    assert DemoConfig(out_dir=str(tmp_path), bc_pooling=None, poolings=["attention", "average"]).bc_poolings == ["attention", "average"]


@pytest.mark.slow
def test_a_pipeline_seed_reruns_every_training_stage_and_scores_the_same_items(tmp_path):
    """pipeline_seed=1 trains everything afresh (new cache entries, another model), on the probe images and evaluation
    episodes of seed 0, so two runs compare item by item."""
    runs = {}
    for seed in (0, 1):
        run_demo(DemoConfig(out_dir=str(tmp_path / f"out{seed}"), cache_dir=str(tmp_path / "cache"), fast=True, pipeline_seed=seed))
        runs[seed] = json.loads((tmp_path / f"out{seed}" / "results.json").read_text())
    for stage in ("videos", "tokenizer", "shards", "pretrain", "mae", "probe", "demos", "compare"):
        assert len(list((tmp_path / "cache").glob(f"{stage}-*"))) == 2, stage
    losses = [json.loads(p.read_text())["result"]["eval_loss"] for p in sorted((tmp_path / "cache").glob("pretrain-*/result.json"))]
    assert losses[0] != losses[1]
    n_val = [len(r["probe"]["best"]["toto/attention"]["val_correct"]) for r in runs.values()]
    assert n_val[0] == n_val[1] > 0  # the same validation images
    with pytest.raises(Exception, match="pipeline_seed"):
        DemoConfig(out_dir=str(tmp_path), pipeline_seed=-1)


def _demo_results(path, seed, bc_demos, toto_rate):
    rows = [{"encoder": e, "seeds": "3", "success_rate": str(r)} for e, r in (("toto+grid", toto_rate), ("random-init+grid", 0.5))]
    config = {"pipeline_seed": seed, "eval_episodes": 30, "poolings": ["spatial_attention"], **({"bc_demos": bc_demos} if bc_demos else {})}
    probe = {"best": {f"{e}/spatial_attention": {"val_acc": 0.5} for e in ("toto", "random-init")}}
    path.mkdir(parents=True)
    paired = [{"what": "bc", "toto": "toto+grid", "control": "random-init+grid", "a_only": 10, "b_only": 2, "n": 90}]
    (path / "results.json").write_text(json.dumps({"config": config, "bc": rows, "probe": probe, "paired": paired}))
    return str(path / "results.json")


def test_demo_spread_refuses_runs_that_recorded_their_demonstrations_differently(tmp_path):
    """benchmarks/demo_spread.py pools runs over pipeline seeds: a DART run and a plain run (no bc_demos in older results:
    plain) are different experiments, and it says so instead of pooling them."""
    import subprocess
    import sys
    from pathlib import Path

    from toto_robot.demo.pipeline import DART_DEMOS

    script = Path(__file__).resolve().parents[1] / "benchmarks" / "demo_spread.py"
    dart = [_demo_results(tmp_path / f"dart{s}", s, DART_DEMOS, 0.8) for s in (0, 1)]
    plain = _demo_results(tmp_path / "plain2", 2, None, 0.5)
    run = subprocess.run([sys.executable, str(script), *dart, plain], capture_output=True, text=True)
    assert run.returncode != 0 and "recorded their demonstrations differently" in run.stderr and "plain2" in run.stderr
    ok = subprocess.run([sys.executable, str(script), *dart], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    assert "| toto+grid | 80% | 80% | 80% (80-80) | 144/180 = 80%" in ok.stdout
