"""Pre-train Toto by next-token prediction on token shards.

AdamW (betas 0.9/0.95, no decay on norms/biases), linear warm-up then cosine, gradient clipping,
a global batch counted in tokens and reached by gradient accumulation, bf16 autocast on CUDA,
DDP/FSDP2 under torchrun. Every ``checkpoint_every`` steps ``<run>/checkpoint/`` is replaced
(weights + optimizer + sampler + RNG + step) by ``utils.io.save_checkpoint``, so that ``checkpoint/``
or ``checkpoint.old/`` is complete at every instant; ``resume=True`` continues from the complete one
step for step (and refuses to start when there is none). Logs loss, lr, tokens/s and MFU to CSV and TensorBoard; writes a loss-curve PNG
and, at the end, ``<run>/final/`` (a pretrained dir with the tokenizer) and per-frame losses.
"""
from __future__ import annotations

import csv
import logging
import random
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from toto_robot.constants import CONFIG_NAME, WEIGHTS_NAME
from toto_robot.data.mixture import MixtureSampler
from toto_robot.data.sequence import model_io
from toto_robot.data.shards import ShardDataset, ShardError
from toto_robot.model import Toto, TotoConfig
from toto_robot.pretrain import distributed as D
from toto_robot.pretrain.schedule import lr_at
from toto_robot.tokenizers import Tokenizer, load_tokenizer
from toto_robot.tokenizers.patch import PatchTokenizer
from toto_robot.utils.config import ConfigError, check_bool, check_choice, check_int, check_number, check_weights
from toto_robot.utils.flops import model_flops_per_token, train_flops
from toto_robot.utils.io import (CheckpointError, atomic_save_json, atomic_write, find_checkpoint, load_pretrained, remove_partial,
                                 save_checkpoint, save_pretrained, staged_dir)

log = logging.getLogger(__name__)
PEAK_FLOPS = {"cuda": 989e12}  # H100 dense bf16; MFU is reported on CUDA only
CHECKPOINT_FILES = (WEIGHTS_NAME, CONFIG_NAME, "trainer_state.pt")  # what a checkpoint without MANIFEST.json must hold


@dataclass
class PretrainConfig:
    shards: str
    out_dir: str
    model: str = "toto_tiny"
    model_overrides: dict = field(default_factory=dict)
    init_from: str = ""  # a pretrained dir to start from (e.g. resolution fine-tune with a new rope_base)
    lr: float = 3e-4
    min_lr: float = 3e-5
    warmup_steps: int = 2000
    max_steps: int = 10_000
    batch_tokens: int = 1_000_000  # global batch, in tokens
    micro_batch: int = 8  # sequences per forward pass per process
    weight_decay: float = 0.1
    grad_clip: float = 1.0
    mixture: dict = field(default_factory=dict)  # source -> weight; empty = uniform over sources
    log_every: int = 10
    checkpoint_every: int = 500
    eval_sequences: int = 16
    resume: bool = False
    seed: int = 0
    device: str = "cpu"
    parallel: str = "ddp"  # ddp | fsdp (used when launched by torchrun with WORLD_SIZE > 1)
    compile: bool = False  # torch.compile each block (needs a C++ compiler on CPU, triton on CUDA)
    activation_checkpointing: bool = False  # recompute each block in the backward pass: less memory, ~1/3 more compute

    def __post_init__(self):
        """Every number is checked here, before any work, and an error names the hydra key and its range."""
        from toto_robot.model.toto import CONFIGS

        t = "trainer."
        check_choice(self.model, "model", CONFIGS)
        for key, low in (("max_steps", 1), ("batch_tokens", 1), ("micro_batch", 1), ("log_every", 1), ("checkpoint_every", 1),
                         ("warmup_steps", 0), ("eval_sequences", 0), ("seed", 0)):
            check_int(getattr(self, key), t + key, low=low)
        self.lr = check_number(self.lr, t + "lr", low=0, low_open=True)
        self.min_lr = check_number(self.min_lr, t + "min_lr", low=0, high=self.lr)
        self.weight_decay = check_number(self.weight_decay, t + "weight_decay", low=0)
        self.grad_clip = check_number(self.grad_clip, t + "grad_clip", low=0, low_open=True)
        check_choice(self.parallel, t + "parallel", ("ddp", "fsdp"))
        for key in ("resume", "compile", "activation_checkpointing"):
            check_bool(getattr(self, key), key if key == "resume" else t + key)
        if self.compile:
            check_compiler(self.device, t + "compile")
        self.mixture = check_weights(self.mixture, "mixture")


