"""The end-to-end demo behind ``make demo``: from nothing to a robot-policy comparison, on CPU.

Stages (each cached under ``cache_dir`` by its config, so a second run only redoes what changed
and an interrupted run continues):

1. ``videos``     scripted-expert episodes of the four MuJoCo tasks, rendered to H.264 videos
2. ``tokenizer``  the tokenizer (continuous patches by default: nothing to train; a VQ or dVAE trains on the videos' frames)
3. ``shards``     the videos (stride-4 clips) and packed images tokenized into memory-mapped shards
4. ``pretrain``   Toto-tiny trained by next-token prediction on the shards
   ``mae``        the baseline: a tiny MAE trained on the same frames for Toto's measured FLOPs (or steps: ``mae_match``)
5. ``probe``      layer sweep (attention vs average pooling) of Toto, MAE and Toto's random-init control
6. ``demos``      scripted-expert demonstrations for behaviour cloning (DART labels by default: ``bc_demos``)
7. ``compare``    BC on each frozen encoder (same demos, seeds, budget), evaluated in simulation

then a report (``report.md`` + self-contained ``report.html``) gathers tables and figures.
``fast=True`` shrinks every stage to seconds (what the tests run).
"""
from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from toto_robot.demo.cache import StageCache
from toto_robot.demo.report import Report
from toto_robot.data.video import VIDEO_SUFFIXES, list_media
from toto_robot.utils.io import config_hash, find_checkpoint

log = logging.getLogger(__name__)
PIPELINE_SEED_STRIDE = 100_000  # pipeline seed s collects from seeds s * stride + ...: never the evaluation (10_000+) or DAgger (50_000+) seeds
VIDEO_NOISE = 0.2  # the scripted experts' exploration noise in pre-training footage: more varied videos than the demos'
FAST_MODEL = {"n_layer": 2, "n_embd": 32, "n_head": 2, "mlp_hidden": 64}  # toto_tiny shrunk for fast=true


PLAIN_DEMOS = {"label": "executed", "noise": 0.1, "noise_all": False}  # the expert's own noisy actions, noise while travelling
DART_DEMOS = {"label": "expert", "noise": 0.3, "noise_all": True}


