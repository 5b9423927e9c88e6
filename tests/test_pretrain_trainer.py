"""Pre-training: loss falls below the unigram entropy, resume is exact, torchrun/gloo DDP runs."""
from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from toto_robot.data.shards import ShardWriter
from toto_robot.model import Toto
from toto_robot.pretrain.trainer import PretrainConfig, pretrain
from toto_robot.utils.io import CheckpointError

V, HW, T = 48, 16, 4


def make_shards(root: Path, n=64, seed=0) -> Path:
    """Clips whose later frames repeat the first: frame 0 is unpredictable, frames 1..3 are copies."""
    rng = np.random.default_rng(seed)
    seqs = [np.concatenate([[1], np.tile(rng.integers(0, V, HW), T) + 4, [2]]) for _ in range(n)]
    w = ShardWriter(root, T * HW + 2, V + 4, {"name": "test", "hash": "h", "tokens_per_frame": HW})
    w.write("clips", np.stack(seqs), "sim", "video")
    return root


def cfg_for(tmp_path, **kw):
    base = dict(shards=str(make_shards(tmp_path / "shards")), out_dir=str(tmp_path / "run"), model="toto_tiny",
                model_overrides={"n_layer": 2}, lr=3e-3, min_lr=3e-4, warmup_steps=10, max_steps=120, batch_tokens=8 * 65,
                micro_batch=8, checkpoint_every=60, log_every=20, seed=0)
    base.update(kw)
    return PretrainConfig(**base)


def test_loss_drops_well_below_unigram_entropy_and_frame_zero_is_hardest(tmp_path):
    out = pretrain(cfg_for(tmp_path))
    m = json.loads((out / "metrics.json").read_text())
    assert m["eval_loss"] < 0.6 * m["unigram_entropy"], m
    pf = m["per_frame_loss"]
    assert pf[0] > max(pf[1:]), pf  # first frame unpredictable, later frames copied
    assert (out / "loss_curve.png").stat().st_size > 1000 and (out / "metrics.csv").exists()
    model = Toto.from_pretrained(out / "final")
    assert model.config.block_size == T * HW + 1 and model.config.vocab_size == V + 4
    with pytest.raises(CheckpointError, match="resume=true"):
        pretrain(cfg_for(tmp_path))  # a finished run is never overwritten silently


def test_bad_vocab_is_rejected(tmp_path):
    with pytest.raises(ValueError, match="vocab mismatch"):
        pretrain(cfg_for(tmp_path, model_overrides={"n_layer": 1, "vocab_size": 999}))


def _losses(run: Path) -> list[float]:
    with open(run / "metrics.csv") as f:
        return [float(r["loss"]) for r in csv.DictReader(f)]


def test_same_seed_gives_the_same_run_and_its_measured_flops(tmp_path):
    runs = [pretrain(cfg_for(tmp_path / k, max_steps=12, checkpoint_every=100)) for k in ("a", "b")]
    weights = [load_file(str(r / "final" / "model.safetensors")) for r in runs]
    assert weights[0].keys() == weights[1].keys()
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])  # bit for bit
    m = json.loads((runs[0] / "metrics.json").read_text())
    model = Toto.from_pretrained(runs[0] / "final")
    tokens = m["tokens_per_step"]
    dense = 6 * model.num_params(non_embedding=True) * tokens  # matmuls, forward + backward
    assert dense < m["flops_per_step"] < 2 * dense  # plus attention and the embedding / head matmuls
    assert m["train_flops"] == 12 * m["flops_per_step"]


