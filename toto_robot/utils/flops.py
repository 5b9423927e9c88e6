"""Training FLOPs measured, not guessed: PyTorch's ``FlopCounterMode`` counts the matmuls and
attention of one real forward + backward, so Toto and the MAE baseline are compared on the same
footing ("matched compute" in the demo and the recipe study).

    with train_flops() as counter:
        loss = model(x, targets=y).loss
        loss.backward()
    flops_per_step = counter.total

PyTorch counts the attention kernels it dispatches on GPU; its CPU flash-attention kernel (what
``scaled_dot_product_attention`` runs here) has no formula, so it is registered below with the same
count as the GPU kernels (``4 B H L S d`` forward, 2.5x that backward; no discount for causal masks).
"""
from __future__ import annotations

from contextlib import contextmanager

import torch
from torch.utils import flop_counter as fc

_aten = torch.ops.aten


def _register_cpu_attention() -> None:
    fwd, bwd = _aten._scaled_dot_product_flash_attention_for_cpu, _aten._scaled_dot_product_flash_attention_for_cpu_backward
    if fwd in fc.flop_registry:
        return

    @fc.register_flop_formula(fwd)
    def _fwd(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
        return fc.sdpa_flop_count(query_shape, key_shape, value_shape)

    @fc.register_flop_formula(bwd)
    def _bwd(grad_out_shape, query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
        return fc.sdpa_backward_flop_count(grad_out_shape, query_shape, key_shape, value_shape)


def matmul_params(model) -> int:
    """Parameters of a decoder that take part in a matmul: all of them but an untied input embedding,
    which is a lookup (norm weights are counted too, as the convention does: a rounding error)."""
    cfg = model.config
    n = model.num_params()
    if not getattr(cfg, "tie_embeddings", True) and not getattr(cfg, "input_dim", 0):
        n -= model.tok_emb.weight.numel()
    return n


def model_flops_per_token(model, seq: int) -> int:
    """Analytic training FLOPs per token of a decoder (PaLM's MFU convention): 6 per parameter that
    takes part in a matmul (forward 2, backward 4), plus attention's score and value matmuls,
    12 * layers * width * sequence length (counted as if not causal, the usual convention)."""
    cfg = model.config
    return 6 * matmul_params(model) + 12 * cfg.n_layer * cfg.n_embd * seq


class _Counter:
    total: int = 0


@contextmanager
def train_flops():
    """Count the FLOPs of everything run inside (``counter.total`` once the block exits)."""
    _register_cpu_attention()
    counter = _Counter()
    mode = fc.FlopCounterMode(display=False)
    with mode:
        yield counter
    counter.total = int(mode.get_total_flops())


__all__ = ["matmul_params", "model_flops_per_token", "train_flops"]
