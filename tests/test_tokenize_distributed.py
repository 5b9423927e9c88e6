"""Tokenizing under torchrun (gloo on CPU): the ranks split the units by their names, write their own
shards and journals, rank 0 merges one index naming who wrote what; the result is the sequences one
process writes, whatever the number of ranks, and a killed job or rank resumes without duplicates.

The torchrun launches cost several seconds each, so one job (video, image and synthetic datasets, 13
units at 32 px) is shared by the tests of this module, which run in one pytest worker."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch

from toto_robot.data.shards import PART_GLOB, ShardDataset, ShardWriter, part_path
from toto_robot.data.tokenize import DatasetSpec, ShardJobConfig, deal_units, plan_units, write_shards
from toto_robot.utils.config import ConfigError

pytestmark = pytest.mark.xdist_group("tokenize_distributed")  # one worker builds the shared job and its reference once
ROOT = Path(__file__).resolve().parents[1]
WRITE = ("import pickle, sys; from toto_robot.data.tokenize import write_shards; "
         "write_shards(pickle.loads(bytes.fromhex(sys.argv[1])))")


@pytest.fixture(scope="module")
def job(tmp_path_factory):
    """(data folder, the job's config writing to <data>/ref, written there by one process)."""
    from PIL import Image

    from toto_robot.data.synthetic import moving_shapes
    from toto_robot.data.video import write_video
    from toto_robot.tokenizers import DVAETokenizer

    root = tmp_path_factory.mktemp("tokdist")
    torch.manual_seed(0)
    DVAETokenizer(vocab_size=32, n_hid=8, n_blk_per_group=1, n_init=8).save_pretrained(root / "tok")
    for i in range(6):
        write_video(root / "videos" / f"v{i}.mp4", moving_shapes(24, 32, 2, np.random.default_rng(i))[0])
    rng = np.random.default_rng(0)
    for c in ("cat", "dog"):
        (root / "images" / c).mkdir(parents=True)
        for i in range(8):
            Image.fromarray(rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)).save(root / "images" / c / f"{i}.png")
    cfg = ShardJobConfig(tokenizer_dir=str(root / "tok"), out_dir=str(root / "ref"), resolution=32, num_frames=4, stride=2, workers=1,
                         images_per_shard=4, datasets=[DatasetSpec("vid", "video", str(root / "videos"), clips_per_video=2),
                                                       DatasetSpec("img", "image", str(root / "images")),
                                                       DatasetSpec("syn", "synthetic", count=40, clips_per_video=1)])
    write_shards(cfg)
    return root, cfg


def _torchrun(root: Path, out: Path, nproc: int, **env) -> subprocess.CompletedProcess:
    datasets = (f"[{{name: vid, kind: video, path: {root / 'videos'}, clips_per_video: 2}}, {{name: img, kind: image, path: {root / 'images'}}},"
                " {name: syn, kind: synthetic, count: 40, clips_per_video: 1}]")
    cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={nproc}", "--standalone", "-m", "toto_robot.train.tokenize",
           "stage=shards", f"tokenizer_dir={root / 'tok'}", f"out_dir={out}", f"hydra.run.dir={out}/hydra", f"data.datasets={datasets}",
           "shards.resolution=32", "shards.num_frames=4", "shards.stride=2", "shards.workers=1", "shards.images_per_shard=4"]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=240, cwd=ROOT, env={**os.environ, "OMP_NUM_THREADS": "1", **env})


def _sequences(shards: Path) -> Counter:
    ds = ShardDataset(shards)
    return Counter(tuple(ds[i].tolist()) for i in range(len(ds)))


def _index(shards: Path) -> dict[str, dict]:
    return {s["file"]: s for s in json.loads((shards / "index.json").read_text())["shards"]}


def _stamps(shards: Path, names) -> dict[str, tuple[int, int]]:
    """(inode, mtime) of each named shard file: unchanged means the job skipped that unit."""
    return {n: ((shards / n).stat().st_ino, (shards / n).stat().st_mtime_ns) for n in names}


