"""Fused train-step kernels for the Toto decoder: RMSNorm, rotary q/k split, SwiGLU, causal attention.

Each is an ``autograd.Function`` with a hand-written backward that reads and writes every big tensor
as few times as it can and allocates as few temporaries as it can (on a CPU the elementwise passes
and the page faults of fresh allocations are what sits beside the matmuls in a profile). Their
forward computes the same expression as Hugging Face's Llama, so logits agree to float rounding.
Each one has a plain-ops reference beside it (``*_reference``): the tests check values and
gradients against it, and it is what runs under ``torch.compile`` (the compiler fuses plain ops
itself and traces them more easily than these functions).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import _get_current_dispatch_mode


def _plain() -> bool:
    return torch.compiler.is_compiling()


# ---- RMSNorm -------------------------------------------------------------------------------------
def rms_norm_reference(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    return F.rms_norm(x, (x.shape[-1],), weight, eps)


class _RMSNorm(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, eps):
        # x: (..., D); aten's fused kernel returns y and 1/rms (..., 1), the same values as F.rms_norm
        y, rstd = torch.ops.aten._fused_rms_norm(x, [x.shape[-1]], weight, eps)
        ctx.save_for_backward(x, weight, rstd)
        return y

    @staticmethod
    def backward(ctx, g):
        x, weight, rstd = ctx.saved_tensors
        D = x.shape[-1]
        xhat = x * rstd  # (..., D) normalised input
        t = g * xhat  # (..., D)
        dweight = t.reshape(-1, D).sum(0) if ctx.needs_input_grad[1] else None
        # dx = rstd * (g w - xhat * mean(g w xhat)); the row means as one matrix-vector product
        mean = (t.reshape(-1, D) @ weight).div_(D).view(*x.shape[:-1], 1)  # (..., 1)
        dx = torch.mul(g, weight, out=t).sub_(xhat.mul_(mean)).mul_(rstd)  # reuses t
        return dx, dweight, None


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """``F.rms_norm(x, (D,), weight, eps)`` with a leaner backward on CPU float32."""
    if _plain() or x.device.type != "cpu" or x.dtype != torch.float32 or weight.dtype != x.dtype:
        return rms_norm_reference(x, weight, eps)  # CUDA has its own fused kernel with backward
    return _RMSNorm.apply(x, weight, eps)


# ---- rotary embedding on the fused q/k/v projection --------------------------------------------------
def rope_tables(length: int, head_dim: int, base: float, device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin of the rotation angles, (length, head_dim/2): the two halves of the
    rotate-half layout (LLaMA/HF) share them, so they are stored once, not concatenated."""
    inv_freq = 1.0 / (base ** (torch.arange(0, head_dim, 2, device=device, dtype=torch.float32) / head_dim))
    t = torch.arange(length, device=device, dtype=torch.float32)
    freqs = torch.outer(t, inv_freq)  # (L, hd/2)
    return freqs.cos(), freqs.sin()


