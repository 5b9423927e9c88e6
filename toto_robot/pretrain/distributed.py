"""torchrun integration: process group from the environment, DDP or FSDP2 wrapping, full state dicts.

FSDP2 (``fully_shard``) wraps each block and then the model, with an optional mixed-precision policy
(parameters gathered and computed in bf16, gradients reduced in fp32); it also runs in a single-process
group (``init_single_process``), which is how one GPU measures the sharded code path."""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.nn as nn

from toto_robot.utils.config import ConfigError


@dataclass
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(device: str) -> DistInfo:
    """Join the process group when launched by torchrun (WORLD_SIZE > 1); gloo on CPU, nccl on CUDA."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return DistInfo()
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.startswith("cuda") else "gloo")
    info = DistInfo(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))
    if device.startswith("cuda"):
        torch.cuda.set_device(info.local_rank)
    return info


def init_single_process(device: str) -> DistInfo:
    """A process group of one (rank 0, world size 1; nccl on CUDA, gloo on CPU) unless one exists."""
    if not dist.is_initialized():
        os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
        os.environ.setdefault("MASTER_PORT", str(_free_port()))
        dist.init_process_group(backend="nccl" if device.startswith("cuda") else "gloo", rank=0, world_size=1)
    if device.startswith("cuda"):
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    return DistInfo(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wrap_model(model: nn.Module, parallel: str, info: DistInfo, device: str, param_dtype: torch.dtype | None = None) -> nn.Module:
    """DDP when several processes run; FSDP2 whenever a process group exists (one process included).
    ``param_dtype`` (FSDP only): gather and compute parameters in this dtype, reduce gradients in fp32."""
    if parallel == "none" or not dist.is_initialized() or (parallel == "ddp" and info.world_size == 1):
        return model
    if parallel == "ddp":
        from torch.nn.parallel import DistributedDataParallel

        return DistributedDataParallel(model, device_ids=[info.local_rank] if device.startswith("cuda") else None)
    if parallel == "fsdp":
        from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

        mp = MixedPrecisionPolicy(param_dtype=param_dtype, reduce_dtype=torch.float32) if param_dtype is not None else MixedPrecisionPolicy()
        for block in model.layers:
            fully_shard(block, mp_policy=mp)
        fully_shard(model, mp_policy=mp)
        return model
    raise ConfigError(f"parallel must be none, ddp or fsdp, got {parallel!r}")


def unwrap(model: nn.Module) -> nn.Module:
    return model.module if hasattr(model, "module") else model


def full_model_state(model: nn.Module) -> dict[str, torch.Tensor]:
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    return get_model_state_dict(unwrap(model) if not _is_fsdp(model) else model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))


def full_optim_state(model: nn.Module, opt: torch.optim.Optimizer) -> dict:
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_optimizer_state_dict

    return get_optimizer_state_dict(unwrap(model) if not _is_fsdp(model) else model, opt, options=StateDictOptions(full_state_dict=True, cpu_offload=True))


def load_full_state(model: nn.Module, opt: torch.optim.Optimizer, model_sd: dict, optim_sd: dict) -> None:
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_state_dict

    m = unwrap(model) if not _is_fsdp(model) else model
    set_state_dict(m, opt, model_state_dict=model_sd, optim_state_dict=optim_sd, options=StateDictOptions(full_state_dict=True, strict=False))


def _is_fsdp(model: nn.Module) -> bool:
    return type(model).__name__.startswith("FSDP")


def all_reduce_mean(x: float, info: DistInfo) -> float:
    if info.world_size == 1:
        return x
    t = torch.tensor([x], dtype=torch.float64)
    dist.all_reduce(t)
    return (t / info.world_size).item()