def test_two_ranks_write_the_sequences_one_process_writes_and_the_index_names_each_writer(job):
    root, cfg = job
    ref = Path(cfg.out_dir)
    res = _torchrun(root, root / "two", 2)
    assert res.returncode == 0, res.stderr[-3000:]
    out = root / "two" / "shards"
    assert _sequences(out) == _sequences(ref)  # as a multiset: video, image and synthetic sequences alike
    assert len(ShardDataset(ref)) == 6 * 2 + 4 + 40  # 6 videos x 2 clips, 16 images in 4 clips, 40 synthetic videos
    index, ref_index = _index(out), _index(ref)
    assert set(index) == set(ref_index) and {s["kind"] for s in index.values()} == {"video", "image"}
    for name in index:  # one unit, one shard: the same bytes whichever rank encoded it
        assert (out / name).read_bytes() == (ref / name).read_bytes(), name
    shares = deal_units(plan_units(cfg), 2)
    for rank in (0, 1):
        assert {n for n, s in index.items() if s["rank"] == rank} == {f"{u.name}.bin" for u in shares[rank]}
    per_rank = Counter(s["rank"] for s in index.values())
    assert sorted(per_rank.values()) == [6, 7]  # 13 units dealt out: half each, to within one
    assert {s["rank"] for s in ref_index.values()} == {0}  # one process is rank 0
    assert not list(out.glob(PART_GLOB)) and not list(out.glob(".*"))  # journals merged, no leftovers
    assert (root / "two" / "config.yaml").is_file()


def test_one_rank_job_continued_by_two_ranks_one_killed_mid_write_resumes_without_duplicates(job):
    root, cfg = job
    out = root / "resumed" / "shards"
    # 1. one process, killed while writing its sixth shard (the first five are listed)
    units = plan_units(cfg)
    one = ShardJobConfig(**{**cfg.__dict__, "out_dir": str(out)})
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOTO_CRASH_AT": f"write {units[5].name}.bin"}
    import pickle

    res = subprocess.run([sys.executable, "-c", WRITE, pickle.dumps(one).hex()], env=env, capture_output=True, timeout=240)
    assert res.returncode == -9, res.stderr[-2000:]
    first = set(_index(out))
    assert first == {f"{u.name}.bin" for u in units[:5]}
    first_stamps = _stamps(out, first)
    # 2. two ranks continue; rank 1 is killed after its first shard landed, before its journal lists it
    res = _torchrun(root, root / "resumed", 2, TOTO_CRASH_AT="commit index.rank00001.jsonl")
    assert res.returncode != 0
    shares = deal_units([u for u in units if f"{u.name}.bin" not in first], 2)
    assert set(_index(out)) >= first and _stamps(out, first) == first_stamps  # the 1-rank job's shards were skipped
    journaled = {json.loads(line)["file"] for p in out.glob(PART_GLOB) for line in p.read_text().split("\n")[:-1]}  # complete lines
    assert not part_path(out, 1).exists() or not part_path(out, 1).read_text()  # rank 1 committed nothing
    orphans = {p.name for p in out.glob("[!.]*.bin")} - set(_index(out)) - journaled
    killed = f"{shares[1][0].name}.bin"
    assert killed in orphans  # rank 1 killed mid-write: its shard landed, unlisted (rank 0, torn down meanwhile, may leave one too)
    assert orphans <= {killed} | {f"{u.name}.bin" for u in shares[0]}
    kept = (set(_index(out)) | journaled) - first
    kept_stamps = _stamps(out, kept)
    # 3. rerun with two ranks: the orphan is written again, nothing done is redone, nothing duplicated
    res = _torchrun(root, root / "resumed", 2)
    assert res.returncode == 0, res.stderr[-3000:]
    assert _sequences(out) == _sequences(Path(cfg.out_dir)) and len(ShardDataset(out)) == len(ShardDataset(cfg.out_dir))
    assert set(_index(out)) == set(_index(Path(cfg.out_dir))) == {p.name for p in out.glob("*.bin")}
    assert _stamps(out, first) == first_stamps and _stamps(out, kept) == kept_stamps
    assert not list(out.glob(PART_GLOB)) and not list(out.glob(".*"))
    index = _index(out)
    assert {index[n]["rank"] for n in first} == {0}
    rest = deal_units([u for u in units if f"{u.name}.bin" not in first | kept], 2)  # the rerun deals out what was left
    assert killed in {f"{u.name}.bin" for share in rest for u in share}
    for rank, share in enumerate(rest):
        assert {index[f"{u.name}.bin"]["rank"] for u in share} <= {rank}