def build_model(cfg: PretrainConfig, ds: ShardDataset, tokenizer: Tokenizer | None = None) -> Toto:
    tok = ds.index.tokenizer
    overrides = dict(cfg.model_overrides)
    if ds.continuous:  # patch vectors in, next (normalised) patch out
        overrides.setdefault("input_dim", tokenizer.token_dim)
    else:
        overrides.setdefault("vocab_size", ds.vocab_size)
    # ids: start + T*h*w inputs; patches: T*h*w inputs in training, and one more (start + every patch) when
    # a frozen encoder reads whole clips, so both get T*h*w + 1 positions
    overrides.setdefault("block_size", positions(ds) + (1 if ds.continuous else 0))
    if "tokens_per_frame" in tok:
        overrides.setdefault("tokens_per_frame", tok["tokens_per_frame"])
    if cfg.init_from:
        _check_init_from(cfg)
        model = Toto.from_pretrained(cfg.init_from, **overrides)
    else:
        model = Toto(TotoConfig.from_name(cfg.model, **overrides))
    if ds.continuous and model.config.input_dim != tokenizer.token_dim:
        raise ShardError(f"patch size mismatch: shards in {cfg.shards} give {tokenizer.token_dim}-value patches, the model reads {model.config.input_dim}")
    if not ds.continuous and model.config.vocab_size != ds.vocab_size:
        raise ShardError(f"vocab mismatch: shards in {cfg.shards} hold {ds.vocab_size} ids, the model has {model.config.vocab_size}")
    if positions(ds) > model.config.block_size:
        raise ConfigError(f"sequence of {positions(ds)} positions exceeds the model's context of {model.config.block_size}")
    return model


ARCH_KEYS = ("n_layer", "n_head", "n_embd", "mlp_hidden", "tie_embeddings")


def _check_init_from(cfg: PretrainConfig) -> None:
    """``init_from`` continues a model of the architecture ``model`` names (after ``model_overrides``), never another one."""
    _, saved = load_pretrained(cfg.init_from)
    want = TotoConfig.from_name(cfg.model, **{k: v for k, v in cfg.model_overrides.items() if k in ARCH_KEYS})
    diff = [f"{k}={saved.get(k)} (model={cfg.model} has {getattr(want, k)})" for k in ARCH_KEYS if saved.get(k) != getattr(want, k)]
    if diff:
        raise CheckpointError(f"init_from={cfg.init_from} holds a {saved.get('name', '?')!r} model that differs from model={cfg.model}: "
                              f"{', '.join(diff)}; set model= to the size of the init_from run")


def positions(ds: ShardDataset) -> int:
    """Model positions per training sequence: ids minus the last (it is only a target); one per patch."""
    return ds.seq_len if ds.continuous else ds.seq_len - 1


def shard_tokenizer(ds: ShardDataset) -> Tokenizer | None:
    """The patch tokenizer that turns frame shards into model inputs (None for id shards)."""
    if not ds.continuous:
        return None
    path = ds.index.tokenizer.get("path")
    if not path or not Path(path).is_dir():
        raise CheckpointError(f"frame shards in {ds.root} need their tokenizer folder, recorded as {path!r}, which is missing")
    return load_tokenizer(path)


def batch_io(batch: torch.Tensor, tokenizer: Tokenizer | None) -> tuple[torch.Tensor, torch.Tensor]:
    """A stacked shard batch -> (model inputs, targets). Ids (B, L) shift by one; frame clips
    (B, T, R, R, 3) become patch vectors (B, T*h*w, D) in and normalised patches (B, T*h*w, D) out."""
    if tokenizer is None:
        return model_io(batch)
    B = batch.shape[0]
    codes = tokenizer.encode(batch.flatten(0, 1))  # (B*T, h, w, D) in [-1, 1]
    codes = codes.reshape(B, -1, codes.shape[-1])  # (B, T*h*w, D); the model prepends its start and shifts
    return codes, PatchTokenizer.targets(codes)


def check_compiler(device: str, key: str = "compile") -> None:
    """torch.compile needs a C++ compiler for CPU kernels and triton for CUDA ones: say so before any work."""
    import importlib.util

    if device.startswith("cuda"):
        if importlib.util.find_spec("triton") is None:
            raise ConfigError(f"{key}=true needs triton for CUDA kernels and it is not installed; set {key}=false")
    elif not any(shutil.which(c) for c in ("c++", "g++", "clang++")):
        raise ConfigError(f"{key}=true needs a C++ compiler (c++, g++ or clang++ on PATH) for CPU kernels and none was found; "
                         f"set {key}=false")