@dataclass
class DemoConfig:
    out_dir: str = "runs/demo"
    cache_dir: str = "runs/demo-cache"
    fast: bool = False
    image_size: int = 64
    camera: str = "wrist"  # the view of videos, probe images and demonstrations (the policy's camera)
    video_tasks: list[str] = field(default_factory=lambda: ["franka_pick", "kuka_pick"])
    video_episodes: int = 40  # scripted-expert episodes per task
    random_episodes: int = 8  # random-action episodes per task
    tokenizer: dict = field(default_factory=lambda: {"kind": "patch", "params": {"patch_size": 8}})  # see docs/study/study.md
    tokenizer_steps: int = 600
    num_frames: int = 8
    pretrain_steps: int = 300
    batch_tokens: int = 4096
    probe_train: int = 300
    probe_val: int = 450
    probe_target: str | None = None  # position | offset (cube relative to the gripper); None = offset for the wrist camera on a pick task
    mae_match: str = "flops"  # flops: the MAE baseline trains until it has spent Toto's measured pre-training FLOPs; steps: Toto's step count
    bc_task: str = "franka_pick"
    bc_episodes: int = 150
    bc_epochs: int = 60
    # how the demonstrations are recorded (toto_robot.sim_envs.collect.CollectConfig): DART, the noisy expert drives and each
    # state keeps the clean expert's action (docs/policies.md#dart-noisy-demonstrations-clean-labels); the demo before it:
    # {label: executed, noise: 0.1, noise_all: false}
    bc_demos: dict = field(default_factory=lambda: dict(DART_DEMOS))
    extra_videos: list[str] = field(default_factory=list)  # folders of your own videos (real robot cameras, ...) added to pre-training
    real_videos: str | list[str] | None = None  # the real-camera recipe's footage (configs/demo_real.yaml): joins extra_videos
    clips_per_video: int = 4  # random clips (and crops) drawn from each of your videos; simulated videos keep 4
    sim_videos: bool = True  # pre-train on the simulated videos too (false: only your videos and the bundled images)
    sim_eval: bool = True  # the simulated probe and BC comparison (false: a real-footage run ends with the real-frame report)
    model: str = "toto_tiny"  # the Toto size pre-trained (model registry: toto_tiny, toto_small, ...)
    davis_root: str | None = None  # real frames scored after pre-training (toto_robot/probes/real_suite.py): a DAVIS folder ...
    robot_roots: list[str] = field(default_factory=list)  # ... and real robot episode folders (demo folder, LeRobot, RLDS)
    real_layer: int | None = None  # the Toto layer the real-frame report reads (None: half depth)
    real_resolution: int | None = None  # the frame size it reads them at (None: image_size); one frame must fit Toto's context
    real_scan: str = "raster"  # Toto's read-out scans (toto_robot.encoders.toto.SCANS): raster | both | four mirrored reads averaged
    real_frames: dict = field(default_factory=dict)  # more real-frame suite options (davis, propagation, bootstrap, robot_max_frames, ...)
    poolings: list[str] = field(default_factory=lambda: ["spatial_attention"])  # the probe adds them; BC compares each unless bc_pooling is set
    bc_layer: int | None = None  # the Toto layer BC reads; None = the layer the probe scored best with the first of `poolings`
    bc_pooling: str | None = "grid"  # the pool BC reads (every encoder at its probe-best layer); None = each of `poolings`
    bc: dict = field(default_factory=lambda: {"lr": 5e-4})  # BC options over compare's defaults (toto_robot.policies.bc.BCConfig)
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    eval_episodes: int = 30
    pipeline_seed: int = 0  # seeds every training stage (videos, tokenizer, shards, Toto, MAE, demonstrations); the probe images
    # and the evaluation episodes stay the same, so runs with different pipeline seeds are scored on the same items
    device: str = "cpu"

    def __post_init__(self):
        """Numbers and names checked before any stage runs (the key named as on the command line)."""
        from toto_robot.encoders.base import POOLINGS
        from toto_robot.utils.config import ConfigError, check_choice, check_int

        for key in ("image_size", "video_episodes", "tokenizer_steps", "num_frames", "pretrain_steps", "batch_tokens", "probe_train",
                    "probe_val", "bc_episodes", "bc_epochs", "eval_episodes"):
            check_int(getattr(self, key), key, low=1)
        check_int(self.random_episodes, "random_episodes", low=0)
        check_int(self.pipeline_seed, "pipeline_seed", low=0)
        if self.bc_layer is not None:
            check_int(self.bc_layer, "bc_layer", low=1)
        if not self.poolings or not self.seeds or not self.video_tasks:
            raise ConfigError(f"poolings, seeds and video_tasks need at least one entry each, got {self.poolings}, {self.seeds}, {self.video_tasks}")
        for p in self.poolings:
            check_choice(p, "poolings", POOLINGS)
        if self.bc_pooling is not None:
            check_choice(self.bc_pooling, "bc_pooling", POOLINGS)
        from toto_robot.policies.bc import BCConfig

        unknown = sorted(set(self.bc) - set(BCConfig.__dataclass_fields__))
        if unknown:
            raise ConfigError(f"bc: unknown BC option(s) {unknown}; see toto_robot.policies.bc.BCConfig")
        check_choice(self.mae_match, "mae_match", ("flops", "steps"))
        from toto_robot.encoders.toto import SCANS

        check_choice(self.real_scan, "real_scan", tuple(SCANS))
        if self.real_resolution is not None:
            check_int(self.real_resolution, "real_resolution", low=8)
        if self.probe_target is not None:
            check_choice(self.probe_target, "probe_target", ("position", "offset"))
            if self.probe_target == "offset" and "pick" not in self.bc_task:
                raise ConfigError(f"probe_target=offset asks where the cube is relative to the gripper: it needs a pick bc_task, got {self.bc_task!r}")
        check_int(self.clips_per_video, "clips_per_video", low=1)
        unknown = sorted(set(self.bc_demos) - set(PLAIN_DEMOS))
        if unknown:
            raise ConfigError(f"bc_demos: unknown key(s) {unknown}; the demo's demonstrations take {sorted(PLAIN_DEMOS)}")
        self.bc_demos = {**PLAIN_DEMOS, **self.bc_demos}
        check_choice(self.bc_demos["label"], "bc_demos.label", ("executed", "expert"))
        if self.real_videos:
            extra = [self.real_videos] if isinstance(self.real_videos, str) else list(self.real_videos)
            self.extra_videos = list(dict.fromkeys([*self.extra_videos, *extra]))
            self.real_videos = None
        if not self.sim_videos and not self.extra_videos:
            raise ConfigError("sim_videos=false leaves nothing to pre-train on: give real_videos=<folder of your videos> (or extra_videos=[...])")
        if not self.sim_eval and not (self.davis_root or self.robot_roots):
            raise ConfigError("sim_eval=false scores nothing: give davis_root=<DAVIS folder> and/or robot_roots=[<episode folders>] for the real-frame report")
        from toto_robot.model.toto import CONFIGS as TOTO_SIZES

        check_choice(self.model, "model", tuple(TOTO_SIZES))
        for key, folder in [("davis_root", self.davis_root)] + [(f"robot_roots[{k}]", r) for k, r in enumerate(self.robot_roots)]:
            if folder is not None and not Path(folder).expanduser().is_dir():
                raise ConfigError(f"{key}: folder not found: {folder}")
        for k, folder in enumerate(self.extra_videos):
            path = Path(folder).expanduser()
            if not path.is_dir() or not list_media(path, VIDEO_SUFFIXES):
                raise ConfigError(f"extra_videos[{k}]: {path} is not a folder holding videos ({', '.join(VIDEO_SUFFIXES)})")

    @property
    def probe_kind(self) -> str:
        """What the probe asks: ``offset`` (where the cube is relative to the gripper, what a wrist view shows) or
        ``position`` (where the cube or cabinet is on the table)."""
        if self.probe_target:
            return self.probe_target
        return "offset" if self.camera == "wrist" and "pick" in self.bc_task else "position"

    def _small_tokenizer(self) -> dict:
        params = dict(self.tokenizer["params"])
        if "vocab_size" in params:  # codebook tokenizers; patch tokens have none
            params["vocab_size"] = 64
        return {**self.tokenizer, "params": params}

    def shrink(self) -> "DemoConfig":
        """The same pipeline at smoke-test size (about a minute on 2 cores)."""
        return DemoConfig(out_dir=self.out_dir, cache_dir=self.cache_dir, fast=True, image_size=32,
                          video_tasks=self.video_tasks[:1], video_episodes=3, random_episodes=1, tokenizer=self._small_tokenizer(),
                          tokenizer_steps=5, num_frames=4 if self.real_resolution else 2, pretrain_steps=4, batch_tokens=256, probe_train=24, probe_val=12,
                          bc_task=self.bc_task, camera=self.camera, poolings=self.poolings, extra_videos=self.extra_videos, probe_target=self.probe_target,
                          mae_match=self.mae_match, clips_per_video=min(self.clips_per_video, 2), sim_videos=self.sim_videos, sim_eval=self.sim_eval,
                          davis_root=self.davis_root, robot_roots=self.robot_roots, real_layer=self.real_layer,
                          real_resolution=64 if self.real_resolution else None, real_scan=self.real_scan,
                          real_frames={**self.real_frames, "davis": {**self.real_frames.get("davis", {}), "max_frames": 6, "size": 64},
                                       "robot_max_frames": 200, "bootstrap": 100},
                          bc_layer=min(self.bc_layer, FAST_MODEL["n_layer"]) if self.bc_layer else None, bc_pooling=self.bc_pooling, bc=self.bc,
                          bc_episodes=4, bc_epochs=2, seeds=[0], eval_episodes=1, device=self.device, pipeline_seed=self.pipeline_seed)

    @property
    def seed_key(self) -> dict:
        """The pipeline seed's entry in the training stages' cache keys (none for seed 0, so its caches keep their keys)."""
        return {"pipeline_seed": self.pipeline_seed} if self.pipeline_seed else {}

    @property
    def bc_poolings(self) -> list[str]:
        """The pools BC compares the encoders with."""
        return [self.bc_pooling] if self.bc_pooling else list(self.poolings)