def test_journals_merge_once_torn_lines_are_ignored_and_a_single_process_picks_them_up(tmp_path):
    """A job of several ranks killed before rank 0 merged, resumed by one process (fewer ranks)."""
    about = {"name": "t", "hash": "h"}
    coordinator = ShardWriter(tmp_path, 6, 16, about)
    coordinator.write("a", np.full((2, 6), 4), "src", "video")
    writers = {r: ShardWriter(tmp_path, 6, 16, about, rank=r) for r in (1, 2)}
    writers[1].write("b", np.full((3, 6), 5), "src", "video")
    writers[2].write("c", np.full((1, 6), 6), "src", "image")
    writers[2].write("d", np.full((1, 6), 7), "src", "image")
    with open(part_path(tmp_path, 2), "r+b") as f:  # the last line torn by a kill: shard d is not committed
        f.truncate(part_path(tmp_path, 2).stat().st_size - 5)
    assert set(_index(tmp_path)) == {"a.bin"}  # index.json is the coordinator's alone
    with pytest.raises(Exception, match="only the coordinator"):
        writers[1].merge_parts()
    again = ShardWriter(tmp_path, 6, 16, about)  # a one-process rerun: merges, repairs
    index = _index(tmp_path)
    assert {n: s["rank"] for n, s in index.items()} == {"a.bin": 0, "b.bin": 1, "c.bin": 2}
    assert not (tmp_path / "d.bin").exists() and not list(tmp_path.glob(PART_GLOB))  # d is written again by the rerun
    assert not again.has("d") and again.has("c")
    ds = ShardDataset(tmp_path)
    assert sorted(ds[i][0].item() for i in range(len(ds))) == [4, 4, 5, 5, 5, 6]
    # a rank whose journal was torn appends on a fresh line; a merge repeated after a kill changes nothing
    part_path(tmp_path, 1).write_text('{"file": "e.bin", "num_seq')
    ShardWriter(tmp_path, 6, 16, about, rank=1).write("e", np.full((1, 6), 8), "src", "video")
    (tmp_path / "copy.jsonl").write_text(part_path(tmp_path, 1).read_text())
    assert again.merge_parts() == 1 and "e.bin" in _index(tmp_path)
    (tmp_path / "copy.jsonl").rename(part_path(tmp_path, 1))
    before = (tmp_path / "index.json").read_bytes()
    assert again.merge_parts() == 1 and (tmp_path / "index.json").read_bytes() == before
    with pytest.raises(Exception, match="rank 0 creates it"):
        ShardWriter(tmp_path / "elsewhere", 6, 16, about, rank=1)


def test_units_are_dealt_by_their_names_evenly_whatever_the_listing_order(job):
    _, cfg = job
    units = plan_units(cfg)
    for world in (1, 2, 3, 5):
        shares = deal_units(units, world)
        assert sorted(len(s) for s in shares)[-1] - sorted(len(s) for s in shares)[0] <= 1
        assert sorted(u.name for s in shares for u in s) == sorted(u.name for u in units)
        shuffled = [units[i] for i in np.random.default_rng(world).permutation(len(units))]
        assert [[u.name for u in s] for s in deal_units(shuffled, world)] == [[u.name for u in s] for s in shares]
    # the rest of a job is dealt out over the units left, not by their old ranks
    left = deal_units(units[4:], 2)
    assert sorted(len(s) for s in left) == [4, 5]