def _rotate_into(out: torch.Tensor, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> None:
    """out = x rotated by the angles (sin negated: the inverse rotation). x, out: (B, L, H, hd);
    cos, sin: (L, 1, hd/2). Rotate-half: [x1, x2] -> [x1 c - x2 s, x2 c + x1 s], written in place."""
    h = x.shape[-1] // 2
    x1, x2, o1, o2 = x[..., :h], x[..., h:], out[..., :h], out[..., h:]
    torch.mul(x1, cos, out=o1).addcmul_(x2, sin, value=-1)
    torch.mul(x2, cos, out=o2).addcmul_(x1, sin)


def qkv_rope_reference(qkv, cos, sin, n_head: int, n_kv_head: int):
    """Plain ops: split (B, L, (H + 2 Hkv) hd) into q (B, H, L, hd), k, v (B, Hkv, L, hd), rotate q and k."""
    B, L, _ = qkv.shape
    hd = qkv.shape[-1] // (n_head + 2 * n_kv_head)
    q, k, v = qkv.split([n_head * hd, n_kv_head * hd, n_kv_head * hd], dim=-1)
    c, s = torch.cat([cos, cos], -1).to(qkv.dtype), torch.cat([sin, sin], -1).to(qkv.dtype)  # (L, hd)

    def rot(x, heads):
        x = x.view(B, L, heads, hd).transpose(1, 2)  # (B, heads, L, hd)
        x1, x2 = x.chunk(2, dim=-1)
        return x * c + torch.cat([-x2, x1], dim=-1) * s

    return rot(q, n_head), rot(k, n_kv_head), v.view(B, L, n_kv_head, hd).transpose(1, 2)


class _QKVRope(torch.autograd.Function):
    @staticmethod
    def forward(ctx, qkv, cos, sin, n_head, n_kv_head):
        B, L, _ = qkv.shape
        hd = qkv.shape[-1] // (n_head + 2 * n_kv_head)
        parts = qkv.view(B, L, n_head + 2 * n_kv_head, hd)  # (B, L, H + 2 Hkv, hd)
        c, s = cos.to(qkv.dtype)[:, None], sin.to(qkv.dtype)[:, None]  # (L, 1, hd/2)
        # outputs are contiguous (B, heads, L, hd), the layout attention kernels read fastest
        q = qkv.new_empty(B, n_head, L, hd)
        k = qkv.new_empty(B, n_kv_head, L, hd)
        v = qkv.new_empty(B, n_kv_head, L, hd)
        _rotate_into(q.transpose(1, 2), parts[:, :, :n_head], c, s)
        _rotate_into(k.transpose(1, 2), parts[:, :, n_head:n_head + n_kv_head], c, s)
        v.transpose(1, 2).copy_(parts[:, :, n_head + n_kv_head:])
        ctx.save_for_backward(c, s)
        ctx.heads = (n_head, n_kv_head)
        return q, k, v

    @staticmethod
    def backward(ctx, gq, gk, gv):
        c, s = ctx.saved_tensors
        n_head, n_kv_head = ctx.heads
        B, _, L, hd = gq.shape
        dqkv = gq.new_empty(B, L, n_head + 2 * n_kv_head, hd)  # one buffer, no zero fill, no cat
        _rotate_into(dqkv[:, :, :n_head], gq.transpose(1, 2), c, -s)  # a rotation's gradient rotates back
        _rotate_into(dqkv[:, :, n_head:n_head + n_kv_head], gk.transpose(1, 2), c, -s)
        dqkv[:, :, n_head + n_kv_head:].copy_(gv.transpose(1, 2))
        return dqkv.view(B, L, -1), None, None, None, None


def qkv_rope(qkv: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, n_head: int, n_kv_head: int):
    """(B, L, (H + 2 Hkv) hd) projection -> rotated q (B, H, L, hd), rotated k and v (B, Hkv, L, hd).
    cos, sin: (L, hd/2) from ``rope_tables``."""
    if _plain():
        return qkv_rope_reference(qkv, cos, sin, n_head, n_kv_head)
    return _QKVRope.apply(qkv, cos, sin, n_head, n_kv_head)


# ---- SwiGLU --------------------------------------------------------------------------------------
def swiglu_reference(h: torch.Tensor) -> torch.Tensor:
    gate, up = h.chunk(2, dim=-1)
    return F.silu(gate) * up


class _SwiGLU(torch.autograd.Function):
    @staticmethod
    def forward(ctx, h):
        # h: (..., 2F) = [gate | up] from one matmul -> silu(gate) * up (..., F)
        f = h.shape[-1] // 2
        gate, up = h[..., :f], h[..., f:]
        ctx.save_for_backward(h)
        return F.silu(gate).mul_(up)

    @staticmethod
    def backward(ctx, g):
        (h,) = ctx.saved_tensors
        f = h.shape[-1] // 2
        gate, up = h[..., :f], h[..., f:]
        dh = torch.empty_like(h)  # one buffer for both halves: no cat
        dgate, dup = dh[..., :f], dh[..., f:]
        torch.mul(g, up, out=dgate)
        torch.ops.aten.silu_backward.grad_input(dgate, gate, grad_input=dgate)  # one fused pass, in place
        torch.ops.aten.silu.out(gate, out=dup).mul_(g)  # silu(gate) recomputed, times g
        return dh


def swiglu(h: torch.Tensor) -> torch.Tensor:
    """silu(gate) * up for h = [gate | up] (..., 2F) -> (..., F)."""
    if _plain():
        return swiglu_reference(h)
    return _SwiGLU.apply(h)


# ---- causal attention for CPU training ------------------------------------------------------------
# On a CPU, torch's fused (flash) attention kernel runs its backward at about 40% of the machine's
# matmul rate. Cutting the queries into blocks of a few dozen rows and running each block against
# the keys up to its end as batched matmuls skips the masked upper triangle as flash does, keeps each
# block's scores in cache, and lets the backward read the saved probabilities instead of recomputing
# them. Forward+backward against torch's kernel, one thread: 1.2x at 256 positions, 1.3-1.5x at 512,
# 1.1-1.2x at 1024, none at 2048 and below 128. A train step at 512 positions: 1.16x (Toto-tiny) and
# 1.09x (small) on one thread, 1.19x and 1.16x on two (benchmarks/bench_model.py --attention).
# The price is memory: the probabilities, B H L^2 / 2 floats per layer, are kept for the backward.
# Inference keeps torch's kernel (its forward is as fast).
BLOCKED_LENGTHS = (256, 1024)  # sequence lengths that use the blocked kernel; others use torch's


def causal_attention_reference(q, k, v):
    """q (B, H, L, hd), k, v (B, Hkv, L, hd) -> (B, H, L, hd), torch's kernel."""
    return F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=q.shape[1] != k.shape[1])