def compile_blocks(model: Toto) -> None:
    """Regional compilation: each block is compiled (they share one graph), the rest stays eager."""
    for block in model.layers:
        block.compile()


def autocast_for(device: str):
    """bf16 autocast on CUDA; full precision on CPU."""
    return torch.autocast("cuda", dtype=torch.bfloat16) if device.startswith("cuda") else torch.autocast("cpu", enabled=False)


def optimizer_step(wrapped, model: Toto, opt, micro_batches, accum: int, autocast, grad_clip: float,
                   count_flops: bool = False) -> tuple[float, torch.Tensor, int | None]:
    """One optimizer step over ``accum`` micro-batches ``(x, y)`` from the iterator ``micro_batches``
    (gradients synchronised on the last one only): returns the summed loss, the gradient norm before
    clipping and, with ``count_flops``, the FLOPs of the first micro-batch counted by PyTorch."""
    total, flops = 0.0, None
    for micro in range(accum):
        x, y = next(micro_batches)
        sync = micro == accum - 1 or not hasattr(wrapped, "no_sync")
        ctx = wrapped.no_sync() if not sync else _null()
        measure = count_flops and micro == 0
        with train_flops() if measure else _null() as counter:
            with ctx, autocast:
                loss = wrapped(x, targets=y).loss / accum
            loss.backward()
        if measure:
            flops = counter.total
        total += loss.item()
    norm = torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    opt.step()
    opt.zero_grad(set_to_none=True)
    return total, norm, flops


def _rng_state() -> dict:
    return {"torch": torch.get_rng_state(), "numpy": np.random.get_state()[1].tolist(), "python": random.getstate()[1]}


def pretrain(cfg: PretrainConfig) -> Path:
    info = D.init_distributed(cfg.device)
    out = Path(cfg.out_dir)
    ckpt = out / "checkpoint"
    torch.manual_seed(cfg.seed + info.rank)
    ds = ShardDataset(cfg.shards)
    tokenizer = shard_tokenizer(ds)
    model = build_model(cfg, ds, tokenizer).to(cfg.device)
    n_params = model.num_params()
    seq = positions(ds)
    accum = max(1, round(cfg.batch_tokens / (cfg.micro_batch * seq * info.world_size)))
    tokens_per_step = accum * cfg.micro_batch * seq * info.world_size
    opt = model.configure_optimizer(cfg.lr, cfg.weight_decay)
    sampler = MixtureSampler(ds.indices_by_source(), cfg.mixture or None, seed=cfg.seed * 1000 + info.rank)
    step, history, step_flops = 0, [], None  # step_flops: measured FLOPs of one optimizer step (all processes)
    found = find_checkpoint(ckpt, CHECKPOINT_FILES)
    if cfg.resume:
        if found is None:
            raise CheckpointError(f"resume=true but {out} holds no complete checkpoint (looked in {ckpt.name}/ and {ckpt.name}.old/); "
                                  "run without resume=true to start from scratch")
        step, history, step_flops = _load_checkpoint(found, model, opt, sampler, info)
        log.info("resumed from %s at step %d", found, step)
    elif found is not None:
        raise CheckpointError(f"{found} already holds a checkpoint; pass resume=true to continue it or choose a new out_dir")
    model.checkpoint_blocks = cfg.activation_checkpointing
    if cfg.compile:
        compile_blocks(model)
    wrapped = D.wrap_model(model, cfg.parallel, info, cfg.device)
    autocast = autocast_for(cfg.device)
    if info.is_main:
        out.mkdir(parents=True, exist_ok=True)
        remove_partial(out)
        atomic_save_json({**asdict(cfg), "model_config": model.config.to_dict(), "params": n_params, "tokens_per_step": tokens_per_step,
                          "grad_accum": accum, "world_size": info.world_size}, out / "pretrain_config.json")
    tb = _tensorboard(out) if info.is_main else None
    flops_per_token = model_flops_per_token(model, seq)
    bar = tqdm(total=cfg.max_steps, initial=step, desc="pretrain", unit="step", disable=not info.is_main)
    t0 = time.perf_counter()
    while step < cfg.max_steps:
        lr = lr_at(step, cfg.lr, cfg.warmup_steps, cfg.max_steps, cfg.min_lr)
        for g in opt.param_groups:
            g["lr"] = lr
        micro_batches = (batch_io(torch.stack([ds[int(i)] for i in sampler.sample(cfg.micro_batch)]).to(cfg.device), tokenizer)
                         for _ in range(accum))
        # The run's very first micro-batch is measured (a counting mode may pick other kernels, so a resumed
        # run must not measure again: it takes the number from its checkpoint and stays bit-exact).
        total, norm, flops = optimizer_step(wrapped, model, opt, micro_batches, accum, autocast, cfg.grad_clip, count_flops=step == 0)
        if flops is not None:
            step_flops = flops * accum * info.world_size
        if not np.isfinite(total):
            raise FloatingPointError(f"pretraining loss is {total} at step {step + 1}; lower trainer.lr (now {cfg.lr}) or check the shards in {cfg.shards}")
        step += 1
        total = D.all_reduce_mean(total, info)
        dt = time.perf_counter() - t0
        t0 = time.perf_counter()
        row = {"step": step, "loss": total, "lr": lr, "grad_norm": float(norm), "tokens_per_s": tokens_per_step / dt,
               "mfu": flops_per_token * tokens_per_step / dt / PEAK_FLOPS["cuda"] if cfg.device.startswith("cuda") else float("nan")}
        history.append(row)
        if info.is_main:
            bar.update()
            if step % cfg.log_every == 0 or step == cfg.max_steps:
                bar.set_postfix(loss=f"{total:.3f}", lr=f"{lr:.1e}", tok_s=f"{row['tokens_per_s']:.0f}")
                for k in ("loss", "lr", "tokens_per_s", "grad_norm"):
                    tb.add_scalar(f"train/{k}", row[k], step)
        if step % cfg.checkpoint_every == 0 or step == cfg.max_steps:
            _save_checkpoint(ckpt, model, wrapped, opt, sampler, step, history, info, step_flops)
    bar.close()
    if info.is_main:
        _write_logs(out, history)
        evaluation = per_frame_loss(model, ds, cfg.eval_sequences, cfg.device, tokenizer)
        baseline = {"mean_patch_loss": mean_patch_loss(ds, tokenizer)} if tokenizer else {"unigram_entropy": unigram_entropy(ds)}
        atomic_save_json({"final_loss": history[-1]["loss"] if history else None, **baseline, **evaluation,
                          "params": n_params, "steps": step, "tokens_per_step": tokens_per_step,
                          **({"flops_per_step": step_flops, "train_flops": step_flops * step} if step_flops else {})}, out / "metrics.json")
        _write_final(out / "final", model, wrapped, ds, info)
        tb.close()
    elif info.world_size > 1:
        D.full_model_state(wrapped)  # FSDP gathers are collective: every rank takes part
    if info.world_size > 1:
        torch.distributed.barrier()
    return out