def test_shard_stage_settings_are_checked_and_torchrun_runs_only_the_shards_stage(job, monkeypatch):
    _, cfg = job
    for key, bad, match in (("device", "gpu", "shards.device"), ("autocast", "int8", "shards.autocast"), ("encode_batch", 0, "shards.encode_batch")):
        with pytest.raises(ConfigError, match=match):
            ShardJobConfig(**{**cfg.__dict__, key: bad})
    from hydra import compose, initialize_config_module

    from toto_robot.train.tokenize import run

    with initialize_config_module(config_module="toto_robot.configs", version_base="1.3"):
        c = compose(config_name="tokenize", overrides=["out_dir=unused"])
        paper = compose(config_name="tokenize_paper", overrides=["out_dir=unused"])
        pre = compose(config_name="pretrain_paper", overrides=["out_dir=unused", "shards=unused"])
    # the at-scale presets: the paper's tokenizer, clips and data, pre-trained on the same mixture weights
    assert paper.tokenizer.params.vocab_size == 8192 and (paper.shards.resolution, paper.shards.num_frames, paper.shards.stride) == (128, 16, 4)
    assert paper.stage == "shards" and paper.shards.device == "cuda" and [d.name for d in paper.data.datasets] == list(paper.data.mixture)
    assert dict(pre.mixture) == dict(paper.data.mixture) and pre.model.name == "toto_base" and pre.trainer.batch_tokens == 1_000_000
    monkeypatch.setenv("WORLD_SIZE", "1")
    with pytest.raises(ConfigError, match="stage must be train, shards or all"):
        run(compose_tokenize(["out_dir=unused", "stage=nope"]))


def compose_tokenize(overrides):
    from hydra import compose, initialize_config_module

    with initialize_config_module(config_module="toto_robot.configs", version_base="1.3"):
        return compose(config_name="tokenize", overrides=overrides)


TINY_TOKENIZE = ["tokenizer=vq_1k", "tokenizer.params.vocab_size=32", "tokenizer.params.width=16", "train.steps=3", "train.batch_size=4",
                 "data=synthetic", "data.datasets.0.count=2", "data.datasets.1.count=16", "shards.num_frames=2", "shards.resolution=32",
                 "shards.workers=1"]


def test_the_one_process_command_under_torchrun_makes_the_tokenizer_on_rank_zero_then_shards_on_every_rank(tmp_path):
    """``torchrun -m toto_robot.train.tokenize`` with the default stage=all: rank 0 trains the tokenizer while rank 1 waits,
    then both write shards; a user error is one ``error:`` line for the job (rank 0's), no traceback."""
    out = tmp_path / "job"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--standalone", "-m", "toto_robot.train.tokenize",
           *TINY_TOKENIZE, f"out_dir={out}", f"hydra.run.dir={tmp_path / 'hydra'}"]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=ROOT, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert res.returncode == 0, res.stderr[-3000:]
    assert (out / "tokenizer" / "metrics.json").is_file() and res.stdout.count("tokenizer: ") == 1  # made once, by rank 0
    index = json.loads((out / "shards" / "index.json").read_text())
    assert {s["rank"] for s in index["shards"]} == {0, 1}, index["shards"]
    assert len(ShardDataset(out / "shards")) > 0
    bad = subprocess.run([*cmd[:-2], "tokenizer=vq_1k", "train.steps=-1", f"out_dir={tmp_path / 'bad'}", f"hydra.run.dir={tmp_path / 'h2'}"],
                         capture_output=True, text=True, timeout=300, cwd=ROOT, env={**os.environ, "OMP_NUM_THREADS": "1"})
    errors = [line for line in bad.stderr.splitlines() if line.startswith("error: ")]
    # one error line, rank 0's; no rank's traceback (torchrun's launcher adds its own summary of the failed ranks)
    assert bad.returncode != 0 and errors == ["error: train.steps must be an integer >= 1, got -1"], bad.stderr[-3000:]
    assert "toto_robot/train/tokenize.py" not in bad.stderr and bad.stderr.count("Traceback (most recent call last)") <= 1, bad.stderr[-3000:]