def collect_pretraining_videos(task: str, camera: str, expert_dir: Path, random_dir: Path, episodes: int, random_episodes: int,
                               image_size: int, pipeline_seed: int, expert_preview: int = 4) -> float:
    """One task's pre-training footage from one camera, seeded by the pipeline seed: scripted-expert episodes with exploration
    noise in ``expert_dir``, plus random-action ones (the arm wandering, nothing solved) in ``random_dir``, both under the
    demos' scene randomization -> the experts' success rate. The demo's videos stage and ``benchmarks/pretrain_sim.py``."""
    from toto_robot.sim_envs.collect import CollectConfig, collect

    base = PIPELINE_SEED_STRIDE * pipeline_seed
    ds = collect(CollectConfig(task=task, episodes=episodes, out_dir=str(expert_dir), image_size=image_size, noise=VIDEO_NOISE,
                               seed=1000 + base, camera=camera, preview_episodes=expert_preview))
    if random_episodes:
        collect(CollectConfig(task=task, episodes=random_episodes, out_dir=str(random_dir), image_size=image_size, mode="random",
                              seed=5000 + base, preview_episodes=0, camera=camera))
    return json.loads((ds / "summary.json").read_text())["success_rate"]


def run_demo(cfg: DemoConfig) -> Path:
    if cfg.fast:
        cfg = cfg.shrink()
    t_start = time.perf_counter()
    cache = StageCache(cfg.cache_dir)
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    from toto_robot.utils.io import atomic_save_json

    atomic_save_json(asdict(cfg), out / "demo_config.json")
    stages = []

    # 1. videos ---------------------------------------------------------------------------
    view = {} if cfg.camera == "agentview" else {"camera": cfg.camera}  # (keeps cache keys of agentview runs)
    ps, seeded = cfg.pipeline_seed, cfg.seed_key
    vid_cfg = {"tasks": cfg.video_tasks, "episodes": cfg.video_episodes, "random_episodes": cfg.random_episodes, "image_size": cfg.image_size,
               "noise": VIDEO_NOISE, **view, **seeded}

    def videos(d: Path) -> dict:
        rates = {task: collect_pretraining_videos(task, cfg.camera, d / task, d / "random" / task, cfg.video_episodes, cfg.random_episodes,
                                                  cfg.image_size, ps) for task in cfg.video_tasks}
        return {"expert_success": rates, "videos": len(list(d.glob("**/videos/*.mp4")))}

    st_videos = None
    if cfg.sim_videos or cfg.sim_eval:
        st_videos = cache.run("videos", vid_cfg, videos)
        stages.append(st_videos)
    videos_dir = st_videos.dir if st_videos else None
    datasets = pretraining_datasets(cfg, videos_dir)
    user = {"extra_videos": user_video_fingerprints(cfg)} if cfg.extra_videos else {}  # (keeps cache keys of runs without them)

    # 2. tokenizer ------------------------------------------------------------------------
    shard_kw = {"resolution": cfg.image_size, "num_frames": cfg.num_frames, "stride": 4, "workers": 1 if cfg.fast else 2, "seed": ps}
    tok_cfg = {"upstream": str(videos_dir), "tokenizer": cfg.tokenizer, "steps": cfg.tokenizer_steps, "datasets": datasets, **user, **seeded}

    def shard_job(tokenizer_dir: str = "", out_dir: str = ""):
        from toto_robot.data.tokenize import DatasetSpec, ShardJobConfig

        return ShardJobConfig(tokenizer_dir=tokenizer_dir, datasets=[DatasetSpec(**x) for x in datasets], out_dir=out_dir, **shard_kw)

    def tokenizer(d: Path) -> dict:
        from toto_robot.data.tokenize import training_frames
        from toto_robot.tokenizers.training import TokenizerTrainConfig, train_tokenizer

        frames = training_frames(shard_job(), max_frames=4096)
        tdir = train_tokenizer(TokenizerTrainConfig(kind=cfg.tokenizer["kind"], params=cfg.tokenizer["params"], steps=cfg.tokenizer_steps,
                                                    batch_size=8 if cfg.fast else 32, lr=2e-3, out_dir=str(d / "tokenizer"), device=cfg.device,
                                                    seed=ps), frames)
        return json.loads((Path(tdir) / "metrics.json").read_text())

    st_tok = cache.run("tokenizer", tok_cfg, tokenizer)
    stages.append(st_tok)

    # 3. shards ---------------------------------------------------------------------------
    sh_cfg = {"upstream": str(st_tok.dir), **shard_kw, "datasets": datasets, **user}

    def shards(d: Path) -> dict:
        from toto_robot.data.shards import ShardDataset
        from toto_robot.data.tokenize import write_shards

        write_shards(shard_job(str(st_tok.dir / "tokenizer"), str(d / "shards")))
        ds = ShardDataset(d / "shards")
        return {"sequences": len(ds), "seq_len": ds.seq_len, "tokens": len(ds) * ds.seq_len}

    st_shards = cache.run("shards", sh_cfg, shards)
    stages.append(st_shards)

    # 4. pretrain -------------------------------------------------------------------------
    down = cfg.tokenizer["params"].get("downsample") or cfg.tokenizer["params"].get("patch_size", 8)
    hw = (cfg.image_size // down) ** 2
    overrides = {"tokens_per_frame": hw, "block_size": cfg.num_frames * hw + 1}
    if cfg.tokenizer["kind"] != "patch":  # a patch model's input size comes from the shards' tokenizer (trainer)
        overrides["vocab_size"] = cfg.tokenizer["params"]["vocab_size"] + 4
    if cfg.fast:
        overrides.update(FAST_MODEL)
    pre_cfg = {"upstream": str(st_shards.dir), "model": cfg.model, "overrides": overrides, "steps": cfg.pretrain_steps,
               "batch_tokens": cfg.batch_tokens, **seeded}

    def pretrain_stage(d: Path) -> dict:
        from toto_robot.pretrain.footage import demo_schedule
        from toto_robot.pretrain.trainer import pretrain

        run = pretrain(demo_schedule(str(st_shards.dir / "shards"), str(d / "run"), cfg.model, overrides, cfg.pretrain_steps, cfg.batch_tokens,
                                     ps, cfg.device, fast=cfg.fast, resume=(d / "run" / "checkpoint").exists()))
        return json.loads((Path(run) / "metrics.json").read_text())

    st_pre = cache.run("pretrain", pre_cfg, pretrain_stage)
    stages.append(st_pre)
    final = st_pre.dir / "run" / "final"

    # 4b. MAE baseline: same frames, the same training FLOPs (or steps) -------------------
    mae_batch = 8 if cfg.fast else 64
    mae_steps = cfg.pretrain_steps
    if cfg.mae_match == "flops":  # as many steps as Toto's measured FLOPs buy at MAE's measured cost per step
        toto_flops = st_pre.result.get("train_flops") or _step_flops_of_run(st_pre.dir / "run")["train_flops"]
        mae_steps = mae_steps_for_flops(toto_flops, cfg.image_size, mae_batch)
    mae_cfg = {"upstream": str(videos_dir), "steps": mae_steps, "batch_size": mae_batch, "image_size": cfg.image_size, **user, **seeded}
    mae_kw = mae_vit_size(cfg.image_size)

    def mae_stage(d: Path) -> dict:
        from toto_robot.data.tokenize import training_frames

        out = train_mae_baseline(d, training_frames(shard_job(), max_frames=8192), mae_steps, mae_batch, holdout=16 if cfg.fast else 128,
                                 seed=ps, device=cfg.device)
        return json.loads((out / "metrics.json").read_text())

    st_mae = cache.run("mae", mae_cfg, mae_stage)
    stages.append(st_mae)
    mae_ckpt = str(st_mae.dir / "mae_vit.safetensors")

    if cfg.sim_eval:
        sim_eval_stages(cfg, cache, stages, st_pre, st_mae, final, mae_ckpt, mae_kw, view)

    # 8. real frames ----------------------------------------------------------------------
    if cfg.davis_root or cfg.robot_roots:
        stages.append(real_frames_stage(cfg, cache, st_pre, st_mae, final, mae_ckpt))

    results = demo_results(cfg, stages)
    atomic_save_json(results, out / "results.json")
    report = write_report(cfg, out, stages, time.perf_counter() - t_start, results["paired"])
    log.info("demo report: %s", report)
    return report


def sim_eval_stages(cfg: DemoConfig, cache: StageCache, stages: list, st_pre, st_mae, final: Path, mae_ckpt: str, mae_kw: dict, view: dict) -> None:
    """Stages 5-7: the simulated probe, demonstrations and the BC comparison (appended to ``stages``)."""
    # 5. probe ----------------------------------------------------------------------------
    probe_cfg = {"upstream": [str(st_pre.dir), str(st_mae.dir)], "task": cfg.bc_task, "n_train": cfg.probe_train, "n_val": cfg.probe_val, "image_size": cfg.image_size,
                 **view}
    probe_poolings = ["attention", "average"] + [p for p in cfg.poolings if p not in ("attention", "average")]
    if len(probe_poolings) > 2:
        probe_cfg["poolings"] = probe_poolings
    if cfg.probe_kind != "position":  # (keeps cache keys of position-probe runs)
        probe_cfg["target"] = cfg.probe_kind

    def probe(d: Path) -> dict:
        from toto_robot.encoders import build_encoder
        from toto_robot.probes import best_row, layer_sweep, sim_probe_data
        from toto_robot.probes.sweep import write_sweep

        data = sim_probe_data(cfg.bc_task, cfg.probe_kind, cfg.probe_train, cfg.probe_val, cfg.image_size, seed=7, camera=cfg.camera)
        rows = []
        encoders = {"toto": build_encoder("toto", checkpoint=str(final)), "random-init": build_encoder("random", like=str(final), seed=cfg.pipeline_seed),
                    "mae": build_encoder("mae_tiny", checkpoint=mae_ckpt, **mae_kw)}
        for label, enc in encoders.items():
            enc.name = label
            rows += layer_sweep(enc, data, poolings=probe_poolings, epochs=3 if cfg.fast else 60)
        write_sweep(rows, d, chance=data.chance())
        best = {f"{e}/{p}": best_row([r for r in rows if r["encoder"] == e], p) for e in encoders for p in probe_poolings}
        return {"best": best, "chance": data.chance(), "rows": rows}

    st_probe = cache.run("probe", probe_cfg, probe)
    stages.append(st_probe)

    # 6. demonstrations -------------------------------------------------------------------
    demo_cfg = {"task": cfg.bc_task, "episodes": cfg.bc_episodes, "image_size": cfg.image_size, **view, **cfg.seed_key,
                # the recording enters the key only when it is not the plain one, so earlier caches keep theirs
                **({"recording": cfg.bc_demos} if cfg.bc_demos != PLAIN_DEMOS else {})}

    def demos(d: Path) -> dict:
        from toto_robot.sim_envs.collect import CollectConfig, collect

        collect(CollectConfig(task=cfg.bc_task, episodes=cfg.bc_episodes, out_dir=str(d / "demos"), image_size=cfg.image_size, videos=False,
                              camera=cfg.camera, seed=PIPELINE_SEED_STRIDE * cfg.pipeline_seed, **cfg.bc_demos))
        return json.loads((d / "demos" / "summary.json").read_text())

    st_demos = cache.run("demos", demo_cfg, demos)
    stages.append(st_demos)

    # 7. compare --------------------------------------------------------------------------
    bc_pool = cfg.poolings[0]  # each backbone reads the layer its probe scored best with the pooling BC uses first
    best_layer = cfg.bc_layer or st_probe.result["best"][f"toto/{bc_pool}"]["layer"]
    mae_layer = st_probe.result["best"][f"mae/{bc_pool}"]["layer"]
    encoders = {}
    for pooling in cfg.bc_poolings:  # the paper's attention pooling keeps the plain labels
        tag = "" if pooling == "attention" else f"+{pooling}"
        encoders |= {f"toto{tag}": {"name": "toto", "checkpoint": str(final), "layer": best_layer, "pooling": pooling},
                     f"mae{tag}": {"name": "mae_tiny", "checkpoint": mae_ckpt, "layer": mae_layer, "pooling": pooling, **mae_kw},
                     f"random-init{tag}": {"name": "random", "like": str(final), "layer": best_layer, "pooling": pooling,
                                                **({"seed": cfg.pipeline_seed} if cfg.pipeline_seed else {})}}
    cmp_cfg = {"upstream": [str(st_pre.dir), str(st_mae.dir), str(st_demos.dir)], "encoders": encoders, "seeds": cfg.seeds, "episodes": cfg.eval_episodes,
               "epochs": cfg.bc_epochs, "bc": dict(cfg.bc)}

    def compare_stage(d: Path) -> dict:
        from toto_robot.policies.compare import CompareConfig, compare

        compare(CompareConfig(tasks=[cfg.bc_task], encoders=encoders, demos={cfg.bc_task: str(st_demos.dir / "demos")}, out_dir=str(d),
                              seeds=cfg.seeds, eval_episodes=cfg.eval_episodes, bc={"epochs": cfg.bc_epochs, **cfg.bc, "device": cfg.device}))
        # the demo's BC is the measured recipe (docs/policies.md): the grid pool, 60 epochs at lr 5e-4, the last epoch
        import csv

        with open(d / "summary.csv") as f:
            summary = list(csv.DictReader(f))
        per_episode = {label: [x for seed in cfg.seeds
                               for x in json.loads((d / "runs" / cfg.bc_task / label / f"seed{seed}" / "eval.json").read_text())["per_episode"]]
                       for label in encoders}  # the same seeded episodes for every encoder, in the same order: paired
        return {"summary": summary, "per_episode": per_episode}

    st_cmp = cache.run("compare", cmp_cfg, compare_stage)
    stages.append(st_cmp)


def real_frames_stage(cfg: DemoConfig, cache: StageCache, st_pre, st_mae, final: Path, mae_ckpt: str):
    """Stage 8: Toto, its random-init control, an untrained ViT of the same input size, MAE at matched compute and the
    no-training baselines on the user's real frames (``toto_robot.probes.real_suite``), cached like every stage."""
    from toto_robot.probes.real_suite import PROTOCOL, RealFramesConfig, standard_encoders

    real_cfg = {"upstream": [str(st_pre.dir), str(st_mae.dir)], "davis_root": cfg.davis_root, "robot_roots": cfg.robot_roots,
                "layer": cfg.real_layer, "options": cfg.real_frames, "protocol": PROTOCOL,
                # the read-out's size and scans enter the key only when set, so reports read the default way keep theirs
                **({"resolution": cfg.real_resolution, "scan": cfg.real_scan} if cfg.real_resolution or cfg.real_scan != "raster" else {})}

    def real_frames(d: Path) -> dict:
        from toto_robot.probes.real_suite import run_real_frames

        encoders = standard_encoders(str(final), mae_ckpt, cfg.real_layer, resolution=cfg.real_resolution, scan=cfg.real_scan)
        run_real_frames(RealFramesConfig(encoders=encoders, out_dir=str(d), davis_root=cfg.davis_root, robot_roots=list(cfg.robot_roots),
                                         command=f"toto-robot demo (stage real_frames of {cfg.out_dir})", **cfg.real_frames))
        return json.loads((d / "results.json").read_text())

    return cache.run("real_frames", real_cfg, real_frames)


def real_frames_section(r: Report, stage, keep) -> None:
    """The report's "Real frames" sections: the real-frame suite's own page sections (``real_suite.page_sections``) of the
    stage's results, each title prefixed "Real frames: ", figures copied beside the report."""
    from toto_robot.probes.real_suite import page_sections

    cfg = json.loads((stage.dir / "real_frames_config.json").read_text())
    for k, sec in enumerate(page_sections(stage.result, cfg["folds"], cfg["bootstrap"])):
        s = r.section(f"Real frames: {sec.title}")
        if k == 0:
            s.text.append(f"Frozen encoders on your real footage (`toto_robot/probes/real_suite.py`); the suite's own page, with the "
                          f"command that made it, is `{stage.dir / 'real_frames.md'}`.")
        s.text += sec.text
        s.tables += sec.tables
        s.figures += [(keep(stage.dir / path, f"real_{path}"), caption) for path, caption in sec.figures]


def pretraining_datasets(cfg: DemoConfig, videos_dir: Path | None) -> list[dict]:
    """What Toto (and the MAE baseline) pre-train on: the simulated expert and random-action videos,
    the user's own video folders (``extra_videos``: real robot cameras, any local footage) and the
    bundled images packed as the frames of a sequence."""
    datasets = []
    if cfg.sim_videos:
        datasets += [{"name": f"sim_{t}", "kind": "video", "path": str(videos_dir / t / "videos"), "clips_per_video": 4} for t in cfg.video_tasks]
    if cfg.sim_videos and cfg.random_episodes:
        datasets += [{"name": f"random_{t}", "kind": "video", "path": str(videos_dir / "random" / t / "videos"), "clips_per_video": 4}
                     for t in cfg.video_tasks]
    datasets += [{"name": f"user_{k}", "kind": "video", "path": str(Path(folder).expanduser().resolve()), "clips_per_video": cfg.clips_per_video}
                 for k, folder in enumerate(cfg.extra_videos)]
    datasets.append({"name": "images", "kind": "bundled_images", "count": 32 if cfg.fast else 64})
    return datasets


def user_video_fingerprints(cfg: DemoConfig) -> list[str]:
    """Name, size and count of the videos in each ``extra_videos`` folder: a changed folder re-runs the stages that read it."""
    out = []
    for folder in cfg.extra_videos:
        files = list_media(Path(folder).expanduser(), VIDEO_SUFFIXES)
        out.append(config_hash([(str(p.relative_to(Path(folder).expanduser())), p.stat().st_size) for p in files]))
    return out


def demo_results(cfg: DemoConfig, stages) -> dict:
    """The run's numbers in one machine-readable file (``results.json``; the recipe study reads it)."""
    by = {s.name: s for s in stages}
    pre, mae = dict(by["pretrain"].result), dict(by["mae"].result)
    if "train_flops" not in pre:  # a stage cached before the trainers counted FLOPs: measure one step now
        pre.update(_step_flops_of_run(by["pretrain"].dir / "run"))
    if "train_flops" not in mae:
        mae.update(_step_flops_of_mae(by["mae"].dir, cfg.image_size))
    out = {"config": asdict(cfg),
           "stages": {s.name: {"seconds": s.seconds, "cached": s.cached, "dir": str(s.dir)} for s in stages},
           "pretrain": {k: v for k, v in pre.items() if not isinstance(v, list)},
           "mae": mae, "paired": []}
    if "probe" in by:
        out |= {"probe": {"best": by["probe"].result["best"], "chance": by["probe"].result["chance"], "target": cfg.probe_kind},
                "bc": by["compare"].result["summary"],
                "paired": paired_tests(cfg, by["probe"].result, by["compare"].result)}
    if "real_frames" in by:
        out["real_frames"] = by["real_frames"].result
    return out


def paired_tests(cfg: DemoConfig, probe: dict, compare: dict) -> list[dict]:
    """Toto against each control on the same items: the probe's validation images (each backbone at its
    best layer) and BC's seeded evaluation episodes (all seeds), as exact McNemar tests. Stages cached
    before the per-item outcomes were kept give no rows."""
    from toto_robot.utils.stats import mcnemar_exact

    rows = []
    best = probe["best"]
    for pooling in dict.fromkeys(k.split("/", 1)[1] for k in best):
        for other in ("random-init", "mae"):
            a, b = best.get(f"toto/{pooling}", {}), best.get(f"{other}/{pooling}", {})
            if a.get("val_correct") and b.get("val_correct"):
                rows.append({"what": "probe", "pooling": pooling, "toto": "toto", "control": other,
                             **mcnemar_exact(a["val_correct"], b["val_correct"])})
    episodes = compare.get("per_episode", {})
    for pooling in cfg.bc_poolings:
        tag = "" if pooling == "attention" else f"+{pooling}"
        for other in ("random-init", "mae"):
            if f"toto{tag}" in episodes and f"{other}{tag}" in episodes:
                rows.append({"what": "bc", "pooling": pooling, "toto": f"toto{tag}", "control": f"{other}{tag}",
                             **mcnemar_exact(episodes[f"toto{tag}"], episodes[f"{other}{tag}"])})
    return rows


def _step_flops_of_run(run: Path) -> dict:
    """``flops_per_step`` / ``train_flops`` of a finished Toto run, from one forward + backward of its shapes."""
    import torch

    from toto_robot.model.toto import Toto
    from toto_robot.utils.flops import train_flops

    pc = json.loads((run / "pretrain_config.json").read_text())
    steps = json.loads((run / "metrics.json").read_text())["steps"]
    model = Toto.from_pretrained(run / "final")
    B, accum, world = pc["micro_batch"], pc["grad_accum"], pc["world_size"]
    L = pc["tokens_per_step"] // (B * accum * world)
    c = model.config
    x = torch.randn(B, L, c.input_dim) if c.input_dim else torch.randint(0, c.vocab_size, (B, L))
    with train_flops() as counter:
        model(x, targets=torch.randn(B, L, c.input_dim) if c.input_dim else x).loss.backward()
    per_step = counter.total * accum * world
    return {"flops_per_step": per_step, "train_flops": per_step * steps}


def mae_step_flops(vit: str, image_size: int, batch_size: int, mask_ratio: float = 0.75) -> int:
    """FLOPs of one MAE training step (forward + backward, FlopCounterMode), measured on random frames."""
    import torch

    from toto_robot.encoders.vit import VIT_CONFIGS, ViTConfig
    from toto_robot.mae.model import MAE, MAEConfig
    from toto_robot.utils.flops import train_flops

    torch.manual_seed(0)
    model = MAE(MAEConfig(ViTConfig(**{**VIT_CONFIGS[vit], "img_size": image_size}), mask_ratio=mask_ratio))
    with train_flops() as counter:
        model(torch.rand(batch_size, 3, image_size, image_size))[0].backward()
    return counter.total


def mae_steps_for_flops(flops: float, image_size: int, batch_size: int) -> int:
    """MAE-tiny steps of ``batch_size`` frames that spend ``flops`` (at least one), at its measured cost per step."""
    return max(1, round(flops / mae_step_flops("mae_tiny", image_size, batch_size)))


def mae_vit_size(image_size: int) -> dict:
    """MAE-tiny's ViT takes frames of the pre-training's size: the override its builders need ({} at its default size)."""
    from toto_robot.encoders.vit import VIT_CONFIGS

    return {} if VIT_CONFIGS["mae_tiny"]["img_size"] == image_size else {"img_size": image_size}


def train_mae_baseline(d: Path, frames, steps: int, batch_size: int, holdout: int, seed: int, device: str) -> Path:
    """The demo's MAE-tiny baseline trained on ``frames`` (uint8 [N, S, S, 3]) in ``d`` -> ``d``; an interrupted run resumes
    from its checkpoint."""
    from toto_robot.mae import MAEPretrainConfig, pretrain_mae

    return pretrain_mae(MAEPretrainConfig(out_dir=str(d), vit="mae_tiny", steps=steps, batch_size=batch_size, holdout=holdout, device=device,
                                          seed=seed, resume=find_checkpoint(d / "checkpoint") is not None), frames, **mae_vit_size(frames.shape[1]))


def _step_flops_of_mae(d: Path, image_size: int) -> dict:
    """The same for a finished MAE baseline run."""
    mc = json.loads((d / "mae_config.json").read_text())
    per_step = mae_step_flops(mc["vit"], image_size, mc["batch_size"], mc["mask_ratio"])
    return {"flops_per_step": per_step, "train_flops": per_step * mc["steps"]}


def write_report(cfg: DemoConfig, out: Path, stages, total_seconds: float, paired: list[dict]) -> Path:
    """The report's figures are copied next to it, so the run folder stands alone without the cache."""
    import shutil

    by = {s.name: s for s in stages}
    (out / "figures").mkdir(parents=True, exist_ok=True)

    def keep(path: Path, name: str) -> Path:
        dst = out / "figures" / name
        if path.is_file():
            shutil.copyfile(path, dst)
        return dst

    r = Report("toto_robot demo: video pre-training to robot policies" + (" (fast smoke-test sizes)" if cfg.fast else ""), out)

    s = r.section("Pipeline")
    cached = sum(st.cached for st in stages)
    s.text.append(f"Everything below was produced from nothing by `toto-robot demo` (what `make demo` runs) on this machine ({cfg.device}): computing the stages took "
                  f"{sum(st.seconds for st in stages) / 60:.1f} min; this invocation took {total_seconds / 60:.1f} min with {cached} of "
                  f"{len(stages)} stages reused from the cache (`{cfg.cache_dir}`).")
    s.tables.append((["stage", "seconds", "cached", "folder"],
                     [[st.name, f"{st.seconds:.0f}", "yes" if st.cached else "no", str(st.dir)] for st in stages]))

    if "videos" in by:
        s = r.section("1. Simulated robot videos")
        rates = by["videos"].result["expert_success"]
        used = "" if cfg.sim_videos else " (not pre-trained on: sim_videos=false; they feed the simulated probe and BC only)"
        s.text.append(f"{by['videos'].result['videos']} episodes at {cfg.image_size} px ({cfg.video_episodes} scripted-expert and "
                      f"{cfg.random_episodes} random-action per task, lighting/colour/camera randomized), rendered to H.264{used}. "
                      "Expert success: " + ", ".join(f"{t} {100 * v:.0f}%" for t, v in rates.items()) + ".")
        for t in cfg.video_tasks:
            s.figures.append((keep(by["videos"].dir / t / "preview.mp4", f"{t}_preview.mp4"), f"{t}: first episodes"))
    if cfg.extra_videos:
        s = r.section("1b. Your videos")
        s.text.append(f"Pre-trained on {cfg.clips_per_video} random {cfg.num_frames}-frame stride-4 clips (random square crops) of every video in: "
                      + ", ".join(f"`{v}`" for v in cfg.extra_videos) + ".")

    s = r.section("2. Tokenizer")
    m = by["tokenizer"].result
    params = cfg.tokenizer["params"]
    if cfg.tokenizer["kind"] == "patch":
        s.text.append(f"Continuous {params.get('patch_size', 8)}x{params.get('patch_size', 8)} patch tokens: no codebook, the model reads "
                      "pixels and regresses the next normalised patch (nothing to train; decoding the tokens gives the frame back exactly).")
    else:
        s.text.append(f"{cfg.tokenizer['kind']} tokenizer, {params['vocab_size']} codes, {params.get('downsample', 8)}x downsampling, "
                      f"{cfg.tokenizer_steps} steps: held-out PSNR {m.get('psnr_heldout_db', float('nan')):.2f} dB (the paper's 8k dVAE is "
                      "`tokenizer=dvae_8k`; the VQ tokenizer trains about 3x faster on CPU).")
    s.figures.append((keep(by["tokenizer"].dir / "tokenizer" / "recon.png", "tokenizer_recon.png"), "held-out frames (top) and reconstructions (bottom)"))

    s = r.section("3-4. Token shards and next-token pre-training")
    sh, pm = by["shards"].result, by["pretrain"].result
    if cfg.tokenizer["kind"] == "patch":
        s.text.append(f"{sh['sequences']} clips of {cfg.num_frames} frames ({sh['seq_len']} patch tokens each, {sh['tokens']:,} in all: "
                      "stride-4 video clips and packed images), patchified on the fly.")
    else:
        s.text.append(f"{sh['sequences']} sequences of {sh['seq_len']} ids ({sh['tokens']:,} tokens: {cfg.num_frames}-frame stride-4 clips "
                      "and packed images, start tokens video=1 / image=3, end=2).")
    s.tables.append((["metric", "value"], [[k, f"{v:.4f}" if isinstance(v, float) else str(v)] for k, v in pm.items() if not isinstance(v, (list, dict))]))
    run = by["pretrain"].dir / "run"
    s.figures.append((keep(run / "loss_curve.png", "pretrain_loss.png"), "pre-training loss"))

    mm = by["mae"].result
    mae_batch = json.loads((by["mae"].dir / "mae_config.json").read_text())["batch_size"]
    matched = (f"as many steps as Toto's pre-training FLOPs buy ({mm['steps']} steps of batch {mae_batch}, "
               f"{mm.get('train_flops', 0) / 1e12:.1f} vs Toto's {pm.get('train_flops', 0) / 1e12:.1f} TFLOP)" if cfg.mae_match == "flops"
               else f"the same number of steps ({mm['steps']}, batch {mae_batch})")
    s.text.append(f"Baseline: a tiny MAE (ViT, {mm['params'] / 1e6:.1f}M params, 75% masking) trained on the same frames for "
                  f"{matched}: masked-patch loss {mm['first_loss']:.3f} -> "
                  f"{mm['final_loss']:.3f} (held-out {mm['heldout_loss']:.3f}).")
    s.figures.append((keep(by["mae"].dir / "loss_curve.png", "mae_loss.png"), "MAE pre-training loss (baseline)"))

    if "probe" in by:
        s = r.section("5. Probing the frozen encoder")
        best, chance = by["probe"].result["best"], by["probe"].result["chance"]
        if cfg.probe_kind == "offset":
            s.text.append(f"Task: where is the cube of {cfg.bc_task} relative to the gripper (3 x 3 cells: within 1 cm of centred, or off to "
                          f"either side, along x and y) from one {cfg.camera} frame, with the open gripper 4-12 cm above the cube. ")
        else:
            s.text.append(f"Task: where is the {'cube' if 'pick' in cfg.bc_task else 'cabinet'} of {cfg.bc_task} (3 x 3 grid over its reset range) "
                          "from one camera frame, with the arm in random poses. ")
        s.text[-1] += (f"Chance is 11% (9 classes); always answering the training set's most common class scores {100 * chance:.0f}%.")
        from toto_robot.utils.stats import wilson_interval

        def ci(acc: float) -> str:
            lo, hi = wilson_interval(round(acc * cfg.probe_val), cfg.probe_val)
            return f"[{100 * lo:.0f}, {100 * hi:.0f}]"

        s.tables.append((["encoder / pooling", "best layer", f"val accuracy ({cfg.probe_val} images)", "95% interval"],
                         [[k, f"{v['layer']}", f"{100 * v['val_acc']:.1f}%", ci(v["val_acc"])] for k, v in best.items()]))
        s.figures.append((keep(by["probe"].dir / "layer_sweep.png", "probe_layer_sweep.png"), "probe accuracy by layer"))

        s = r.section("6-7. Behaviour cloning on frozen encoders")
        rec = cfg.bc_demos
        noise = f"noise {rec['noise']} {'on every step' if rec['noise_all'] else 'while travelling'}"
        how = (f"recorded by DART (the expert drove with {noise}, each state labelled with the clean expert's action)"
               if rec["label"] == "expert" else f"recorded with the expert's own actions ({noise})")
        s.text.append(f"{by['demos'].result['episodes']} expert demonstrations of {cfg.bc_task}, {how}; every encoder gets the same demos, "
                      f"seeds {cfg.seeds}, {cfg.bc_epochs} epochs and {cfg.eval_episodes} evaluation episodes per seed on held-out seeds; "
                      f"BC reads each encoder through the {' / '.join(cfg.bc_poolings)} pool, options {cfg.bc or 'compare defaults'}.")
        layers = {spec["name"]: spec["layer"] for spec in json.loads((by["compare"].dir / "compare_config.json").read_text())["encoders"].values()}
        source = "set by `bc_layer`" if cfg.bc_layer else f"the layer Toto's {cfg.poolings[0]} probe scored best"
        s.text.append(f"Toto and random-init features come from layer {layers['toto']} ({source}), "
                      f"MAE features from layer {layers['mae_tiny']} (the best of MAE's {cfg.poolings[0]} probe).")
        rows = by["compare"].result["summary"]
        s.tables.append((["encoder", "task", "success", "95% interval", "held-out action MSE"],
                         [[x["encoder"], x["task"], f"{100 * float(x['success_rate']):.0f}%",
                           f"[{100 * float(x['ci_low']):.0f}, {100 * float(x['ci_high']):.0f}]", f"{float(x['val_loss']):.4f}"] for x in rows]))
        s.figures.append((keep(by["compare"].dir / "success.png", "bc_success.png"), "success rate (95% Wilson interval)"))
        s.figures.append((keep(by["compare"].dir / "learning_curves.png", "bc_learning_curves.png"), "BC learning curves"))
        for label in dict.fromkeys(x["encoder"] for x in rows):
            video = by["compare"].dir / "runs" / cfg.bc_task / label / f"seed{cfg.seeds[0]}" / "rollouts.mp4"
            s.figures.append((keep(video, f"rollouts_{label}.mp4"), f"{label}: first evaluation rollouts"))

        if paired:
            s = r.section("8. Toto against its controls, item by item")
            s.text.append("Toto against its controls item by item (exact McNemar test on the same validation images, or on the same seeded "
                          "evaluation episodes of every seed; 'only Toto' / 'only control' count the items just one of the two got right). "
                          "Intervals that overlap can still hide a difference that pairing shows, and the other way round.")
            s.tables.append((["what", "pooling", "Toto vs", "Toto right", "control right", "only Toto", "only control", "items", "p (two-sided)"],
                             [[t["what"], t["pooling"], t["control"], str(t["a"]), str(t["b"]), str(t["a_only"]), str(t["b_only"]), str(t["n"]),
                               f"{t['p']:.2g}"] for t in paired]))

    if "real_frames" in by:
        real_frames_section(r, by["real_frames"], keep)

    md, html = r.write()
    return html