@pytest.mark.slow
def test_killed_run_resumes_step_for_step(tmp_path):
    ref = pretrain(cfg_for(tmp_path / "a", max_steps=40, checkpoint_every=10))
    cfg = cfg_for(tmp_path / "b", max_steps=40, checkpoint_every=10)
    # run in a subprocess and kill it after its second checkpoint
    code = ("import pickle,sys; from toto_robot.pretrain.trainer import pretrain; "
            "pretrain(pickle.loads(bytes.fromhex(sys.argv[1])))")
    import pickle
    import time

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    killed_cfg = PretrainConfig(**{**cfg.__dict__, "max_steps": 40})
    proc = subprocess.Popen([sys.executable, "-c", code, pickle.dumps(killed_cfg).hex()], env=env, stderr=subprocess.DEVNULL)
    state = Path(cfg.out_dir) / "checkpoint" / "trainer_state.pt"
    deadline = time.time() + 120
    while time.time() < deadline:
        if state.exists() and torch.load(state, weights_only=True)["step"] >= 20:
            break
        time.sleep(0.05)
    proc.kill()
    proc.wait()
    step = torch.load(state, weights_only=True)["step"]
    assert 20 <= step < 40
    cfg.resume = True
    pretrain(cfg)
    np.testing.assert_allclose(_losses(Path(cfg.out_dir)), _losses(ref), rtol=1e-4, atol=1e-5)


@pytest.mark.slow
def test_torchrun_ddp_with_gloo_two_processes(tmp_path):
    shards = make_shards(tmp_path / "shards")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--standalone", "-m", "toto_robot.train.pretrain",
           f"shards={shards}", f"out_dir={tmp_path / 'run'}", "+model.overrides.n_layer=1", "trainer.max_steps=6", "trainer.warmup_steps=2",
           "trainer.micro_batch=4", "trainer.batch_tokens=520", "trainer.checkpoint_every=3", f"hydra.run.dir={tmp_path / 'hydra'}"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    cfg = json.loads((tmp_path / "run" / "pretrain_config.json").read_text())
    assert cfg["world_size"] == 2 and cfg["grad_accum"] == 1  # 2 ranks x 4 sequences x 65 tokens = 520
    assert len(_losses(tmp_path / "run")) == 6
    Toto.from_pretrained(tmp_path / "run" / "final")


def test_power_law_fit_recovers_known_exponent_and_param_count_matches_the_model():
    from toto_robot.model.toto import Toto, TotoConfig
    from toto_robot.pretrain.scaling import fit_power_law, non_embedding_params

    c = np.array([1e9, 1e10, 1e11, 1e12])
    a, b = fit_power_law(c, 7.0 * c**-0.05)
    assert a == pytest.approx(7.0, rel=1e-6) and b == pytest.approx(-0.05, rel=1e-6)
    model = Toto(TotoConfig(n_layer=3, n_head=2, n_embd=64, mlp_hidden=256, block_size=65, vocab_size=68, tokens_per_frame=16))
    assert non_embedding_params(64, 3) == model.num_params(non_embedding=True)


@pytest.mark.slow
def test_scaling_sweep_trains_each_width_and_writes_the_fit(tmp_path):
    from toto_robot.pretrain.scaling import ScalingConfig, scaling_sweep

    fit = scaling_sweep(ScalingConfig(shards=str(make_shards(tmp_path / "shards")), out_dir=str(tmp_path / "sc"), widths=[32, 64], n_layer=1,
                                      steps=6, batch_tokens=4 * 65, micro_batch=4))
    assert [r["width"] for r in fit["runs"]] == [32, 64] and fit["runs"][1]["compute"] > fit["runs"][0]["compute"]
    assert np.isfinite(fit["a"]) and np.isfinite(fit["b"])
    assert (tmp_path / "sc" / "scaling.png").is_file() and (tmp_path / "sc" / "scaling.csv").is_file()