class _null:
    def __enter__(self):
        return self

    def __exit__(self, *a):
        return False


def _tensorboard(out: Path):
    from torch.utils.tensorboard import SummaryWriter

    return SummaryWriter(str(out / "tensorboard"))


def _save_checkpoint(ckpt: Path, model, wrapped, opt, sampler, step, history, info: D.DistInfo, flops_per_step: int | None = None) -> None:
    model_sd = D.full_model_state(wrapped)
    optim_sd = D.full_optim_state(wrapped, opt)
    if not info.is_main:
        return
    state = {"step": step, "optimizer": optim_sd, "sampler": sampler.state_dict(), "rng": _rng_state(), "history": history,
             "flops_per_step": flops_per_step}

    def write(folder: Path) -> None:
        tied = model.config.tie_embeddings and not model.config.input_dim  # a patch model's head maps to patches: never tied
        save_pretrained(folder, {k: v for k, v in model_sd.items() if k != "head.weight" or not tied}, model.config.to_dict())
        with atomic_write(folder / "trainer_state.pt") as f:
            torch.save(state, f)

    save_checkpoint(ckpt, write, CHECKPOINT_FILES)  # at every instant checkpoint/ or checkpoint.old/ is complete; find_checkpoint picks it


def _load_checkpoint(ckpt: Path, model, opt, sampler, info) -> tuple[int, list, int | None]:
    sd, _ = load_pretrained(ckpt)
    try:  # weights_only: tensors and plain Python only, so a crafted file cannot run code
        state = torch.load(ckpt / "trainer_state.pt", map_location="cpu", weights_only=True)
    except Exception as e:
        raise CheckpointError(f"refusing to load {ckpt / 'trainer_state.pt'}: not a trainer state of tensors and plain values ({e})") from e
    model.load_weights(sd, source=str(ckpt))
    opt.load_state_dict(convert_legacy_optimizer(state["optimizer"]))
    sampler.load_state_dict(state["sampler"])
    torch.set_rng_state(state["rng"]["torch"])
    return int(state["step"]), list(state["history"]), state.get("flops_per_step")