def test_encoding_in_chunks_and_under_bf16_autocast_on_cpu(job):
    """The chunk size does not change a unit's codes; bf16 autocast runs and agrees on most codes
    (its agreement with float32 is what benchmarks/bench_tokenize.py reports)."""
    from toto_robot.data.tokenize import encode_clips
    from toto_robot.tokenizers import load_tokenizer

    root, _ = job
    tok = load_tokenizer(root / "tok")
    clips = [np.random.default_rng(i).integers(0, 256, (4, 32, 32, 3), dtype=np.uint8) for i in range(3)]
    whole = encode_clips(tok, clips, batch=64)
    assert whole.shape == (3, 4, 4, 4)
    assert torch.equal(whole, torch.stack([tok.encode(torch.from_numpy(c)) for c in clips]))
    assert torch.equal(encode_clips(tok, clips, batch=5), whole)
    half = encode_clips(tok, clips, batch=64, autocast="bf16")
    assert half.shape == whole.shape and (half == whole).float().mean() > 0.5


@pytest.mark.slow
def test_tokenize_benchmark_runs_at_tiny_size_on_cpu(tmp_path):
    out = tmp_path / "bench.json"
    res = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_tokenize.py"), "--tiny", "--out", str(out)], capture_output=True,
                         text=True, timeout=540, cwd=ROOT, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert res.returncode == 0, res.stderr[-3000:]
    figures = json.loads(out.read_text())
    assert {(r["tokenizer"], r["size"]) for r in figures["encode"]} == {(t, s) for t in ("dvae", "vq", "patch") for s in (32, 64)}
    for r in figures["encode"]:
        assert r["frames_per_s"] > 0 and r["device"] == "cpu"
        if r["tokenizer"] != "patch":  # continuous patches have no codes to agree on
            assert 0 <= r["bf16_code_agreement"] <= 1 and r["bf16_frames_per_s"] > 0
    assert [r["ranks"] for r in figures["ranks"]] == [1, 2] and figures["ranks"][0]["speedup"] == 1.0
    assert all(r["tokens_per_s"] > 0 for r in figures["ranks"])
    e2e = figures["end_to_end"]
    assert e2e["tokens"] == e2e["sequences"] * e2e["seq_len"] > 0 and e2e["tokens_per_s"] > 0
    assert "frames/s" in res.stdout and "tokens/s" in res.stdout