def test_resolution_fine_tune_continues_a_model_at_4x_tokens_per_frame_with_a_new_rope_base(tmp_path):
    base = pretrain(cfg_for(tmp_path, max_steps=4, checkpoint_every=4))
    big_hw = 4 * HW  # 16x16 -> 32x32 tokens in the paper; 4x4 -> 8x8 here
    rng = np.random.default_rng(1)
    seqs = [np.concatenate([[1], rng.integers(0, V, T * big_hw) + 4, [2]]) for _ in range(16)]
    w = ShardWriter(tmp_path / "big", T * big_hw + 2, V + 4, {"name": "test", "hash": "h", "tokens_per_frame": big_hw})
    w.write("clips", np.stack(seqs), "sim", "video")
    ft = pretrain(cfg_for(tmp_path, shards=str(tmp_path / "big"), out_dir=str(tmp_path / "ft"), init_from=str(base / "final"),
                          model_overrides={"n_layer": 2, "rope_base": 50000.0}, max_steps=2, checkpoint_every=2))
    old, new = Toto.from_pretrained(base / "final"), Toto.from_pretrained(ft / "final")
    assert new.config.block_size == T * big_hw + 1 and new.config.rope_base == 50000.0 and new.config.tokens_per_frame == big_hw
    assert old.config.block_size == T * HW + 1
    # started from the base weights: after two small steps the embeddings are still close to them
    torch.manual_seed(5)
    fresh = Toto(new.config)
    moved = (new.tok_emb.weight - old.tok_emb.weight).abs().mean()
    assert moved < 0.5 * (fresh.tok_emb.weight - old.tok_emb.weight).abs().mean()


def test_continuous_patch_tokens_pretrain_from_frame_shards_and_serve_as_an_encoder(tmp_path):
    """Patch tokens (no codebook): shards keep the clips, the trainer patchifies them and regresses the
    next normalised patch; the run loads as a frozen encoder and as a random-init control."""
    from toto_robot.data.shards import ShardDataset, ShardError
    from toto_robot.data.synthetic import moving_shapes
    from toto_robot.data.tokenize import DatasetSpec, ShardJobConfig, write_shards
    from toto_robot.data.video import write_video
    from toto_robot.encoders import build_encoder
    from toto_robot.tokenizers import build_tokenizer

    build_tokenizer("patch", patch_size=4).save_pretrained(tmp_path / "tok")
    for i in range(4):
        write_video(tmp_path / "videos" / f"v{i}.mp4", moving_shapes(40, 16, 1, np.random.default_rng(i))[0])
    shards = write_shards(ShardJobConfig(tokenizer_dir=str(tmp_path / "tok"), out_dir=str(tmp_path / "shards"), resolution=16, num_frames=4,
                                         stride=2, datasets=[DatasetSpec("sim", "video", str(tmp_path / "videos"), clips_per_video=8)]))
    ds = ShardDataset(shards)
    assert ds.continuous and ds.seq_len == 4 * 16 and ds[0].shape == (4, 16, 16, 3) and ds[0].dtype == torch.uint8
    out = pretrain(PretrainConfig(shards=str(shards), out_dir=str(tmp_path / "run"), model="toto_tiny", model_overrides={"n_layer": 2, "n_embd": 64},
                                  lr=3e-3, min_lr=3e-4, warmup_steps=10, max_steps=150, batch_tokens=8 * 64, micro_batch=8, log_every=50, seed=0))
    m = json.loads((out / "metrics.json").read_text())
    assert m["eval_loss"] < 0.5 * m["mean_patch_loss"], m  # the next patch is predicted from the ones before it
    model = Toto.from_pretrained(out / "final")
    assert model.config.input_dim == 48 and model.config.block_size == 4 * 16 + 1
    enc = build_encoder("toto", checkpoint=str(out / "final"))
    frames = np.random.default_rng(0).integers(0, 256, (2, 16, 16, 3), dtype=np.uint8)
    assert enc.encode_tokens(frames).shape == (2, 16, 64) and enc(frames).shape == (2, 64)
    control = build_encoder("random", like=str(out / "final"))
    assert not torch.allclose(control.encode_tokens(frames), enc.encode_tokens(frames))
    bad = next(Path(shards).glob("*.bin"))
    bad.write_bytes(bad.read_bytes()[:-5])
    with pytest.raises(ShardError, match="corrupt shard"):
        ShardDataset(shards)


