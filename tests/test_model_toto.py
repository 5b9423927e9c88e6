"""The Toto decoder: sizes, hidden states, KV cache, HF parity, patch regression, persistence."""
from __future__ import annotations

import pytest
import torch

from toto_robot.model import KVCache, Toto, TotoConfig
from toto_robot.model import fused
from toto_robot.model.gpt2 import GPT2, GPT2Config
from toto_robot.utils.io import CheckpointError


@pytest.mark.parametrize("name,paper", [("toto_base", 120e6), ("toto_large", 280e6), ("toto_1b", 1.1e9)])
def test_named_sizes_match_the_paper_parameter_counts(name, paper):
    with torch.device("meta"):
        model = Toto(TotoConfig.from_name(name))
    assert abs(model.num_params() - paper) / paper < 0.05, model.num_params()


def tiny(**kw):
    torch.manual_seed(0)
    return Toto(TotoConfig.from_name("toto_tiny", **kw)).eval()


def test_hidden_states_come_from_the_same_pass_and_features_stop_early():
    m = tiny()
    x = torch.randint(0, m.config.vocab_size, (2, 40))
    out = m(x, return_layers=[0, 2, 4])
    assert out.logits.shape == (2, 40, m.config.vocab_size)
    assert set(out.hidden) == {0, 2, 4} and out.hidden[2].shape == (2, 40, 128)
    assert torch.equal(out.hidden[0], m.tok_emb(x))
    feats = m.features(x, [2])
    torch.testing.assert_close(feats[2], out.hidden[2])


def test_kv_cache_matches_full_forward():
    m = tiny()
    x = torch.randint(0, m.config.vocab_size, (2, 30))
    full = m(x).logits
    cache = KVCache()
    parts = [m(x[:, :17], cache=cache).logits] + [m(x[:, i:i + 1], cache=cache).logits for i in range(17, 30)]
    torch.testing.assert_close(torch.cat(parts, 1), full, atol=1e-5, rtol=1e-4)
    g = m.generate(x[:, :5], 8, generator=torch.Generator().manual_seed(0))
    assert g.shape == (2, 13) and torch.equal(g[:, :5], x[:, :5])


def test_logits_equal_transformers_llama_on_the_same_weights():
    pytest.importorskip("transformers")
    from toto_robot.model.hf import export_hf, import_hf

    m = tiny(n_layer=2, tie_embeddings=False)
    hf = export_hf(m)
    x = torch.randint(0, m.config.vocab_size, (2, 64))
    with torch.no_grad():
        torch.testing.assert_close(hf(x).logits, m(x).logits, atol=1e-5, rtol=0)
        back = import_hf(hf)
        torch.testing.assert_close(back(x).logits, m(x).logits, atol=1e-5, rtol=0)


def test_bad_inputs_are_named():
    m = tiny()
    with pytest.raises(ValueError, match="exceeds the model's context"):
        m(torch.zeros(1, m.config.block_size + 1, dtype=torch.long))
    with pytest.raises(ValueError, match="vocab mismatch"):
        m(torch.full((1, 4), m.config.vocab_size))
    with pytest.raises(ValueError, match="integer token ids"):
        m(torch.zeros(1, 4))


def test_patch_regression_head_learns_a_predictable_sequence():
    torch.manual_seed(0)
    m = Toto(TotoConfig.from_name("toto_tiny", input_dim=12, n_layer=2)).train()
    base = torch.randn(1, 1, 12)
    x = base.repeat(8, 20, 1) + 0.01 * torch.randn(8, 20, 12)  # every patch equals the first
    opt = m.configure_optimizer(3e-3, 0.0)
    first = None
    for _ in range(60):
        loss = m(x, targets=x).loss
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.3 * first


def test_save_and_load_round_trip_and_corrupt_checkpoint(tmp_path):
    m = tiny()
    m.save_pretrained(tmp_path / "ckpt")
    back = Toto.from_pretrained(tmp_path / "ckpt").eval()
    x = torch.randint(0, m.config.vocab_size, (1, 10))
    torch.testing.assert_close(back(x).logits, m(x).logits)
    (tmp_path / "ckpt" / "model.safetensors").write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="corrupt weights"):
        Toto.from_pretrained(tmp_path / "ckpt")
    with pytest.raises(CheckpointError, match="not found"):
        Toto.from_pretrained(tmp_path / "nope")


def test_gpt2_variant_has_the_same_contract():
    m = GPT2(GPT2Config()).eval()
    x = torch.randint(0, 516, (2, 16))
    out = m(x, targets=x, return_layers=[1])
    assert out.logits.shape == (2, 16, 516) and out.hidden[1].shape == (2, 16, 128) and out.loss > 0