def test_long_videos_give_the_clips_of_a_whole_decode_from_one_pass_keeping_only_their_frames(tmp_path, monkeypatch):
    from toto_robot.data.clips import sample_clip, sample_video_clips
    from toto_robot.data.synthetic import moving_shapes
    from toto_robot.data.video import VideoDecodeError, read_video, write_video

    path = write_video(tmp_path / "long.mp4", moving_shapes(60, 48, 2, np.random.default_rng(0))[0][:, :, :40])  # 48 x 40 frames
    whole = read_video(path)
    rng = np.random.default_rng(3)
    want = [sample_clip(whole, 32, 8, 3, rng) for _ in range(4)]
    for max_bytes in (1 << 30, 0):  # whole, then streamed (every video is "long"; decoding it whole is refused)
        got = sample_video_clips(path, 4, 32, 8, 3, np.random.default_rng(3), max_bytes=max_bytes)
        assert len(got) == 4 and all(np.array_equal(g, w) for g, w in zip(got, want)), max_bytes
        monkeypatch.setattr("toto_robot.data.video.read_video", lambda *a, **k: pytest.fail("decoded the whole video"))
    (tmp_path / "bad.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"garbage" * 50)
    with pytest.raises(VideoDecodeError, match="bad.mp4"):
        sample_video_clips(tmp_path / "bad.mp4", 1, 32, rng=rng, max_bytes=0)


def test_a_shard_folder_with_more_shards_than_open_mappings_reads_every_sequence(tmp_path, monkeypatch):
    """At the paper's scale a folder holds over a million shards: only max_open of them are mapped at a time."""
    w = ShardWriter(tmp_path, 6, 64, {"name": "t", "hash": "h"})
    for k in range(7):
        w.write(f"s{k}", np.arange(6)[None] + 4 + np.arange(k % 3 + 1)[:, None] * 10 + k, "src", "video")
    w.write("empty", np.zeros((0, 6), np.int64), "src", "image")  # an image unit with too few images for a clip
    whole = ShardDataset(tmp_path)
    want = [whole[i].tolist() for i in range(len(whole))]
    monkeypatch.setattr(ShardDataset, "max_open", 2)
    few = ShardDataset(tmp_path)
    order = np.random.default_rng(0).permutation(len(few))
    assert {int(i): few[int(i)].tolist() for i in order} == dict(enumerate(want)) and len(few._open) == 2
    assert len(want) == sum(k % 3 + 1 for k in range(7))


@pytest.mark.slow
def test_at_scale_scripts_take_dataset_folders_to_a_probed_model_on_cpu(job, tmp_path):
    """scripts/at_scale/{tokenize,pretrain,probe}.sh as docs/usage.md "At scale" runs them, shrunk to CPU by
    overrides (2 gloo ranks, 32 px, toto_tiny, 2 steps); the tokenizer is the fixture's instead of DALL-E's."""
    import shutil

    root, _ = job
    layout = {"IMAGENET": tmp_path / "imagenet" / "train", "KINETICS": tmp_path / "kinetics600" / "train", "EGO4D": tmp_path / "ego4d" / "v2" / "full_scale",
              "HOWTO100M": tmp_path / "howto100m" / "videos"}
    for c in ("n01440764", "n01443537"):
        shutil.copytree(root / "images" / ("cat" if c.endswith("764") else "dog"), layout["IMAGENET"] / c)
    for var, names in (("KINETICS", ["abseiling/v0.mp4", "zumba/v1.mp4"]), ("EGO4D", ["v2.mp4"]), ("HOWTO100M", ["v3.mp4", "v4.mp4"])):
        for name in names:
            (layout[var] / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(root / "videos" / Path(name).name, layout[var] / name)
    env = {**os.environ, **{k: str(v) for k, v in layout.items()}, "RUN": str(tmp_path / "run"), "GPUS": "2", "PYTHON": sys.executable,
           "TOKENIZER_DIR": str(root / "tok"), "OMP_NUM_THREADS": "1"}

    def step(script, *overrides):
        res = subprocess.run(["bash", str(ROOT / "scripts" / "at_scale" / script), *overrides], capture_output=True, text=True, env=env, timeout=400)
        assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-3000:]

    step("tokenize.sh", "shards.device=cpu", "shards.resolution=32", "shards.num_frames=4", "shards.workers=1", "shards.images_per_shard=16")
    index = _index(tmp_path / "run" / "tokenize" / "shards")
    assert {s["source"] for s in index.values()} == {"imagenet", "kinetics", "ego4d", "howto100m"} and {s["rank"] for s in index.values()} == {0, 1}
    step("pretrain.sh", "model=toto_tiny", "trainer.device=cpu", "trainer.compile=false", "trainer.parallel=ddp", "trainer.max_steps=2",
         "trainer.warmup_steps=1", "trainer.micro_batch=2", "trainer.batch_tokens=264", "trainer.checkpoint_every=2", "trainer.eval_sequences=2")
    cfg = json.loads((tmp_path / "run" / "pretrain" / "pretrain_config.json").read_text())
    assert cfg["world_size"] == 2 and cfg["mixture"] == {"imagenet": 0.2, "kinetics": 0.1, "ego4d": 0.1, "howto100m": 0.6}
    step("probe.sh", "encoder=toto", "device=cpu", "probe.kwargs.image_size=32", "epochs=2")
    assert (tmp_path / "run" / "probe" / "result.json").is_file()