def test_optimizer_state_of_a_checkpoint_with_separate_projections_resumes_the_fused_model():
    from toto_robot.model import TotoConfig
    from toto_robot.pretrain import distributed as D
    from toto_robot.pretrain.trainer import convert_legacy_optimizer

    torch.manual_seed(0)
    model = Toto(TotoConfig.from_name("toto_tiny", n_layer=1))
    opt = model.configure_optimizer(1e-2, 0.1)
    x = torch.randint(0, 500, (2, 16))
    for _ in range(2):
        model(x, targets=x).loss.backward()
        opt.step()
        opt.zero_grad()
    fused = D.full_optim_state(model, opt)
    legacy = {"state": {}, "param_groups": []}  # the layout an older trainer wrote: one entry per projection
    splits = {"attn.wqkv.weight": ("attn.wq.weight", "attn.wk.weight", "attn.wv.weight"), "mlp.w13.weight": ("mlp.w1.weight", "mlp.w3.weight")}
    for key, st in fused["state"].items():
        parts = next(((key[: -len(f)], p) for f, p in splits.items() if key.endswith(f)), None)
        if parts is None:
            legacy["state"][key] = st
            continue
        prefix, names = parts
        chunks = {f: v.chunk(len(names)) if v.dim() else [v] * len(names) for f, v in st.items()}
        for i, n in enumerate(names):
            legacy["state"][prefix + n] = {f: c[i].clone() for f, c in chunks.items()}
    for g in fused["param_groups"]:
        params = []
        for p in g["params"]:
            hit = next(((p[: -len(f)], names) for f, names in splits.items() if p.endswith(f)), None)
            params += [hit[0] + n for n in hit[1]] if hit else [p]
        legacy["param_groups"].append({**g, "params": params})
    back = convert_legacy_optimizer(legacy)
    assert back["state"].keys() == fused["state"].keys()
    for k in fused["state"]:
        for f, v in fused["state"][k].items():
            assert torch.equal(back["state"][k][f], v), (k, f)
    assert [g["params"] for g in back["param_groups"]] == [g["params"] for g in fused["param_groups"]]
    opt2 = model.configure_optimizer(1e-2, 0.1)
    opt2.load_state_dict(back)  # what resume does
    assert convert_legacy_optimizer(fused) is fused


def test_a_patch_token_run_resumes_with_its_own_output_head(tmp_path):
    """A patch model's head maps hidden states to patches, not to the (absent) token embedding: its checkpoint keeps
    the head, so a resumed run continues from the trained head instead of failing on a missing key."""
    from safetensors.torch import load_file

    from toto_robot.data.synthetic import moving_shapes
    from toto_robot.data.tokenize import DatasetSpec, ShardJobConfig, write_shards
    from toto_robot.data.video import write_video
    from toto_robot.tokenizers import build_tokenizer

    build_tokenizer("patch", patch_size=4).save_pretrained(tmp_path / "tok")
    for i in range(2):
        write_video(tmp_path / "videos" / f"v{i}.mp4", moving_shapes(24, 16, 1, np.random.default_rng(i))[0])
    shards = write_shards(ShardJobConfig(tokenizer_dir=str(tmp_path / "tok"), out_dir=str(tmp_path / "shards"), resolution=16, num_frames=4,
                                         stride=2, datasets=[DatasetSpec("sim", "video", str(tmp_path / "videos"), clips_per_video=4)]))
    kw = dict(shards=str(shards), out_dir=str(tmp_path / "run"), model="toto_tiny", model_overrides={"n_layer": 1, "n_embd": 32},
              lr=3e-3, min_lr=3e-4, warmup_steps=1, batch_tokens=4 * 64, micro_batch=4, log_every=1, checkpoint_every=2, seed=0)
    pretrain(PretrainConfig(max_steps=2, **kw))
    saved = load_file(str(tmp_path / "run" / "checkpoint" / "model.safetensors"))
    assert "head.weight" in saved and saved["head.weight"].shape == (48, 32)
    out = pretrain(PretrainConfig(max_steps=4, resume=True, **kw))
    assert json.loads((out / "metrics.json").read_text())["steps"] == 4