def _grads(fn, *inputs):
    out = fn(*inputs)
    outs = out if isinstance(out, tuple) else (out,)
    torch.manual_seed(1)
    torch.autograd.backward(outs, [torch.randn(o.shape) for o in outs])
    return [o.detach() for o in outs], [i.grad.clone() for i in inputs if i.requires_grad]


@pytest.mark.parametrize("n_head,n_kv_head", [(4, 4), (4, 2), (4, 1)])
def test_fused_kernels_match_plain_ops_in_value_and_gradient(n_head, n_kv_head):
    torch.manual_seed(0)
    B, L, hd, F_ = 2, 9, 8, 24
    cos, sin = fused.rope_tables(L, hd, 10_000.0)
    cases = [
        (fused.rms_norm, lambda x, w: fused.rms_norm_reference(x, w, 1e-5), lambda: (torch.randn(B, L, 16), torch.rand(16) + 0.5), (1e-5,)),
        (fused.qkv_rope, lambda q: fused.qkv_rope_reference(q, cos, sin, n_head, n_kv_head),
         lambda: (torch.randn(B, L, (n_head + 2 * n_kv_head) * hd),), (cos, sin, n_head, n_kv_head)),
        (fused.swiglu, fused.swiglu_reference, lambda: (torch.randn(B, L, 2 * F_),), ()),
    ]
    for fn, ref, make, extra in cases:
        a = [t.requires_grad_() for t in make()]
        b = [t.detach().clone().requires_grad_() for t in a]
        out_f, grad_f = _grads(lambda *i: fn(*i, *extra), *a)
        out_r, grad_r = _grads(ref, *b)
        for x, y in zip(out_f + grad_f, out_r + grad_r):
            assert x.shape == y.shape
            torch.testing.assert_close(x, y, atol=2e-6, rtol=1e-5)


@pytest.mark.parametrize("n_head,n_kv_head,blk", [(4, 4, 16), (4, 2, 16), (4, 1, 32), (2, 2, 128)])
def test_blocked_causal_attention_matches_torch_kernel_in_value_and_gradient(n_head, n_kv_head, blk):
    torch.manual_seed(0)
    B, L, hd = 2, 70, 8  # 70 positions: the last block is a partial one (or the only one, blk=128)
    q = torch.randn(B, n_head, L, hd, requires_grad=True)
    k, v = (torch.randn(B, n_kv_head, L, hd, requires_grad=True) for _ in range(2))
    b = [t.detach().clone().requires_grad_() for t in (q, k, v)]
    out_r, grad_r = _grads(fused.causal_attention_reference, *b)
    threads = torch.get_num_threads()
    try:
        for n in (1, 2):  # one thread accumulates dK, dV in place, more threads out of place
            torch.set_num_threads(n)
            a = [t.detach().clone().requires_grad_() for t in (q, k, v)]
            out_f, grad_f = _grads(lambda *i: fused._BlockCausalAttention.apply(*i, blk), *a)
            for x, y in zip(out_f + grad_f, out_r + grad_r):
                assert x.shape == y.shape
                torch.testing.assert_close(x, y, atol=5e-6, rtol=1e-5)
    finally:
        torch.set_num_threads(threads)


def _backward_nodes(loss: torch.Tensor) -> set[str]:
    seen, todo = {}, [loss.grad_fn]
    while todo:
        node = todo.pop()
        if node is not None and id(node) not in seen:
            seen[id(node)] = node.name()
            todo.extend(n for n, _ in node.next_functions)
    return set(seen.values())


def test_train_step_runs_blocked_attention_with_the_same_logits_and_gradients_as_torch_kernel(monkeypatch):
    pytest.importorskip("transformers")
    from toto_robot.model.hf import export_hf

    monkeypatch.setattr(fused, "BLOCKED_LENGTHS", (16, 1024))  # short test sequences take the blocked path too

    m = tiny(n_layer=2, n_kv_head=2).train()
    x = torch.randint(0, m.config.vocab_size, (2, 40))
    with torch.no_grad():
        ref = export_hf(m).eval()(x).logits
    results = []
    for blocked in (True, False):
        for block in m.layers:
            block.attn.blocked = blocked
        m.zero_grad()
        out = m(x, targets=x)
        out.loss.backward()
        assert ("_BlockCausalAttentionBackward" in _backward_nodes(out.loss)) == blocked
        torch.testing.assert_close(out.logits.detach(), ref, atol=1e-5, rtol=0)  # the HF parity holds in training too
        results.append({n: p.grad.clone() for n, p in m.named_parameters()})
    for n in results[0]:
        torch.testing.assert_close(results[0][n], results[1][n], atol=1e-6, rtol=1e-4)
    q = torch.randn(1, 4, 512, 32, requires_grad=True)
    assert fused.use_blocked_attention(q)
    with torch.no_grad():  # inference keeps torch's kernel
        assert not fused.use_blocked_attention(q)
    monkeypatch.undo()
    assert not fused.use_blocked_attention(q[:, :, :64]) and not fused.use_blocked_attention(torch.randn(1, 4, 2048, 32, requires_grad=True))