def attention_block(head_dim: int) -> int:
    """Query rows per block: the fastest of 32/64/128 measured for each head size at 512 positions."""
    return 32 if head_dim <= 32 else 64


class _BlockCausalAttention(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q, k, v, blk):
        B, H, L, hd = q.shape
        Hkv = k.shape[1]
        g = H // Hkv  # query heads per key/value head (1: multi-head attention)
        scale = hd ** -0.5
        qg = q.reshape(B * Hkv, g, L, hd)  # the query heads of one key/value head side by side
        kf, vf = k.reshape(B * Hkv, L, hd), v.reshape(B * Hkv, L, hd)
        out = q.new_empty(B * Hkv, g, L, hd)
        upper = torch.ones(blk, blk, dtype=torch.bool, device=q.device).triu_(1)
        probs = []
        for s in range(0, L, blk):
            e = min(s + blk, L)
            qb = qg[:, :, s:e].reshape(B * Hkv, g * (e - s), hd)  # (BHkv, g b, hd); a view when g = 1
            scores = torch.baddbmm(q.new_empty(1, 1, 1), qb, kf[:, :e].transpose(1, 2), beta=0, alpha=scale)  # (BHkv, g b, e)
            scores.view(B * Hkv, g, e - s, e)[..., s:e].masked_fill_(upper[: e - s, : e - s], float("-inf"))
            p = torch.softmax(scores, dim=-1)
            out[:, :, s:e] = torch.bmm(p, vf[:, :e]).view(B * Hkv, g, e - s, hd)
            probs.append(p)
        ctx.save_for_backward(q, k, v, *probs)
        ctx.blk = blk
        return out.view(B, H, L, hd)

    @staticmethod
    def backward(ctx, gout):
        q, k, v, *probs = ctx.saved_tensors
        B, H, L, hd = q.shape
        Hkv = k.shape[1]
        g, blk, scale = H // Hkv, ctx.blk, hd ** -0.5
        qg, go = q.reshape(B * Hkv, g, L, hd), gout.reshape(B * Hkv, g, L, hd)
        kf, vf = k.reshape(B * Hkv, L, hd), v.reshape(B * Hkv, L, hd)
        dq = torch.empty_like(qg)
        dk, dv = torch.zeros_like(kf), torch.zeros_like(vf)
        # dK and dV gather every block's products into their first e rows. On one thread that is an
        # in-place baddbmm_ (no temporaries); it runs one matmul per batch entry on a slice, which
        # several threads share badly, so with more threads each product is made whole and added.
        in_place = torch.get_num_threads() == 1
        for p, s in zip(probs, range(0, L, blk)):
            e = min(s + blk, L)
            gb = go[:, :, s:e].reshape(B * Hkv, g * (e - s), hd)  # (BHkv, g b, hd)
            qb = qg[:, :, s:e].reshape(B * Hkv, g * (e - s), hd)
            dscores = torch._softmax_backward_data(torch.bmm(gb, vf[:, :e].transpose(1, 2)), p, -1, p.dtype)  # P (dP - rowsum(P dP))
            dq[:, :, s:e] = torch.baddbmm(q.new_empty(1, 1, 1), dscores, kf[:, :e], beta=0, alpha=scale).view(B * Hkv, g, e - s, hd)
            if in_place:
                dv[:, :e].baddbmm_(p.transpose(1, 2), gb)  # dV += P^T dO
                dk[:, :e].baddbmm_(dscores.transpose(1, 2), qb, alpha=scale)  # dK += scale dS^T Q
            else:
                dv[:, :e] += torch.bmm(p.transpose(1, 2), gb)
                dk[:, :e] += torch.bmm(dscores.transpose(1, 2), qb)
        if not in_place:
            dk.mul_(scale)
        return dq.view(B, H, L, hd), dk.view(B, Hkv, L, hd), dv.view(B, Hkv, L, hd), None


def use_blocked_attention(q: torch.Tensor) -> bool:
    """The blocked kernel pays off in a CPU float32 train step at ``BLOCKED_LENGTHS`` positions.
    Under a dispatch mode (FLOP counting in ``utils/flops.py``, fake tensors) torch's kernel runs, so
    a step's counted FLOPs follow the usual attention convention whichever kernel trains."""
    return (torch.is_grad_enabled() and q.requires_grad and not _plain() and q.device.type == "cpu"
            and q.dtype == torch.float32 and BLOCKED_LENGTHS[0] <= q.shape[2] <= BLOCKED_LENGTHS[1] and _get_current_dispatch_mode() is None)


def causal_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, blocked: bool = True) -> torch.Tensor:
    """Causal self-attention over a whole sequence: q (B, H, L, hd), k, v (B, Hkv, L, hd) -> (B, H, L, hd).
    ``blocked=False`` always runs torch's kernel."""
    if blocked and use_blocked_attention(q):
        return _BlockCausalAttention.apply(q, k, v, attention_block(q.shape[-1]))
    return causal_attention_reference(q, k, v)