def convert_legacy_optimizer(osd: dict) -> dict:
    """An optimizer state saved when q/k/v and gate/up were separate parameters -> the fused layout:
    per-parameter moments stacked like the weights (``convert_legacy_keys``), step counts kept, the
    parameter lists renamed. States keyed by parameter name (``full_optim_state``); others pass through."""
    from toto_robot.model.toto import LEGACY_FUSED

    state = osd.get("state", {})
    firsts = {parts[0]: (fused, parts) for fused, parts in LEGACY_FUSED.items()}
    hits = {k: firsts[f] for k in state if isinstance(k, str) for f in firsts if k.endswith(f)}
    if not hits:
        return osd
    new_state, dropped, renamed = dict(state), set(), {}
    for key, (fused, parts) in hits.items():
        prefix = key[: -len(parts[0])]
        names = [prefix + p for p in parts]
        missing = [n for n in names if n not in state]
        if missing:
            raise CheckpointError(f"optimizer state has {key} but not {missing}")
        first = state[names[0]]
        new_state[prefix + fused] = {f: torch.cat([state[n][f] for n in names]) if torch.is_tensor(v) and v.dim() else v
                                     for f, v in first.items()}
        for n in names:
            del new_state[n]
        renamed[names[0]] = prefix + fused
        dropped.update(names[1:])
    groups = [{**g, "params": [renamed.get(p, p) for p in g["params"] if p not in dropped]} for g in osd["param_groups"]]
    return {**osd, "state": new_state, "param_groups": groups}


def unigram_entropy(ds: ShardDataset, max_sequences: int = 512) -> float:
    """Entropy (nats) of the token distribution: the loss of a model that ignores context."""
    n = min(len(ds), max_sequences)
    ids = torch.cat([ds[i][1:] for i in range(n)])
    p = torch.bincount(ids, minlength=ds.vocab_size).double()
    p = p[p > 0] / p.sum()
    return float(-(p * p.log()).sum())


@torch.no_grad()
def mean_patch_loss(ds: ShardDataset, tokenizer: Tokenizer, max_sequences: int = 64) -> float:
    """Patch regression loss of always predicting the mean (zero) normalised patch: the context-free baseline."""
    n = min(len(ds), max_sequences)
    return float(torch.stack([batch_io(ds[i][None], tokenizer)[1].pow(2).mean() for i in range(n)]).mean())


@torch.no_grad()
def per_frame_loss(model: Toto, ds: ShardDataset, n: int, device: str, tokenizer: Tokenizer | None = None) -> dict:
    """Mean next-token loss per frame position (paper Fig. 10: frame 0 is hardest); patch models: MSE."""
    model.eval()
    hw = ds.index.tokenizer.get("tokens_per_frame") or model.config.tokens_per_frame
    T = positions(ds) // hw
    losses = []
    for i in range(min(n, len(ds))):
        x, y = batch_io(ds[i][None].to(device), tokenizer)
        losses.append(model.per_position_loss(x, y)[0, : T * hw].view(T, hw).mean(1).cpu())
    model.train()
    if not losses:
        return {}
    per_frame = torch.stack(losses).mean(0).tolist()
    return {"per_frame_loss": per_frame, "eval_loss": float(np.mean(per_frame))}


def _write_logs(out: Path, history: list[dict]) -> None:
    if not history:
        return
    with atomic_write(out / "metrics.csv", "w") as f:
        w = csv.DictWriter(f, fieldnames=list(history[0]))
        w.writeheader()
        w.writerows(history)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot([r["step"] for r in history], [r["loss"] for r in history])
    ax.set_xlabel("step")
    ax.set_ylabel("next-token loss (nats)")
    ax.set_title("Toto pre-training loss")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    with atomic_write(out / "loss_curve.png") as f:
        fig.savefig(f, format="png", dpi=100)
    plt.close(fig)


def _write_final(final: Path, model: Toto, wrapped, ds: ShardDataset, info) -> None:
    """``final/`` (weights, config, tokenizer, data.json) appears in one rename, complete."""
    with staged_dir(final) as tmp:
        model.save_pretrained(tmp)
        tok_path = ds.index.tokenizer.get("path")
        if tok_path and Path(tok_path).is_dir():
            shutil.copytree(tok_path, tmp / "tokenizer")
        atomic_save_json({"tokenizer": ds.index.tokenizer, "seq_len": ds.seq_len}, tmp / "data.json")