def test_counted_train_flops_do_not_depend_on_the_attention_kernel():
    from toto_robot.utils.flops import train_flops

    m = tiny(n_layer=2).train()
    x = torch.randint(0, m.config.vocab_size, (1, 256))  # long enough for the blocked kernel
    counts = []
    for blocked in (False, True):
        for block in m.layers:
            block.attn.blocked = blocked
        with train_flops() as counter:
            out = m(x, targets=x)
            out.loss.backward()
        counts.append(counter.total)
    assert counts[0] == counts[1] > 0
    assert "_BlockCausalAttentionBackward" in _backward_nodes(m(x, targets=x).loss)  # outside the counter it runs blocked


def test_grouped_query_attention_model_caches_and_matches_hf():
    pytest.importorskip("transformers")
    from toto_robot.model.hf import export_hf

    m = tiny(n_kv_head=2)
    assert m.layers[0].attn.wqkv.weight.shape == ((4 + 2 * 2) * 32, 128)
    x = torch.randint(0, m.config.vocab_size, (2, 24))
    full = m(x).logits
    cache = KVCache()
    parts = [m(x[:, :10], cache=cache).logits] + [m(x[:, i:i + 1], cache=cache).logits for i in range(10, 24)]
    assert cache.k[0].shape == (2, 2, 24, 32)  # keys stored once per key/value head
    torch.testing.assert_close(torch.cat(parts, 1), full, atol=1e-5, rtol=1e-4)
    with torch.no_grad():
        torch.testing.assert_close(export_hf(m)(x).logits, full, atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="not a multiple of n_kv_head"):
        TotoConfig.from_name("toto_tiny", n_kv_head=3)


def test_checkpoint_with_separate_qkv_and_gate_up_weights_still_loads(tmp_path):
    from toto_robot.utils.io import save_pretrained

    m = tiny(n_layer=2)
    legacy = {}
    for k, v in m.state_dict().items():
        if k == "head.weight":
            continue
        if k.endswith("attn.wqkv.weight"):
            for name, part in zip(("wq", "wk", "wv"), v.chunk(3)):
                legacy[k.replace("wqkv", name)] = part.clone()
        elif k.endswith("mlp.w13.weight"):
            for name, part in zip(("w1", "w3"), v.chunk(2)):
                legacy[k.replace("w13", name)] = part.clone()
        else:
            legacy[k] = v
    assert "layers.1.attn.wk.weight" in legacy and not any("wqkv" in k or "w13" in k for k in legacy)
    save_pretrained(tmp_path / "old", legacy, m.config.to_dict())
    back = Toto.from_pretrained(tmp_path / "old").eval()
    x = torch.randint(0, m.config.vocab_size, (1, 12))
    assert torch.equal(back(x).logits, m(x).logits)
    del legacy["layers.0.attn.wv.weight"]
    save_pretrained(tmp_path / "broken", legacy, m.config.to_dict())
    with pytest.raises(CheckpointError, match="wv.weight"):
        Toto.from_pretrained(tmp_path / "broken")


def test_activation_checkpointing_gives_the_same_gradients():
    x = torch.randint(0, 516, (2, 20))
    grads = []
    for recompute in (False, True):
        m = tiny(n_layer=2).train()
        m.checkpoint_blocks = recompute
        m(x, targets=x).loss.backward()
        grads.append({n: p.grad for n, p in m.named_parameters()})
    for n in grads[0]:
        torch.testing.assert_close(grads[1][n], grads[0][n], atol=1e-7, rtol=1e-5)


def test_patch_token_model_trains_through_the_fused_path():
    torch.manual_seed(0)
    m = Toto(TotoConfig.from_name("toto_tiny", input_dim=12, n_layer=1, n_kv_head=2)).train()
    x = torch.randn(2, 10, 12)
    out = m(x, targets=x)
    out.loss.backward()
    assert out.logits.shape == (2, 10, 12) and m.layers[0].attn.wqkv.weight.grad.abs().sum() > 0
